package playback

import (
	"net/netip"
	"testing"
	"time"
)

// TestStreamPath: the path checked for reading a stream as a whole (SRT,
// RTSP) is covered by the tokens of the stream and of a prefix above it,
// as its playlists are, and not by a token of one rendition, one file, or
// another stream.
func TestStreamPath(t *testing.T) {
	for _, s := range []string{"live/x", "/live/x", "live/x/"} {
		if got := StreamPath(s); got != "/live/x/" {
			t.Errorf("StreamPath(%q) = %q", s, got)
		}
	}
	k, err := NewKeyring(map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Minute)
	path := StreamPath("live/x")
	for prefix, want := range map[string]error{
		"live/x/":           nil,
		"/live/x":           nil,
		"live/":             nil,
		"/":                 nil,
		"live/x/720p/":      ErrWrongPath,
		"live/x/index.m3u8": ErrWrongPath,
		"live/xy/":          ErrWrongPath,
		"live/other/":       ErrWrongPath,
	} {
		tok, err := k.Sign(prefix, exp, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.VerifyClaims(tok, path, netip.Addr{}, now); err != want {
			t.Errorf("token for %q reading %s: %v, want %v", prefix, path, err, want)
		}
		// The same token plays the stream's HLS playlist, or does not.
		if _, err := k.VerifyClaims(tok, "/live/x/index.m3u8", netip.Addr{}, now); (err == nil) != (want == nil) && prefix != "live/x/index.m3u8" {
			t.Errorf("token for %q: HLS %v but stream %v", prefix, err, want)
		}
	}
	// IssueURL's tokens cover it.
	k.now = func() time.Time { return now }
	u, err := k.IssueURL("https://cdn.example.com", "live/x", time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, ok := SplitTokenPath(u[len("https://cdn.example.com"):])
	if !ok {
		t.Fatalf("URL %s", u)
	}
	if _, err := k.VerifyClaims(tok, path, netip.Addr{}, now); err != nil {
		t.Errorf("IssueURL's token reading the stream: %v", err)
	}
}

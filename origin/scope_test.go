package origin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/store"
)

// nestedFixture adds a stream named like the fixture stream's video
// rendition, "live/key/video", and one below it, "live/key/x".
func nestedFixture(t *testing.T) *fixture {
	f := newFixture(t, Config{}, store.Config{})
	for _, name := range []string{streamName + "/video", streamName + "/x"} {
		st := f.st.Begin(name)
		v := st.AddRendition(videoInfo)
		v.SetInit(videoInfo, initVideo)
	}
	return f
}

// TestRenditionBeforeNestedStream: "/live/key/video/index.m3u8" is the
// video rendition of live/key even when a stream live/key/video exists.
func TestRenditionBeforeNestedStream(t *testing.T) {
	f := nestedFixture(t)
	r := f.get("/" + streamName + "/video/index.m3u8")
	expectStatus(t, r, 200)
	if body := string(r.body); !strings.Contains(body, "#EXTINF") || strings.Contains(body, "#EXT-X-STREAM-INF") {
		t.Fatalf("live/key/video/index.m3u8 is not live/key's media playlist:\n%s", body)
	}
}

// TestStreamTokenRefusedForNestedStream: a token for the stream live/key
// reads its objects, not those of the stream live/key/x (403), which a
// prefix claim "/live/key/" does read.
func TestStreamTokenRefusedForNestedStream(t *testing.T) {
	f := nestedFixture(t)
	kr, err := playback.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte("s"), 32)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(playback.Middleware(playback.Config{Keyring: kr})(f.h))
	t.Cleanup(srv.Close)
	get := func(prefix, path string) int {
		tok, err := kr.Sign(prefix, time.Now().Add(time.Minute), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(srv.URL + "/t/" + tok + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		prefix, path string
		want         int
	}{
		{"/" + streamName, "/" + streamName + "/index.m3u8", 200},
		{"/" + streamName, "/" + streamName + "/video/index.m3u8", 200},
		{"/" + streamName, "/" + streamName + "/x/index.m3u8", 403},   // the stream live/key/x
		{"/" + streamName, "/" + streamName + "/x/manifest.mpd", 403}, // its MPD
		{"/" + streamName, "/" + streamName + "/x/video/init.mp4", 403},
		{"/" + streamName + "/", "/" + streamName + "/x/video/init.mp4", 200}, // a prefix claim
	} {
		if got := get(c.prefix, c.path); got != c.want {
			t.Errorf("token %s, GET %s: %d, want %d", c.prefix, c.path, got, c.want)
		}
	}
}

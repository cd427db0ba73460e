package playback

import (
	"encoding/base64"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	now     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	secretA = []byte("secret-A-0123456789abcdef0123456789")
	secretB = []byte("secret-B-0123456789abcdef0123456789")
)

func keyring(t testing.TB, active string, keys map[string][]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys, active)
	if err != nil {
		t.Fatal(err)
	}
	k.now = func() time.Time { return now }
	return k
}

func mustSign(t testing.TB, k *Keyring, prefix string, exp time.Time, ip netip.Addr) string {
	t.Helper()
	tok, err := k.Sign(prefix, exp, ip)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func flipMAC(tok string) string {
	i := strings.IndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// rewritePayload changes the payload without re-signing.
func rewritePayload(t testing.TB, tok string, f func([]byte) []byte) string {
	enc, mac, _ := strings.Cut(tok, ".")
	p, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(f(p)) + "." + mac
}

func TestToken(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	rotated := keyring(t, "b", map[string][]byte{"a": secretA, "b": secretB})
	onlyB := keyring(t, "b", map[string][]byte{"b": secretB})
	exp := now.Add(5 * time.Minute)
	v4 := netip.MustParseAddr("198.51.100.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	tok := mustSign(t, ring, "/live/a/", exp, netip.Addr{})
	noSlash := mustSign(t, ring, "live/a", exp, netip.Addr{})
	bound4 := mustSign(t, ring, "/live/a/", exp, v4)
	bound6 := mustSign(t, ring, "/live/a/", exp, v6)
	boundMapped := mustSign(t, ring, "/live/a/", exp, netip.MustParseAddr("::ffff:198.51.100.7"))
	all := mustSign(t, ring, "/", exp, netip.Addr{})
	newTok := mustSign(t, rotated, "/live/a/", exp, netip.Addr{})

	for _, tc := range []struct {
		name  string
		k     *Keyring
		token string
		path  string
		ip    netip.Addr
		at    time.Time
		want  error
	}{
		{"valid playlist", ring, tok, "/live/a/index.m3u8", netip.Addr{}, now, nil},
		{"valid segment", ring, tok, "/live/a/video/seg12.m4s", v4, now, nil},
		{"valid key file", ring, tok, "/keys/live/a/0123456789abcdef.key", v4, now, nil},
		{"key file of another stream", ring, tok, "/keys/live/b/0123456789abcdef.key", v4, now, ErrWrongPath},
		{"key path without .key", ring, tok, "/keys/live/a/video/index.m3u8", v4, now, ErrWrongPath},
		{"prefix without slash", ring, noSlash, "/live/a/video/init.mp4", v4, now, nil},
		{"prefix without slash, sibling", ring, noSlash, "/live/ab/index.m3u8", v4, now, ErrWrongPath},
		{"other stream", ring, tok, "/live/b/index.m3u8", v4, now, ErrWrongPath},
		{"sibling with common prefix", ring, tok, "/live/ab/index.m3u8", v4, now, ErrWrongPath},
		{"parent", ring, tok, "/live/index.m3u8", v4, now, ErrWrongPath},
		{"dot-dot escape", ring, tok, "/live/a/../b/index.m3u8", v4, now, ErrBadPath},
		{"double slash", ring, tok, "/live/a//index.m3u8", v4, now, ErrBadPath},
		{"percent", ring, tok, "/live/a/%2e%2e/b", v4, now, ErrBadPath},
		{"relative path", ring, tok, "live/a/index.m3u8", v4, now, ErrBadPath},
		{"root prefix", ring, all, "/anything/x.m4s", v4, now, nil},
		{"last second", ring, tok, "/live/a/index.m3u8", v4, exp.Add(-time.Second), nil},
		{"expired at exp", ring, tok, "/live/a/index.m3u8", v4, exp, ErrExpired},
		{"expired", ring, tok, "/live/a/index.m3u8", v4, exp.Add(time.Hour), ErrExpired},
		{"bound IPv4", ring, bound4, "/live/a/index.m3u8", v4, now, nil},
		{"bound IPv4, mapped client", ring, bound4, "/live/a/index.m3u8", netip.MustParseAddr("::ffff:198.51.100.7"), now, nil},
		{"bound to mapped = IPv4", ring, boundMapped, "/live/a/index.m3u8", v4, now, nil},
		{"bound IPv4, other client", ring, bound4, "/live/a/index.m3u8", netip.MustParseAddr("198.51.100.8"), now, ErrWrongIP},
		{"bound IPv4, no client address", ring, bound4, "/live/a/index.m3u8", netip.Addr{}, now, ErrWrongIP},
		{"bound IPv6", ring, bound6, "/live/a/index.m3u8", v6, now, nil},
		{"bound IPv6, other", ring, bound6, "/live/a/index.m3u8", netip.MustParseAddr("2001:db8::8"), now, ErrWrongIP},
		{"tampered MAC", ring, flipMAC(tok), "/live/a/index.m3u8", v4, now, ErrBadSignature},
		{"tampered prefix", ring, rewritePayload(t, tok, func(p []byte) []byte { p[len(p)-2] = 'b'; return p }), "/live/b/index.m3u8", v4, now, ErrBadSignature},
		{"tampered expiry", ring, rewritePayload(t, tok, func(p []byte) []byte { p[4] = 0xff; return p }), "/live/a/index.m3u8", v4, exp.Add(time.Hour), ErrBadSignature},
		{"IP binding removed", ring, rewritePayload(t, bound4, func(p []byte) []byte {
			return append(append(append([]byte{}, p[:7]...), 0), p[12:]...)
		}), "/live/a/index.m3u8", v4, now, ErrBadSignature},
		{"version 2", ring, rewritePayload(t, tok, func(p []byte) []byte { p[0] = 2; return p }), "/live/a/x", v4, now, ErrMalformed},
		{"rotation: old key still verifies", rotated, tok, "/live/a/index.m3u8", v4, now, nil},
		{"rotation: new key verifies", rotated, newTok, "/live/a/index.m3u8", v4, now, nil},
		{"rotation: old key removed", onlyB, tok, "/live/a/index.m3u8", v4, now, ErrUnknownKey},
		{"new key unknown to old keyring", ring, newTok, "/live/a/index.m3u8", v4, now, ErrUnknownKey},
		{"empty", ring, "", "/live/a/x", v4, now, ErrMalformed},
		{"no dot", ring, strings.ReplaceAll(tok, ".", ""), "/live/a/x", v4, now, ErrMalformed},
		{"padded", ring, tok + "=", "/live/a/x", v4, now, ErrMalformed},
		{"two dots", ring, tok + ".x", "/live/a/x", v4, now, ErrMalformed},
		{"too long", ring, strings.Repeat("A", MaxTokenLength+1), "/live/a/x", v4, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.k.Verify(tc.token, tc.path, tc.ip, tc.at)
			if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatal("error contains the token")
			}
		})
	}
	// Tokens are one path element of URL-safe characters.
	for _, s := range []string{tok, bound6, newTok} {
		if strings.ContainsAny(s, "/+=%?#") || url.PathEscape(s) != s {
			t.Fatalf("token %q is not a clean path element", s)
		}
	}
	if len(tok) > 80 {
		t.Fatalf("token for /live/a/ is %d characters", len(tok))
	}
}

func TestSignInvalid(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	for _, p := range []string{"/live/../x", "/live//x", "/live/a b", "/" + strings.Repeat("a", MaxPrefixLength)} {
		if _, err := ring.Sign(p, now.Add(time.Hour), netip.Addr{}); err == nil {
			t.Errorf("Sign(%q) accepted", p)
		}
	}
	for _, exp := range []time.Time{time.Unix(0, 0), time.Unix(1<<33, 0)} {
		if _, err := ring.Sign("/x/", exp, netip.Addr{}); err == nil {
			t.Errorf("Sign with expiry %v accepted", exp)
		}
	}
	for name, tc := range map[string]struct {
		keys   map[string][]byte
		active string
	}{
		"none":           {nil, ""},
		"short secret":   {map[string][]byte{"a": []byte("short")}, "a"},
		"bad id":         {map[string][]byte{"a/b": secretA}, "a/b"},
		"long id":        {map[string][]byte{strings.Repeat("k", 17): secretA}, strings.Repeat("k", 17)},
		"missing active": {map[string][]byte{"a": secretA}, "b"},
	} {
		if _, err := NewKeyring(tc.keys, tc.active); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseClaims(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	ip := netip.MustParseAddr("203.0.113.5")
	c, err := ring.Parse(mustSign(t, ring, "/live/a/", now.Add(time.Minute), ip))
	if err != nil || c.KeyID != "a" || !c.Expires.Equal(now.Add(time.Minute)) || c.IP != ip || c.Prefix != "/live/a/" {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
}

func TestSplitTokenPath(t *testing.T) {
	for _, tc := range []struct {
		path, token, rest string
		ok                bool
	}{
		{"/t/abc.def/live/a/index.m3u8", "abc.def", "/live/a/index.m3u8", true},
		{"/t/x/y", "x", "/y", true},
		{"/t/x/", "x", "/", true},
		{"/t/x", "", "", false},
		{"/t//live/a", "", "", false},
		{"/t/", "", "", false},
		{"/live/a/index.m3u8", "", "", false},
		{"/tt/x/y", "", "", false},
		{"t/x/y", "", "", false},
		{"", "", "", false},
	} {
		tok, rest, ok := SplitTokenPath(tc.path)
		if tok != tc.token || rest != tc.rest || ok != tc.ok {
			t.Errorf("SplitTokenPath(%q) = %q %q %v", tc.path, tok, rest, ok)
		}
	}
}

func TestIssueURL(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	u, err := ring.IssueURL("https://cdn.example.com/", "live/a", 5*time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host != "cdn.example.com" {
		t.Fatalf("IssueURL = %s", u)
	}
	tok, rest, ok := SplitTokenPath(pu.Path)
	if !ok || rest != "/live/a/index.m3u8" {
		t.Fatalf("IssueURL path %s", pu.Path)
	}
	// The token covers what the playlists reference relatively.
	for _, ref := range []string{"video/index.m3u8", "video/seg3.m4s", "../../keys/live/a/0123.key"} {
		r, _ := url.Parse(ref)
		p := pu.ResolveReference(r).Path
		_, rest, ok := SplitTokenPath(p)
		if !ok {
			t.Fatalf("%s resolved to %s: token lost", ref, p)
		}
		if err := ring.Verify(tok, rest, netip.Addr{}, now.Add(4*time.Minute)); err != nil {
			t.Fatalf("%s: %v", rest, err)
		}
	}
	if err := ring.Verify(tok, "/live/a/index.m3u8", netip.Addr{}, now.Add(5*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("after the ttl: %v", err)
	}
	if _, err := ring.IssueURL("https://x", "live/a", 0, netip.Addr{}); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := os.WriteFile(p, append(append([]byte{}, secretA...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyring([]KeySettings{{ID: "a", SecretFile: p}}, "a")
	if err != nil {
		t.Fatal(err)
	}
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	tok := mustSign(t, ring, "/x/", now.Add(time.Hour), netip.Addr{})
	if err := k.Verify(tok, "/x/y", netip.Addr{}, now); err != nil {
		t.Fatalf("file secret differs (whitespace not trimmed?): %v", err)
	}
	if _, err := LoadKeyring([]KeySettings{{ID: "a", SecretFile: p}, {ID: "a", SecretFile: p}}, "a"); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if _, err := LoadKeyring([]KeySettings{{ID: "a", SecretFile: filepath.Join(dir, "none")}}, "a"); err == nil {
		t.Fatal("missing file accepted")
	}
	if g := GenerateSecret(); len(g) != 43 || g == GenerateSecret() {
		t.Fatalf("GenerateSecret = %q", g)
	}
}

// FuzzVerifyToken: no input panics, and nothing but the tokens the test
// signed is ever accepted, whatever the path or address.
func FuzzVerifyToken(f *testing.F) {
	ring := keyring(f, "a", map[string][]byte{"a": secretA, "b": secretB})
	exp := now.Add(time.Hour)
	valid := map[string]bool{}
	for _, tc := range []struct {
		prefix string
		ip     netip.Addr
	}{{"/live/a/", netip.Addr{}}, {"/", netip.MustParseAddr("192.0.2.1")}, {"/live/b", netip.MustParseAddr("2001:db8::1")}} {
		tok := mustSign(f, ring, tc.prefix, exp, tc.ip)
		valid[tok] = true
		f.Add(tok, "/live/a/index.m3u8", "192.0.2.1")
		f.Add(flipMAC(tok), "/live/a/x", "")
		f.Add(tok+"A", "/live/b/x", "2001:db8::1")
	}
	f.Add("", "", "")
	f.Add("AQFhAAAAAAA.AAAA", "/", "::1")
	f.Fuzz(func(t *testing.T, token, path, ip string) {
		addr, _ := netip.ParseAddr(ip)
		err := ring.Verify(token, path, addr, now)
		if err == nil && !valid[token] {
			t.Fatalf("accepted a token the test did not sign: %q", token)
		}
		if err != nil && len(token) > 8 && strings.Contains(err.Error(), token) {
			t.Fatal("error quotes the token")
		}
		_ = ReasonOf(err)
	})
}

// FuzzSplitTokenPath checks SplitTokenPath's invariants on any input.
func FuzzSplitTokenPath(f *testing.F) {
	for _, s := range []string{"/t/abc/live/a", "/t//x", "/t/x", "/live/a", "", "/t/a.b/", "/t/a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tok, rest, ok := SplitTokenPath(path)
		if !ok {
			if tok != "" || rest != "" {
				t.Fatal("values with !ok")
			}
			return
		}
		if tok == "" || strings.Contains(tok, "/") || !strings.HasPrefix(rest, "/") {
			t.Fatalf("SplitTokenPath(%q) = %q %q", path, tok, rest)
		}
		if PathPrefix+tok+rest != path {
			t.Fatalf("SplitTokenPath(%q) does not reassemble", path)
		}
	})
}

// TestStreamTokenDoesNotCoverChildren: a token issued for stream live/a
// reads live/a's objects but not those of a stream live/a/x; only an
// explicit prefix claim ("/live/a/") covers children, at an element
// boundary.
func TestStreamTokenDoesNotCoverChildren(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	u, err := ring.IssueURL("https://cdn.example.com", "live/a", 5*time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	tok, _, _ := SplitTokenPath(pu.Path)
	at := now.Add(time.Minute)
	for _, p := range []string{"/live/a/index.m3u8", "/live/a/manifest.mpd", "/live/a/video/seg1.m4s", "/keys/live/a/0123.key", StreamPath("live/a")} {
		if err := ring.Verify(tok, p, netip.Addr{}, at); err != nil {
			t.Errorf("stream token, %s: %v", p, err)
		}
	}
	for _, p := range []string{"/live/a/x/video/index.m3u8", "/live/a/x/video/seg1.m4s", "/live/ab/index.m3u8", StreamPath("live/a/x"), "/keys/live/a/x/video/0123.key"} {
		if err := ring.Verify(tok, p, netip.Addr{}, at); !errors.Is(err, ErrWrongPath) {
			t.Errorf("stream token, %s: %v, want ErrWrongPath", p, err)
		}
	}
	if CoversStream("/live/a", "live/a/x") || !CoversStream("/live/a", "live/a") || CoversStream("/live/a", "live/ab") {
		t.Error("CoversStream of a stream claim")
	}
	if !CoversStream("/live/a/", "live/a/x") || !CoversStream("/live/", "live/a/x") || CoversStream("/live/a/", "live/ab") {
		t.Error("CoversStream of a prefix claim")
	}
}

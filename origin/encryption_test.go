package origin

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/store"
)

const cdnSecret = "CDN-SECRET-0123456789abcdef"

// encFixture is the fixture with encryption on, its handler also served
// behind the playback token middleware (tokens not required) and behind
// the CDN secret check.
type encFixture struct {
	*fixture
	kr       *playback.Keyring
	tokenURL string // base URL of the token-checking server
	cdnURL   string // base URL of the CDN-secret-checking server
}

func newEncFixture(t *testing.T, enc EncryptionConfig, scfg store.Config) *encFixture {
	t.Helper()
	enc.Enabled = true
	f := newFixture(t, Config{Gzip: true, Encryption: enc}, scfg)
	kr, err := playback.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte("s"), 32)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	tok := httptest.NewServer(playback.Middleware(playback.Config{Keyring: kr})(f.h))
	cdn := httptest.NewServer(playback.RequireHeader(playback.DefaultCDNHeader, cdnSecret)(f.h))
	t.Cleanup(func() {
		f.client.CloseIdleConnections()
		tok.Close()
		cdn.Close()
	})
	return &encFixture{fixture: f, kr: kr, tokenURL: tok.URL, cdnURL: cdn.URL}
}

// token returns the "/t/<token>" prefix authorising stream.
func (f *encFixture) token(stream string) string {
	f.t.Helper()
	tok, err := f.kr.Sign("/"+stream+"/", time.Now().Add(time.Minute), netip.Addr{})
	if err != nil {
		f.t.Fatal(err)
	}
	return "/t/" + tok
}

// fetch GETs url with extra headers.
func (f *encFixture) fetch(url string, hdr ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{resp, body}
}

var keyTagRe = regexp.MustCompile(`#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"(?:,IV=0x([0-9a-f]{32}))?`)

// playlistKey is one EXT-X-KEY of a media playlist and the URIs under it.
type playlistKey struct {
	uri  string
	iv   string // hex, "" for sequence IVs
	objs []string
}

// parseKeys splits a media playlist into its key periods.
func parseKeys(t testing.TB, pl string) []*playlistKey {
	t.Helper()
	var out []*playlistKey
	var cur *playlistKey
	for _, line := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-KEY:METHOD=NONE"):
			cur = nil
		case strings.HasPrefix(line, "#EXT-X-KEY:"):
			m := keyTagRe.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("bad EXT-X-KEY %q", line)
			}
			cur = &playlistKey{uri: m[1], iv: m[2]}
			out = append(out, cur)
		case strings.HasPrefix(line, "seg"):
			if cur == nil {
				t.Fatalf("%s listed without a key:\n%s", line, pl)
			}
			cur.objs = append(cur.objs, line)
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			uri := line[strings.Index(line, `URI="`)+5:]
			uri = uri[:strings.IndexByte(uri, '"')]
			if cur == nil {
				t.Fatalf("%s listed without a key:\n%s", uri, pl)
			}
			cur.objs = append(cur.objs, uri)
		}
	}
	return out
}

// key fetches the key of a playlist key URI (relative to a rendition's
// playlist of streamName) with a token, and builds it with the IV.
func (f *encFixture) key(k *playlistKey) hlsenc.Key {
	f.t.Helper()
	if !strings.HasPrefix(k.uri, "../../../keys/"+streamName+"/") {
		f.t.Fatalf("key URI %s is not relative to the rendition's playlist", k.uri)
	}
	path := "/" + strings.TrimPrefix(k.uri, "../../../")
	r := f.fetch(f.tokenURL + f.token(streamName) + path)
	expectStatus(f.t, r, 200)
	if len(r.body) != hlsenc.KeySize {
		f.t.Fatalf("key of %d bytes", len(r.body))
	}
	_, id, _ := hlsenc.ParseKeyPath(path)
	var m, iv [hlsenc.KeySize]byte
	copy(m[:], r.body)
	if k.iv != "" {
		b, _ := hex.DecodeString(k.iv)
		copy(iv[:], b)
	}
	key, err := hlsenc.KeyFromBytes(id, m, iv, k.iv == "")
	if err != nil {
		f.t.Fatal(err)
	}
	return key
}

var objRe = regexp.MustCompile(`^(?:seg(\d+)|part(\d+)\.(\d+))\.m4s$`)

// clearBytes is what the store holds for a segment or part URI of rendition name.
func clearBytes(t testing.TB, name, uri string) (msn uint64, data []byte) {
	m := objRe.FindStringSubmatch(uri)
	if m == nil {
		t.Fatalf("not a media URI: %s", uri)
	}
	if m[1] != "" {
		if _, err := fmt.Sscan(m[1], &msn); err != nil {
			t.Fatal(err)
		}
		return msn, segData(name, msn, 4)
	}
	var p int
	if _, err := fmt.Sscan(m[2], &msn); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(m[3], &p); err != nil {
		t.Fatal(err)
	}
	return msn, partData(name, msn, p)
}

// TestEncryptedPlaylistAndObjects plays the video rendition as a player
// would: keys from the playlist, fetched with a token, decrypt every
// segment and part to the store's bytes; keys rotate every 2 segments.
func TestEncryptedPlaylistAndObjects(t *testing.T) {
	for _, sequenceIV := range []bool{false, true} {
		t.Run(fmt.Sprintf("sequenceIV=%v", sequenceIV), func(t *testing.T) {
			f := newEncFixture(t, EncryptionConfig{RotateSegments: 2, SequenceIV: sequenceIV}, store.Config{})
			for _, rend := range []string{"video", "audio"} {
				r := f.get("/live/key/" + rend + "/index.m3u8")
				expectStatus(t, r, 200)
				pl := string(r.body)
				if mp, k := strings.Index(pl, "#EXT-X-MAP:"), strings.Index(pl, "#EXT-X-KEY:"); mp < 0 || k < mp {
					t.Fatalf("EXT-X-KEY before EXT-X-MAP:\n%s", pl)
				}
				keys := parseKeys(t, pl)
				// seg0, seg1 under one key; seg2, its parts, seg3's parts
				// (open) under the next: the change is at segment 2.
				if len(keys) != 2 || keys[0].uri == keys[1].uri {
					t.Fatalf("%d keys, want 2 distinct:\n%s", len(keys), pl)
				}
				for i, k := range keys {
					for _, uri := range k.objs {
						if msn, _ := clearBytes(t, rend, uri); msn/2 != uint64(i) {
							t.Errorf("%s listed under key %d", uri, i)
						}
					}
				}
				if first := keys[1].objs[0]; first != "part2.0.m4s" {
					t.Errorf("second key starts at %s, want part2.0.m4s (the key precedes the segment's first part)", first)
				}
				var prev hlsenc.Key
				for i, k := range keys {
					if (k.iv == "") != sequenceIV {
						t.Errorf("IV attribute %q with sequenceIV %v", k.iv, sequenceIV)
					}
					key := f.key(k)
					if i > 0 && key.Material() == prev.Material() {
						t.Error("the key did not change at the rotation boundary")
					}
					prev = key
					for _, uri := range k.objs {
						msn, clear := clearBytes(t, rend, uri)
						r := f.get("/live/key/" + rend + "/" + uri)
						expectStatus(t, r, 200)
						if len(r.body) != hlsenc.EncryptedSize(len(clear)) || bytes.Contains(r.body, clear[:16]) {
							t.Fatalf("%s: %d bytes, not the ciphertext of %d", uri, len(r.body), len(clear))
						}
						got, err := hlsenc.DecryptSegment(key, key.IV(msn), r.body)
						if err != nil || !bytes.Equal(got, clear) {
							t.Fatalf("%s does not decrypt to the store's bytes: %v", uri, err)
						}
						if cl := r.Header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
							t.Errorf("%s: Content-Length %s", uri, cl)
						}
						if tag := r.Header.Get("ETag"); !strings.HasSuffix(tag, `.e"`) {
							t.Errorf("%s: ETag %s", uri, tag)
						}
					}
				}
			}
			// Init sections stay in the clear.
			r := f.get("/live/key/video/init.mp4")
			expectStatus(t, r, 200)
			if !bytes.Equal(r.body, initVideo) {
				t.Errorf("init.mp4 = %q", r.body)
			}
		})
	}
}

// TestEncryptedPartsIndependent checks that each part is its own
// ciphertext under its segment's key and IV, not a slice of the segment's.
func TestEncryptedPartsIndependent(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	key, _, err := f.h.enc.keyFor(f.stream, "video", 1)
	if err != nil {
		t.Fatal(err)
	}
	seg := f.get("/live/key/video/seg1.m4s").body
	var joined []byte
	for p := 0; p < 4; p++ {
		part := f.get(fmt.Sprintf("/live/key/video/part1.%d.m4s", p)).body
		clear, err := hlsenc.DecryptSegment(key, key.IV(1), part)
		if err != nil || !bytes.Equal(clear, partData("video", 1, p)) {
			t.Fatalf("part1.%d: %v", p, err)
		}
		joined = append(joined, part...)
	}
	if bytes.Equal(joined, seg) {
		t.Error("the segment is its parts' ciphertexts back to back")
	}
	if clear, err := hlsenc.DecryptSegment(key, key.IV(1), seg); err != nil || !bytes.Equal(clear, segData("video", 1, 4)) {
		t.Errorf("seg1: %v", err)
	}
	// A part of the open segment, and a part published later, too.
	f.appendPart(f.video)
	key3, _, _ := f.h.enc.keyFor(f.stream, "video", 3)
	for p := 0; p < 3; p++ {
		body := f.get(fmt.Sprintf("/live/key/video/part3.%d.m4s", p)).body
		if clear, err := hlsenc.DecryptSegment(key3, key3.IV(3), body); err != nil || !bytes.Equal(clear, partData("video", 3, p)) {
			t.Errorf("part3.%d: %v", p, err)
		}
	}
}

// TestEncryptedOpenSegmentWaits: an encrypted segment is served complete
// only (the chunked streaming of the segment being written is for DASH).
func TestEncryptedOpenSegmentWaits(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	f.h.cfg.BlockTimeout = time.Minute
	waiting := f.waitHook()
	ch := f.blockingGet("/live/key/video/seg3.m4s")
	signalled(t, waiting)
	notYet(t, ch)
	f.appendPart(f.video)
	f.appendPart(f.video)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ch)
	expectStatus(t, r, 200)
	key, _, _ := f.h.enc.keyFor(f.stream, "video", 3)
	if clear, err := hlsenc.DecryptSegment(key, key.IV(3), r.body); err != nil || !bytes.Equal(clear, segData("video", 3, 4)) {
		t.Errorf("seg3: %v", err)
	}
}

func TestEncryptedRangeAndHead(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	full := f.get("/live/key/video/seg1.m4s").body
	r := f.get("/live/key/video/seg1.m4s", "Range", "bytes=16-47")
	expectStatus(t, r, http.StatusPartialContent)
	if !bytes.Equal(r.body, full[16:48]) {
		t.Error("range of the ciphertext differs")
	}
	h := f.do(http.MethodHead, "/live/key/video/part1.1.m4s")
	expectStatus(t, h, 200)
	if h.Header.Get("Content-Length") != fmt.Sprint(hlsenc.EncryptedSize(len(partData("video", 1, 1)))) || len(h.body) != 0 {
		t.Errorf("HEAD: %v %d bytes", h.Header, len(h.body))
	}
	etag := r.Header.Get("ETag")
	if nm := f.get("/live/key/video/seg1.m4s", "If-None-Match", etag); nm.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", nm.StatusCode)
	}
}

func TestKeyRoute(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	key, _, err := f.h.enc.keyFor(f.stream, "video", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := hlsenc.KeyPath(streamName, key.ID())
	m := key.Material()
	expectKey := func(t *testing.T, r response) {
		t.Helper()
		expectStatus(t, r, 200)
		if !bytes.Equal(r.body, m[:]) {
			t.Error("wrong key bytes")
		}
		if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		if r.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Error("no CORS header: browser players could not read the key")
		}
	}
	refused := func(t *testing.T, r response, code int) {
		t.Helper()
		expectStatus(t, r, code)
		if bytes.Contains(r.body, m[:]) || strings.Contains(string(r.body), hex.EncodeToString(m[:])) {
			t.Error("the key in a refusal")
		}
		if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" && cc != "no-store" {
			t.Errorf("refusal Cache-Control %q", cc)
		}
	}

	t.Run("token", func(t *testing.T) { expectKey(t, f.fetch(f.tokenURL+f.token(streamName)+path)) })
	t.Run("cdn secret", func(t *testing.T) {
		expectKey(t, f.fetch(f.cdnURL+path, playback.DefaultCDNHeader, cdnSecret))
	})
	t.Run("no token", func(t *testing.T) {
		r := f.get(path)
		refused(t, r, http.StatusForbidden)
		if r.Header.Get("X-Headwater-Token") != "missing_token" || r.Header.Get("Cache-Control") != "private, no-store" {
			t.Errorf("headers %v", r.Header)
		}
		// Through the token middleware without a token (tokens not required).
		refused(t, f.fetch(f.tokenURL+path), http.StatusForbidden)
	})
	t.Run("token of another stream", func(t *testing.T) {
		refused(t, f.fetch(f.tokenURL+f.token("live/other")+path), http.StatusForbidden)
	})
	t.Run("wrong CDN secret", func(t *testing.T) {
		refused(t, f.fetch(f.cdnURL+path, playback.DefaultCDNHeader, cdnSecret+"x"), http.StatusForbidden)
	})
	t.Run("unknown id", func(t *testing.T) {
		refused(t, f.fetch(f.tokenURL+f.token(streamName)+hlsenc.KeyPath(streamName, "0123456789abcdef")), http.StatusNotFound)
	})
	t.Run("unknown stream", func(t *testing.T) {
		refused(t, f.fetch(f.tokenURL+f.token("live/nope")+hlsenc.KeyPath("live/nope", key.ID())), http.StatusNotFound)
	})
	t.Run("head", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, f.tokenURL+f.token(streamName)+path, nil)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "16" {
			t.Errorf("HEAD: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("keys of every rendition", func(t *testing.T) {
		audio, _, _ := f.h.enc.keyFor(f.stream, "audio", 0)
		if audio.ID() == key.ID() {
			t.Error("audio and video share a key")
		}
		r := f.fetch(f.tokenURL + f.token(streamName) + hlsenc.KeyPath(streamName, audio.ID()))
		expectStatus(t, r, 200)
		if am := audio.Material(); !bytes.Equal(r.body, am[:]) {
			t.Error("wrong audio key")
		}
	})
	t.Run("bad paths", func(t *testing.T) {
		for _, p := range []string{"/keys/" + key.ID() + ".key", "/keys/live/key/" + key.ID() + ".key.key", "/keys/live/key/a.b.key", "/keys/live/../key/x.key"} {
			if r := f.fetch(f.tokenURL + f.token(streamName) + p); r.StatusCode != 400 && r.StatusCode != 403 && r.StatusCode != 404 {
				t.Errorf("%s: %d", p, r.StatusCode)
			}
		}
	})
}

// TestKeyRouteWithoutEncryption: /keys/... stays a 404, as before.
func TestKeyRouteWithoutEncryption(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	srv := httptest.NewServer(playback.RequireHeader(playback.DefaultCDNHeader, cdnSecret)(f.h))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/keys/live/key/0123456789abcdef.key", nil)
	req.Header.Set(playback.DefaultCDNHeader, cdnSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if f.h.enc != nil {
		t.Error("encryption state without encryption")
	}
}

func TestEncryptedDASHRefused(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	r := f.get("/live/key/manifest.mpd")
	expectStatus(t, r, 404)
	if !strings.Contains(string(r.body), "DASH is not available for this stream") {
		t.Errorf("body %q", r.body)
	}
	// A stream that does not exist gets the same answer: encryption is
	// decided by name.
	expectStatus(t, f.get("/live/none/manifest.mpd"), 404)
}

// TestEncryptionPrefixes: only the streams under a prefix are encrypted;
// the others are served exactly as without encryption.
func TestEncryptionPrefixes(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2, Prefixes: []string{"live/premium-", "paid/"}}, store.Config{})
	plain := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, p := range []string{"/live/key/video/index.m3u8", "/live/key/video/seg1.m4s", "/live/key/video/part3.1.m4s", "/live/key/manifest.mpd"} {
		a, b := f.get(p), plain.get(p)
		expectStatus(t, a, 200)
		media := strings.HasSuffix(p, ".m4s") // playlists carry the fixtures' clock
		if media && (!bytes.Equal(a.body, b.body) || a.Header.Get("ETag") == "" || strings.HasSuffix(a.Header.Get("ETag"), `.e"`)) {
			t.Errorf("%s differs from the unencrypted origin's", p)
		}
		if strings.Contains(string(a.body), "EXT-X-KEY") {
			t.Errorf("%s has a key", p)
		}
	}
	for name, want := range map[string]bool{"live/premium-1": true, "paid/x": true, "live/premium": false, "live/key": false, "x/paid/y": false} {
		if got := f.h.enc.covers(name); got != want {
			t.Errorf("covers(%q) = %v", name, got)
		}
	}
	// A covered stream is encrypted.
	st := f.st.Begin("paid/match")
	r := st.AddRendition(videoInfo)
	r.SetInit(videoInfo, initVideo)
	for i := 0; i < 2; i++ {
		if _, err := r.StartSegment(time.Now(), r.NextBaseTime()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AppendPart(partData("video", uint64(i), 0), time.Second, true); err != nil {
			t.Fatal(err)
		}
		if err := r.FinishSegment(90000); err != nil {
			t.Fatal(err)
		}
	}
	pl := f.get("/paid/match/video/index.m3u8")
	expectStatus(t, pl, 200)
	if !strings.Contains(string(pl.body), `#EXT-X-KEY:METHOD=AES-128,URI="../../../keys/paid/match/`) {
		t.Errorf("covered stream in the clear:\n%s", pl.body)
	}
	if seg := f.get("/paid/match/video/seg1.m4s"); bytes.Equal(seg.body, partData("video", 1, 0)) {
		t.Error("covered segment in the clear")
	}
	expectStatus(t, f.get("/paid/match/manifest.mpd"), 404)
}

// TestEncryptionCache: each object is encrypted once, then served from the
// cache; keys and ciphertexts go once the store forgets the stream, and a
// new instance of the name gets new keys.
func TestEncryptionCache(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{EndedGrace: time.Millisecond})
	a := f.get("/live/key/video/seg1.m4s").body
	size := f.h.enc.cache.Size()
	if size != int64(len(a)) {
		t.Fatalf("cache holds %d bytes, want %d", size, len(a))
	}
	for range 5 {
		if b := f.get("/live/key/video/seg1.m4s").body; !bytes.Equal(a, b) {
			t.Fatal("ciphertext changed between requests")
		}
	}
	if f.h.enc.cache.Size() != size {
		t.Error("repeated requests grew the cache")
	}
	old, _, _ := f.h.enc.keyFor(f.stream, "video", 1)
	mp := f.h.enc.provider.(*hlsenc.MemoryProvider)

	// The stream ends and is swept by the store: the next request (any)
	// sweeps the encryption state.
	f.stream.End()
	f.st.Sweep(time.Now().Add(time.Second)) // past the 1 ms grace
	f.h.enc.lastSweep.Store(0)
	expectStatus(t, f.get("/healthz"), 200)
	if n, s, k := f.h.enc.streamCount(), f.h.enc.cache.Size(), mp.Streams(); n != 0 || s != 0 || k != 0 {
		t.Fatalf("after the sweep: %d streams, %d cached bytes, %d key sets", n, s, k)
	}

	// A new publish under the name: new keys, new ciphertexts, no
	// confusion with the old instance's cache entries.
	f.stream = f.st.Begin(streamName)
	f.video = f.stream.AddRendition(videoInfo)
	f.audio = f.stream.AddRendition(audioInfo)
	f.video.SetInit(videoInfo, initVideo)
	f.audio.SetInit(audioInfo, initAudio)
	f.addSegment(4, true)
	f.addSegment(4, true)
	key, _, _ := f.h.enc.keyFor(f.stream, "video", 1)
	if key.ID() == old.ID() || key.Material() == old.Material() {
		t.Error("a new instance reuses the old key")
	}
	body := f.get("/live/key/video/seg1.m4s").body
	if clear, err := hlsenc.DecryptSegment(key, key.IV(1), body); err != nil || !bytes.Equal(clear, segData("video", 1, 4)) {
		t.Errorf("new instance's seg1: %v", err)
	}
}

// TestEncryptionReplacedInstance: a stream replaced without a sweep in
// between (a publish after the grace) forgets the old instance at once.
func TestEncryptionReplacedInstance(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{EndedGrace: time.Millisecond})
	f.h.enc.lastSweep.Store(time.Now().Add(time.Hour).UnixNano()) // no sweep
	expectStatus(t, f.get("/live/key/video/seg1.m4s"), 200)
	oldStream := f.stream
	f.stream.End()
	time.Sleep(5 * time.Millisecond)
	f.stream = f.st.Begin(streamName)
	if f.stream == oldStream {
		t.Fatal("the stream was resumed, not replaced")
	}
	r := f.stream.AddRendition(videoInfo)
	r.SetInit(videoInfo, initVideo)
	if _, err := r.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart(partData("video", 0, 0), time.Second, true); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, f.get("/live/key/video/index.m3u8"), 200)
	if f.h.enc.cache.Size() != 0 {
		t.Error("the old instance's ciphertexts are still cached")
	}
	if n := f.h.enc.provider.(*hlsenc.MemoryProvider).Streams(); n != 1 {
		t.Errorf("%d key sets, want the new instance's video only", n)
	}
	// The old instance, still held by a request, is not served with the
	// new one's keys.
	if _, _, err := f.h.enc.keyFor(oldStream, "video", 0); !errors.As(err, new(staleError)) {
		t.Errorf("old instance: %v", err)
	}
}

// TestEncryptionKeyGone: a segment far behind the key periods kept is 404,
// and a playlist listing it 503, without the key in the log or the body.
func TestEncryptionKeyGone(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 1}, store.Config{})
	mp := f.h.enc.provider.(*hlsenc.MemoryProvider)
	ns, _, _ := f.h.enc.namespaces(f.stream, "video")
	if _, err := mp.KeyFor(ns, 1000); err != nil { // a rendition far ahead, say
		t.Fatal(err)
	}
	expectStatus(t, f.get("/live/key/video/seg1.m4s"), 404)
	expectStatus(t, f.get("/live/key/video/part1.0.m4s"), 404)
	r := f.get("/live/key/video/index.m3u8")
	expectStatus(t, r, 503)
	if r.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	// The audio rendition has its own keys and plays on.
	expectStatus(t, f.get("/live/key/audio/index.m3u8"), 200)
}

func TestEncryptionKeep(t *testing.T) {
	for _, tc := range []struct {
		rotate, window, extra int
		want                  int
	}{
		{0, 6, 4, hlsenc.DefaultKeepPeriods},
		{30, 6, 4, hlsenc.DefaultKeepPeriods},
		{2, 6, 4, 13},
		{1, 6, 4, 25},
	} {
		e := newEncryption(EncryptionConfig{Enabled: true, RotateSegments: tc.rotate}, store.Config{Window: tc.window, KeepExtra: tc.extra})
		mp := e.provider.(*hlsenc.MemoryProvider)
		// Keys of the last `want` periods are kept, older ones dropped.
		newest := uint64(1000)
		if _, err := mp.KeyFor("s", newest); err != nil {
			t.Fatal(err)
		}
		per := uint64(max(tc.rotate, 1))
		if tc.rotate == 0 {
			continue // one period: nothing to drop
		}
		oldestKept := (newest/per - uint64(tc.want) + 1) * per
		if _, err := mp.KeyFor("s", oldestKept); err != nil {
			t.Errorf("rotate %d: segment %d (period kept) refused: %v", tc.rotate, oldestKept, err)
		}
		if _, err := mp.KeyFor("s", oldestKept-per); !errors.Is(err, hlsenc.ErrKeyGone) {
			t.Errorf("rotate %d: segment %d (period dropped): %v", tc.rotate, oldestKept-per, err)
		}
	}
}

// TestMaxConnections: a second connection waits until the first closes.
func TestMaxConnections(t *testing.T) {
	s := NewServer(Config{Address: "127.0.0.1:0", MaxConnections: 1}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	request := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			return fmt.Errorf("response %q", buf[:n])
		}
		return nil
	}
	first, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := request(first); err != nil { // served; the connection stays open (keep-alive)
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", s.Addr().String()) // the kernel's backlog takes it
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var ne net.Error
	if err := request(second); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("second connection served while the first is open: %v", err)
	}
	first.Close()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, err := second.Read(buf) // its request was sent already
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("second connection after the first closed: %q %v", buf[:n], err)
	}
}

// TestEncryptedPartCrowd: LL-HLS players blocked on the preload hint are
// released together by the new part; it is encrypted once for all of them.
func TestEncryptedPartCrowd(t *testing.T) {
	f := newEncFixture(t, EncryptionConfig{RotateSegments: 2}, store.Config{})
	f.h.cfg.BlockTimeout = time.Minute
	waiting := f.waitHook()
	const n = 12
	var chs []<-chan result
	for range n {
		chs = append(chs, f.blockingGet("/live/key/video/part3.2.m4s"))
	}
	for range n {
		signalled(t, waiting)
	}
	before := f.h.enc.cache.Encryptions()
	f.appendPart(f.video)
	var first []byte
	for _, ch := range chs {
		r := receive(t, ch)
		expectStatus(t, r, 200)
		if first == nil {
			first = r.body
		} else if !bytes.Equal(r.body, first) {
			t.Fatal("players got different ciphertexts")
		}
	}
	if got := f.h.enc.cache.Encryptions() - before; got != 1 {
		t.Errorf("%d encryptions for %d players, want 1", got, n)
	}
}

// countingProvider is an external key provider recording Forget calls.
type countingProvider struct {
	*hlsenc.MemoryProvider
	forgot []string
}

func (p *countingProvider) Forget(ns string) {
	p.forgot = append(p.forgot, ns)
	p.MemoryProvider.Forget(ns)
}

func TestWithKeyProvider(t *testing.T) {
	p := &countingProvider{MemoryProvider: hlsenc.NewMemoryProvider(hlsenc.MemoryConfig{RotateEvery: 2})}
	st := store.New(store.Config{EndedGrace: time.Millisecond})
	s := st.Begin(streamName)
	r := s.AddRendition(videoInfo)
	r.SetInit(videoInfo, initVideo)
	if _, err := r.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart(partData("video", 0, 0), time.Second, true); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Config{Encryption: EncryptionConfig{Enabled: true}}, st, nil, nil, WithKeyProvider(p)).(*handler)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/live/key/video/seg0.m4s", nil))
	if w.Code != 200 || p.Streams() != 1 {
		t.Fatalf("status %d, provider holds %d key sets", w.Code, p.Streams())
	}
	key, _, _ := h.enc.keyFor(s, "video", 0)
	if clear, err := hlsenc.DecryptSegment(key, key.IV(0), w.Body.Bytes()); err != nil || !bytes.Equal(clear, partData("video", 0, 0)) {
		t.Errorf("segment not under the provider's key: %v", err)
	}
	s.End()
	time.Sleep(5 * time.Millisecond)
	st.Sweep(time.Now())
	h.enc.lastSweep.Store(0)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if len(p.forgot) != 1 || !strings.HasPrefix(p.forgot[0], streamName+"#") || !strings.HasSuffix(p.forgot[0], "/video") {
		t.Errorf("Forget calls %q", p.forgot)
	}
}

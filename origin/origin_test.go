package origin

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

const streamName = "live/key"

// fixture is a store with stream live/key holding a video rendition (three
// complete segments of four parts, a fourth segment open with two parts) and
// an audio rendition (same layout), served by an httptest server.
type fixture struct {
	t      testing.TB
	st     *store.Store
	stream *store.Stream
	video  *store.Rendition
	audio  *store.Rendition
	h      *handler
	srv    *httptest.Server
	client *http.Client
}

var (
	videoInfo = store.RenditionInfo{
		Name: "video", Kind: media.KindVideo,
		Codec:     &media.H264{SPS: []byte{0x67, 0x64, 0x00, 0x1f}, PPS: []byte{0x68}},
		Timescale: 90000, Width: 1280, Height: 720, FrameRate: 30,
		SegmentTarget: time.Second, PartTarget: 250 * time.Millisecond,
	}
	audioInfo = store.RenditionInfo{
		Name: "audio", Kind: media.KindAudio,
		Codec:     &media.Opus{ChannelCount: 2},
		Timescale: 48000, SampleRate: 48000, Channels: 2,
		SegmentTarget: time.Second, PartTarget: 250 * time.Millisecond,
	}
	initVideo = []byte("ftyp....moov-video")
	initAudio = []byte("ftyp....moov-audio")
)

// partData is the payload of part p of segment msn: recognisable and a
// few hundred bytes long.
func partData(name string, msn uint64, p int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("[%s %d.%d]", name, msn, p)), 20)
}

func segData(name string, msn uint64, parts int) []byte {
	var b []byte
	for p := 0; p < parts; p++ {
		b = append(b, partData(name, msn, p)...)
	}
	return b
}

func newFixture(t testing.TB, cfg Config, scfg store.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, st: store.New(scfg)}
	f.stream = f.st.Begin(streamName)
	f.video = f.stream.AddRendition(videoInfo)
	f.audio = f.stream.AddRendition(audioInfo)
	f.video.SetInit(videoInfo, initVideo)
	f.audio.SetInit(audioInfo, initAudio)
	for i := 0; i < 3; i++ {
		f.addSegment(4, true)
	}
	f.addSegment(2, false)
	f.h = NewHandler(cfg, f.st, nil, nil).(*handler)
	f.srv = httptest.NewServer(f.h)
	f.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(func() {
		f.client.CloseIdleConnections()
		f.srv.Close()
	})
	return f
}

// addSegment adds a segment of n parts to both renditions, finished or left open.
func (f *fixture) addSegment(n int, finish bool) {
	f.t.Helper()
	for _, r := range []*store.Rendition{f.video, f.audio} {
		if r.Snapshot().Open != nil {
			if err := r.FinishSegment(uint64(r.Snapshot().Info.Timescale)); err != nil {
				f.t.Fatal(err)
			}
		}
		msn, err := r.StartSegment(time.Now(), r.NextBaseTime())
		if err != nil {
			f.t.Fatal(err)
		}
		for p := 0; p < n; p++ {
			if _, err := r.AppendPart(partData(r.Name(), msn, p), 250*time.Millisecond, p == 0); err != nil {
				f.t.Fatal(err)
			}
		}
		if finish {
			if err := r.FinishSegment(uint64(n) * uint64(r.Snapshot().Info.Timescale) / 4); err != nil {
				f.t.Fatal(err)
			}
		}
	}
}

// appendPart adds the next part to the open segment of r.
func (f *fixture) appendPart(r *store.Rendition) {
	f.t.Helper()
	s := r.Snapshot()
	if s.Open == nil {
		f.t.Fatal("no open segment")
	}
	if _, err := r.AppendPart(partData(r.Name(), s.Open.MSN, len(s.Open.Parts)), 250*time.Millisecond, false); err != nil {
		f.t.Fatal(err)
	}
}

type response struct {
	*http.Response
	body []byte
}

func (f *fixture) do(method, path string, hdr ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{resp, body}
}

func (f *fixture) get(path string, hdr ...string) response {
	f.t.Helper()
	return f.do(http.MethodGet, path, hdr...)
}

func expectStatus(t testing.TB, r response, code int) {
	t.Helper()
	if r.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d (body %q)", r.Request.Method, r.Request.URL.RequestURI(), r.StatusCode, code, r.body)
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	// A second init version for video, used by the next segment.
	newInit := []byte("ftyp....moov-video-v2")
	if name := f.video.SetInit(videoInfo, newInit); name != "init-1.mp4" {
		t.Fatalf("new init named %q", name)
	}

	tests := []struct {
		path, ctype string
		body        []byte // nil: checked separately
		contains    string
	}{
		{"/live/key/index.m3u8", "application/vnd.apple.mpegurl", nil, "#EXTM3U"},
		{"/live/key/video/index.m3u8", "application/vnd.apple.mpegurl", nil, "#EXTM3U"},
		{"/live/key/audio/index.m3u8", "application/vnd.apple.mpegurl", nil, "#EXTM3U"},
		{"/live/key/video/init.mp4", "video/mp4", initVideo, ""},
		{"/live/key/video/init-1.mp4", "video/mp4", newInit, ""},
		{"/live/key/audio/init.mp4", "audio/mp4", initAudio, ""},
		{"/live/key/video/seg1.m4s", "video/mp4", segData("video", 1, 4), ""},
		{"/live/key/audio/seg2.m4s", "audio/mp4", segData("audio", 2, 4), ""},
		{"/live/key/video/part1.2.m4s", "video/mp4", partData("video", 1, 2), ""},
		{"/live/key/video/part3.1.m4s", "video/mp4", partData("video", 3, 1), ""}, // open segment
		{"/live/key/audio/part0.0.m4s", "audio/mp4", partData("audio", 0, 0), ""},
		{"/healthz", "text/plain; charset=utf-8", []byte("ok\n"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := f.get(tc.path)
			expectStatus(t, r, 200)
			if got := r.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if tc.body != nil && !bytes.Equal(r.body, tc.body) {
				t.Errorf("body %q, want %q", r.body, tc.body)
			}
			if !bytes.Contains(r.body, []byte(tc.contains)) {
				t.Errorf("body %q lacks %q", r.body, tc.contains)
			}
			if r.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}

	// The media playlist names objects the origin serves.
	pl := string(f.get("/live/key/video/index.m3u8").body)
	for _, want := range []string{"seg2.m4s", "part3.1.m4s", "init.mp4"} {
		if !strings.Contains(pl, want) {
			t.Errorf("media playlist lacks %s:\n%s", want, pl)
		}
	}
	for _, uri := range playlistURIs(pl) {
		if r := f.get("/live/key/video/" + uri); r.StatusCode != 200 && !strings.Contains(uri, "part3.2") {
			t.Errorf("playlist URI %s: status %d", uri, r.StatusCode)
		}
	}
	mv := string(f.get("/live/key/index.m3u8").body)
	if !strings.Contains(mv, "video/index.m3u8") {
		t.Errorf("multivariant does not reference video/index.m3u8:\n%s", mv)
	}
}

// playlistURIs returns the URIs of segments, parts, maps and hints of a
// media playlist that are not preload hints.
func playlistURIs(pl string) []string {
	var out []string
	for _, line := range strings.Split(pl, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			out = append(out, line)
			continue
		}
		if strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT") || strings.HasPrefix(line, "#EXT-X-RENDITION-REPORT") {
			continue
		}
		if i := strings.Index(line, `URI="`); i >= 0 {
			rest := line[i+5:]
			if j := strings.IndexByte(rest, '"'); j >= 0 {
				out = append(out, rest[:j])
			}
		}
	}
	return out
}

func TestHealthz(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	r := f.do(http.MethodHead, "/healthz")
	expectStatus(t, r, 200)
	if len(r.body) != 0 {
		t.Errorf("HEAD body %q", r.body)
	}
}

func TestCacheControl(t *testing.T) {
	cfg := Config{
		Gzip:         true,
		BlockTimeout: 50 * time.Millisecond,
		Cache: CacheConfig{
			SegmentMaxAge: 1000 * time.Second, PlaylistMaxAge: 1 * time.Second, MultivariantMaxAge: 3 * time.Second,
			BlockingMaxAge: 7 * time.Second, NotFoundMaxAge: 2 * time.Second, EndedMaxAge: 90 * time.Second,
		},
	}
	f := newFixture(t, cfg, store.Config{})
	tests := []struct {
		name, path string
		status     int
		cc         string
	}{
		{"multivariant", "/live/key/index.m3u8", 200, "public, max-age=3"},
		{"media playlist", "/live/key/video/index.m3u8", 200, "public, max-age=1"},
		{"blocking reload", "/live/key/video/index.m3u8?_HLS_msn=3&_HLS_part=1", 200, "public, max-age=7"},
		{"blocking reload old msn", "/live/key/video/index.m3u8?_HLS_msn=1", 200, "public, max-age=7"},
		{"init", "/live/key/video/init.mp4", 200, "public, max-age=1000, immutable"},
		{"segment", "/live/key/video/seg0.m4s", 200, "public, max-age=1000, immutable"},
		{"part", "/live/key/audio/part3.0.m4s", 200, "public, max-age=1000, immutable"},
		{"unknown stream", "/live/nope/index.m3u8", 404, "public, max-age=2"},
		{"unknown segment", "/live/key/video/seg99.m4s", 404, "public, max-age=2"},
		{"bad query", "/live/key/video/index.m3u8?_HLS_part=1", 400, "no-cache"},
		{"far msn", "/live/key/video/index.m3u8?_HLS_msn=99", 400, "no-cache"},
		{"bad path", "/live/../x/index.m3u8", 400, "no-cache"},
		{"blocking timeout", "/live/key/video/index.m3u8?_HLS_msn=4", 503, "no-cache"},
		{"part timeout", "/live/key/video/part3.2.m4s", 503, "no-cache"},
		{"health", "/healthz", 200, "no-store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.get(tc.path)
			expectStatus(t, r, tc.status)
			if got := r.Header.Get("Cache-Control"); got != tc.cc {
				t.Errorf("Cache-Control %q, want %q", got, tc.cc)
			}
			if tc.status >= 400 && (r.Header.Get("ETag") != "" || r.Header.Get("Last-Modified") != "") {
				t.Errorf("error response with validators: %v", r.Header)
			}
		})
	}

	// Once the stream has ended, its playlists are cached longer.
	f.stream.End()
	for _, path := range []string{"/live/key/index.m3u8", "/live/key/video/index.m3u8", "/live/key/video/index.m3u8?_HLS_msn=3"} {
		r := f.get(path)
		expectStatus(t, r, 200)
		if got := r.Header.Get("Cache-Control"); got != "public, max-age=90" {
			t.Errorf("ended %s: Cache-Control %q", path, got)
		}
		if path == "/live/key/video/index.m3u8" && !bytes.Contains(r.body, []byte("#EXT-X-ENDLIST")) {
			t.Errorf("ended playlist without ENDLIST:\n%s", r.body)
		}
	}
}

func TestConditional(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, path := range []string{
		"/live/key/video/part1.1.m4s", "/live/key/video/seg1.m4s", "/live/key/video/init.mp4",
		"/live/key/video/index.m3u8", "/live/key/index.m3u8",
	} {
		t.Run(path, func(t *testing.T) {
			r := f.get(path)
			expectStatus(t, r, 200)
			etag := r.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 3 {
				t.Fatalf("ETag %q is not a strong tag", etag)
			}
			if r.Header.Get("Last-Modified") == "" {
				t.Error("no Last-Modified")
			}
			r2 := f.get(path, "If-None-Match", etag)
			expectStatus(t, r2, 304)
			if len(r2.body) != 0 || r2.Header.Get("ETag") != etag || r2.Header.Get("Cache-Control") != r.Header.Get("Cache-Control") {
				t.Errorf("304: body %q, headers %v", r2.body, r2.Header)
			}
			r3 := f.get(path, "If-None-Match", `"other"`)
			expectStatus(t, r3, 200)
			// Same content, same tag.
			if r4 := f.get(path); r4.Header.Get("ETag") != etag {
				t.Errorf("ETag changed without content change: %q then %q", etag, r4.Header.Get("ETag"))
			}
		})
	}

	// Media objects also honour If-Modified-Since (they never change).
	r := f.get("/live/key/video/seg1.m4s")
	expectStatus(t, f.get("/live/key/video/seg1.m4s", "If-Modified-Since", r.Header.Get("Last-Modified")), 304)
	// Playlists do not: they change within a second.
	r = f.get("/live/key/video/index.m3u8")
	expectStatus(t, f.get("/live/key/video/index.m3u8", "If-Modified-Since", r.Header.Get("Last-Modified")), 200)

	// A playlist changes ETag when its content changes, and when a
	// sibling's does (rendition reports).
	before := f.get("/live/key/video/index.m3u8").Header.Get("ETag")
	f.appendPart(f.audio)
	afterSibling := f.get("/live/key/video/index.m3u8").Header.Get("ETag")
	f.appendPart(f.video)
	after := f.get("/live/key/video/index.m3u8").Header.Get("ETag")
	if before == afterSibling || afterSibling == after {
		t.Errorf("ETags %s, %s, %s should all differ", before, afterSibling, after)
	}
	// Segments of different MSNs and parts differ.
	if a, b := f.get("/live/key/video/seg1.m4s").Header.Get("ETag"), f.get("/live/key/video/seg2.m4s").Header.Get("ETag"); a == b {
		t.Errorf("segments share ETag %s", a)
	}
}

func TestRange(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, tc := range []struct {
		path string
		data []byte
	}{
		{"/live/key/video/seg1.m4s", segData("video", 1, 4)},
		{"/live/key/video/part2.3.m4s", partData("video", 2, 3)},
		{"/live/key/audio/init.mp4", initAudio},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := f.get(tc.path, "Range", "bytes=3-9")
			expectStatus(t, r, 206)
			if !bytes.Equal(r.body, tc.data[3:10]) {
				t.Errorf("body %q, want %q", r.body, tc.data[3:10])
			}
			if got, want := r.Header.Get("Content-Range"), fmt.Sprintf("bytes 3-9/%d", len(tc.data)); got != want {
				t.Errorf("Content-Range %q, want %q", got, want)
			}
			if got := r.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") {
				t.Errorf("206 Cache-Control %q", got)
			}
			r = f.get(tc.path, "Range", fmt.Sprintf("bytes=%d-", len(tc.data)-4))
			expectStatus(t, r, 206)
			if !bytes.Equal(r.body, tc.data[len(tc.data)-4:]) {
				t.Errorf("open range: body %q", r.body)
			}
			r = f.get(tc.path, "Range", "bytes=100000-")
			expectStatus(t, r, 416)
			if got := r.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("416 Cache-Control %q", got)
			}
			etag := f.get(tc.path).Header.Get("ETag")
			r = f.get(tc.path, "Range", "bytes=0-1", "If-Range", etag)
			expectStatus(t, r, 206)
			r = f.get(tc.path, "Range", "bytes=0-1", "If-Range", `"stale"`)
			expectStatus(t, r, 200)
		})
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, path := range []string{"/live/key/video/seg1.m4s", "/live/key/video/part3.0.m4s", "/live/key/video/index.m3u8"} {
		get := f.get(path)
		head := f.do(http.MethodHead, path)
		expectStatus(t, head, 200)
		if len(head.body) != 0 {
			t.Errorf("HEAD %s: body %q", path, head.body)
		}
		if head.ContentLength != int64(len(get.body)) {
			t.Errorf("HEAD %s: Content-Length %d, GET body %d", path, head.ContentLength, len(get.body))
		}
		for _, k := range []string{"Content-Type", "Cache-Control", "ETag"} {
			if head.Header.Get(k) != get.Header.Get(k) {
				t.Errorf("HEAD %s: %s %q, GET %q", path, k, head.Header.Get(k), get.Header.Get(k))
			}
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, "PROPFIND"} {
		r := f.do(m, "/live/key/video/seg1.m4s")
		expectStatus(t, r, 405)
		if got := r.Header.Get("Allow"); got != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: Allow %q", m, got)
		}
	}
}

func TestCORS(t *testing.T) {
	t.Run("any", func(t *testing.T) {
		f := newFixture(t, Config{Gzip: true}, store.Config{})
		r := f.do(http.MethodOptions, "/live/key/video/index.m3u8",
			"Origin", "https://player.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "range")
		expectStatus(t, r, 204)
		want := map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "Range",
		}
		for k, v := range want {
			if got := r.Header.Get(k); got != v {
				t.Errorf("preflight %s %q, want %q", k, got, v)
			}
		}
		if r.Header.Get("Access-Control-Max-Age") == "" {
			t.Error("preflight without Access-Control-Max-Age")
		}
		r = f.get("/live/key/video/seg1.m4s", "Origin", "https://player.example")
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("ACAO %q", got)
		}
		if got := r.Header.Get("Access-Control-Expose-Headers"); got != "Content-Length, Content-Range, ETag, Age" {
			t.Errorf("expose %q", got)
		}
		if strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("Vary: Origin with a wildcard: %v", r.Header.Values("Vary"))
		}
		// Errors carry CORS headers too, so that players can read them.
		r = f.get("/live/nope/index.m3u8", "Origin", "https://player.example")
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("404 ACAO %q", got)
		}
	})
	t.Run("list", func(t *testing.T) {
		f := newFixture(t, Config{Gzip: true, CORSAllowedOrigins: []string{"https://a.example", "https://b.example"}}, store.Config{})
		for _, path := range []string{"/live/key/video/seg1.m4s", "/live/key/video/index.m3u8"} {
			r := f.get(path, "Origin", "https://b.example")
			expectStatus(t, r, 200)
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://b.example" {
				t.Errorf("%s: ACAO %q", path, got)
			}
			if vary := strings.Join(r.Header.Values("Vary"), ","); !strings.Contains(vary, "Origin") {
				t.Errorf("%s: Vary %q lacks Origin", path, vary)
			}
			r = f.get(path, "Origin", "https://evil.example")
			expectStatus(t, r, 200)
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s: denied origin got ACAO %q", path, got)
			}
			if vary := strings.Join(r.Header.Values("Vary"), ","); !strings.Contains(vary, "Origin") {
				t.Errorf("%s: Vary %q lacks Origin", path, vary)
			}
			// Without Origin too: the CDN must not serve this to other origins.
			if vary := strings.Join(f.get(path).Header.Values("Vary"), ","); !strings.Contains(vary, "Origin") {
				t.Errorf("%s: Vary %q lacks Origin", path, vary)
			}
		}
		r := f.do(http.MethodOptions, "/live/key/video/seg1.m4s", "Origin", "https://a.example", "Access-Control-Request-Method", "GET")
		expectStatus(t, r, 204)
		if r.Header.Get("Access-Control-Allow-Origin") != "https://a.example" || r.Header.Get("Access-Control-Allow-Methods") == "" {
			t.Errorf("allowed preflight: %v", r.Header)
		}
		r = f.do(http.MethodOptions, "/live/key/video/seg1.m4s", "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
		if r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("denied preflight: %v", r.Header)
		}
	})
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGzip(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	for _, path := range []string{"/live/key/video/index.m3u8", "/live/key/index.m3u8", "/live/key/video/index.m3u8?_HLS_msn=2"} {
		plain := f.get(path)
		expectStatus(t, plain, 200)
		if plain.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: encoded without Accept-Encoding", path)
		}
		for _, ae := range []string{"gzip", "br, gzip;q=0.5", "*", "deflate, x-gzip"} {
			gz := f.get(path, "Accept-Encoding", ae)
			expectStatus(t, gz, 200)
			if gz.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("%s with %q: Content-Encoding %q", path, ae, gz.Header.Get("Content-Encoding"))
			}
			if !bytes.Equal(gunzip(t, gz.body), plain.body) {
				t.Errorf("%s: gunzipped body differs", path)
			}
			if gz.Header.Get("ETag") == plain.Header.Get("ETag") {
				t.Errorf("%s: gzip and identity share ETag %s", path, gz.Header.Get("ETag"))
			}
			if !strings.Contains(strings.Join(gz.Header.Values("Vary"), ","), "Accept-Encoding") {
				t.Errorf("%s: no Vary: Accept-Encoding", path)
			}
			expectStatus(t, f.get(path, "Accept-Encoding", ae, "If-None-Match", gz.Header.Get("ETag")), 304)
		}
		for _, ae := range []string{"gzip;q=0", "br", "identity", "*;q=0", "gzip;q=0, *"} {
			if r := f.get(path, "Accept-Encoding", ae); r.Header.Get("Content-Encoding") != "" {
				t.Errorf("%s with %q: Content-Encoding %q", path, ae, r.Header.Get("Content-Encoding"))
			}
		}
	}
	for _, path := range []string{"/live/key/video/seg1.m4s", "/live/key/video/part1.0.m4s", "/live/key/video/init.mp4"} {
		r := f.get(path, "Accept-Encoding", "gzip")
		expectStatus(t, r, 200)
		if r.Header.Get("Content-Encoding") != "" || strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Accept-Encoding") {
			t.Errorf("%s: media compressed or varying: %v", path, r.Header)
		}
	}

	off := newFixture(t, Config{Gzip: false}, store.Config{})
	if r := off.get("/live/key/video/index.m3u8", "Accept-Encoding", "gzip"); r.Header.Get("Content-Encoding") != "" {
		t.Error("gzip disabled but playlist compressed")
	}
}

// result carries an asynchronous response.
type result struct {
	resp response
	err  error
}

// blockingGet runs GET path in a goroutine and returns the channel its
// response arrives on.
func (f *fixture) blockingGet(path string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := f.client.Get(f.srv.URL + path)
		if err != nil {
			ch <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- result{resp: response{resp, body}, err: err}
	}()
	return ch
}

// waitHook installs a hook signalled each time a request starts waiting on
// the store.
func (f *fixture) waitHook() <-chan struct{} {
	ch := make(chan struct{}, 16)
	f.h.waitHook = func() { ch <- struct{}{} }
	return ch
}

func receive(t testing.TB, ch <-chan result) response {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.resp
	case <-time.After(20 * time.Second):
		t.Fatal("response did not arrive")
	}
	return response{}
}

func signalled(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("request did not start waiting")
	}
}

func notYet(t testing.TB, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("answered before the object existed: %+v", r)
	default:
	}
}

func TestBlockingReload(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: time.Minute}, store.Config{})
	waiting := f.waitHook()

	// Part 2 of the open segment 3 does not exist yet.
	ch := f.blockingGet("/live/key/video/index.m3u8?_HLS_msn=3&_HLS_part=2")
	signalled(t, waiting)
	notYet(t, ch)
	f.appendPart(f.audio) // a sibling's change does not release it
	notYet(t, ch)
	f.appendPart(f.video)
	r := receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Contains(r.body, []byte("part3.2.m4s")) {
		t.Errorf("playlist lacks the awaited part:\n%s", r.body)
	}

	// Whole segment: _HLS_msn=3 without _HLS_part waits for segment 3 to
	// complete.
	ch = f.blockingGet("/live/key/video/index.m3u8?_HLS_msn=3")
	signalled(t, waiting)
	notYet(t, ch)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	r = receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Contains(r.body, []byte("seg3.m4s")) {
		t.Errorf("playlist lacks segment 3:\n%s", r.body)
	}

	// Already available: no wait.
	r = f.get("/live/key/video/index.m3u8?_HLS_msn=2&_HLS_part=0")
	expectStatus(t, r, 200)
	select {
	case <-waiting:
		t.Error("request for an available part waited")
	default:
	}

	// End of stream releases waiters with the final playlist.
	ch = f.blockingGet("/live/key/audio/index.m3u8?_HLS_msn=4&_HLS_part=0")
	signalled(t, waiting)
	notYet(t, ch)
	f.stream.End()
	r = receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Contains(r.body, []byte("#EXT-X-ENDLIST")) {
		t.Errorf("no ENDLIST after End:\n%s", r.body)
	}
}

func TestBlockingQuery(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: 30 * time.Millisecond}, store.Config{})
	tests := []struct {
		query  string
		status int
	}{
		{"_HLS_part=1", 400},            // part without msn
		{"_HLS_msn=abc", 400},           // malformed
		{"_HLS_msn=-1", 400},            // malformed
		{"_HLS_msn=3&_HLS_part=x", 400}, // malformed
		{"_HLS_msn=1&_HLS_msn=2", 400},  // repeated
		{"_HLS_msn=99", 400},            // last is 3: at most 5
		{"_HLS_msn=6", 400},             // 3 + 2 + 1
		{"_HLS_msn=18446744073709551615", 400},
		{"_HLS_msn=3&_HLS_part=100000", 400}, // absurd part
		{"_HLS_msn=3&_HLS_part=500", 400},
		{"a=%zz", 400},                  // malformed query
		{"_HLS_msn=5", 503},             // allowed: waits, times out
		{"_HLS_msn=3&_HLS_part=3", 503}, // next part: waits, times out
		{"_HLS_msn=3&_HLS_part=1", 200},
		{"_HLS_msn=3&_HLS_part=1&_HLS_skip=YES", 200},
		{"_HLS_msn=2&_HLS_foo=bar&other=1", 200}, // unknown params ignored
		{"_HLS_msn=3", 503},                      // segment 3 is open
		{"_HLS_skip=YES", 200},
		{"_HLS_skip=maybe", 200},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			expectStatus(t, f.get("/live/key/video/index.m3u8?"+tc.query), tc.status)
		})
	}
}

func TestSkip(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, Window: 6}, store.Config{Window: 20})
	for i := 0; i < 20; i++ {
		f.addSegment(4, true)
	}
	f.addSegment(1, false)
	full := f.get("/live/key/video/index.m3u8")
	skip := f.get("/live/key/video/index.m3u8?_HLS_skip=YES")
	expectStatus(t, full, 200)
	expectStatus(t, skip, 200)
	if full.Header.Get("ETag") == skip.Header.Get("ETag") {
		t.Error("skip and full playlists share an ETag")
	}
	t.Logf("full %d bytes, skip %d bytes", len(full.body), len(skip.body))
}

func TestBlockingPart(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: time.Minute}, store.Config{})
	waiting := f.waitHook()

	// The preload hint: part 2 of open segment 3.
	ch := f.blockingGet("/live/key/video/part3.2.m4s")
	signalled(t, waiting)
	notYet(t, ch)
	f.appendPart(f.video)
	r := receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Equal(r.body, partData("video", 3, 2)) {
		t.Errorf("body %q", r.body)
	}
	if !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}

	// The first part of the next segment.
	ch = f.blockingGet("/live/key/video/part4.0.m4s")
	signalled(t, waiting)
	notYet(t, ch)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	notYet(t, ch)
	if _, err := f.video.StartSegment(time.Now(), f.video.NextBaseTime()); err != nil {
		t.Fatal(err)
	}
	notYet(t, ch)
	f.appendPart(f.video)
	r = receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Equal(r.body, partData("video", 4, 0)) {
		t.Errorf("body %q", r.body)
	}

	// A segment that is still open is streamed until it completes (see
	// dash_test.go for the order of events).
	ch = f.blockingGet("/live/key/video/seg4.m4s")
	notYet(t, ch)
	f.appendPart(f.video)
	notYet(t, ch)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	r = receive(t, ch)
	expectStatus(t, r, 200)
	if !bytes.Equal(r.body, segData("video", 4, 2)) {
		t.Errorf("body %q", r.body)
	}

	// Further in the future: 404 at once (segment 5 is the next one: it
	// waits, see dash_test.go).
	for _, path := range []string{"/live/key/video/part7.0.m4s", "/live/key/video/part5.900.m4s", "/live/key/video/seg6.m4s", "/live/key/video/seg7.m4s"} {
		expectStatus(t, f.get(path), 404)
	}
	select {
	case <-waiting:
		t.Error("a far-future request waited")
	default:
	}

	// A part beyond the end of a complete segment never comes.
	expectStatus(t, f.get("/live/key/video/part2.4.m4s"), 404)
}

func TestBlockingTimeout(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: 20 * time.Millisecond}, store.Config{})
	for _, path := range []string{
		"/live/key/video/index.m3u8?_HLS_msn=3&_HLS_part=2",
		"/live/key/video/part3.2.m4s",
		"/live/key/video/seg4.m4s",   // the next segment
		"/live/key/video/seg3.m4s?x", // open: streamed, see TestStreamStall; a range waits for it
	} {
		var hdr []string
		if strings.HasSuffix(path, "?x") {
			hdr = []string{"Range", "bytes=0-9"}
		}
		r := f.get(path, hdr...)
		expectStatus(t, r, 503)
		if got := r.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", path, got)
		}
	}
}

func TestNotFound(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{Window: 2, KeepExtra: -1})
	for i := 0; i < 3; i++ {
		f.addSegment(4, true) // segments 4..6 push 0..4 out; keep 2
	}
	if s := f.video.Snapshot(); s.Segments[0].MSN != 5 {
		t.Fatalf("oldest kept segment %d", s.Segments[0].MSN)
	}
	for _, path := range []string{
		"/live/nope/index.m3u8",
		"/live/nope/video/index.m3u8",
		"/live/key/nope/index.m3u8",
		"/live/key/nope/seg5.m4s",
		"/live/nope/video/seg5.m4s",
		"/other/index.m3u8",
		"/live/key/video/seg0.m4s",     // trimmed
		"/live/key/video/seg4.m4s",     // trimmed
		"/live/key/video/part4.1.m4s",  // trimmed
		"/live/key/video/init-1.mp4",   // no such version
		"/live/key/video/foo.mp4",      // no such object
		"/live/key/video/index.m3u",    // no such object
		"/live/key/video/",             // directory
		"/live/key/video/seg5.m4s/x",   // below an object
		"/live/key/index.m3u8/video",   // below an object
		"/live/key/video/seg05.m4s",    // non-canonical
		"/live/key/video/part5.01.m4s", // non-canonical
		"/live/key/seg5.m4s",           // stream "live", rendition "key"
		"/favicon.ico",
		"/",
	} {
		r := f.get(path)
		expectStatus(t, r, 404)
	}
	expectStatus(t, f.get("/live/key/video/seg5.m4s"), 200)

	// A rendition without segments yet has no playlist.
	late := f.stream.AddRendition(store.RenditionInfo{Name: "late", Kind: media.KindVideo, Timescale: 90000, PartTarget: 250 * time.Millisecond})
	expectStatus(t, f.get("/live/key/late/index.m3u8"), 404)
	expectStatus(t, f.get("/live/key/late/init.mp4"), 404)
	// and is left out of the multivariant until it has an init segment.
	if r := f.get("/live/key/index.m3u8"); bytes.Contains(r.body, []byte("late")) {
		t.Errorf("multivariant lists a rendition without init:\n%s", r.body)
	}
	late.SetInit(late.Snapshot().Info, initVideo)
	if _, err := late.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	// While the first segment is being written, playlist requests wait for
	// it to complete instead of listing parts only.
	got := make(chan response, 2)
	go func() { got <- f.get("/live/key/late/index.m3u8") }()
	go func() { got <- f.get("/live/key/index.m3u8") }()
	if _, err := late.AppendPart([]byte("x"), 250*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		t.Fatalf("playlist answered %d before the first segment was complete", r.StatusCode)
	case <-time.After(100 * time.Millisecond):
	}
	if err := late.FinishSegment(22500); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-got
		expectStatus(t, r, 200)
		if bytes.Contains(r.body, []byte("EXT-X-STREAM-INF")) && !bytes.Contains(r.body, []byte("late/index.m3u8")) {
			t.Errorf("multivariant lacks the late rendition:\n%s", r.body)
		}
	}
}

func TestGarbagePaths(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	long := strings.Repeat("a", 200)
	tests := []string{
		"/../etc/passwd",
		"/live/%2e%2e/x",
		"/live/%2E%2E/key/video/index.m3u8",
		"/live/key/%2e%2e/%2e%2e/etc/passwd",
		"/live/key/video%2Fseg1.m4s",
		"/live/key/video/seg-1.m4s",
		"/live/key/video/segabc.m4s",
		"/live/key/video/part1.m4s",
		"/live/key/video/part.1.m4s",
		"/live/key/video/part1..m4s",
		"/live/key/video/part1.-1.m4s",
		"/live/key/video/seg99999999999999999999999.m4s",
		"/live/key/video/seg18446744073709551616.m4s",
		"/live/key/video/init-0.mp4",
		"/live/key/video/init-01.mp4",
		"/live/key/video/index.m3u8?_HLS_part=1",
		"//live/key/video/seg1.m4s",
		"/live//key/video/seg1.m4s",
		"/live/key/./video/seg1.m4s",
		"/live/key/video/./seg1.m4s",
		"/live\\key/video/seg1.m4s",
		"/live/key/video/seg1.m4s%00",
		"/live/k%00ey/video/seg1.m4s",
		"/live/key/vid eo/seg1.m4s",
		"/live/key/vid%20eo/seg1.m4s",
		"/live/ké/video/seg1.m4s",
		"/live/key/video/seg1.m4s%2f..",
		"/" + long + "/video/index.m3u8",
		"/" + long + "/index.m3u8",
		"/live/" + long + "/seg1.m4s",
		"/live/key/video/" + long,
		"/" + strings.Repeat("a/", 300) + "index.m3u8",
		"/" + strings.Repeat("x", 100000),
		"/live/key/video/index.m3u8?%",
	}
	for _, path := range tests {
		name := path
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = path[:strings.IndexByte(path+"?", '?')] // send the path bytes as they are
			if i := strings.IndexByte(path, '?'); i >= 0 {
				req.URL.RawQuery = path[i+1:]
			}
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 && resp.StatusCode != 404 && resp.StatusCode != 431 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}

	// The handler directly, with paths no client library would send.
	for _, path := range []string{"", "*", "live/key/video/seg1.m4s", "/live/key/video/seg1.m4s\x00", "/live/\\../x/index.m3u8"} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path = path
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		if w.Code != 400 && w.Code != 404 {
			t.Errorf("%q: status %d", path, w.Code)
		}
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	if got := f.get("/healthz", "X-Request-Id", "abc-123").Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("echoed %q", got)
	}
	if got := f.get("/healthz", "X-Request-Id", "a<b>\"c d"+strings.Repeat("z", 100)).Header.Get("X-Request-Id"); got != "abcd"+strings.Repeat("z", 60) {
		t.Errorf("sanitised %q", got)
	}
	a := f.get("/healthz").Header.Get("X-Request-Id")
	b := f.get("/healthz", "X-Request-Id", "<>").Header.Get("X-Request-Id")
	if a == "" || b == "" || a == b {
		t.Errorf("generated ids %q, %q", a, b)
	}
}

// TestParsePath checks the parser on its own.
func TestParsePath(t *testing.T) {
	tests := []struct {
		path   string
		status int
		kind   objectKind
		prefix string
		msn    uint64
		part   int
	}{
		{"/healthz", 0, objHealth, "", 0, 0},
		{"/live/key/index.m3u8", 0, objIndex, "live/key", 0, 0},
		{"/a/b/c/index.m3u8", 0, objIndex, "a/b/c", 0, 0},
		{"/live/key/video/init.mp4", 0, objInit, "live/key/video", 0, 0},
		{"/live/key/video/init-12.mp4", 0, objInit, "live/key/video", 0, 0},
		{"/live/key/video/seg0.m4s", 0, objSegment, "live/key/video", 0, 0},
		{"/live/key/video/seg18446744073709551615.m4s", 0, objSegment, "live/key/video", 18446744073709551615, 0},
		{"/live/key/video/part7.3.m4s", 0, objPart, "live/key/video", 7, 3},
		{"/key/video/part7.0.m4s", 0, objPart, "key/video", 7, 0},
		{"/video/part7.0.m4s", 404, 0, "", 0, 0},
		{"/index.m3u8", 404, 0, "", 0, 0},
		{"/live/../index.m3u8", 400, 0, "", 0, 0},
		{"/live/key/video/seg-1.m4s", 404, 0, "", 0, 0},
		{"/keys/live/key/0123456789abcdef.key", 0, objKey, "live/key", 0, 0},
		{"/keys/a/k.key", 0, objKey, "a", 0, 0},
		{"/keys/k.key", 404, 0, "", 0, 0},
		{"/keys/live/key/a.b.key", 404, 0, "", 0, 0},
		{"/keys/live/key/index.m3u8", 0, objIndex, "keys/live/key", 0, 0}, // a stream named keys/... (refused when tokens are on)
	}
	for _, tc := range tests {
		got, status := parsePath(tc.path)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, status, tc.status)
			continue
		}
		if status != 0 {
			continue
		}
		if got.kind != tc.kind || got.prefix != tc.prefix || got.msn != tc.msn || got.part != tc.part {
			t.Errorf("%s: got %+v", tc.path, got)
		}
	}
}

// FuzzPath checks that the path parser never panics, and that everything it
// accepts spells a valid stream name and round-trips to the same path.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"/live/key/index.m3u8", "/live/key/video/index.m3u8", "/live/key/video/init.mp4", "/live/key/video/init-3.mp4",
		"/live/key/video/seg12.m4s", "/live/key/video/part12.3.m4s", "/healthz", "/../etc/passwd", "/live//x",
		"/live/key/video/seg-1.m4s", "/live/key/video/part1.m4s", "/a/b/c/d/e/index.m3u8", "/live/.../x/seg0.m4s",
		"/live/key/manifest.mpd", "/time", "/live/key/time", "/x/manifest.mpd", "/time/x",
		"/keys/live/key/0123456789abcdef.key", "/keys/a/b.key", "/keys/x.key", "/keys/a/b/c.d.key",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tgt, status := parsePath(p)
		if status != 0 {
			if status != 400 && status != 404 {
				t.Fatalf("%q: status %d", p, status)
			}
			return
		}
		if tgt.kind == objHealth {
			if p != "/healthz" {
				t.Fatalf("%q parsed as health", p)
			}
			return
		}
		if tgt.kind == objTime && tgt.prefix == "" {
			if p != "/time" {
				t.Fatalf("%q parsed as /time", p)
			}
			return
		}
		if tgt.kind == objKey {
			if got := hlsenc.KeyPath(tgt.prefix, tgt.keyID()); got != p || "/keys/"+tgt.prefix+"/"+objectName(&tgt) != p {
				t.Fatalf("%q round-trips to %q", p, got)
			}
			if err := media.ValidateName(tgt.prefix); err != nil || !hlsenc.ValidKeyID(tgt.keyID()) {
				t.Fatalf("%q: key of stream %q, id %q: %v", p, tgt.prefix, tgt.keyID(), err)
			}
			return
		}
		if got := "/" + tgt.prefix + "/" + objectName(&tgt); got != p {
			t.Fatalf("%q round-trips to %q", p, got)
		}
		valid := false
		streamLevel := tgt.kind == objIndex || tgt.kind == objMPD || tgt.kind == objTime
		if streamLevel && tgt.multivariantOK() {
			if err := media.ValidateName(tgt.prefix); err != nil {
				t.Fatalf("%q: stream %q invalid: %v", p, tgt.prefix, err)
			}
			valid = true
		}
		if tgt.renditionOK() {
			if err := media.ValidateName(tgt.stream()); err != nil {
				t.Fatalf("%q: stream %q invalid: %v", p, tgt.stream(), err)
			}
			r := tgt.rendition()
			if err := media.ValidateName(r); err != nil || strings.Contains(r, "/") {
				t.Fatalf("%q: rendition %q invalid: %v", p, r, err)
			}
			valid = true
		} else if !streamLevel {
			t.Fatalf("%q: media object without a stream/rendition split", p)
		}
		if !valid {
			t.Fatalf("%q accepted without any valid interpretation", p)
		}
	})
}

func TestShutdownEndsBlockedRequests(t *testing.T) {
	st := store.New(store.Config{})
	s := st.Begin(streamName)
	v := s.AddRendition(videoInfo)
	v.SetInit(videoInfo, initVideo)
	if _, err := v.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AppendPart([]byte("x"), 250*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}

	cfg := Config{Address: "127.0.0.1:0", BlockTimeout: time.Minute, Gzip: true}
	h := NewHandler(cfg, st, nil, nil).(*handler)
	waiting := make(chan struct{}, 1)
	h.waitHook = func() { waiting <- struct{}{} }
	srv := NewServer(cfg, h, nil)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + srv.Addr().String() + "/live/key/video/index.m3u8?_HLS_msn=0&_HLS_part=5")
		if err != nil {
			ch <- -1
			return
		}
		resp.Body.Close()
		ch <- resp.StatusCode
	}()
	signalled(t, waiting)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-ch; code != 503 {
		t.Errorf("blocked request got %d, want 503", code)
	}
}

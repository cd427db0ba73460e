package origin

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/store"
)

// hitCounter counts the requests a server gets, by request URI.
type hitCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *hitCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.m[r.URL.RequestURI()]++
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (c *hitCounter) get(uri string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[uri]
}

func (c *hitCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.m {
		n += v
	}
	return n
}

// cluster is two nodes: the owner (the fixture's store and origin, reached
// by the edge on an internal server that wants the cluster secret, as
// playback.RequireHeader checks it, and counts requests) and an edge (an
// origin over an empty store, relaying live/key to the owner).
type cluster struct {
	*fixture // the owner
	hits     *hitCounter
	internal *httptest.Server
	edge     *handler
	edgeURL  string
	rl       *relay.Relay
	reg      *prometheus.Registry
}

// newCluster builds a cluster; wrap (nil: none) wraps the edge's handler,
// as server/ puts the playback checks in front of it.
func newCluster(t testing.TB, cfg Config, rcfg relay.Config, wrap func(http.Handler) http.Handler) *cluster {
	t.Helper()
	f := newFixture(t, cfg, store.Config{})
	c := &cluster{fixture: f, hits: &hitCounter{m: make(map[string]int)}, reg: prometheus.NewRegistry()}
	c.internal = httptest.NewServer(c.hits.wrap(playback.RequireHeader(playback.DefaultCDNHeader, cdnSecret)(f.h)))
	rcfg.Header = http.Header{playback.DefaultCDNHeader: {cdnSecret}}
	c.rl = relay.New(rcfg, nil, c.reg)
	lookup := func(stream string) (string, bool) {
		if stream == streamName {
			return c.internal.URL, true
		}
		return "", false
	}
	c.edge = NewHandler(cfg, store.New(store.Config{}), nil, nil, WithRelay(lookup, c.rl)).(*handler)
	var h http.Handler = c.edge
	if wrap != nil {
		h = wrap(h)
	}
	edge := httptest.NewServer(h)
	c.edgeURL = edge.URL
	t.Cleanup(func() {
		f.client.CloseIdleConnections()
		edge.Close()
		c.rl.Close()
		c.internal.Close()
	})
	return c
}

// edgeGet GETs path on the edge.
func (c *cluster) edgeGet(path string, hdr ...string) response {
	c.t.Helper()
	return fetchURL(c.t, c.client, http.MethodGet, c.edgeURL+path, hdr...)
}

func fetchURL(t testing.TB, client *http.Client, method, url string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Error(err)
		return response{}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return response{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: read body: %v", method, url, err)
	}
	return response{resp, body}
}

// metric returns the value of the counter or gauge name with the given
// label pairs from reg (0 when absent).
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitFor polls cond (a test-side observation of metrics; the code under
// test never polls) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A crowd of 100 on the edge asking for a part not published yet costs
// the owner one request, blocked on it until the part comes; all get the
// same bytes and headers.
func TestRelayCollapsesPart(t *testing.T) {
	c := newCluster(t, Config{}, relay.Config{}, nil)
	const n = 100
	const path = "/live/key/video/part3.2.m4s"
	waiting := c.waitHook()
	results := make(chan response, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	for range n {
		go func() { results <- fetchURL(t, client, http.MethodGet, c.edgeURL+path) }()
	}
	signalled(t, waiting)
	waitFor(t, "99 collapsed requests", func() bool {
		return metric(t, c.reg, "headwater_relay_collapsed_total", "kind", "part") == n-1
	})
	select {
	case r := <-results:
		t.Fatalf("a request returned before the part was published: %d", r.StatusCode)
	default:
	}
	c.appendPart(c.video)
	want := partData("video", 3, 2)
	var etag string
	for range n {
		r := <-results
		expectStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.body, want) {
			t.Fatalf("body %q, want %q", r.body, want)
		}
		if etag == "" {
			etag = r.Header.Get("Etag")
		}
		if r.Header.Get("Etag") != etag || etag == "" {
			t.Fatalf("ETag %q, want %q", r.Header.Get("Etag"), etag)
		}
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Fatalf("Cache-Control %q", cc)
		}
	}
	if got := c.hits.get(path); got != 1 {
		t.Fatalf("owner got %d requests for %s, want 1", got, path)
	}
	if got := metric(t, c.reg, "headwater_relay_upstream_requests_total", "kind", "part"); got != 1 {
		t.Fatalf("headwater_relay_upstream_requests_total{kind=part} = %v", got)
	}
}

// A blocking playlist reload on the edge is forwarded and blocks on the
// owner: it returns once the part is published there, not before, with
// one upstream request.
func TestRelayBlockingReload(t *testing.T) {
	c := newCluster(t, Config{}, relay.Config{}, nil)
	const path = "/live/key/video/index.m3u8?_HLS_msn=3&_HLS_part=2"
	waiting := c.waitHook()
	done := make(chan response, 1)
	var returned time.Time
	go func() {
		r := fetchURL(t, c.client, http.MethodGet, c.edgeURL+path)
		returned = time.Now()
		done <- r
	}()
	signalled(t, waiting)
	select {
	case r := <-done:
		t.Fatalf("the reload returned before the part was published: %d %q", r.StatusCode, r.body)
	case <-time.After(50 * time.Millisecond):
	}
	published := time.Now()
	c.appendPart(c.video)
	r := <-done
	expectStatus(t, r, http.StatusOK)
	if returned.Before(published) {
		t.Fatal("the reload returned before the publish")
	}
	t.Logf("the edge's reload returned %v after the owner published", returned.Sub(published))
	if !bytes.Contains(r.body, []byte(`URI="part3.2.m4s"`)) {
		t.Fatalf("playlist without part 3.2:\n%s", r.body)
	}
	if got := c.hits.get(path); got != 1 {
		t.Fatalf("owner got %d requests for %s, want 1", got, path)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=6" {
		t.Fatalf("Cache-Control %q, want the owner's blocking max-age", cc)
	}
	// Playlists are never kept: the same reload again is a new request.
	r = c.edgeGet(path)
	expectStatus(t, r, http.StatusOK)
	if got := c.hits.get(path); got != 2 {
		t.Fatalf("owner got %d requests for %s after a second reload, want 2", got, path)
	}
}

// Segments, parts and init sections come from the LRU the second time,
// with the owner's headers.
func TestRelayCachesImmutable(t *testing.T) {
	c := newCluster(t, Config{}, relay.Config{}, nil)
	for _, p := range []string{"/live/key/video/seg1.m4s", "/live/key/video/part2.1.m4s", "/live/key/audio/init.mp4"} {
		own := c.get(p)
		expectStatus(t, own, http.StatusOK)
		first := c.edgeGet(p)
		second := c.edgeGet(p)
		for _, r := range []response{first, second} {
			expectStatus(t, r, http.StatusOK)
			if !bytes.Equal(r.body, own.body) {
				t.Fatalf("%s: edge body differs from the owner's", p)
			}
			for _, h := range []string{"Etag", "Content-Type", "Cache-Control", "Last-Modified", "Content-Length"} {
				if r.Header.Get(h) != own.Header.Get(h) {
					t.Fatalf("%s: %s %q, owner %q", p, h, r.Header.Get(h), own.Header.Get(h))
				}
			}
			if r.Header.Get("X-Request-Id") == own.Header.Get("X-Request-Id") {
				t.Fatalf("%s: the edge passed on the owner's request id", p)
			}
		}
		if got := c.hits.get(p); got != 1 {
			t.Fatalf("%s: owner got %d requests, want 1", p, got)
		}
	}
	if got := metric(t, c.reg, "headwater_relay_cache_hits_total"); got != 3 {
		t.Fatalf("cache hits %v, want 3", got)
	}
}

// The LRU is bounded by bytes: past it the least recently used objects go
// and are fetched again.
func TestRelayCacheEvictsByBytes(t *testing.T) {
	const limit = 5000 // nine parts of ~530 bytes (body, key, overhead)
	c := newCluster(t, Config{}, relay.Config{CacheBytes: limit}, nil)
	var paths []string
	for msn := 0; msn < 3; msn++ {
		for p := 0; p < 4; p++ {
			paths = append(paths, "/live/key/video/part"+strconv.Itoa(msn)+"."+strconv.Itoa(p)+".m4s")
		}
	}
	for _, p := range paths {
		expectStatus(t, c.edgeGet(p), http.StatusOK)
		if b := metric(t, c.reg, "headwater_relay_cache_bytes"); b > limit || b <= 0 {
			t.Fatalf("cache holds %v bytes, bound %d", b, limit)
		}
	}
	last, first := paths[len(paths)-1], paths[0]
	expectStatus(t, c.edgeGet(last), http.StatusOK)
	if got := c.hits.get(last); got != 1 {
		t.Fatalf("the latest object was fetched %d times, want 1 (cached)", got)
	}
	expectStatus(t, c.edgeGet(first), http.StatusOK)
	if got := c.hits.get(first); got != 2 {
		t.Fatalf("the oldest object was fetched %d times, want 2 (evicted)", got)
	}
}

// An owner that cannot be reached is 502 with the error cache policy; an
// owner's 404 is a 404 with the 404 policy.
func TestRelayErrors(t *testing.T) {
	c := newCluster(t, Config{BlockTimeout: 500 * time.Millisecond}, relay.Config{}, nil)
	r := c.edgeGet("/live/key/video/seg999.m4s")
	expectStatus(t, r, http.StatusNotFound)
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Fatalf("404 Cache-Control %q", cc)
	}
	// A stream nobody owns is this node's 404, without a request.
	before := c.hits.total()
	expectStatus(t, c.edgeGet("/live/other/video/seg1.m4s"), http.StatusNotFound)
	if c.hits.total() != before {
		t.Fatal("a stream no node owns was asked upstream")
	}

	c.internal.Close()
	for _, p := range []string{"/live/key/video/seg1.m4s", "/live/key/index.m3u8", "/live/key/manifest.mpd"} {
		t0 := time.Now()
		r = c.edgeGet(p)
		// A playlist or MPD is held, up to BlockTimeout, for the owner to
		// come back or another to take the stream over; media objects are not.
		if d := time.Since(t0); !strings.HasSuffix(p, ".m4s") != (d >= 500*time.Millisecond) {
			t.Fatalf("%s: 502 after %s, block timeout 500ms", p, d)
		}
		expectStatus(t, r, http.StatusBadGateway)
		if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Fatalf("%s: 502 Cache-Control %q", p, cc)
		}
		if r.Header.Get("Etag") != "" {
			t.Fatalf("%s: 502 with an ETag", p)
		}
	}
	if got := metric(t, c.reg, "headwater_relay_upstream_errors_total", "reason", "connect"); got != 3 {
		t.Fatalf("upstream errors {reason=connect} = %v, want 3", got)
	}
	if got := metric(t, c.reg, "headwater_relay_held_total", "outcome", "timeout"); got != 2 {
		t.Fatalf("held requests {outcome=timeout} = %v, want 2 (the playlist and the MPD)", got)
	}
}

// Range and If-None-Match requests for a relayed segment are answered as
// the owner answers them.
func TestRelayRangeAndConditional(t *testing.T) {
	c := newCluster(t, Config{}, relay.Config{}, nil)
	const p = "/live/key/video/seg0.m4s"
	full := segData("video", 0, 4)
	r := c.edgeGet(p, "Range", "bytes=10-19")
	expectStatus(t, r, http.StatusPartialContent)
	if !bytes.Equal(r.body, full[10:20]) {
		t.Fatalf("range body %q, want %q", r.body, full[10:20])
	}
	if cr := r.Header.Get("Content-Range"); cr != "bytes 10-19/"+strconv.Itoa(len(full)) {
		t.Fatalf("Content-Range %q", cr)
	}
	etag := c.get(p).Header.Get("Etag")
	r = c.edgeGet(p, "If-None-Match", etag)
	expectStatus(t, r, http.StatusNotModified)
	r = c.edgeGet(p, "If-None-Match", `"other"`)
	expectStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, full) {
		t.Fatal("full body differs")
	}
	// A playlist revalidates through the owner's ETag too.
	pl := c.edgeGet("/live/key/video/index.m3u8")
	expectStatus(t, pl, http.StatusOK)
	r = c.edgeGet("/live/key/video/index.m3u8", "If-None-Match", pl.Header.Get("Etag"))
	expectStatus(t, r, http.StatusNotModified)
	if got := c.hits.get(p); got != 1 {
		t.Fatalf("owner got %d requests for %s, want 1", got, p)
	}
}

// Playlists come gzipped to a client that takes gzip, plain to one that
// does not, each with the owner's ETag for that encoding.
func TestRelayPlaylistEncoding(t *testing.T) {
	c := newCluster(t, Config{Gzip: true}, relay.Config{}, nil)
	const p = "/live/key/video/index.m3u8"
	gz := c.edgeGet(p, "Accept-Encoding", "gzip")
	plain := c.edgeGet(p)
	expectStatus(t, gz, http.StatusOK)
	expectStatus(t, plain, http.StatusOK)
	if gz.Header.Get("Content-Encoding") != "gzip" || plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("encodings %q and %q", gz.Header.Get("Content-Encoding"), plain.Header.Get("Content-Encoding"))
	}
	if !bytes.HasPrefix(plain.body, []byte("#EXTM3U")) || !strings.HasSuffix(gz.Header.Get("Etag"), `g"`) {
		t.Fatalf("plain body %q, gzip ETag %q", plain.body[:min(len(plain.body), 16)], gz.Header.Get("Etag"))
	}
	if !strings.Contains(gz.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("Vary %q", gz.Header.Get("Vary"))
	}
	mv := c.edgeGet("/live/key/index.m3u8")
	expectStatus(t, mv, http.StatusOK)
	if !bytes.Contains(mv.body, []byte("video/index.m3u8")) {
		t.Fatalf("multivariant:\n%s", mv.body)
	}
	mpd := c.edgeGet("/live/key/manifest.mpd")
	expectStatus(t, mpd, http.StatusOK)
	if mpd.Header.Get("Content-Type") != "application/dash+xml" {
		t.Fatalf("MPD Content-Type %q", mpd.Header.Get("Content-Type"))
	}
}

// The segment being written is relayed as it is written: chunked, each
// part reaching the edge's client as the owner publishes it, and complete
// (then cached) once the owner finishes it.
func TestRelayStreamsOpenSegment(t *testing.T) {
	c := newCluster(t, Config{}, relay.Config{}, nil)
	const p = "/live/key/video/seg3.m4s"
	req, err := http.NewRequest(http.MethodGet, c.edgeURL+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != -1 {
		t.Fatalf("status %d, length %d: want a chunked 200", resp.StatusCode, resp.ContentLength)
	}
	read := func(want []byte) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	read(segData("video", 3, 2))
	// A second viewer joins the same upstream stream.
	second := make(chan response, 1)
	go func() { second <- c.edgeGet(p) }()
	waitFor(t, "the second viewer to join", func() bool {
		return metric(t, c.reg, "headwater_relay_collapsed_total", "kind", "segment") == 1
	})
	c.appendPart(c.video)
	read(partData("video", 3, 2))
	c.appendPart(c.video)
	read(partData("video", 3, 3))
	if err := c.video.FinishSegment(uint64(videoInfo.Timescale)); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the last part: %q, %v", rest, err)
	}
	r2 := <-second
	expectStatus(t, r2, http.StatusOK)
	if !bytes.Equal(r2.body, segData("video", 3, 4)) {
		t.Fatal("the second viewer's segment differs")
	}
	// Complete now: cached, and served with its length.
	r := c.edgeGet(p)
	expectStatus(t, r, http.StatusOK)
	if r.ContentLength != int64(len(segData("video", 3, 4))) {
		t.Fatalf("cached segment length %d", r.ContentLength)
	}
	if got := c.hits.get(p); got != 1 {
		t.Fatalf("owner got %d requests for %s, want 1", got, p)
	}
}

// Tokens are checked on the edge before anything is relayed; key files
// are relayed (the owner's keys) with their private policy, never cached.
func TestRelayTokensAndKeys(t *testing.T) {
	kr, err := playback.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte("s"), 32)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	wrap := playback.Middleware(playback.Config{Keyring: kr, Required: true})
	c := newCluster(t, Config{Encryption: EncryptionConfig{Enabled: true}}, relay.Config{}, wrap)
	sign := func(prefix string) string {
		tok, err := kr.Sign(prefix, time.Now().Add(time.Minute), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		return "/t/" + tok
	}
	const pl = "/live/key/video/index.m3u8"
	r := c.edgeGet(pl)
	expectStatus(t, r, http.StatusForbidden)
	r = c.edgeGet(sign("/live/other/") + pl)
	expectStatus(t, r, http.StatusForbidden)
	if c.hits.total() != 0 {
		t.Fatal("a refused request was relayed")
	}
	tok := sign("/live/key/")
	r = c.edgeGet(tok + pl)
	expectStatus(t, r, http.StatusOK)
	i := bytes.Index(r.body, []byte(`#EXT-X-KEY:METHOD=AES-128,URI="`))
	if i < 0 {
		t.Fatalf("playlist without a key:\n%s", r.body)
	}
	uri := r.body[i+len(`#EXT-X-KEY:METHOD=AES-128,URI="`):]
	uri = uri[:bytes.IndexByte(uri, '"')]
	// The key URI is relative to the playlist: resolve it.
	keyPath := resolve(t, pl, string(uri))
	if !strings.HasPrefix(keyPath, "/keys/") {
		t.Fatalf("key path %q", keyPath)
	}

	r = c.edgeGet(keyPath)
	expectStatus(t, r, http.StatusForbidden)
	for range 2 {
		r = c.edgeGet(tok + keyPath)
		expectStatus(t, r, http.StatusOK)
		if len(r.body) != 16 || r.Header.Get("Cache-Control") != "private, no-store" {
			t.Fatalf("key: %d bytes, Cache-Control %q", len(r.body), r.Header.Get("Cache-Control"))
		}
	}
	if got := c.hits.get(keyPath); got != 2 {
		t.Fatalf("owner got %d key requests, want 2 (keys are never cached)", got)
	}
	// The owner's key: the edge has none of its own.
	own := fetchURL(t, c.client, http.MethodGet, c.internal.URL+keyPath, playback.DefaultCDNHeader, cdnSecret)
	expectStatus(t, own, http.StatusOK)
	if !bytes.Equal(own.body, r.body) {
		t.Fatal("the edge's key is not the owner's")
	}
	// Segments are the owner's ciphertext.
	seg := c.edgeGet(tok + "/live/key/video/seg1.m4s")
	expectStatus(t, seg, http.StatusOK)
	if bytes.Equal(seg.body, segData("video", 1, 4)) || !strings.HasSuffix(seg.Header.Get("Etag"), `.e"`) {
		t.Fatalf("segment in the clear (ETag %q)", seg.Header.Get("Etag"))
	}
}

// resolve resolves a relative URI against base (both paths).
func resolve(t *testing.T, base, ref string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, base, nil)
	u, err := req.URL.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

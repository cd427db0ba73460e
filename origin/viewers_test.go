package origin

import (
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/store"
)

func TestViewersSlidingWindow(t *testing.T) {
	v := NewViewers(10 * time.Second)
	t0 := time.Unix(1000, 0)
	req := newReq
	v.Observe("live/a", req("10.0.0.1:5000", "hls.js").r, t0)
	v.Observe("live/a", req("10.0.0.1:5001", "hls.js").r, t0.Add(time.Second)) // same client, new port
	v.Observe("live/a", req("10.0.0.1:5002", "Safari").r, t0.Add(2*time.Second))
	v.Observe("live/a", req("10.0.0.2:5000", "hls.js").r, t0.Add(3*time.Second))
	v.Observe("live/b", req("10.0.0.3:5000", "ffmpeg").r, t0.Add(3*time.Second))
	if n := v.Count("live/a", t0.Add(4*time.Second)); n != 3 {
		t.Fatalf("live/a viewers = %d, want 3", n)
	}
	if n := v.Count("live/a", t0.Add(12*time.Second)); n != 2 { // the first client expired
		t.Fatalf("live/a viewers after 12s = %d, want 2", n)
	}
	if got := v.Counts(t0.Add(20 * time.Second)); len(got) != 0 {
		t.Fatalf("counts after the window: %v", got)
	}
}

func TestViewersCollector(t *testing.T) {
	v := NewViewers(time.Minute)
	v.Observe("live/a", newReq("10.0.0.1:1", "x").r, time.Now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(v)
	want := "# HELP headwater_stream_viewers Distinct clients (address and User-Agent) that fetched a playlist of the stream within the viewer window.\n# TYPE headwater_stream_viewers gauge\nheadwater_stream_viewers{stream=\"live/a\"} 1\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "headwater_stream_viewers"); err != nil {
		t.Fatal(err)
	}
}

func TestViewersCountedFromPlaylistRequests(t *testing.T) {
	v := NewViewers(time.Minute)
	f := newFixture(t, Config{}, store.Config{})
	WithViewers(v)(f.h)
	expectStatus(t, f.get("/live/key/video/index.m3u8"), 200)
	expectStatus(t, f.get("/live/key/index.m3u8"), 200)
	expectStatus(t, f.get("/live/key/video/seg1.m4s"), 200) // media objects do not count
	expectStatus(t, f.get("/live/nope/index.m3u8"), 404)
	if n := v.Count("live/key", time.Now()); n != 1 {
		t.Fatalf("viewers = %d, want 1 (one client)", n)
	}
	if n := v.Count("live/nope", time.Now()); n != 0 {
		t.Fatalf("viewers of an unknown stream = %d", n)
	}
}

type testRequest struct{ r *http.Request }

func newReq(addr, ua string) testRequest {
	r := httptest.NewRequest("GET", "/live/a/index.m3u8", nil)
	r.RemoteAddr = addr
	r.Header.Set("User-Agent", ua)
	return testRequest{r: r}
}

// floodReq is one request whose client (User-Agent) is new for every i.
func floodReq(r *http.Request, i int) {
	r.Header.Set("User-Agent", "bot/"+strconv.Itoa(i))
}

// TestViewersFloodIsBoundedAndCounted floods one stream with 1M distinct
// clients: the count stays within the sketch's error of the truth and the
// memory held does not grow with the number of clients.
func TestViewersFloodIsBoundedAndCounted(t *testing.T) {
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := NewViewers(time.Minute)
	now := time.Unix(5000, 0)
	r := newReq("10.9.0.1:1000", "").r
	for i := range n {
		floodReq(r, i)
		v.Observe("live/flood", r, now)
	}
	v.Observe("live/calm", newReq("10.0.0.1:1", "hls.js").r, now)
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The sketch of a stream is a few kB; 1 MB leaves room for the test's
	// own garbage but not for a set that grows with the clients.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("heap grew by %d bytes for %d distinct clients", grew, n)
	}
	// The sketch's hash seed is random per Viewers, so its error is a
	// random draw of standard deviation ViewerCountError: a 3-sigma bound
	// failed about one run in 370 (a CI run saw 9.9%); 4 sigma, one in
	// 16,000.
	got := v.Count("live/flood", now)
	if diff := math.Abs(float64(got)-n) / n; diff > 4*ViewerCountError {
		t.Errorf("viewers = %d for %d distinct clients: error %.1f%% exceeds 4 x %.2f%%", got, n, 100*diff, 100*ViewerCountError)
	}
	if got := v.Count("live/calm", now); got != 1 {
		t.Errorf("the other stream's viewers = %d, want 1", got)
	}
	runtime.KeepAlive(v)
}

// TestViewersSmallCountsExact: below the sketch's sparse limit counts are
// exact, in every bucket of the window.
func TestViewersSmallCountsExact(t *testing.T) {
	v := NewViewers(30 * time.Second)
	t0 := time.Unix(7000, 0)
	for i := range 300 {
		r := newReq("10.1.0."+strconv.Itoa(i%250)+":1", "ua"+strconv.Itoa(i/250)).r
		v.Observe("live/a", r, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	if n := v.Count("live/a", t0.Add(30*time.Second)); n != 300 {
		t.Fatalf("viewers = %d, want 300", n)
	}
}

// TestViewersEndedStreamForgotten: the state of an ended stream is freed at
// once, not when its window runs out.
func TestViewersEndedStreamForgotten(t *testing.T) {
	v := NewViewers(time.Minute)
	now := time.Now()
	v.Observe("live/a", newReq("10.0.0.1:1", "x").r, now)
	v.Observe("live/b", newReq("10.0.0.1:1", "x").r, now)
	v.Forget("live/a")
	if n := v.Count("live/a", now); n != 0 {
		t.Fatalf("viewers of an ended stream = %d", n)
	}
	if got := v.Counts(now); len(got) != 1 || got["live/b"] != 1 {
		t.Fatalf("counts = %v, want live/b only", got)
	}
	if v.streamsHeld() != 1 {
		t.Fatalf("%d streams held, want 1", v.streamsHeld())
	}
}

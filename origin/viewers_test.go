package origin

import (
	"net/http"
	"net/http/httptest"
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

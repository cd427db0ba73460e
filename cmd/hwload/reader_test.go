package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOrigin is a tiny LL-HLS origin: a part every partDur, partsPerSeg
// parts per segment, blocking reload, a preload hint, dates on segments.
type fakeOrigin struct {
	t0          time.Time
	partDur     time.Duration
	partsPerSeg int
	window      int
	partBytes   []byte
	initGets    atomic.Int32
}

// produced is the number of parts that exist at now.
func (f *fakeOrigin) produced(now time.Time) int {
	return int(now.Sub(f.t0) / f.partDur)
}

func (f *fakeOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	switch {
	case name == "index.m3u8":
		f.playlist(w, r)
	case name == "init.mp4":
		f.initGets.Add(1)
		w.Write(make([]byte, 100))
	case strings.HasPrefix(name, "part"):
		var msn, p int
		if _, err := fmt.Sscanf(name, "part%d.%d.m4s", &msn, &p); err != nil || msn*f.partsPerSeg+p >= f.produced(time.Now()) {
			http.NotFound(w, r)
			return
		}
		w.Write(f.partBytes)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeOrigin) playlist(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Get("_HLS_msn") != "" {
		msn, _ := strconv.Atoi(q.Get("_HLS_msn"))
		part, _ := strconv.Atoi(q.Get("_HLS_part"))
		want := msn*f.partsPerSeg + part // part index that must exist
		ready := f.t0.Add(time.Duration(want+1) * f.partDur)
		select {
		case <-time.After(time.Until(ready)):
		case <-r.Context().Done():
			return
		}
	}
	n := f.produced(time.Now())
	complete := n / f.partsPerSeg
	if complete == 0 {
		http.NotFound(w, r)
		return
	}
	first := max(complete-f.window, 0)
	segDur := f.partDur * time.Duration(f.partsPerSeg)
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n")
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%.3f\n", 3*f.partDur.Seconds())
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%.3f\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-MAP:URI=\"init.mp4\"\n", f.partDur.Seconds(), first)
	parts := func(s, count int) {
		for p := 0; p < count; p++ {
			fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%.3f,URI=\"part%d.%d.m4s\"\n", f.partDur.Seconds(), s, p)
		}
	}
	for s := first; s < complete; s++ {
		pdt := f.t0.Add(time.Duration(s) * segDur).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", pdt)
		parts(s, f.partsPerSeg)
		fmt.Fprintf(&b, "#EXTINF:%.3f,\nseg%d.m4s\n", segDur.Seconds(), s)
	}
	open := n % f.partsPerSeg
	parts(complete, open)
	fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part%d.%d.m4s\"\n", complete, open)
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Write([]byte(b.String()))
}

func TestReaderFollowsLiveEdge(t *testing.T) {
	f := &fakeOrigin{t0: time.Now(), partDur: 20 * time.Millisecond, partsPerSeg: 5, window: 4, partBytes: make([]byte, 1000)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/live/k/video/index.m3u8")

	var measuring atomic.Bool
	r := newReader(srv.Client(), u, &measuring)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	// Let the first segment complete and the reader settle, then measure.
	time.Sleep(200 * time.Millisecond)
	t1 := time.Now()
	measuring.Store(true)
	time.Sleep(800 * time.Millisecond)
	measuring.Store(false)
	window := time.Since(t1)
	cancel()
	<-done

	s := r.stats
	if f.initGets.Load() != 1 {
		t.Errorf("init fetched %d times, want once", f.initGets.Load())
	}
	// A part per 20 ms: at most window/20ms parts (plus the one in flight
	// at each end); at least a few even on a slow (race, busy) machine.
	if most := int(window/f.partDur) + 2; s.PartRequests < 5 || s.PartRequests > most {
		t.Errorf("%d part requests in %v of 20 ms parts", s.PartRequests, window)
	}
	// Each blocking reload returns once at least one new part exists (a
	// reader slowed down may get several at once).
	if s.BlockingRequests == 0 || s.PartRequests < s.BlockingRequests-1 {
		t.Errorf("%d blocking reloads for %d parts", s.BlockingRequests, s.PartRequests)
	}
	if s.Errors != 0 {
		t.Errorf("errors: %v", s.ErrorKinds)
	}
	if s.Bytes < int64(s.PartRequests)*1000 {
		t.Errorf("%d bytes for %d parts", s.Bytes, s.PartRequests)
	}
	if len(s.PartLatency) != s.PartRequests || len(s.BlockingWait) != s.BlockingRequests {
		t.Errorf("latency samples %d/%d for %d/%d requests", len(s.PartLatency), len(s.BlockingWait), s.PartRequests, s.BlockingRequests)
	}
	// Parts are fetched as soon as they exist: their age stays small.
	// (Dates have millisecond precision, hence the slack below zero.)
	if len(s.PartAge) < s.PartRequests/2 {
		t.Fatalf("%d ages for %d parts", len(s.PartAge), s.PartRequests)
	}
	if a := summarize(s.PartAge); a.P50ms < -2 || a.P50ms > 50 {
		t.Errorf("part age %v", a)
	}
	if w := summarize(s.BlockingWait); w.P50ms < 2 || w.P50ms > 100 {
		t.Errorf("a blocking reload should wait about a part duration: %v", w)
	}
}

func TestReaderCountsErrorsWhileMeasuring(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/live/none/video/index.m3u8")
	var measuring atomic.Bool
	measuring.Store(true)
	r := newReader(srv.Client(), u, &measuring)
	r.retryDelay = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.run(ctx)
	if r.stats.Errors == 0 || r.stats.ErrorKinds["HTTP 404"] != r.stats.Errors || r.stats.requests() != 0 {
		t.Fatalf("stats %+v", r.stats)
	}
}

package origin

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/origin/relay"
)

// BenchmarkRelayLivePart is 100 LL-HLS viewers in lock-step at the live
// edge: each asks for the next part before it is published (a blocking
// part request) and the part is published once all have asked. "owner"
// serves them from the local store; "edge" from another node's origin
// through the relay (the owner runs in this process too, one request a
// part). Requests are handed to the handler directly (no client or
// connection cost). Reported per viewer request: ns/op, cpu-ns/req (the
// process's user+system CPU) and, for the edge, upstream/part, the
// owner's requests per part published (target 1.0-1.1).
func BenchmarkRelayLivePart(b *testing.B) {
	for _, mode := range []string{"owner", "edge"} {
		b.Run(mode, func(b *testing.B) { benchLivePart(b, mode == "edge") })
	}
}

func benchLivePart(b *testing.B, edge bool) {
	const viewers = 100
	const partSize = 32 << 10 // ~1 Mb/s in 250 ms parts
	c := newCluster(b, Config{}, relay.Config{}, nil)
	var h http.Handler = c.h
	if edge {
		h = c.edge
	}
	parts := max(b.N/viewers, 1)
	// The open segment 3 has parts 0 and 1: the next is 3.2; four parts a
	// segment.
	type pos struct {
		msn  uint64
		part int
	}
	paths := make([]string, parts)
	at := make([]pos, parts)
	p := pos{3, 2}
	for i := range parts {
		at[i] = p
		paths[i] = "/live/key/video/part" + strconv.FormatUint(p.msn, 10) + "." + strconv.Itoa(p.part) + ".m4s"
		if p.part == 3 {
			p = pos{p.msn + 1, 0}
		} else {
			p.part++
		}
	}
	data := make([]byte, partSize)
	publish := func(p pos) {
		if p.part == 0 {
			if err := c.video.FinishSegment(uint64(videoInfo.Timescale)); err != nil {
				b.Fatal(err)
			}
			if _, err := c.video.StartSegment(time.Now(), c.video.NextBaseTime()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.video.AppendPart(data, 250*time.Millisecond, p.part == 0); err != nil {
			b.Fatal(err)
		}
	}
	asked := make([]sync.WaitGroup, parts)
	done := make([]sync.WaitGroup, parts)
	for i := range parts {
		asked[i].Add(viewers)
		done[i].Add(viewers)
	}
	var failed sync.Once
	upstream0 := c.hits.total()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var viewersDone sync.WaitGroup
	for range viewers {
		viewersDone.Add(1)
		go func() {
			defer viewersDone.Done()
			w := &discardWriter{h: make(http.Header)}
			for i := range parts {
				req := httptest.NewRequest(http.MethodGet, paths[i], nil)
				clear(w.h)
				w.code, w.n = 0, 0
				asked[i].Done()
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK || w.n != partSize {
					failed.Do(func() { b.Errorf("%s: status %d, %d bytes", paths[i], w.code, w.n) })
				}
				done[i].Done()
			}
		}()
	}
	for i := range parts {
		asked[i].Wait()
		publish(at[i])
		done[i].Wait()
	}
	viewersDone.Wait()
	cpu := cpuTime() - cpu0
	b.StopTimer()
	reqs := float64(parts * viewers)
	b.ReportMetric(float64(cpu.Nanoseconds())/reqs, "cpu-ns/req")
	if edge {
		b.ReportMetric(float64(c.hits.total()-upstream0)/float64(parts), "upstream/part")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

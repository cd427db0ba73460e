package origin

import (
	"hash/maphash"
	"math"
	"math/bits"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultViewerWindow is how long a client counts as a viewer after its
// last playlist request.
const DefaultViewerWindow = 30 * time.Second

// The viewer count of a stream is a HyperLogLog sketch per time bucket: the
// window is cut into viewerBuckets buckets, a stream keeps the buckets that
// overlap the window (viewerBuckets+1 of them, in a ring), and a count is the
// estimate of the union of those buckets. A client therefore counts as a
// viewer for between the window and the window plus one bucket
// (window/viewerBuckets) after its last request.
//
// A bucket starts sparse, an exact list of the 64-bit client hashes, and
// turns into 2^viewerP one-byte registers past viewerSparseMax clients, so
// that small audiences cost little memory and are counted exactly; the
// largest a stream's state gets is (viewerBuckets+1) × 2^viewerP bytes
// (9 kB), whatever the number of clients.
const (
	viewerBuckets   = 8
	viewerP         = 10
	viewerRegisters = 1 << viewerP
	// viewerSparseMax is where a bucket turns dense: 128 hashes are the
	// registers' size.
	viewerSparseMax = viewerRegisters / 8
)

// ViewerCountError is the relative standard error of a viewer count above
// the sparse range (1.04/√2^viewerP, HyperLogLog's): 3.25%. Counts of up to
// viewerSparseMax distinct clients per bucket are exact (up to 64-bit hash
// collisions).
const ViewerCountError = 0.0325

// Viewers estimates HLS/DASH viewers per stream from playlist requests: a
// viewer is a distinct client (address and User-Agent) that fetched one of
// the stream's playlists within the window. Behind a CDN the origin sees the
// CDN's edges, not the players, so the count is of edges there; the CDN's
// own analytics count players.
//
// Observe costs O(1) and takes only its stream's lock; the memory held is
// bounded per stream (see ViewerCountError for the precision), and a stream's
// state is freed by Forget when it ends, or by a count once it has had no
// viewers for a window.
type Viewers struct {
	window time.Duration
	width  int64 // bucket width, ns
	seed   maphash.Seed

	streams sync.Map // stream name -> *streamViewers
}

// streamViewers is one stream's ring of buckets.
type streamViewers struct {
	mu      sync.Mutex
	dead    bool // removed from Viewers.streams: Observe must start over
	buckets [viewerBuckets + 1]viewerBucket
}

// viewerBucket holds the clients seen in bucket id: sparse (hashes) while
// regs is nil.
type viewerBucket struct {
	id     int64 // bucket number (time / width); 0 with no data
	used   bool
	hashes []uint64
	regs   *[viewerRegisters]uint8
}

// NewViewers returns a tracker with the given sliding window
// (DefaultViewerWindow when zero).
func NewViewers(window time.Duration) *Viewers {
	if window <= 0 {
		window = DefaultViewerWindow
	}
	width := int64(window) / viewerBuckets
	if width < 1 {
		width = 1
	}
	return &Viewers{window: window, width: width, seed: maphash.MakeSeed()}
}

// Observe records a playlist request of stream by r's client.
func (v *Viewers) Observe(stream string, r *http.Request, now time.Time) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.WriteString(host)
	h.WriteByte(0)
	h.WriteString(r.UserAgent())
	key := h.Sum64()
	id := v.bucketID(now)
	for {
		sv, ok := v.streams.Load(stream)
		if !ok {
			sv, _ = v.streams.LoadOrStore(stream, new(streamViewers))
		}
		s := sv.(*streamViewers)
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			continue
		}
		s.buckets[id%int64(len(s.buckets))].add(id, key)
		s.mu.Unlock()
		return
	}
}

func (v *Viewers) bucketID(t time.Time) int64 {
	id := t.UnixNano() / v.width
	if id < 0 {
		return 0
	}
	return id
}

// add records client hash key in the bucket, which is reset first when it
// holds an older bucket.
func (b *viewerBucket) add(id int64, key uint64) {
	if !b.used || b.id != id {
		b.id, b.used = id, true
		b.hashes = b.hashes[:0]
		if b.regs != nil {
			clear(b.regs[:])
			// Back to sparse: a dense bucket's registers are kept for
			// reuse only while the audience is large.
			b.hashes = nil
		}
	}
	if b.regs != nil {
		setRegister(b.regs, key)
		return
	}
	if slices.Contains(b.hashes, key) {
		return
	}
	if len(b.hashes) < viewerSparseMax {
		b.hashes = append(b.hashes, key)
		return
	}
	b.regs = new([viewerRegisters]uint8)
	for _, k := range b.hashes {
		setRegister(b.regs, k)
	}
	setRegister(b.regs, key)
	b.hashes = nil
}

func setRegister(regs *[viewerRegisters]uint8, key uint64) {
	j := key >> (64 - viewerP)
	rho := uint8(bits.LeadingZeros64(key<<viewerP|1<<(viewerP-1)) + 1)
	if rho > regs[j] {
		regs[j] = rho
	}
}

// count estimates the distinct clients of the buckets from first on.
func (s *streamViewers) count(first, last int64) int {
	var dense *[viewerRegisters]uint8
	var sparse []uint64
	for i := range s.buckets {
		b := &s.buckets[i]
		if !b.used || b.id < first || b.id > last {
			continue
		}
		if b.regs != nil {
			if dense == nil {
				dense = new([viewerRegisters]uint8)
			}
			for j, r := range b.regs {
				dense[j] = max(dense[j], r)
			}
			continue
		}
		sparse = append(sparse, b.hashes...)
	}
	if dense == nil {
		slices.Sort(sparse)
		return len(slices.Compact(sparse))
	}
	for _, k := range sparse {
		setRegister(dense, k)
	}
	return estimate(dense)
}

// estimate is HyperLogLog's estimate with linear counting in the small range.
func estimate(regs *[viewerRegisters]uint8) int {
	const m = float64(viewerRegisters)
	sum, zeros := 0.0, 0
	for _, r := range regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	alpha := 0.7213 / (1 + 1.079/m)
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(math.Round(e))
}

// window returns the bucket ids counted at now: those whose end is within
// the window.
func (v *Viewers) windowIDs(now time.Time) (first, last int64) {
	last = v.bucketID(now)
	first = v.bucketID(now.Add(-v.window)) // its end is after now-window
	return first, last
}

// Count returns the viewers of stream seen within the window before now.
func (v *Viewers) Count(stream string, now time.Time) int {
	sv, ok := v.streams.Load(stream)
	if !ok {
		return 0
	}
	return v.countOrDrop(stream, sv.(*streamViewers), now)
}

// countOrDrop counts s and removes it from the map when it has no viewers.
func (v *Viewers) countOrDrop(stream string, s *streamViewers, now time.Time) int {
	first, last := v.windowIDs(now)
	s.mu.Lock()
	n := s.count(first, last)
	if n == 0 {
		newest := int64(-1)
		for i := range s.buckets {
			if s.buckets[i].used {
				newest = max(newest, s.buckets[i].id)
			}
		}
		if newest < first { // nothing to come back into the window
			s.dead = true
		}
	}
	s.mu.Unlock()
	if n == 0 && s.dead {
		v.streams.CompareAndDelete(stream, s)
	}
	return n
}

// Counts returns the viewer count of every stream that has viewers.
func (v *Viewers) Counts(now time.Time) map[string]int {
	out := make(map[string]int)
	v.streams.Range(func(k, sv any) bool {
		if n := v.countOrDrop(k.(string), sv.(*streamViewers), now); n > 0 {
			out[k.(string)] = n
		}
		return true
	})
	return out
}

// Forget frees the state of stream, which has ended: its viewers count
// from zero if it is published again.
func (v *Viewers) Forget(stream string) {
	sv, ok := v.streams.LoadAndDelete(stream)
	if !ok {
		return
	}
	s := sv.(*streamViewers)
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
}

// streamsHeld is the number of streams with state.
func (v *Viewers) streamsHeld() int {
	n := 0
	v.streams.Range(func(any, any) bool { n++; return true })
	return n
}

var viewersDesc = prometheus.NewDesc("headwater_stream_viewers",
	"Distinct clients (address and User-Agent) that fetched a playlist of the stream within the viewer window.",
	[]string{"stream"}, nil)

// Describe implements prometheus.Collector.
func (v *Viewers) Describe(ch chan<- *prometheus.Desc) { ch <- viewersDesc }

// Collect implements prometheus.Collector: one sample per stream with
// viewers, so series of ended streams disappear by themselves.
func (v *Viewers) Collect(ch chan<- prometheus.Metric) {
	for name, n := range v.Counts(time.Now()) {
		ch <- prometheus.MustNewConstMetric(viewersDesc, prometheus.GaugeValue, float64(n), name)
	}
}

package origin

import (
	"hash/maphash"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultViewerWindow is how long a client counts as a viewer after its
// last playlist request.
const DefaultViewerWindow = 30 * time.Second

// maxViewersPerStream bounds the memory one stream's viewer set may take.
const maxViewersPerStream = 100_000

// Viewers estimates HLS/DASH viewers per stream from playlist requests: a
// viewer is a distinct client (address and User-Agent) that fetched one of
// the stream's playlists within the window. Behind a CDN the origin sees the
// CDN's edges, not the players, so the count is of edges there; the CDN's
// own analytics count players.
type Viewers struct {
	window time.Duration
	seed   maphash.Seed

	mu      sync.Mutex
	streams map[string]map[uint64]time.Time // stream -> client hash -> last seen
}

// NewViewers returns a tracker with the given sliding window
// (DefaultViewerWindow when zero).
func NewViewers(window time.Duration) *Viewers {
	if window <= 0 {
		window = DefaultViewerWindow
	}
	return &Viewers{window: window, seed: maphash.MakeSeed(), streams: make(map[string]map[uint64]time.Time)}
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

	v.mu.Lock()
	defer v.mu.Unlock()
	set := v.streams[stream]
	if set == nil {
		set = make(map[uint64]time.Time)
		v.streams[stream] = set
	}
	if _, ok := set[key]; !ok && len(set) >= maxViewersPerStream {
		v.expireLocked(set, now)
		if len(set) >= maxViewersPerStream {
			return
		}
	}
	set[key] = now
}

// Count returns the viewers of stream seen within the window before now.
func (v *Viewers) Count(stream string, now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	set := v.streams[stream]
	v.expireLocked(set, now)
	if len(set) == 0 {
		delete(v.streams, stream)
	}
	return len(set)
}

// Counts returns the viewer count of every stream that has viewers.
func (v *Viewers) Counts(now time.Time) map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]int, len(v.streams))
	for name, set := range v.streams {
		v.expireLocked(set, now)
		if len(set) == 0 {
			delete(v.streams, name)
			continue
		}
		out[name] = len(set)
	}
	return out
}

func (v *Viewers) expireLocked(set map[uint64]time.Time, now time.Time) {
	cutoff := now.Add(-v.window)
	for k, seen := range set {
		if seen.Before(cutoff) {
			delete(set, k)
		}
	}
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

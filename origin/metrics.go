package origin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// object labels, the values of the "object" metric label.
type object uint8

const (
	objectOther object = iota
	objectMultivariant
	objectMediaPlaylist
	objectInit
	objectSegment
	objectPart
	objectHealth
	objectMPD
	objectTime
	objectKey
	objectDVR
	objectVOD
	objectPoster
	numObjects
)

var objectNames = [numObjects]string{"other", "multivariant", "media_playlist", "init", "segment", "part", "health", "mpd", "time", "key", "dvr_playlist", "vod", "poster"}

// String is the label value of o.
func (o object) String() string { return objectNames[o] }

// commonStatuses get pre-resolved counters; others go through the vector.
var commonStatuses = [...]int{200, 204, 206, 304, 400, 404, 405, 412, 416, 500, 503}

// statusSlot is code's index in commonStatuses, or -1.
func statusSlot(code int) int {
	for i, c := range commonStatuses {
		if c == code {
			return i
		}
	}
	return -1
}

// Metrics are the origin's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	blocking prometheus.Histogram
	bytes    *prometheus.CounterVec
	refused  *prometheus.CounterVec

	// Children resolved once, so that the hot path does no label hashing.
	reqByStatus [numObjects][len(commonStatuses)]prometheus.Counter
	durBy       [numObjects]prometheus.Observer
	bytesBy     [numObjects]prometheus.Counter
}

// NewMetrics creates the origin metrics and registers them on reg (which
// may be nil for unregistered metrics):
//
//   - headwater_origin_requests_total{object,status}
//   - headwater_origin_request_duration_seconds{object}
//   - headwater_origin_blocking_wait_seconds
//   - headwater_origin_response_bytes_total{object}
//   - headwater_origin_connections_refused_total{reason}
//
// object is one of multivariant, media_playlist, mpd, time, init, segment,
// part, key (HLS key files), health, other; status is the numeric HTTP
// status. reason is too_many_connections_per_address (the only one: a
// connection over origin.max_connections_per_address, closed at accept;
// the global origin.max_connections makes connections wait instead). When
// reg already holds these collectors (NewMetrics called twice
// on one registry), those are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_origin_requests_total",
			Help: "HTTP requests served by the origin, by object type and status code.",
		}, []string{"object", "status"})),
		duration: metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "headwater_origin_request_duration_seconds",
			Help:    "Time to serve origin requests, blocking waits included, by object type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"object"})),
		blocking: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headwater_origin_blocking_wait_seconds",
			Help:    "Time LL-HLS blocking playlist reloads and blocking part/segment requests waited for their object to appear.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 3, 4, 6, 10},
		})),
		bytes: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_origin_response_bytes_total",
			Help: "Response body bytes written by the origin, by object type.",
		}, []string{"object"})),
		refused: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_origin_connections_refused_total",
			Help: "Connections the origin closed at accept, by reason (too_many_connections_per_address: origin.max_connections_per_address).",
		}, []string{"reason"})),
	}
	// Resolved after registration, so that they belong to the collectors
	// reg holds. The refusal series exists (at 0) before the first one.
	m.refused.WithLabelValues(reasonPerAddress)
	for o := object(0); o < numObjects; o++ {
		for i, code := range commonStatuses {
			m.reqByStatus[o][i] = m.requests.WithLabelValues(o.String(), strconv.Itoa(code))
		}
		m.durBy[o] = m.duration.WithLabelValues(o.String())
		m.bytesBy[o] = m.bytes.WithLabelValues(o.String())
	}
	return m
}

// reasonPerAddress is the reason label of a connection refused by
// origin.max_connections_per_address.
const reasonPerAddress = "too_many_connections_per_address"

// refuse counts a connection closed at accept.
func (m *Metrics) refuse(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// observe records one request: its object, status, duration and body bytes.
func (m *Metrics) observe(o object, status int, seconds float64, n int64) {
	if m == nil {
		return
	}
	if i := statusSlot(status); i >= 0 {
		m.reqByStatus[o][i].Inc()
	} else {
		m.requests.WithLabelValues(o.String(), strconv.Itoa(status)).Inc()
	}
	m.durBy[o].Observe(seconds)
	if n > 0 {
		m.bytesBy[o].Add(float64(n))
	}
}

// observeWait records the time a blocking request waited.
func (m *Metrics) observeWait(seconds float64) {
	if m == nil {
		return
	}
	m.blocking.Observe(seconds)
}

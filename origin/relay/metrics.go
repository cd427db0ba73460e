package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Upstream error reasons, the values of the reason label.
const (
	reasonConnect  = "connect"   // the owner could not be reached (dial, reset before headers)
	reasonTimeout  = "timeout"   // no response headers, or no body bytes, within ResponseTimeout
	reasonStatus   = "status"    // an unexpected status (403, 5xx other than 503)
	reasonBody     = "body"      // the body broke off (an aborted live segment included)
	reasonTooLarge = "too_large" // a body over maxBody
)

// relayMetrics are the relay's Prometheus metrics; children are resolved
// once so that the request path does no label hashing. A nil
// *relayMetrics is never used: New always builds one.
type relayMetrics struct {
	upstream  [numKinds]prometheus.Counter
	collapsed [numKinds]prometheus.Counter
	latency   [numKinds]prometheus.Observer
	hits      prometheus.Counter
	bytes     prometheus.Gauge
	errors    *prometheus.CounterVec
	held      [2]prometheus.Counter // by heldResumed, heldTimeout
}

// Indexes of relayMetrics.held.
const (
	heldResumed = iota
	heldTimeout
)

func newMetrics(reg prometheus.Registerer) *relayMetrics {
	upstream := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headwater_relay_upstream_requests_total",
		Help: "Requests this node sent to the origin of the node owning a stream, by object kind.",
	}, []string{"kind"}))
	collapsed := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headwater_relay_collapsed_total",
		Help: "Relayed requests answered by joining an upstream request already in flight, by object kind.",
	}, []string{"kind"}))
	latency := metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "headwater_relay_upstream_duration_seconds",
		Help:    "Time from sending an upstream request to its response headers (blocking requests wait on the owner), by object kind.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"kind"}))
	m := &relayMetrics{
		hits: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_relay_cache_hits_total",
			Help: "Relayed immutable objects (init, segment, part) served from the relay's memory cache.",
		})),
		bytes: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_relay_cache_bytes",
			Help: "Bytes held by the relay's cache of immutable objects (bodies and keys).",
		})),
		errors: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_relay_upstream_errors_total",
			Help: "Failed upstream requests, by reason (connect, timeout, status, body, too_large).",
		}, []string{"reason"})),
	}
	held := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headwater_relay_held_total",
		Help: "Playlist requests for a recently relayed stream held while its owner was unreachable or gone, by outcome (resumed: a new owner answered; timeout: none did within block_timeout).",
	}, []string{"outcome"}))
	m.held[heldResumed] = held.WithLabelValues(outcomeResumed)
	m.held[heldTimeout] = held.WithLabelValues(outcomeTimeout)
	for k := Kind(0); k < numKinds; k++ {
		m.upstream[k] = upstream.WithLabelValues(k.String())
		m.collapsed[k] = collapsed.WithLabelValues(k.String())
		m.latency[k] = latency.WithLabelValues(k.String())
	}
	for _, r := range []string{reasonConnect, reasonTimeout, reasonStatus, reasonBody, reasonTooLarge} {
		m.errors.WithLabelValues(r)
	}
	return m
}

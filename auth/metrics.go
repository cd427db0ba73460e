package auth

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Metrics are the authentication metrics:
//
//	headwater_auth_refusals_total{protocol,reason}          refused publishes by Reason
//	headwater_auth_webhook_notifications_dropped_total      unpublish notifications dropped (too many in flight)
//
// A nil *Metrics records nothing.
type Metrics struct {
	refusals *prometheus.CounterVec
	dropped  prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil leaves them
// unregistered); collectors already registered under the same names are
// reused. The refusal series of the given protocols are created at zero.
func NewMetrics(reg prometheus.Registerer, protocols ...string) *Metrics {
	m := &Metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_auth_refusals_total",
			Help: "Publishes refused by authentication, by ingest protocol and reason.",
		}, []string{"protocol", "reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_auth_webhook_notifications_dropped_total",
			Help: "Unpublish webhook notifications dropped because too many were in flight.",
		}),
	}
	if reg != nil {
		m.refusals = metrics.Register(reg, m.refusals)
		m.dropped = metrics.Register(reg, m.dropped)
	}
	for _, p := range protocols {
		for _, r := range Reasons {
			m.refusals.WithLabelValues(p, string(r))
		}
	}
	return m
}

// Refused counts a refusal.
func (m *Metrics) Refused(protocol string, reason Reason) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(protocol, string(reason)).Inc()
}

func (m *Metrics) droppedNotification() {
	if m != nil {
		m.dropped.Inc()
	}
}

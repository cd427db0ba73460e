package cluster

import (
	"github.com/headwater-live/headwater/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// newNodeMetrics registers the node's collectors on reg (nil: unregistered).
func newNodeMetrics(reg prometheus.Registerer) *nodeMetrics {
	m := &nodeMetrics{
		connected: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_cluster_nats_connected",
			Help: "1 while the node is connected to NATS, 0 otherwise.",
		})),
		reconnects: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_cluster_nats_reconnects_total",
			Help: "Reconnections to NATS after a lost connection.",
		})),
		claims: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_cluster_placement_claims_total",
			Help: "Placement claims by result: claimed, refused (owned by a live node elsewhere) or failed (JetStream error or unavailable).",
		}, []string{"result"})),
		lost: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_cluster_placement_lost_total",
			Help: "Placement entries of this node found owned by another node at heartbeat (taken over after they expired).",
		})),
		published: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_cluster_events_published_total",
			Help: "Lifecycle events stored by JetStream, by kind.",
		}, []string{"kind"})),
		dropped: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_cluster_events_dropped_total",
			Help: "Lifecycle events dropped, by reason: buffer_full, publish_failed or closed.",
		}, []string{"reason"})),
	}
	m.connected.Set(0)
	for _, r := range []string{claimOK, claimRefused, claimFailed} {
		m.claims.WithLabelValues(r)
	}
	for _, r := range []string{dropBufferFull, dropPublishFailed, dropClosed} {
		m.dropped.WithLabelValues(r)
	}
	return m
}

package spool

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Label values of the spool's metrics.
const (
	resultOK       = "ok"
	resultError    = "error"
	dropCap        = "cap"        // the spool was over its cap
	dropUnreadable = "unreadable" // the entry's files could not be read
	dropSync       = "sync"       // the entry's files could not be synced
	opRead         = "read"
	opRemove       = "remove"
	opSync         = "sync"
)

// spoolMetrics are the spool's Prometheus metrics (docs/operations.md,
// "Recording storage").
type spoolMetrics struct {
	entries        prometheus.Gauge
	bytes          prometheus.Gauge
	uploads        *prometheus.CounterVec
	duration       prometheus.Histogram
	droppedEntries *prometheus.CounterVec
	droppedBytes   *prometheus.CounterVec
	errors         *prometheus.CounterVec
	commitDuration prometheus.Histogram
}

// newMetrics registers the spool's metrics on reg (none when reg is nil).
func newMetrics(reg prometheus.Registerer) *spoolMetrics {
	return &spoolMetrics{
		entries: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_record_spool_entries",
			Help: "Recorded objects waiting in the spool to be stored, those being uploaded included.",
		})),
		bytes: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_record_spool_bytes",
			Help: "Bytes of the recorded objects waiting in the spool.",
		})),
		uploads: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_uploads_total",
			Help: "Uploads of spooled objects to the recording backend, by result (ok, error).",
		}, []string{"result"})),
		duration: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headwater_record_upload_duration_seconds",
			Help:    "Time a successful upload of a spooled object took.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		})),
		droppedEntries: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_dropped_entries_total",
			Help: "Spooled objects dropped without being stored, by reason (cap, unreadable, sync).",
		}, []string{"reason"})),
		droppedBytes: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_dropped_bytes_total",
			Help: "Bytes of the spooled objects dropped without being stored, by reason (cap, unreadable, sync).",
		}, []string{"reason"})),
		errors: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_spool_errors_total",
			Help: "Errors of the spool's own disk, by operation (read: an entry could not be read; remove: a stored entry's file could not be removed; sync: a commit's syncfs, or a file's or the directory's fsync, failed).",
		}, []string{"op"})),
		commitDuration: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headwater_record_spool_commit_duration_seconds",
			Help:    "Time a commit of the spool took to make its batch of new objects durable (one syncfs of the spool's file system); its count is the commits.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		})),
	}
}

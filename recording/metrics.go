package recording

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

type recorderMetrics struct {
	active      prometheus.Gauge
	segments    prometheus.Counter
	missed      prometheus.Counter
	bytes       prometheus.Counter
	writeErrors prometheus.Counter
	deleted     *prometheus.CounterVec
	deletedB    prometheus.Counter
}

func newRecorderMetrics(reg prometheus.Registerer) *recorderMetrics {
	return &recorderMetrics{
		active: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_record_sessions", Help: "Sessions being recorded now.",
		})),
		segments: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_record_segments_total", Help: "Segments (and gaps) recorded, every rendition.",
		})),
		missed: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_record_missed_segments_total", Help: "Segments the recorder could not get before the store dropped them (recorded as gaps).",
		})),
		bytes: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_record_bytes_total", Help: "Media bytes handed to the spool.",
		})),
		writeErrors: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_record_spool_write_errors_total", Help: "Objects the recorder could not write to the spool (its disk).",
		})),
		deleted: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_deleted_sessions_total", Help: "Recorded sessions deleted, by reason (api, retention_age, retention_bytes).",
		}, []string{"reason"})),
		deletedB: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_record_deleted_bytes_total", Help: "Bytes of recorded objects deleted.",
		})),
	}
}

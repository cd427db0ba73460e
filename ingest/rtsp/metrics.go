package rtsp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Metrics are the RTSP-specific metrics, in addition to the shared ingest
// metrics (headwater_ingest_*{protocol="rtsp"}):
//
//	headwater_rtsp_source_state{source}             1 while a pull source is connected and publishing, else 0
//	headwater_rtsp_source_reconnects_total{source}  reconnection attempts of a pull source
//	headwater_rtsp_readers                          RTSP reader sessions currently open
//	headwater_rtsp_reader_overflows_total           times a reader's send queue overflowed (it then skips to the next key frame)
//	headwater_rtsp_packets_lost_total               RTP packets lost by publishers and sources (sequence gaps)
//	headwater_rtsp_decode_errors_total              RTP packets that could not be turned into frames
//
// The source series exist from Start for every configured source, so that
// their cardinality is the configuration's.
type Metrics struct {
	sourceState      *prometheus.GaugeVec
	sourceReconnects *prometheus.CounterVec
	// Readers is the number of open reader sessions (headwater_rtsp_readers).
	Readers prometheus.Gauge
	// ReaderOverflows counts reader send-queue overflows.
	ReaderOverflows prometheus.Counter
	// PacketsLost counts RTP packets lost on the way in.
	PacketsLost prometheus.Counter
	// DecodeErrors counts RTP packets that could not be decoded.
	DecodeErrors prometheus.Counter
}

// NewMetrics creates the RTSP metrics and registers them on reg. A nil reg
// leaves them unregistered. When reg already holds RTSP metrics (NewMetrics
// called twice on one registry), those are returned.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sourceState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "headwater_rtsp_source_state",
			Help: "1 while an RTSP pull source is connected and publishing, 0 otherwise.",
		}, []string{"source"}),
		sourceReconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_rtsp_source_reconnects_total",
			Help: "Reconnection attempts of an RTSP pull source.",
		}, []string{"source"}),
		Readers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headwater_rtsp_readers",
			Help: "RTSP reader sessions currently open.",
		}),
		ReaderOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_rtsp_reader_overflows_total",
			Help: "Times an RTSP reader's send queue overflowed; the reader then resumes at the next key frame.",
		}),
		PacketsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_rtsp_packets_lost_total",
			Help: "RTP packets lost by RTSP publishers and pull sources.",
		}),
		DecodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_rtsp_decode_errors_total",
			Help: "RTP packets from RTSP publishers and pull sources that could not be decoded.",
		}),
	}
	return metrics.Register(reg, m)
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sourceState, m.sourceReconnects, m.Readers, m.ReaderOverflows, m.PacketsLost, m.DecodeErrors}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

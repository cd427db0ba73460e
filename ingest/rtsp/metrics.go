package rtsp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
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

	all ingest.Collectors // every metric above
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics creates the RTSP metrics and registers them on reg. A nil reg
// leaves them unregistered. When reg already holds RTSP metrics (NewMetrics
// called twice on one registry), those are returned.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sourceState: ingest.NewGaugeVec("headwater_rtsp_source_state",
			"1 while an RTSP pull source is connected and publishing, 0 otherwise.", "source"),
		sourceReconnects: ingest.NewCounterVec("headwater_rtsp_source_reconnects_total",
			"Reconnection attempts of an RTSP pull source.", "source"),
		Readers: ingest.NewGauge("headwater_rtsp_readers",
			"RTSP reader sessions currently open."),
		ReaderOverflows: ingest.NewCounter("headwater_rtsp_reader_overflows_total",
			"Times an RTSP reader's send queue overflowed; the reader then resumes at the next key frame."),
		PacketsLost: ingest.NewCounter("headwater_rtsp_packets_lost_total",
			"RTP packets lost by RTSP publishers and pull sources."),
		DecodeErrors: ingest.NewCounter("headwater_rtsp_decode_errors_total",
			"RTP packets from RTSP publishers and pull sources that could not be decoded."),
	}
	m.all = ingest.Collectors{m.sourceState, m.sourceReconnects, m.Readers, m.ReaderOverflows, m.PacketsLost, m.DecodeErrors}
	return metrics.Register(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.all.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.all.Collect(ch) }

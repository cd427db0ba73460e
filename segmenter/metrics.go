package segmenter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Reasons for which the segmenter drops a frame (the reason label of
// headwater_segmenter_frames_dropped_total).
const (
	DropBeforeKeyframe   = "before_keyframe"   // video before the first key frame (or after a codec change)
	DropNonMonotonicDTS  = "non_monotonic_dts" // DTS lower than the previous frame's of the track
	DropUnknownTrack     = "unknown_track"     // frame without a track or codec
	DropUnsupportedCodec = "unsupported_codec" // codec the segmenter cannot package
	DropEmptyPayload     = "empty_payload"     // frame without payload
	DropInitError        = "init_error"        // codec parameters that make no init segment
	DropStoreError       = "store_error"       // the store refused the segment
	// DropGapSegment: a transcoded rendition's frames that fall in a
	// segment listed as a gap (the GOP at the segment's start is missing,
	// Writer.Gap; a segment is either media from its start or a gap).
	DropGapSegment = "gap_segment"
)

var dropReasons = []string{
	DropBeforeKeyframe, DropNonMonotonicDTS, DropUnknownTrack, DropUnsupportedCodec,
	DropEmptyPayload, DropInitError, DropStoreError, DropGapSegment,
}

// Metrics are the segmenter's Prometheus metrics. One Metrics is shared by
// all segmenters of a process.
type Metrics struct {
	segments        *prometheus.CounterVec
	parts           *prometheus.CounterVec
	segmentDuration prometheus.Histogram
	partLatency     prometheus.Histogram
	// firstPartLatency: first key frame received → its part servable, once per track and publish
	firstPartLatency prometheus.Histogram
	dropped          *prometheus.CounterVec

	drops map[string]prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (if not nil).
// Registering on a registry that already holds them reuses the registered
// collectors, so NewMetrics may be called more than once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		segments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_segments_total",
			Help: "CMAF segments completed, by track kind.",
		}, []string{"kind"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_parts_total",
			Help: "CMAF chunks (LL-HLS parts) written, by track kind.",
		}, []string{"kind"}),
		segmentDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headwater_segment_duration_seconds",
			Help:    "Duration of the completed segments.",
			Buckets: []float64{0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 30},
		}),
		partLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "headwater_part_publish_latency_seconds",
			Help: "Time from the arrival at ingest of a part's last frame to the part being servable.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03,
				0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		firstPartLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headwater_first_part_latency_seconds",
			Help:    "Time from the arrival at ingest of a publish's first key frame (first frame for audio) to its first part being servable, per track.",
			Buckets: []float64{0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2, 5},
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_segmenter_frames_dropped_total",
			Help: "Frames the segmenter dropped, by reason.",
		}, []string{"reason"}),
	}
	m.segments = metrics.Register(reg, m.segments)
	m.parts = metrics.Register(reg, m.parts)
	m.segmentDuration = metrics.Register(reg, m.segmentDuration)
	m.partLatency = metrics.Register(reg, m.partLatency)
	m.firstPartLatency = metrics.Register(reg, m.firstPartLatency)
	m.dropped = metrics.Register(reg, m.dropped)
	m.drops = make(map[string]prometheus.Counter, len(dropReasons))
	for _, r := range dropReasons {
		m.drops[r] = m.dropped.WithLabelValues(r)
	}
	return m
}

// drop counts a frame dropped for reason.
func (m *Metrics) drop(reason string) {
	c, ok := m.drops[reason]
	if !ok {
		c = m.dropped.WithLabelValues(reason)
	}
	c.Inc()
}

package ingest

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"

	"github.com/headwater-live/headwater/media"
)

// Reason is the reason label of headwater_ingest_errors_total: why an ingest
// session (or connection) failed. The set is fixed so that the metric's
// cardinality stays small; anything unexpected is ReasonInternal.
type Reason string

// Error reasons shared by every ingest protocol.
const (
	// ReasonHandshake: the protocol handshake failed (garbage, truncated,
	// wrong version, timed out before completing).
	ReasonHandshake Reason = "handshake"
	// ReasonProtocol: the peer violated the protocol after the handshake
	// (malformed messages, limits exceeded, unexpected commands).
	ReasonProtocol Reason = "protocol"
	// ReasonTimeout: the peer went silent for longer than the idle timeout,
	// or did not start publishing (or reading) by the publish deadline.
	ReasonTimeout Reason = "timeout"
	// ReasonUnsupportedCodec: the peer sent a codec Headwater does not ingest.
	ReasonUnsupportedCodec Reason = "unsupported_codec"
	// ReasonAlreadyPublishing: the stream name is already live.
	ReasonAlreadyPublishing Reason = "already_publishing"
	// ReasonTooManyPublishers: a publisher limit (per protocol or global) was reached.
	ReasonTooManyPublishers Reason = "too_many_publishers"
	// ReasonInvalidName: the stream name is not acceptable.
	ReasonInvalidName Reason = "invalid_name"
	// ReasonBadApp: the application / path part of the URL is not served.
	ReasonBadApp Reason = "bad_app"
	// ReasonUnauthorized: publish authentication refused the publisher
	// (headwater_auth_refusals_total has the auth reason), or a reader
	// (SRT m=request, RTSP DESCRIBE/SETUP) lacked a valid playback token.
	ReasonUnauthorized Reason = "unauthorized"
	// ReasonRateLimited: the address opened more connections than the
	// per-address limit allows.
	ReasonRateLimited Reason = "rate_limited"
	// ReasonTooManyConnections: a limit of concurrent connections (in all
	// or per address) was reached: the connection was refused at accept or
	// at the handshake.
	ReasonTooManyConnections Reason = "too_many_connections"
	// ReasonResourceLimit: the peer exceeded a per-connection resource
	// limit (bytes of partial messages, chunk streams, buffered media
	// before the publish started).
	ReasonResourceLimit Reason = "resource_limit"
	// ReasonInternal: a bug (recovered panic) or an unexpected server-side error.
	ReasonInternal Reason = "internal"
)

// Reasons lists every Reason, in a stable order.
var Reasons = []Reason{
	ReasonHandshake, ReasonProtocol, ReasonTimeout, ReasonUnsupportedCodec,
	ReasonAlreadyPublishing, ReasonTooManyPublishers, ReasonInvalidName,
	ReasonBadApp, ReasonUnauthorized, ReasonRateLimited, ReasonTooManyConnections,
	ReasonResourceLimit, ReasonInternal,
}

// PublishReason maps an error of media.Registry.Publish to a Reason.
func PublishReason(err error) Reason {
	switch {
	case errors.Is(err, media.ErrAlreadyPublishing):
		return ReasonAlreadyPublishing
	case errors.Is(err, media.ErrTooManyStreams):
		return ReasonTooManyPublishers
	case errors.Is(err, media.ErrInvalidName):
		return ReasonInvalidName
	}
	return ReasonInternal
}

// Metrics are the ingest metrics, shared by all protocols and told apart by
// their protocol label:
//
//	headwater_ingest_bytes_total{protocol}          bytes received from publishers (wire bytes)
//	headwater_ingest_frames_total{protocol,kind}    frames written to streams (kind: video, audio)
//	headwater_ingest_errors_total{protocol,reason}  failed sessions/connections by Reason
//	headwater_ingest_sessions{protocol}             publishing sessions currently live
//	headwater_ingest_connections_total{protocol}    connections accepted
type Metrics struct {
	bytes       *prometheus.CounterVec
	frames      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	sessions    *prometheus.GaugeVec
	connections *prometheus.CounterVec
}

// NewMetrics creates the ingest metrics and registers them on reg. A nil reg
// leaves them unregistered (tests, tools). When reg already holds collectors
// of the same names (NewMetrics called twice on one registry), those are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bytes: NewCounterVec("headwater_ingest_bytes_total",
			"Bytes received from publishers, protocol overhead included.", "protocol"),
		frames: NewCounterVec("headwater_ingest_frames_total",
			"Frames (access units) written to live streams.", "protocol", "kind"),
		errors: NewCounterVec("headwater_ingest_errors_total",
			"Ingest connections or sessions that ended in an error, by reason.", "protocol", "reason"),
		sessions: NewGaugeVec("headwater_ingest_sessions",
			"Publishing sessions currently live.", "protocol"),
		connections: NewCounterVec("headwater_ingest_connections_total",
			"Ingest connections accepted.", "protocol"),
	}
	if reg != nil {
		m.bytes = metrics.Register(reg, m.bytes)
		m.frames = metrics.Register(reg, m.frames)
		m.errors = metrics.Register(reg, m.errors)
		m.sessions = metrics.Register(reg, m.sessions)
		m.connections = metrics.Register(reg, m.connections)
	}
	return m
}

// Protocol returns the metrics of one protocol ("rtmp", "srt", "rtsp") with
// their label values bound, so that the hot path does no label lookups. Every
// error reason and frame kind is initialised to zero so that the series exist
// before the first event.
func (m *Metrics) Protocol(protocol string) *ProtocolMetrics {
	p := &ProtocolMetrics{
		Bytes:       m.bytes.WithLabelValues(protocol),
		Connections: m.connections.WithLabelValues(protocol),
		Sessions:    m.sessions.WithLabelValues(protocol),
		video:       m.frames.WithLabelValues(protocol, media.KindVideo.String()),
		audio:       m.frames.WithLabelValues(protocol, media.KindAudio.String()),
		errors:      make(map[Reason]prometheus.Counter, len(Reasons)),
	}
	for _, r := range Reasons {
		p.errors[r] = m.errors.WithLabelValues(protocol, string(r))
	}
	return p
}

// ProtocolMetrics are the ingest metrics of one protocol. Safe for concurrent use.
type ProtocolMetrics struct {
	// Bytes counts bytes received (headwater_ingest_bytes_total).
	Bytes prometheus.Counter
	// Connections counts accepted connections (headwater_ingest_connections_total).
	Connections prometheus.Counter
	// Sessions is the number of live publishing sessions (headwater_ingest_sessions).
	Sessions prometheus.Gauge

	video, audio prometheus.Counter
	errors       map[Reason]prometheus.Counter // read-only after construction
}

// Frame counts one frame of the given kind.
func (p *ProtocolMetrics) Frame(kind media.Kind) {
	switch kind {
	case media.KindVideo:
		p.video.Inc()
	case media.KindAudio:
		p.audio.Inc()
	}
}

// Error counts one failure. A reason outside Reasons counts as ReasonInternal.
func (p *ProtocolMetrics) Error(r Reason) {
	c, ok := p.errors[r]
	if !ok {
		c = p.errors[ReasonInternal]
	}
	c.Inc()
}

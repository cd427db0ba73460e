package srt

import (
	"sync"

	gosrt "github.com/datarhei/gosrt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/metrics"
)

// Directions of the per-stream SRT counters.
const (
	dirReceive = "receive" // a publisher's connection: packets we receive
	dirSend    = "send"    // read-out connections: packets we send
)

// Rejection reasons of headwater_srt_rejections_total.
const (
	rejectStreamID   = "streamid"           // empty, malformed or invalid name
	rejectVersion    = "version"            // HSv4 caller (no streamid)
	rejectPassphrase = "passphrase"         // wrong passphrase
	rejectEncryption = "encryption"         // encryption expected and missing, or unexpected
	rejectBusy       = "already_publishing" // the name is live
	rejectLimit      = "limit"              // too many publishers or readers
	rejectNotFound   = "not_found"          // read of a stream that is not live
	rejectInternal   = "internal"           // accepting failed
	rejectAuth       = "unauthorized"       // publish authentication or read token refused
	rejectRate       = "rate_limited"       // too many connections from the address
)

var rejectReasons = []string{
	rejectStreamID, rejectVersion, rejectPassphrase, rejectEncryption,
	rejectBusy, rejectLimit, rejectNotFound, rejectInternal, rejectAuth, rejectRate,
}

// Metrics are the SRT-specific metrics, in addition to the shared ingest
// metrics:
//
//	headwater_srt_rtt_seconds{stream}                          publisher link round-trip time
//	headwater_srt_receive_buffer_seconds{stream}               publisher data held in the receive buffer
//	headwater_srt_packets_lost_total{stream,direction}         packets detected lost (receive) / reported lost (send)
//	headwater_srt_packets_retransmitted_total{stream,direction} retransmitted packets received / sent
//	headwater_srt_packets_dropped_total{stream,direction}      packets dropped as too late
//	headwater_srt_demux_errors_total                           MPEG-TS decoding errors (the stream goes on)
//	headwater_srt_rejections_total{reason}                     connection requests refused at the handshake
//	headwater_srt_readers                                      read-out connections currently open
//
// The per-stream series are refreshed from the connections' statistics
// when the registry is scraped and deleted when the stream's last SRT
// connection ends (direction receive: its publisher; send: its last
// reader), so their cardinality follows the live streams. Metrics is a
// prometheus.Collector.
type Metrics struct {
	rtt        *prometheus.GaugeVec
	recvBuffer *prometheus.GaugeVec
	lost       *prometheus.CounterVec
	retrans    *prometheus.CounterVec
	dropped    *prometheus.CounterVec

	// DemuxErrors counts MPEG-TS decoding errors (headwater_srt_demux_errors_total).
	DemuxErrors prometheus.Counter
	// Readers is the number of open read-out connections (headwater_srt_readers).
	Readers    prometheus.Gauge
	rejections *prometheus.CounterVec
	all        ingest.Collectors // every metric above

	mu    sync.Mutex
	conns map[*connStats]struct{}
	refs  map[streamDir]int
}

var _ prometheus.Collector = (*Metrics)(nil)

type streamDir struct{ stream, dir string }

// statser is the part of a gosrt connection the metrics read.
type statser interface {
	Stats(*gosrt.Statistics)
}

// connStats is one connection's statistics, guarded by Metrics.mu.
type connStats struct {
	conn    statser
	key     streamDir
	stats   gosrt.Statistics
	lost    uint64
	retrans uint64
	dropped uint64
}

// NewMetrics creates the SRT metrics and registers them on reg. A nil reg
// leaves them unregistered. When reg already holds SRT metrics (NewMetrics
// called twice on one registry), those are returned.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"stream", "direction"}
	m := &Metrics{
		rtt: ingest.NewGaugeVec("headwater_srt_rtt_seconds",
			"Round-trip time of the SRT link of a stream's publisher.", "stream"),
		recvBuffer: ingest.NewGaugeVec("headwater_srt_receive_buffer_seconds",
			"Media time held in the SRT receive buffer of a stream's publisher.", "stream"),
		lost: ingest.NewCounterVec("headwater_srt_packets_lost_total",
			"SRT data packets lost: detected missing (receive) or reported lost by readers (send).", labels...),
		retrans: ingest.NewCounterVec("headwater_srt_packets_retransmitted_total",
			"SRT data packets retransmitted: received from publishers (receive) or sent to readers (send).", labels...),
		dropped: ingest.NewCounterVec("headwater_srt_packets_dropped_total",
			"SRT data packets dropped for arriving or leaving too late.", labels...),
		DemuxErrors: ingest.NewCounter("headwater_srt_demux_errors_total",
			"MPEG-TS decoding errors in SRT publishes (the stream goes on)."),
		Readers: ingest.NewGauge("headwater_srt_readers",
			"SRT read-out connections currently open."),
		rejections: ingest.NewCounterVec("headwater_srt_rejections_total",
			"SRT connection requests refused at the handshake, by reason.", "reason"),
		conns: make(map[*connStats]struct{}),
		refs:  make(map[streamDir]int),
	}
	for _, r := range rejectReasons {
		m.rejections.WithLabelValues(r)
	}
	m.all = ingest.Collectors{m.rtt, m.recvBuffer, m.lost, m.retrans, m.dropped, m.DemuxErrors, m.Readers, m.rejections}
	return metrics.Register(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.all.Describe(ch) }

// Collect implements prometheus.Collector: it refreshes the per-stream
// series from the live connections first.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.Refresh()
	m.all.Collect(ch)
}

// Refresh reads the statistics of every live connection into the series.
func (m *Metrics) Refresh() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for cs := range m.conns {
		m.refreshLocked(cs)
	}
}

func (m *Metrics) refreshLocked(cs *connStats) {
	cs.conn.Stats(&cs.stats)
	acc := &cs.stats.Accumulated
	var lost, retrans, dropped uint64
	if cs.key.dir == dirReceive {
		lost, retrans, dropped = acc.PktRecvLoss, acc.PktRecvRetrans, acc.PktRecvDrop
		in := &cs.stats.Instantaneous
		m.rtt.WithLabelValues(cs.key.stream).Set(in.MsRTT / 1000)
		m.recvBuffer.WithLabelValues(cs.key.stream).Set(float64(in.MsRecvBuf) / 1000)
	} else {
		lost, retrans, dropped = acc.PktSendLoss, acc.PktRetrans, acc.PktSendDrop
	}
	add := func(v *prometheus.CounterVec, now uint64, last *uint64) {
		if now > *last {
			v.WithLabelValues(cs.key.stream, cs.key.dir).Add(float64(now - *last))
		}
		*last = now
	}
	add(m.lost, lost, &cs.lost)
	add(m.retrans, retrans, &cs.retrans)
	add(m.dropped, dropped, &cs.dropped)
}

// track starts following a connection's statistics; the returned function
// stops it and, for the stream's last connection of that direction,
// deletes the stream's series.
func (m *Metrics) track(conn statser, stream, dir string) (untrack func()) {
	cs := &connStats{conn: conn, key: streamDir{stream, dir}}
	m.mu.Lock()
	m.conns[cs] = struct{}{}
	m.refs[cs.key]++
	// Create the series now so that they exist before the first scrape.
	m.lost.WithLabelValues(stream, dir)
	m.retrans.WithLabelValues(stream, dir)
	m.dropped.WithLabelValues(stream, dir)
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			delete(m.conns, cs)
			m.refs[cs.key]--
			if m.refs[cs.key] > 0 {
				return
			}
			delete(m.refs, cs.key)
			m.lost.DeleteLabelValues(stream, dir)
			m.retrans.DeleteLabelValues(stream, dir)
			m.dropped.DeleteLabelValues(stream, dir)
			if dir == dirReceive {
				m.rtt.DeleteLabelValues(stream)
				m.recvBuffer.DeleteLabelValues(stream)
			}
		})
	}
}

func (m *Metrics) reject(reason string) {
	m.rejections.WithLabelValues(reason).Inc()
}

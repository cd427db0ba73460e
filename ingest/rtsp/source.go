package rtsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Ends of a source connection that are not failures.
var (
	errIdle   = errors.New("no readers")
	errKicked = errors.New("kicked")
)

// source is a pull source: an RTSP URL read with PLAY and published under
// its name. Its goroutine (run) owns the connection; gortsplib's goroutines
// only hand packets to the publisher and signal it.
type source struct {
	srv     *Server
	cfg     Source
	url     *base.URL
	safeURL string // without credentials nor query values
	log     *slog.Logger

	state      prometheus.Gauge
	reconnects prometheus.Counter

	wake       chan struct{} // demand signals (on-demand sources), capacity 1
	lastDemand atomic.Int64  // unix nanoseconds of the last Demand

	// run goroutine only
	down   bool // a failure was reported and the source has not been live since
	warned map[string]bool
	mu     sync.Mutex // guards warned, written by gortsplib goroutines too
}

func newSource(s *Server, c Source) (*source, error) {
	u, err := parseSourceURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", c.Name, err)
	}
	bu, err := base.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("source %s: invalid url %s", c.Name, redactURL(u))
	}
	src := &source{
		srv:        s,
		cfg:        c,
		url:        bu,
		safeURL:    redactURL(u),
		state:      s.rm.sourceState.WithLabelValues(c.Name),
		reconnects: s.rm.sourceReconnects.WithLabelValues(c.Name),
		wake:       make(chan struct{}, 1),
		warned:     make(map[string]bool),
	}
	src.state.Set(0)
	src.log = s.log.With("source", c.Name, "stream", c.Name, "url", src.safeURL)
	return src, nil
}

func (src *source) warnOnce(key, msg string, args ...any) {
	src.mu.Lock()
	seen := src.warned[key]
	src.warned[key] = true
	src.mu.Unlock()
	if !seen {
		src.log.Warn(msg, args...)
	}
}

// demand records that someone wants the stream and wakes an idle
// on-demand source.
func (src *source) demand() {
	src.lastDemand.Store(time.Now().UnixNano())
	select {
	case src.wake <- struct{}{}:
	default:
	}
}

// wanted tells whether the source should be connected: always for an
// always-on source; for an on-demand one while it has RTSP readers or was
// demanded less than OnDemandLinger ago.
func (src *source) wanted() bool {
	if !src.cfg.OnDemand {
		return true
	}
	if src.srv.readerCount(src.cfg.Name) > 0 {
		return true
	}
	last := src.lastDemand.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < src.srv.cfg.OnDemandLinger
}

// backoff is the delay before the n-th (1-based) retry: minBackoff doubled
// each time up to maxBackoff, minus up to a quarter of it (jitter).
func (src *source) backoff(n int) time.Duration {
	d := src.srv.minBackoff
	for i := 1; i < n && d < src.srv.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, src.srv.maxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

// sleep waits d, or returns false when the server closes.
func (src *source) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-src.srv.life.Done():
		return false
	}
}

func (src *source) run() {
	defer src.state.Set(0)
	mode := "always-on"
	if src.cfg.OnDemand {
		mode = "on-demand"
	}
	src.log.Info("rtsp: source configured", "mode", mode, "transport", src.cfg.Transport)
	failures := 0
	for {
		if src.cfg.OnDemand && !src.wanted() {
			src.log.Debug("rtsp: on-demand source idle, waiting for readers")
			select {
			case <-src.srv.life.Done():
				return
			case <-src.wake:
			}
			failures = 0
			continue
		}
		res := src.connect(failures)
		if src.srv.isClosed() {
			return
		}
		if errors.Is(res.err, errIdle) {
			src.log.Info("rtsp: on-demand source disconnected: no readers", "linger", src.srv.cfg.OnDemandLinger)
			failures, src.down = 0, false
			continue
		}
		if res.live >= src.srv.stableAfter {
			failures = 0
		}
		failures++
		delay := src.backoff(failures)
		src.report(res, failures, delay)
		if !src.sleep(delay) {
			return
		}
		if src.cfg.OnDemand && !src.wanted() {
			src.down = false
			continue // nobody waits any more: stay idle until the next demand
		}
		src.reconnects.Inc()
	}
}

// connResult is how one connection of a source ended.
type connResult struct {
	err       error
	published bool
	live      time.Duration // how long it published
}

// report logs a connection's end: once per change of state, at debug
// level for the retries of a source that is down.
func (src *source) report(res connResult, attempt int, delay time.Duration) {
	attrs := []any{"err", fmt.Errorf("rtsp %s: %w", src.safeURL, res.err), "retry_in", delay.Round(time.Millisecond)}
	switch {
	case errors.Is(res.err, errKicked):
		src.log.Info("rtsp: source kicked; reconnecting", "retry_in", delay.Round(time.Millisecond))
		return
	case res.published:
		src.log.Warn("rtsp: source lost", append(attrs, "live", res.live.Round(time.Millisecond))...)
	case !src.down:
		src.log.Warn("rtsp: source unreachable; retrying with backoff", attrs...)
	default:
		src.log.Debug("rtsp: source still unreachable", append(attrs, "attempt", attempt)...)
		return
	}
	src.down = true
	var se *ingest.SessionError
	switch {
	case errors.As(res.err, &se):
		src.srv.metrics.Error(se.Reason)
	case ingest.IsTimeout(res.err) || isClientTimeout(res.err):
		src.srv.metrics.Error(ingest.ReasonTimeout)
	}
}

func isClientTimeout(err error) bool {
	var tcp liberrors.ErrClientTCPTimeout
	var udp liberrors.ErrClientUDPTimeout
	var req liberrors.ErrClientRequestTimedOut
	return errors.As(err, &tcp) || errors.As(err, &udp) || errors.As(err, &req)
}

// protocolOf maps a source's transport to gortsplib's; nil lets gortsplib
// try UDP, then TCP.
func protocolOf(transport string) *gortsplib.Protocol {
	var p gortsplib.Protocol
	switch transport {
	case TransportTCP:
		p = gortsplib.ProtocolTCP
	case TransportUDP:
		p = gortsplib.ProtocolUDP
	default:
		return nil
	}
	return &p
}

// connect runs one connection: DESCRIBE, SETUP, PLAY, then publishes until
// the connection fails, the stream is kicked, the server closes or (on
// demand) nobody reads it any more.
func (src *source) connect(failures int) (res connResult) {
	s := src.srv
	id := ingest.NewSessionID()
	log := src.log.With("session", id)
	c := &gortsplib.Client{
		Scheme:       src.url.Scheme,
		Host:         src.url.Host,
		Protocol:     protocolOf(src.cfg.Transport),
		ReadTimeout:  s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout,
		OnTransportSwitch: func(err error) {
			log.Info("rtsp: source transport switched", "why", err)
		},
		OnPacketsLost: func(n uint64) { s.rm.PacketsLost.Add(float64(n)) },
		OnDecodeError: func(err error) {
			s.rm.DecodeErrors.Inc()
			src.warnOnce("decode", "rtsp: undecodable packets from the source (logged once)", "err", err)
		},
		OnResponse: func(res *base.Response) {
			if sdpPanics(res.Body) {
				src.warnOnce("sdp-panic", "rtsp: emptying a source's SDP that crashes gortsplib's parser")
				res.Body = nil
			}
		},
	}
	if err := c.Start(); err != nil {
		return connResult{err: err}
	}
	// Close the client when the server closes, even in the middle of a request.
	closedBySrv := make(chan struct{})
	stopWatch := context.AfterFunc(s.life.Context(), func() {
		c.Close()
		close(closedBySrv)
	})
	defer func() {
		if !stopWatch() {
			<-closedBySrv
		}
		c.Close()
	}()

	desc, _, err := c.Describe(src.url)
	if err != nil {
		return connResult{err: fmt.Errorf("describe: %w", err)}
	}
	plans, ignored := planTracks(desc)
	if len(plans) == 0 {
		return connResult{err: ingest.Fail(ingest.ReasonUnsupportedCodec, "no supported track (H.264, H.265, MPEG-4 audio, Opus): %v", ignored)}
	}
	for _, ig := range ignored {
		src.warnOnce("ignored "+ig, "rtsp: ignoring a track of the source", "track", ig)
	}
	for _, p := range plans {
		if _, err := c.Setup(desc.BaseURL, p.media, 0, 0); err != nil {
			return connResult{err: fmt.Errorf("setup: %w", err)}
		}
	}
	info := media.PublishInfo{Protocol: Protocol, RemoteAddr: src.url.Host, SessionID: id}
	pub, err := newPublisher(s, src.cfg.Name, info, log, plans)
	if err != nil {
		return connResult{err: err}
	}
	published := make(chan struct{})
	kicked := make(chan struct{})
	var stopKick func() bool
	pub.onPublished = func(st *media.Stream) {
		src.state.Set(1)
		stopKick = context.AfterFunc(st.Context(), func() { close(kicked) })
		close(published)
	}
	defer func() {
		pub.mu.Lock() // onPublished ran under it
		stop := stopKick
		pub.mu.Unlock()
		if stop != nil && !stop() {
			<-kicked // the kick fired: let it finish
		}
		pub.close()
		src.state.Set(0)
	}()
	for _, t := range pub.tracks {
		m := t.plan.media
		c.OnPacketRTP(m, t.plan.format, func(pkt *rtp.Packet) {
			pts, ok := c.PacketPTS(m, pkt)
			_ = pub.handle(t, pkt, pts, ok) // a fatal error closes pub.failed
		})
		c.OnPacketRTCP(m, func(pkt rtcp.Packet) { pub.handleRTCP(t, pkt) })
	}
	if _, err := c.Play(nil); err != nil {
		return connResult{err: fmt.Errorf("play: %w", err)}
	}
	transport := ""
	if tr := c.Transport(); tr != nil && tr.Session != nil {
		transport = tr.Session.Protocol.String()
	}
	log.Debug("rtsp: source playing", "transport", transport, "tracks", len(plans))

	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	defer func() {
		c.Close()
		if err := <-waitErr; err != nil {
			log.Debug("rtsp: source client ended", "error", err)
		}
	}()
	var lingerC <-chan time.Time
	if src.cfg.OnDemand {
		t := time.NewTicker(min(sourceLingerCheckPeriod, s.cfg.OnDemandLinger))
		defer t.Stop()
		lingerC = t.C
	}
	var liveSince time.Time
	defer func() {
		if !liveSince.IsZero() {
			res.published, res.live = true, time.Since(liveSince)
		}
	}()
	for {
		select {
		case err := <-waitErr:
			waitErr <- err // for the deferred drain
			return connResult{err: err}
		case <-pub.failed:
			return connResult{err: pub.failure()}
		case <-kicked:
			return connResult{err: errKicked}
		case <-published:
			published = nil
			liveSince = time.Now()
			if src.down {
				log.Info("rtsp: source live again", "attempts", failures, "transport", transport)
				src.down = false
			} else {
				log.Info("rtsp: source live", "transport", transport)
			}
		case <-lingerC:
			if !src.wanted() {
				return connResult{err: errIdle}
			}
		case <-s.life.Done():
			return connResult{err: s.life.Context().Err()}
		}
	}
}

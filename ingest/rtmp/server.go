// Package rtmp is Headwater's RTMP ingest: it accepts publishers (OBS,
// ffmpeg, hardware encoders) on rtmp://host/<app>/<key>, turns their FLV
// audio/video messages into media.Frames and publishes them as the stream
// "<app>/<key>" on an ingest.Registry (a *media.Registry).
//
// Video is H.264 (classic FLV), or H.264, H.265 or AV1 with enhanced RTMP
// FourCC tags (enhanced.go); audio is AAC. Any other codec ends the session.
// H.264 and H.265 payloads are handed over as FLV carries them (AVCC, 4-byte
// NAL unit lengths; other length sizes are rewritten); AAC payloads are raw
// access units whose timestamps are regenerated from the sample count.
//
// # Protocol implementation
//
// Everything is this package's own, small, bounded and fuzzed: the
// handshake (handshake.go: S2 echoes C1 for the simple handshake; the
// digest handshake of Flash-era and librtmp clients is answered with the
// FMS keys), the chunk reader, the AMF0 codec and the command handling.
// gomedia's go-rtmp was probed and dropped (docs/decisions.md): on untrusted
// input its chunk reader spins forever on a zero-length message or a Set
// Chunk Size of 0, it panics on malformed AMF, hides the sequence headers,
// and its handshake's S2 does not echo C1 (librtmp clients such as OBS log
// "client signature does not match").
package rtmp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/headwater-live/headwater/ingest"
)

// Protocol is the protocol label and media.PublishInfo.Protocol of RTMP sessions.
const Protocol = "rtmp"

// Server is an RTMP ingest server.
type Server struct {
	cfg     Config
	pub     ingest.Registry
	metrics *ingest.ProtocolMetrics
	log     *slog.Logger

	// life ends on Close; its Context bounds publish authorisations in progress.
	life       *ingest.Lifecycle
	publishers *ingest.Slots // MaxPublishers

	// testHookPublished, when set (tests only), sees each session that published.
	testHookPublished func(*session)

	connLimit *ingest.ConnLimiter // nil: no limit
	conns     *ingest.ConnCap     // concurrent connections of both listeners; nil: no limit

	mu    sync.Mutex
	ln    net.Listener
	tlsLn net.Listener // RTMPS, nil when off
}

// New returns a server publishing to pub. Zero fields of cfg take their
// defaults; m may be nil (metrics are then kept but not registered), and so
// may log.
func New(cfg Config, pub ingest.Registry, m *ingest.Metrics, log *slog.Logger) *Server {
	if m == nil {
		m = ingest.NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	full := cfg.withDefaults()
	return &Server{
		cfg:        full,
		pub:        pub,
		metrics:    m.Protocol(Protocol),
		log:        log,
		life:       ingest.NewLifecycle(Protocol),
		publishers: ingest.NewSlots(full.MaxPublishers),
		connLimit:  ingest.NewConnLimiter(cfg.MaxConnectionsPerMinute),
		conns:      ingest.NewConnCap(cfg.MaxConnections, cfg.MaxConnectionsPerAddress),
	}
}

// Start listens on Config.Address and serves connections in the background.
func (s *Server) Start() error {
	return s.life.Start(func() error {
		ln, err := net.Listen("tcp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("rtmp: listen: %w", err)
		}
		var tlsLn net.Listener
		if s.cfg.TLSAddress != "" && s.cfg.TLSConfig != nil {
			tl, err := net.Listen("tcp", s.cfg.TLSAddress)
			if err != nil {
				_ = ln.Close()
				return fmt.Errorf("rtmps: listen: %w", err)
			}
			tlsLn = tls.NewListener(tl, s.cfg.TLSConfig)
			s.life.Go(func() { s.acceptLoop(tlsLn) })
			s.log.Info("rtmps: listening", "address", tl.Addr().String(), "app", s.cfg.App)
		}
		s.mu.Lock()
		s.ln, s.tlsLn = ln, tlsLn
		s.mu.Unlock()
		s.life.Go(func() { s.acceptLoop(ln) })
		s.log.Info("rtmp: listening", "address", ln.Addr().String(), "app", s.cfg.App)
		return nil
	})
}

// TLSAddr is the RTMPS listening address, nil when RTMPS is off or before Start.
func (s *Server) TLSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Addr is the listening address, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops listening, drops every connection (closing their streams) and
// waits for all of the server's goroutines to end. It is idempotent.
func (s *Server) Close() error {
	return s.life.Close(func() error {
		s.mu.Lock()
		ln, tlsLn := s.ln, s.tlsLn
		s.mu.Unlock()
		if tlsLn != nil {
			_ = tlsLn.Close()
		}
		if ln == nil {
			return nil
		}
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("rtmp: close: %w", err)
		}
		return nil
	})
}

func (s *Server) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.life.Closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("rtmp: accept failed", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.life.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.metrics.Connections.Inc()
		if !s.connLimit.Allow(c.RemoteAddr()) {
			s.metrics.Error(ingest.ReasonTooManyPublishers)
			s.log.Debug("rtmp: connection refused: too many from this address", "remote", c.RemoteAddr().String(),
				"per_minute", s.cfg.MaxConnectionsPerMinute)
			_ = c.Close()
			continue
		}
		release, err := s.conns.Acquire(c.RemoteAddr())
		if err != nil {
			s.metrics.Error(ingest.ReasonTooManyConnections)
			s.log.Debug("rtmp: connection refused", "remote", c.RemoteAddr().String(),
				"reason", string(ingest.ReasonTooManyConnections), "err", err)
			_ = c.Close()
			continue
		}
		if !s.life.Serve(c, func() {
			defer release()
			newSession(s, c).run()
		}) {
			release()
		}
	}
}

// serveConn runs a session on an already established connection (tests and
// fuzzing use net.Pipe) and returns when it ends.
func (s *Server) serveConn(c net.Conn) {
	done := make(chan struct{})
	if s.life.Serve(c, func() {
		defer close(done)
		newSession(s, c).run()
	}) {
		<-done
	}
}

// SetMaxPublishers changes the publisher limit (a configuration reload).
// Sessions already publishing are kept even when they exceed the new limit.
func (s *Server) SetMaxPublishers(n int) {
	s.publishers.SetLimit(n)
}

// Package rtmp is Headwater's RTMP ingest: it accepts publishers (OBS,
// ffmpeg, hardware encoders) on rtmp://host/<app>/<key>, turns their FLV
// audio/video messages into media.Frames and publishes them as the stream
// "<app>/<key>" on an ingest.Registry (a *media.Registry).
//
// Only H.264 video and AAC audio are ingested; any other codec ends the
// session. Video payloads are handed over exactly as FLV carries them (AVCC,
// 4-byte NAL unit lengths) without conversion; AAC payloads are raw access
// units whose timestamps are regenerated from the sample count.
//
// # Protocol implementation
//
// The handshake is done by gomedia's go-rtmp (github.com/yapingcat/gomedia),
// fed exactly C0C1 and C2. Its message layer is not used: on untrusted input
// its chunk reader spins forever on a zero-length message or a Set Chunk Size
// of 0, accepts any chunk size, panics on malformed AMF or on a publish
// without arguments, ignores onMetaData, hides the sequence headers, and its
// frame callbacks convert AVCC to Annex-B in place and prepend ADTS headers
// to AAC, which Headwater would have to undo. The chunk reader, AMF0 codec
// and command handling here are small, bounded and fuzzed instead.
package rtmp

import (
	"context"
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

	done chan struct{} // closed by Close
	// ctx ends on Close: it bounds publish authorisations in progress.
	ctx       context.Context
	cancelCtx context.CancelFunc
	wg        sync.WaitGroup

	// testHookPublished, when set (tests only), sees each session that published.
	testHookPublished func(*session)

	connLimit *ingest.ConnLimiter // nil: no limit

	mu         sync.Mutex
	ln         net.Listener
	tlsLn      net.Listener // RTMPS, nil when off
	conns      map[net.Conn]struct{}
	closed     bool
	publishers int
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg.withDefaults(),
		pub:       pub,
		metrics:   m.Protocol(Protocol),
		log:       log,
		done:      make(chan struct{}),
		ctx:       ctx,
		cancelCtx: cancel,
		connLimit: ingest.NewConnLimiter(cfg.MaxConnectionsPerMinute),
		conns:     make(map[net.Conn]struct{}),
	}
}

// Start listens on Config.Address and serves connections in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("rtmp: server closed")
	}
	if s.ln != nil {
		return errors.New("rtmp: server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("rtmp: listen: %w", err)
	}
	if s.cfg.TLSAddress != "" && s.cfg.TLSConfig != nil {
		tl, err := net.Listen("tcp", s.cfg.TLSAddress)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("rtmps: listen: %w", err)
		}
		s.tlsLn = tls.NewListener(tl, s.cfg.TLSConfig)
		s.wg.Add(1)
		go s.acceptLoop(s.tlsLn)
		s.log.Info("rtmps: listening", "address", tl.Addr().String(), "app", s.cfg.App)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop(ln)
	s.log.Info("rtmp: listening", "address", ln.Addr().String(), "app", s.cfg.App)
	return nil
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
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	s.cancelCtx()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	if s.tlsLn != nil {
		_ = s.tlsLn.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("rtmp: close: %w", err)
	}
	return nil
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("rtmp: accept failed", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
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
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

// track registers a connection (and a goroutine on wg) unless the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) serve(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	newSession(s, c).run()
}

// serveConn runs a session on an already established connection (tests and
// fuzzing use net.Pipe) and returns when it ends.
func (s *Server) serveConn(c net.Conn) {
	if !s.track(c) {
		_ = c.Close()
		return
	}
	defer s.wg.Done()
	s.serve(c)
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// SetMaxPublishers changes the publisher limit (a configuration reload).
// Sessions already publishing are kept even when they exceed the new limit.
func (s *Server) SetMaxPublishers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.MaxPublishers = n
}

// acquirePublisher takes one of the MaxPublishers slots.
func (s *Server) acquirePublisher() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxPublishers > 0 && s.publishers >= s.cfg.MaxPublishers {
		return false
	}
	s.publishers++
	return true
}

func (s *Server) releasePublisher() {
	s.mu.Lock()
	s.publishers--
	s.mu.Unlock()
}

package origin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/netutil"

	"github.com/headwater-live/headwater/internal/connlimit"
)

// Server runs the origin handler on an http.Server with the configured
// timeouts and limits (MaxConnections concurrent connections at most), over
// TLS (with HTTP/2) when a certificate is set. A connection from an
// address already holding MaxConnectionsPerAddress is closed at accept.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	srv     *http.Server
	ctx     context.Context
	cancel  context.CancelFunc

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
}

// ServerOption configures a Server.
type ServerOption func(*Server)

// WithServerMetrics counts the connections the server refuses in m (the
// handler's Metrics, typically).
func WithServerMetrics(m *Metrics) ServerOption {
	return func(s *Server) { s.metrics = m }
}

// NewServer prepares a server for h. cfg's zero fields take their defaults.
func NewServer(cfg Config, h http.Handler, log *slog.Logger, opts ...ServerOption) *Server {
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, ctx: ctx, cancel: cancel}
	for _, o := range opts {
		o(s)
	}
	s.srv = &http.Server{
		Addr:              cfg.Address,
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// Requests derive from ctx, which Shutdown cancels first so that
		// blocking reloads answer at once instead of holding it up.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.WriteTimeout <= cfg.BlockTimeout {
		log.Warn("origin write timeout does not exceed the block timeout: blocking requests may be cut",
			"write_timeout", cfg.WriteTimeout, "block_timeout", cfg.BlockTimeout)
	}
	return s
}

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("origin: server already started")
	}
	if s.ctx.Err() != nil {
		return http.ErrServerClosed
	}
	useTLS := s.cfg.TLSCert != "" || s.cfg.TLSKey != ""
	if useTLS {
		if s.cfg.TLSCert == "" || s.cfg.TLSKey == "" {
			return errors.New("origin: TLS needs both a certificate and a key")
		}
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("origin: load TLS key pair: %w", err)
		}
		// ServeTLS adds "h2" and "http/1.1" to NextProtos: HTTP/2 is
		// negotiated through ALPN.
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	// Per address inside the global limit, so that a refused connection
	// never holds one of its slots.
	ln = connlimit.PerAddress(ln, s.cfg.MaxConnectionsPerAddress, s.refused)
	if n := s.cfg.MaxConnections; n > 0 {
		// Further connections wait in the kernel's listen backlog until one
		// closes, so a flood cannot exhaust file descriptors or memory.
		ln = netutil.LimitListener(ln, n)
	}
	s.ln = ln
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		var err error
		if useTLS {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("origin server stopped", "err", err)
		}
	}()
	s.log.Info("origin: listening", "address", ln.Addr().String(), "tls", useTLS, "max_connections", s.cfg.MaxConnections,
		"max_connections_per_address", s.cfg.MaxConnectionsPerAddress)
	return nil
}

// refused counts (and, once per address a minute, logs) a connection
// closed at accept by MaxConnectionsPerAddress.
func (s *Server) refused(remote net.Addr, err error, log bool) {
	s.metrics.refuse(reasonPerAddress)
	if log {
		s.log.Warn("origin: connection refused (further refusals of this address are not logged for a minute)",
			"remote", connlimit.AddrIP(remote).String(), "reason", reasonPerAddress, "err", err)
	}
}

// Addr is the address listened on (useful with port 0), nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting connections, ends blocked LL-HLS requests (they
// answer 503) and aborts segments being streamed (see the package doc), and
// waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	err := s.srv.Shutdown(ctx)
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done != nil && err == nil {
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	return err
}

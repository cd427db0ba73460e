package server

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/preview"
)

// The admin listener: /metrics, /healthz, /readyz, the status API and the
// preview page, behind the admin token when one is configured.

// Admin request limits: the admin API reads no request body (DELETE kicks a
// publisher by name), and its headers are small.
const (
	adminMaxHeaderBytes = 16 << 10
	adminMaxBodyBytes   = 1 << 10
)

// Admin HTTP timeouts (not configurable: the admin API answers at once).
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 120 * time.Second
)

// newAdmin builds the admin HTTP server; nil when admin.address is "".
func (s *Server) newAdmin() (*http.Server, error) {
	if s.cfg.Admin.Address == "" {
		return nil, nil
	}
	srv := &http.Server{
		Handler:           s.sec.wrapAdmin(s.adminHandler()),
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if err := configureAdmin(srv, s.cfg.Admin); err != nil {
		return nil, err
	}
	return srv, nil
}

// configureAdmin applies the admin listener's limits and TLS to srv.
func configureAdmin(srv *http.Server, c config.AdminConfig) error {
	srv.MaxHeaderBytes = adminMaxHeaderBytes
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > adminMaxBodyBytes {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, adminMaxBodyBytes)
		next.ServeHTTP(w, r)
	})
	tc, err := loadTLS("admin", c.TLSCert, c.TLSKey)
	if err != nil {
		return err
	}
	srv.TLSConfig = tc
	return nil
}

// adminHandler routes the admin paths.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/api/", api.New(s.registry, s.store, s.viewers, s.cfg.Segmenter.Window, s.log))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() || !s.abr.ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// The preview page: "/" lists the streams and plays one from the origin.
	mux.Handle("/", preview.Handler(preview.Config{OriginAddr: s.OriginAddr, OriginScheme: originScheme(s.cfg)}))
	return mux
}

// originScheme is "https" when the origin serves TLS, "" (the page's own
// scheme) otherwise.
func originScheme(cfg *config.Config) string {
	if cfg.Origin.TLSEnabled() {
		return "https"
	}
	return ""
}

// serveAdmin serves srv on ln, over TLS when srv has a TLS configuration.
func serveAdmin(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// limitListener accepts at most n connections at a time (n <= 0: no limit);
// further connections wait in the kernel's listen backlog until one closes.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, n)
}

package server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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
		Handler:           probeReserve(s.sec.wrapAdmin(guardMutations(s.adminHandler(), s.cfg.Admin, s.sec.admin != nil))),
		ConnContext:       markReserved,
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
	var apiOpts []api.Option
	if s.cl != nil {
		apiOpts = append(apiOpts, api.WithCluster(s.cl.clusterStreams))
	}
	if s.rec != nil {
		apiOpts = append(apiOpts, api.WithRecordings(s.rec.rec))
	}
	if s.sw != nil {
		apiOpts = append(apiOpts, api.WithAlwaysOn(s.alwaysOnStatus))
	}
	mux.Handle("/api/", api.New(s.registry, s.store, s.viewers, s.cfg.Segmenter.Window, s.log, apiOpts...))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() || !s.abr.ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		// A node cut off from the cluster still ingests and serves its
		// own streams: it stays ready, and says why it is degraded.
		if ok, reason := s.cl.health(); !ok {
			_, _ = w.Write([]byte("ready, degraded: " + reason + "\n"))
			return
		}
		// Recording storage failing is not a reason to stop ingest: the
		// spool holds what is recorded meanwhile.
		if ok, reason := s.rec.health(); !ok {
			_, _ = w.Write([]byte("ready, degraded: " + reason + "\n"))
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

// guardMutations refuses the admin API's mutating requests (every method
// but GET, HEAD and OPTIONS: DELETE /api/v1/streams/... kicks a publisher)
// from clients other than loopback when no admin token is configured
// (with one, wrapAdmin already requires it on every request), unless
// admin.insecure_remote_mutations opts in.
func guardMutations(h http.Handler, c config.AdminConfig, tokenSet bool) http.Handler {
	if tokenSet || c.InsecureRemoteMutations {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !loopbackClient(r) {
				w.Header().Set("Cache-Control", "no-store")
				http.Error(w, "forbidden: mutating admin requests from other hosts than loopback need admin.bearer_token_file", http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackClient reports whether the request's connection comes from a
// loopback address.
func loopbackClient(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// adminProbeReserve is the number of connections the admin listener
// accepts beyond admin.max_connections for health probes only, so that a
// kubelet's probe (a new connection each time) is answered when the API,
// /metrics or the preview page hold every regular connection.
const adminProbeReserve = 4

// limitListener accepts at most n connections at a time (n <= 0: no
// limit), plus adminProbeReserve connections that may only ask for
// /healthz or /readyz (probeReserve). When both are taken, further
// connections wait in the kernel's listen backlog until one closes.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return &capListener{Listener: ln, regular: make(chan struct{}, n), reserve: make(chan struct{}, adminProbeReserve),
		done: make(chan struct{})}
}

// capListener is limitListener's listener: a slot is taken before Accept
// and given back when the connection closes.
type capListener struct {
	net.Listener
	regular, reserve chan struct{} // taken slots
	done             chan struct{} // closed by Close
	closeOnce        sync.Once
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// Accept waits for a free slot, regular ones first, then accepts.
func (l *capListener) Accept() (net.Conn, error) {
	var slots chan struct{}
	select {
	case l.regular <- struct{}{}:
		slots = l.regular
	default:
		select {
		case l.regular <- struct{}{}:
			slots = l.regular
		case l.reserve <- struct{}{}:
			slots = l.reserve
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-slots
		return nil, err
	}
	cc := &capConn{Conn: c, release: func() { <-slots }}
	if slots == l.reserve {
		return &reservedConn{cc}, nil
	}
	return cc, nil
}

// capConn gives its slot back once, on the first Close.
type capConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// reservedConn is a connection on a probe reserve slot.
type reservedConn struct{ *capConn }

// reservedKey marks the context of a request on a reservedConn.
type reservedKey struct{}

// markReserved is the admin server's ConnContext: it marks requests on
// probe reserve connections (over TLS too).
func markReserved(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if _, ok := c.(*reservedConn); ok {
		return context.WithValue(ctx, reservedKey{}, true)
	}
	return ctx
}

// probeReserve answers requests on probe reserve connections: /healthz
// and /readyz are served, anything else gets 503; either way the
// connection closes after the response, giving its slot back.
func probeReserve(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(reservedKey{}) == nil {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "admin listener busy (admin.max_connections); only /healthz and /readyz are served", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

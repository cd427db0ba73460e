package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/net/netutil"

	"github.com/headwater-live/headwater/config"
)

// Admin request limits: the admin API reads no request body (DELETE kicks a
// publisher by name), and its headers are small.
const (
	adminMaxHeaderBytes = 16 << 10
	adminMaxBodyBytes   = 1 << 10
)

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

// serveAdmin serves srv on ln, over TLS when srv has a TLS configuration.
func serveAdmin(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// loadTLS loads the certificate of a listener; nil when cert is "".
func loadTLS(section, cert, key string) (*tls.Config, error) {
	if cert == "" && key == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s: load TLS key pair: %w", section, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// RTMPSAddr is the RTMPS listener's address, nil when RTMPS is disabled.
func (s *Server) RTMPSAddr() net.Addr {
	if s.rtmp == nil {
		return nil
	}
	return s.rtmp.TLSAddr()
}

// limitListener accepts at most n connections at a time (n <= 0: no limit);
// further connections wait in the kernel's listen backlog until one closes.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, n)
}

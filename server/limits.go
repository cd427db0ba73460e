package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"

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

// limitListener accepts at most n connections at a time (n <= 0: no limit);
// further connections wait in the kernel's backlog until one closes.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// RTMPSAddr is the RTMPS listener's address, nil when RTMPS is disabled.
func (s *Server) RTMPSAddr() net.Addr {
	if s.rtmp == nil {
		return nil
	}
	return s.rtmp.TLSAddr()
}

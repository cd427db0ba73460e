package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/store"
)

func TestServerHTTP2OverTLS(t *testing.T) {
	certFile, keyFile, cert := testpeer.SelfSignedFiles(t)
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	cfg := Config{Address: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, Gzip: true}
	srv := NewServer(cfg, NewHandler(cfg, f.st, nil, nil), nil)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	base := "https://" + srv.Addr().String()
	for _, path := range []string{"/healthz", "/live/key/video/part1.1.m4s", "/live/key/video/index.m3u8"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("%s: %s %d, want HTTP/2 200 (%q)", path, resp.Proto, resp.StatusCode, body)
		}
	}
	// HTTP/1.1 clients still work.
	tr1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer tr1.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr1}).Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Errorf("HTTP/1.1 client: %s %d", resp.Proto, resp.StatusCode)
	}
}

func TestServerConfig(t *testing.T) {
	if err := NewServer(Config{Address: "127.0.0.1:0", TLSCert: "only-cert.pem"}, http.NotFoundHandler(), nil).Start(); err == nil {
		t.Error("started with a certificate and no key")
	}
	if err := NewServer(Config{Address: "127.0.0.1:0", TLSCert: "nope.pem", TLSKey: "nope.key"}, http.NotFoundHandler(), nil).Start(); err == nil {
		t.Error("started with missing key files")
	}
	s := NewServer(Config{Address: "127.0.0.1:0"}, http.NotFoundHandler(), nil)
	if s.Addr() != nil {
		t.Error("address before Start")
	}
	if s.srv.ReadHeaderTimeout != 5*time.Second || s.srv.ReadTimeout != 10*time.Second || s.srv.WriteTimeout != 30*time.Second ||
		s.srv.IdleTimeout != 120*time.Second || s.srv.MaxHeaderBytes != 16384 {
		t.Errorf("server not configured with the defaults: %+v", s.srv)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("started twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	d := DefaultConfig()
	if !d.Gzip || d.Address != ":8080" || d.BlockTimeout != 6*time.Second || d.Window != 6 ||
		len(d.CORSAllowedOrigins) != 1 || d.CORSAllowedOrigins[0] != "*" ||
		d.Cache != (CacheConfig{24 * time.Hour, time.Second, 2 * time.Second, 6 * time.Second, time.Second, 60 * time.Second}) {
		t.Errorf("defaults: %+v", d)
	}
	if c := (Config{Cache: CacheConfig{NotFoundMaxAge: -1}}).WithDefaults().WithDefaults(); c.Cache.NotFoundMaxAge >= 0 {
		t.Errorf("negative max-age not kept: %v", c.Cache.NotFoundMaxAge)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	f := newFixture(t, Config{Gzip: true, BlockTimeout: 10 * time.Millisecond}, store.Config{})
	f.h.m = m
	seg := f.get("/live/key/video/seg1.m4s")
	f.get("/live/key/video/seg1.m4s")
	f.get("/live/key/video/part9.0.m4s")
	f.get("/live/key/video/index.m3u8?_HLS_msn=3&_HLS_part=2") // times out
	f.get("/live/key/index.m3u8")
	f.get("/healthz")
	f.do(http.MethodPost, "/x")

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range families {
		byName[mf.GetName()] = mf
	}
	counter := func(name string, labels map[string]string) float64 {
		mf := byName[name]
		if mf == nil {
			t.Fatalf("no metric %s", name)
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return float64(m.Histogram.GetSampleCount())
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"headwater_origin_requests_total", map[string]string{"object": "segment", "status": "200"}, 2},
		{"headwater_origin_requests_total", map[string]string{"object": "part", "status": "404"}, 1},
		{"headwater_origin_requests_total", map[string]string{"object": "media_playlist", "status": "503"}, 1},
		{"headwater_origin_requests_total", map[string]string{"object": "multivariant", "status": "200"}, 1},
		{"headwater_origin_requests_total", map[string]string{"object": "health", "status": "200"}, 1},
		{"headwater_origin_requests_total", map[string]string{"object": "other", "status": "405"}, 1},
		{"headwater_origin_request_duration_seconds", map[string]string{"object": "segment"}, 2},
		{"headwater_origin_blocking_wait_seconds", nil, 1},
		{"headwater_origin_response_bytes_total", map[string]string{"object": "segment"}, float64(2 * len(seg.body))},
	}
	for _, c := range checks {
		if got := counter(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "/") {
					t.Errorf("%s has a path-like label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

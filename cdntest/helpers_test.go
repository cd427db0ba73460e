package cdntest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	dto "github.com/prometheus/client_model/go"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
)

// repoRoot is the repository root: go test runs in the package directory.
const repoRoot = ".."

// testServer is a Headwater instance on loopback port-0 listeners (as in
// server/helpers_test.go).
type testServer struct {
	*server.Server
	logs *testpeer.LogBuffer
}

func startServer(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	testpeer.RequireBinary(t, "install it (apt-get install -y ffmpeg); scripts/test.sh does", "ffmpeg")
	cfg := loopbackConfig()
	cfg.Log.Level = "info"
	if mutate != nil {
		mutate(cfg)
	}
	logs := &testpeer.LogBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	testpeer.Serve(t, srv, logs)
	return &testServer{Server: srv, logs: logs}
}

// loopbackConfig is the default configuration with every listener on a
// loopback port 0, so that tests never collide with each other or with a
// running Headwater. Listeners whose keys are not in the configuration yet
// (SRT, RTSP) are set when they are.
func loopbackConfig() *config.Config {
	cfg := config.Default()
	cfg.RTMP.Address = "127.0.0.1:0"
	cfg.Origin.Address = "127.0.0.1:0"
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.SRT.Address = "127.0.0.1:0"
	cfg.RTSP.Address = "127.0.0.1:0"
	cfg.RTSP.UDPRTPAddress, cfg.RTSP.UDPRTCPAddress = "", ""
	return cfg
}

func (s *testServer) rtmpURL(key string) string {
	return fmt.Sprintf("rtmp://%s/live/%s", s.RTMPAddr(), key)
}

func (s *testServer) originURL(path string) string {
	return fmt.Sprintf("http://%s%s", s.OriginAddr(), path)
}

// originRequests sums headwater_origin_requests_total over the series whose
// object label is one of objects (all but "health" when none is given).
func (s *testServer) originRequests(t *testing.T, objects ...string) float64 {
	t.Helper()
	families, err := s.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "headwater_origin_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if matchObject(m, objects) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func matchObject(m *dto.Metric, objects []string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() != "object" {
			continue
		}
		if len(objects) == 0 {
			return l.GetValue() != "health"
		}
		for _, o := range objects {
			if l.GetValue() == o {
				return true
			}
		}
	}
	return false
}

// edge is Debian's nginx running deploy/nginx/cdn.conf in front of an origin.
type edge struct {
	addr   string // host:port of the cache
	status string // host:port of the stub_status server
	dir    string
	log    *testpeer.LogBuffer
}

func (e *edge) url(path string) string { return "http://" + e.addr + path }

// nginxBinary returns the nginx executable (in PATH or /usr/sbin), or
// fails the test.
func nginxBinary(t *testing.T) string {
	t.Helper()
	return testpeer.Nginx(t)
}

// nginxConfig turns deploy/nginx/cdn.conf into a configuration that runs as
// the current user inside dir, in front of origin. Only the strings
// cdn.conf's header lists are replaced; each must be present.
func nginxConfig(t *testing.T, dir, origin, listen, status string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/nginx/cdn.conf"))
	if err != nil {
		t.Fatal(err)
	}
	include, err := filepath.Abs(filepath.Join(repoRoot, "deploy/nginx/cdn-cache.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range []struct{ old, new string }{
		{"server headwater:8080;", "server " + origin + ";"},
		{"listen 8081;", "listen " + listen + ";"},
		{"listen 8082;", "listen " + status + ";"},
		{"include /etc/nginx/cdn-cache.conf;", "include " + include + ";"},
		{"/var/cache/nginx/", dir + "/"},
		{"access_log /dev/stdout cdn;", "access_log " + dir + "/access.log cdn;"},
		{"error_log /dev/stderr", "error_log " + dir + "/error.log"},
	} {
		if !strings.Contains(conf, r.old) {
			t.Fatalf("deploy/nginx/cdn.conf no longer contains %q: update cdntest's substitutions", r.old)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	if os.Geteuid() == 0 {
		// A root master runs its workers as "nobody", who cannot enter
		// the test's private temporary directory.
		conf = "user root;\n" + conf
	}
	return conf
}

// startNginx runs the CDN configuration in the foreground until the test ends.
func startNginx(t *testing.T, origin string) *edge {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	e := &edge{addr: testpeer.FreeAddr(t), status: testpeer.FreeAddr(t), dir: dir, log: &testpeer.LogBuffer{}}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(t, dir, origin, e.addr, e.status)), 0o644); err != nil {
		t.Fatal(err)
	}
	// -t first: a configuration error is reported as such.
	if out, err := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", conf, "-t").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", conf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = e.log, e.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // fast shutdown of master and workers
		select {
		case err := <-done:
			if err != nil {
				t.Logf("nginx exited: %v", err)
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("nginx did not stop on SIGINT within 5s, killed: %v", <-done)
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", e.log.String())
			for _, name := range []string{"error.log", "access.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
					t.Logf("nginx %s:\n%s", name, b)
				}
			}
		}
	})
	testpeer.WaitFor(t, 5*time.Second, "nginx to listen", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("nginx exited: %v\n%s", err, e.log.String())
		default:
		}
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return e
}

// client talks HTTP/1.1 with keep-alive and no transparent gzip, so that
// Content-Encoding and Vary are visible.
var client = &http.Client{
	Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
	Timeout: 20 * time.Second,
}

type response struct {
	status  int
	header  http.Header
	body    []byte // decoded when the response was gzipped
	raw     []byte // as received
	elapsed time.Duration
	at      time.Time // when the response was complete
}

// cache is the response's X-Cache-Status.
func (r response) cache() string { return r.header.Get("X-Cache-Status") }

// get sends a GET with optional header name/value pairs.
func get(t *testing.T, url string, header ...string) response {
	t.Helper()
	r, err := tryGet(url, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryGet is get for goroutines other than the test's.
func tryGet(url string, header ...string) (response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("GET %s: %w", url, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw, body: raw,
		elapsed: time.Since(start), at: time.Now()}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return response{}, fmt.Errorf("GET %s: gzip: %w", url, err)
		}
		if r.body, err = io.ReadAll(zr); err != nil {
			return response{}, fmt.Errorf("GET %s: gzip: %w", url, err)
		}
	}
	return r, nil
}

// parseMedia parses a media playlist response.
func parseMedia(t *testing.T, r response) *playlist.Media {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("media playlist: status %d: %s", r.status, r.body)
	}
	pl, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatalf("parse media playlist: %v\n%s", err, r.body)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		t.Fatalf("not a media playlist:\n%s", r.body)
	}
	return m
}

// maxAge returns the max-age of a Cache-Control value, or -1.
func maxAge(cc string) int {
	for _, d := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}

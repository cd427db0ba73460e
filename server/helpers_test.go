package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/server"
)

// lockedBuffer collects the server's log lines; they are printed when a test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a Headwater instance on loopback port-0 listeners.
type testServer struct {
	*server.Server
	logs *lockedBuffer
}

func startServer(t *testing.T, mutate func(*config.Config), opts ...server.Option) *testServer {
	t.Helper()
	requireFFmpeg(t)
	cfg := config.Default()
	cfg.RTMP.Address = "127.0.0.1:0"
	cfg.Origin.Address = "127.0.0.1:0"
	cfg.Admin.Address = "127.0.0.1:0"
	// SRT and RTSP default to fixed ports; tests that use them listen on port 0.
	cfg.SRT.Address = ""
	cfg.RTSP.Address = ""
	cfg.Log.Level = "debug"
	cfg.Shutdown.Drain = 0
	if mutate != nil {
		mutate(cfg)
	}
	logs := &lockedBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testServer{Server: srv, logs: logs}
}

func (s *testServer) rtmpURL(key string) string {
	return fmt.Sprintf("rtmp://%s/live/%s", s.RTMPAddr(), key)
}

func (s *testServer) originURL(path string) string {
	return fmt.Sprintf("http://%s%s", s.OriginAddr(), path)
}

func (s *testServer) adminURL(path string) string {
	return fmt.Sprintf("http://%s%s", s.AdminAddr(), path)
}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install it (apt-get install -y ffmpeg); the README's test command does", bin)
		}
	}
}

// publisher is an ffmpeg process publishing a test pattern over RTMP.
type publisher struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

// publish starts ffmpeg sending testsrc2 (H.264, GOP of gop frames at 30 fps)
// and a sine (AAC) in real time for dur.
func publish(t *testing.T, url string, dur time.Duration, gop int, extra ...string) *publisher {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.FormatFloat(dur.Seconds(), 'f', 3, 64),
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0", "-b:v", "800k",
		"-c:a", "aac", "-b:a", "96k"}
	args = append(args, extra...)
	args = append(args, "-f", "flv", url)
	p := &publisher{stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command("ffmpeg", args...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns ffmpeg's exit error once it ends, or fails the test after timeout.
func (p *publisher) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("publisher did not end within %s", timeout)
		return nil
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// waitFor polls cond every 50ms until it is true or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mediaPlaylist fetches and parses a media playlist.
func mediaPlaylist(t *testing.T, url string) (*playlist.Media, response) {
	t.Helper()
	r := get(t, url)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	pl, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, r.body)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		t.Fatalf("%s is not a media playlist", url)
	}
	return m, r
}

var partURI = regexp.MustCompile(`^part(\d+)\.(\d+)\.m4s$`)

// parsePartURI splits "part12.3.m4s" into 12 and 3.
func parsePartURI(t *testing.T, uri string) (uint64, int) {
	t.Helper()
	m := partURI.FindStringSubmatch(uri)
	if m == nil {
		t.Fatalf("not a part URI: %q", uri)
	}
	msn, _ := strconv.ParseUint(m[1], 10, 64)
	idx, _ := strconv.Atoi(m[2])
	return msn, idx
}

// metricValue returns the value of the first sample of a metric whose line
// starts with prefix (name plus optional labels), or -1.
func metricValue(t *testing.T, s *testServer, prefix string) float64 {
	t.Helper()
	body := string(get(t, s.adminURL("/metrics")).body)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

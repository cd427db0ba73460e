package srt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tsDir != "" {
		os.RemoveAll(tsDir)
	}
	os.Exit(code)
}

// --- test environment: a real server on loopback, a real registry ---

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// capture subscribes to a published stream and keeps every frame.
type capture struct {
	stream *media.Stream
	sub    *media.Subscription
	done   chan struct{}

	mu     sync.Mutex
	frames []*media.Frame
}

func (c *capture) Frames() []*media.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*media.Frame(nil), c.frames...)
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// wait waits for the stream to end and its frames to be drained.
func (c *capture) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("stream %s still live after %s", c.stream.Name(), timeout)
	}
}

type testEnv struct {
	t    *testing.T
	reg  *media.Registry
	srv  *Server
	prom *prometheus.Registry
	logs *syncBuffer

	mu       sync.Mutex
	captures map[string][]*capture
	notify   chan struct{}
}

func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	e := &testEnv{
		t:        t,
		prom:     prometheus.NewRegistry(),
		logs:     &syncBuffer{},
		captures: make(map[string][]*capture),
		notify:   make(chan struct{}, 1),
	}
	e.reg = media.NewRegistry(media.RegistryConfig{OnPublish: e.onPublish})
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Latency == 0 {
		cfg.Latency = testLatency
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = New(cfg, e.reg, ingest.NewMetrics(e.prom), NewMetrics(e.prom), log)
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() || os.Getenv("SRT_TEST_LOG") != "" {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// start starts the server.
func (e *testEnv) start() *testEnv {
	e.t.Helper()
	if err := e.srv.Start(); err != nil {
		e.t.Fatal(err)
	}
	return e
}

func (e *testEnv) onPublish(st *media.Stream) {
	c := &capture{stream: st, sub: st.Subscribe(100000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for f := range c.sub.Frames() {
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}()
	e.mu.Lock()
	e.captures[st.Name()] = append(e.captures[st.Name()], c)
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

func (e *testEnv) addr() string { return e.srv.Addr().String() }

// testLatency is the SRT latency of the tests: larger than the 120 ms
// default so that a loaded machine (CI runs packages in parallel) does not
// make packets too late. SRT drops what the receiver still buffers when
// the peer closes: a publish loses up to that much of its end.
const testLatency = 500 * time.Millisecond

// url is an ffmpeg SRT URL; latency in microseconds, as ffmpeg wants it.
func (e *testEnv) url(streamid, passphrase string) string {
	u := "srt://" + e.addr() + "?streamid=" + streamid + "&latency=" + strconv.Itoa(int(testLatency/time.Microsecond))
	if passphrase != "" {
		u += "&passphrase=" + passphrase
	}
	return u
}

// waitPublished waits for the n-th (1-based) publish of name.
func (e *testEnv) waitPublished(name string, n int, timeout time.Duration) *capture {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		cs := e.captures[name]
		e.mu.Unlock()
		if len(cs) >= n {
			return cs[n-1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not published %d times after %s", name, n, timeout)
		}
		select {
		case <-e.notify:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (e *testEnv) publishes(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.captures[name])
}

// metric returns the value of a series (the srt one for ingest metrics), 0 when absent.
func (e *testEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	v, _ := e.metricOK(name, labels...)
	return v
}

func (e *testEnv) metricOK(name string, labels ...string) (float64, bool) {
	e.t.Helper()
	want := map[string]string{}
	if strings.HasPrefix(name, "headwater_ingest_") {
		want["protocol"] = Protocol
	}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	mfs, err := e.prom.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// waitMetric polls a metric until it reaches want.
func (e *testEnv) waitMetric(want float64, timeout time.Duration, name string, labels ...string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := e.metric(name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *testEnv) waitErrors(reason ingest.Reason, want float64) {
	e.t.Helper()
	e.waitMetric(want, 5*time.Second, "headwater_ingest_errors_total", "reason", string(reason))
}

// waitFreeSlots waits until no publisher or reader holds a server slot.
func (e *testEnv) waitFreeSlots() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.srv.mu.Lock()
		n := e.srv.publishers + e.srv.readers
		e.srv.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d slots still held", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog polls the server log for a substring.
func (e *testEnv) waitLog(substr string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(e.logs.String(), substr) {
		if time.Now().After(deadline) {
			e.t.Fatalf("log has no %q", substr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dial connects a gosrt caller.
func (e *testEnv) dial(streamid, passphrase string) (gosrt.Conn, error) {
	c := gosrt.DefaultConfig()
	c.StreamId = streamid
	c.Passphrase = passphrase
	c.Latency = testLatency
	return gosrt.Dial("srt", e.addr(), c)
}

// closeDrained closes a publishing caller once the server has published
// everything it sent: the capture's frame count stopped growing for longer
// than the latency. Closing earlier loses the end (see testLatency).
func closeDrained(t *testing.T, conn gosrt.Conn, c *capture) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		if n := c.count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > testLatency+300*time.Millisecond {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn.Close()
}

// fastRate sends the committed 2 s test file in half a second: SRT live
// mode expects paced input, and a burst larger than the socket buffers
// loses packets that arrive too late to be retransmitted.
const fastRate = 4 * 268088 / 2

// sendTS sends MPEG-TS bytes over an SRT connection in 1316-byte payloads,
// paced at about rate bytes per second.
func sendTS(t *testing.T, conn gosrt.Conn, ts []byte, rate int) {
	t.Helper()
	if err := sendTSErr(conn, ts, rate); err != nil {
		t.Fatal(err)
	}
}

func sendTSErr(conn gosrt.Conn, ts []byte, rate int) error {
	const chunk = 1316
	start := time.Now()
	for off := 0; off < len(ts); off += chunk {
		end := min(off+chunk, len(ts))
		if _, err := conn.Write(ts[off:end]); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		if due := start.Add(time.Duration(float64(end) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	return nil
}

// --- ffmpeg ---

func needFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
}

// ffmpeg runs ffmpeg with the given arguments and returns its error and output.
func ffmpeg(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	out, err := exec.CommandContext(ctx, "ffmpeg", all...).CombinedOutput()
	return string(out), err
}

// ffmpegOut runs ffmpeg and returns its standard output and error apart.
func ffmpegOut(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	all := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	cmd := exec.CommandContext(ctx, "ffmpeg", all...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// testsrcArgs are the lavfi inputs of the test publishes.
func testsrcArgs(seconds string) []string {
	return []string{
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
	}
}

// x264Args encodes H.264 with a key frame every 60 frames.
var x264Args = []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "0"}

var (
	tsOnce  sync.Once
	tsDir   string
	tsMu    sync.Mutex
	tsFiles = map[string][]byte{}
)

// testTS encodes (once per test binary) an MPEG-TS file with ffmpeg.
func testTS(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	needFFmpeg(t)
	tsMu.Lock()
	defer tsMu.Unlock()
	if b, ok := tsFiles[name]; ok {
		return b
	}
	tsOnce.Do(func() {
		var err error
		if tsDir, err = os.MkdirTemp("", "srt-test-ts"); err != nil {
			t.Fatal(err)
		}
	})
	path := filepath.Join(tsDir, name+".ts")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := ffmpeg(ctx, append(append([]string{"-y"}, args...), "-f", "mpegts", path)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tsFiles[name] = b
	return b
}

// --- assertions ---

// checkAVCCPayload checks that a payload is a sequence of 4-byte length-prefixed NAL units.
func checkAVCCPayload(t *testing.T, p []byte) {
	t.Helper()
	sum := 0
	for rest := p; len(rest) > 0; {
		if len(rest) < 4 {
			t.Fatalf("payload has %d trailing bytes", len(rest))
		}
		l := int(binary.BigEndian.Uint32(rest))
		if l == 0 || l > len(rest)-4 {
			t.Fatalf("bad NAL unit length %d with %d bytes left", l, len(rest)-4)
		}
		sum += 4 + l
		rest = rest[4+l:]
	}
	if sum != len(p) {
		t.Fatalf("NAL units sum to %d, payload is %d", sum, len(p))
	}
}

// naluTypes lists the NAL unit types of an AVCC payload.
func naluTypes(p []byte, hevc bool) []int {
	var types []int
	for len(p) >= 5 {
		l := int(binary.BigEndian.Uint32(p))
		if hevc {
			types = append(types, int(p[4]>>1)&0x3f)
		} else {
			types = append(types, int(p[4])&0x1f)
		}
		p = p[min(len(p), 4+l):]
	}
	return types
}

func hasType(types []int, want ...int) bool {
	for _, t := range types {
		for _, w := range want {
			if t == w {
				return true
			}
		}
	}
	return false
}

// waitGoroutines waits for the number of goroutines to fall to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := serverGoroutines()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fmtFrame(f *media.Frame) string {
	return fmt.Sprintf("track %d dts %d pts %d key %v size %d", f.Track.ID, f.DTS, f.PTS, f.Key, len(f.Payload))
}

// serverGoroutines counts the goroutines, leaving out those of the test's
// own gosrt clients: gosrt's Dial can leave its handshake goroutine blocked
// for a while after the server refused or closed the connection, which says
// nothing about the server.
func serverGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.TrimSpace(g) != "" && !strings.Contains(g, "created by github.com/datarhei/gosrt.Dial") {
			count++
		}
	}
	return count
}

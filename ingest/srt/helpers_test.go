package srt

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tsFiles.RemoveAll()
	os.Exit(code)
}

// --- test environment: a real server on loopback, a real registry ---

type testEnv struct {
	t    *testing.T
	reg  *media.Registry
	srv  *Server
	prom *prometheus.Registry
	logs *testpeer.LogBuffer
	caps *testpeer.Captures
	// metrics reads the srt series of e.prom.
	metrics testpeer.IngestMetrics
}

func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	e := &testEnv{
		t:    t,
		prom: prometheus.NewRegistry(),
		logs: &testpeer.LogBuffer{},
		caps: testpeer.NewCaptures(),
	}
	e.metrics = testpeer.IngestMetrics{T: t, Reg: e.prom, Protocol: Protocol}
	e.reg = media.NewRegistry(media.RegistryConfig{OnPublish: e.caps.OnPublish})
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Latency == 0 {
		cfg.Latency = testLatency
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = New(cfg, e.reg, ingest.NewMetrics(e.prom), NewMetrics(e.prom), log)
	testpeer.CloseAtEnd(t, e.srv, e.logs, "SRT_TEST_LOG")
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
func (e *testEnv) waitPublished(name string, n int, timeout time.Duration) *testpeer.Capture {
	e.t.Helper()
	return e.caps.WaitPublished(e.t, name, n, timeout)
}

// waitFreeSlots waits until no publisher or reader holds a server slot.
func (e *testEnv) waitFreeSlots() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := e.srv.publishers.Used() + e.srv.readers.Used()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d slots still held", n)
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
func closeDrained(t *testing.T, conn gosrt.Conn, c *testpeer.Capture) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		if n := c.Count(); n != last {
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
func testsrcArgs(seconds string) []string { return testpeer.LavfiSource("640x360", seconds) }

// x264Args encodes H.264 with a key frame every 60 frames.
var x264Args = []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "0"}

// tsFiles are the MPEG-TS files of the tests, encoded once per test binary.
var tsFiles = &testpeer.FFmpegFiles{Pattern: "srt-test-ts", Format: "mpegts", Timeout: 60 * time.Second}

// testTS encodes (once per test binary) an MPEG-TS file with ffmpeg.
func testTS(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	return tsFiles.Get(t, name, args...)
}

// --- assertions ---

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

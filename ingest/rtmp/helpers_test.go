package rtmp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

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

type envOptions struct {
	registry  media.RegistryConfig
	publisher func(*media.Registry) Publisher
	published func(*session) // Server.testHookPublished
}

func newEnv(t *testing.T, cfg Config) *testEnv {
	return newEnvWith(t, cfg, envOptions{})
}

func newEnvWith(t *testing.T, cfg Config, opts envOptions) *testEnv {
	t.Helper()
	e := &testEnv{
		t:        t,
		prom:     prometheus.NewRegistry(),
		logs:     &syncBuffer{},
		captures: make(map[string][]*capture),
		notify:   make(chan struct{}, 1),
	}
	rc := opts.registry
	rc.OnPublish = func(st *media.Stream) {
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
	e.reg = media.NewRegistry(rc)
	var pub Publisher = e.reg
	if opts.publisher != nil {
		pub = opts.publisher(e.reg)
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = New(cfg, pub, ingest.NewMetrics(e.prom), log)
	e.srv.testHookPublished = opts.published
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() || os.Getenv("RTMP_TEST_LOG") != "" {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *testEnv) addr() string { return e.srv.Addr().String() }

func (e *testEnv) url(key string) string { return "rtmp://" + e.addr() + "/live/" + key }

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

// metric returns the value of the rtmp series of a metric, 0 when absent.
func (e *testEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	want := map[string]string{"protocol": Protocol}
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
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
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

// testsrcArgs are the lavfi inputs of the test publishes.
func testsrcArgs(seconds string) []string {
	return []string{
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
	}
}

var (
	flvOnce  sync.Once
	flvDir   string
	flvMu    sync.Mutex
	flvFiles = map[string][]flvTag{}
)

// flvTag is one tag of an FLV file.
type flvTag struct {
	typeID    uint8
	timestamp uint32
	data      []byte
}

// testFLV encodes (once per test binary) a short FLV with ffmpeg and returns its tags.
func testFLV(t testing.TB, name string, args ...string) []flvTag {
	t.Helper()
	needFFmpeg(t)
	flvMu.Lock()
	defer flvMu.Unlock()
	if tags, ok := flvFiles[name]; ok {
		return tags
	}
	flvOnce.Do(func() {
		var err error
		if flvDir, err = os.MkdirTemp("", "rtmp-test-flv"); err != nil {
			t.Fatal(err)
		}
	})
	path := filepath.Join(flvDir, name+".flv")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := ffmpeg(ctx, append(append([]string{"-y"}, args...), "-f", "flv", path)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := parseFLV(b)
	if err != nil {
		t.Fatal(err)
	}
	flvFiles[name] = tags
	return tags
}

func parseFLV(b []byte) ([]flvTag, error) {
	if len(b) < 13 || string(b[:3]) != "FLV" {
		return nil, errors.New("not an FLV file")
	}
	b = b[binary.BigEndian.Uint32(b[5:9])+4:]
	var tags []flvTag
	for len(b) >= 11 {
		size := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		ts := uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6]) | uint32(b[7])<<24
		if len(b) < 11+size+4 {
			return nil, errors.New("truncated FLV tag")
		}
		tags = append(tags, flvTag{typeID: b[0] & 0x1f, timestamp: ts, data: b[11 : 11+size]})
		b = b[11+size+4:]
	}
	return tags, nil
}

// --- a raw RTMP client, for what ffmpeg cannot be made to do ---

type rawClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	cw   chunkWriter
	cr   *chunkReader
	tid  float64
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &rawClient{t: t, conn: conn, tid: 1}
	c.br, c.bw = newClientIO(conn)
	c.cw = chunkWriter{w: c.bw, chunkSize: defaultChunkSize}
	c.cr = newChunkReader(c.br)
	return c
}

func newClientIO(conn net.Conn) (*bufio.Reader, *bufio.Writer) {
	return bufio.NewReader(conn), bufio.NewWriter(conn)
}

// handshake does a simple (version 0) handshake.
func (c *rawClient) handshake() {
	c.t.Helper()
	c0c1 := make([]byte, 1+handshakeSize)
	c0c1[0] = 3
	for i := 9; i < len(c0c1); i++ {
		c0c1[i] = byte(i * 7)
	}
	if _, err := c.conn.Write(c0c1); err != nil {
		c.t.Fatal(err)
	}
	s := make([]byte, 1+2*handshakeSize)
	if _, err := io.ReadFull(c.br, s); err != nil {
		c.t.Fatalf("reading S0S1S2: %v", err)
	}
	if s[0] != 3 {
		c.t.Fatalf("S0 = %d", s[0])
	}
	if !bytes.Equal(s[1+handshakeSize+8:], c0c1[1+8:]) {
		c.t.Fatal("S2 does not echo C1")
	}
	if _, err := c.conn.Write(s[1 : 1+handshakeSize]); err != nil { // C2 echoes S1
		c.t.Fatal(err)
	}
}

func (c *rawClient) send(csid uint8, typeID uint8, streamID, ts uint32, payload []byte) error {
	if err := c.cw.writeMessage(csid, typeID, streamID, ts, payload); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *rawClient) command(streamID uint32, name string, args ...any) error {
	c.tid++
	return c.send(3, msgCommandAMF0, streamID, 0, amfEncode(nil, append([]any{name, c.tid}, args...)...))
}

// readCommand reads messages until a command arrives and returns its values.
func (c *rawClient) readCommand() ([]any, error) {
	for {
		msg, err := c.cr.readMessage()
		if err != nil {
			return nil, err
		}
		switch msg.typeID {
		case msgSetChunkSize:
			c.cr.chunkSize = binary.BigEndian.Uint32(msg.payload)
		case msgCommandAMF0:
			return amfDecodeAll(msg.payload)
		}
	}
}

// expect reads a command and checks its name (and, for status answers, code).
func (c *rawClient) expect(name, code string) {
	c.t.Helper()
	vals, err := c.readCommand()
	if err != nil {
		c.t.Fatalf("waiting for %s %s: %v", name, code, err)
	}
	if vals[0] != name {
		c.t.Fatalf("got %v, want %s", vals, name)
	}
	if code != "" {
		info, _ := vals[len(vals)-1].(amfObj)
		if got := info.str("code"); got != code {
			c.t.Fatalf("got %s %q, want %q", name, got, code)
		}
	}
}

// connect runs connect and waits for its result.
func (c *rawClient) connect(app string) {
	c.t.Helper()
	c.handshake()
	err := c.command(0, "connect", amfObj{
		{"app", app}, {"type", "nonprivate"}, {"flashVer", "FMLE/3.0 (compatible; FMSc/1.0)"},
		{"tcUrl", "rtmp://" + c.conn.RemoteAddr().String() + "/" + app},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.expect("_result", "NetConnection.Connect.Success")
}

// publish runs OBS's sequence up to the publish answer and returns its code.
func (c *rawClient) publish(key string) string {
	c.t.Helper()
	for _, cmd := range []string{"releaseStream", "FCPublish"} {
		if err := c.command(0, cmd, nil, key); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.command(0, "createStream", nil); err != nil {
		c.t.Fatal(err)
	}
	c.expect("_result", "")
	if err := c.command(1, "publish", nil, key, "live"); err != nil {
		c.t.Fatal(err)
	}
	vals, err := c.readCommand()
	if err != nil {
		c.t.Fatalf("waiting for the publish status: %v", err)
	}
	info, _ := vals[len(vals)-1].(amfObj)
	return info.str("code")
}

// sendTags sends FLV tags as RTMP messages (csid 4 audio, 6 video, 5 data),
// starting their timestamps at offset.
func (c *rawClient) sendTags(tags []flvTag, offset uint32) error {
	for _, tag := range tags {
		csid := uint8(5)
		payload := tag.data
		switch tag.typeID {
		case msgAudio:
			csid = 4
		case msgVideo:
			csid = 6
		case msgDataAMF0:
			// FLV files carry onMetaData; RTMP publishers wrap it in @setDataFrame.
			payload = append(amfEncode(nil, "@setDataFrame"), payload...)
		}
		if err := c.cw.writeMessage(csid, tag.typeID, 1, tag.timestamp+offset, payload); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// waitClosed waits for the server to drop the connection.
func (c *rawClient) waitClosed(timeout time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c.br)
	if isTimeout(err) {
		c.t.Fatalf("connection still open after %s", timeout)
	}
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

// hasIDR reports whether an AVCC payload holds an IDR slice.
func hasIDR(p []byte) bool {
	for len(p) >= 5 {
		l := int(binary.BigEndian.Uint32(p))
		if p[4]&0x1f == 5 {
			return true
		}
		p = p[min(len(p), 4+l):]
	}
	return false
}

// waitGoroutines waits for the number of goroutines to fall to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
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

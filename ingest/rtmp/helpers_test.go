package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// --- test environment: a real server on loopback, a real registry ---

type testEnv struct {
	t    *testing.T
	reg  *media.Registry
	srv  *Server
	prom *prometheus.Registry
	logs *testpeer.LogBuffer
	caps *testpeer.Captures
	// metrics reads the rtmp series of e.prom.
	metrics testpeer.IngestMetrics
}

type envOptions struct {
	registry  media.RegistryConfig
	publisher func(*media.Registry) ingest.Registry
	published func(*session) // Server.testHookPublished
}

func newEnv(t *testing.T, cfg Config) *testEnv {
	return newEnvWith(t, cfg, envOptions{})
}

func newEnvWith(t *testing.T, cfg Config, opts envOptions) *testEnv {
	t.Helper()
	e := &testEnv{
		t:    t,
		prom: prometheus.NewRegistry(),
		logs: &testpeer.LogBuffer{},
		caps: testpeer.NewCaptures(),
	}
	e.metrics = testpeer.IngestMetrics{T: t, Reg: e.prom, Protocol: Protocol}
	rc := opts.registry
	rc.OnPublish = e.caps.OnPublish
	e.reg = media.NewRegistry(rc)
	var pub ingest.Registry = e.reg
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
	testpeer.CloseAtEnd(t, e.srv, e.logs, "RTMP_TEST_LOG")
	return e
}

func (e *testEnv) addr() string { return e.srv.Addr().String() }

func (e *testEnv) url(key string) string { return "rtmp://" + e.addr() + "/live/" + key }

// waitPublished waits for the n-th (1-based) publish of name.
func (e *testEnv) waitPublished(name string, n int, timeout time.Duration) *testpeer.Capture {
	e.t.Helper()
	return e.caps.WaitPublished(e.t, name, n, timeout)
}

// --- ffmpeg ---

// testsrcArgs are the lavfi inputs of the test publishes.
func testsrcArgs(seconds string) []string { return testpeer.LavfiSource("640x360", seconds) }

// flvFiles are the FLV files of the tests, encoded once per test binary.
var flvFiles = &testpeer.FFmpegFiles{Pattern: "rtmp-test-flv", Format: "flv", Timeout: 30 * time.Second}

// flvTag is one tag of an FLV file.
type flvTag struct {
	typeID    uint8
	timestamp uint32
	data      []byte
}

// testFLV encodes (once per test binary) a short FLV with ffmpeg and returns its tags.
func testFLV(t testing.TB, name string, args ...string) []flvTag {
	t.Helper()
	tags, err := parseFLV(flvFiles.Get(t, name, args...))
	if err != nil {
		t.Fatal(err)
	}
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
	c.cr = newChunkReader(c.br, DefaultMaxChunkStreams, DefaultMaxUnassembledBytes)
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
	if ingest.IsTimeout(err) {
		c.t.Fatalf("connection still open after %s", timeout)
	}
}

// --- assertions ---

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

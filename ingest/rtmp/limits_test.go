package rtmp

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestUnassembledBytesLimit: the bytes received of partial messages are
// bounded per connection; beyond, the session ends with resource_limit,
// logged once.
func TestUnassembledBytesLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxUnassembledBytes: 4096})
	c := dialRaw(t, e.addr())
	c.handshake()
	// 40 chunk streams each start a 256 KiB message with one 128-byte
	// chunk: the 33rd chunk crosses 4096 bytes.
	var in []byte
	for i := range 40 {
		in = append(in, byte(3+i), 0, 0, 0, 0x04, 0, 0, msgVideo, 1, 0, 0, 0)
		in = append(in, make([]byte, defaultChunkSize)...)
	}
	_, _ = c.conn.Write(in)
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonResourceLimit, 1)
	testpeer.WaitLog(t, e.logs, "partial messages exceed 4096 bytes (rtmp.max_unassembled_bytes)", time.Second)
	if n := strings.Count(e.logs.String(), "max_unassembled_bytes"); n != 1 {
		t.Errorf("limit logged %d times", n)
	}
}

// TestChunkStreamsLimit: one chunk stream more than the limit ends the
// session with resource_limit.
func TestChunkStreamsLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxChunkStreams: 8})
	c := dialRaw(t, e.addr())
	c.handshake()
	var in []byte
	for i := range 9 {
		in = append(in, byte(3+i), 0, 0, 0, 0, 0, 1, msgAck, 0, 0, 0, 0, 'x')
	}
	_, _ = c.conn.Write(in)
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonResourceLimit, 1)
	testpeer.WaitLog(t, e.logs, "more than 8 chunk streams (rtmp.max_chunk_streams)", time.Second)
}

// TestChunkAttackSession runs the 832-byte attack against a session (its
// memory is TestChunkAttackMemory's): within the limits, it is ended by the
// publish deadline, before the idle timeout.
func TestChunkAttackSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{PublishDeadline: 500 * time.Millisecond, IdleTimeout: 10 * time.Second})
	c := dialRaw(t, e.addr())
	c.handshake()
	setChunkSize, opens := chunkAttack()
	_, _ = c.conn.Write(append(setChunkSize, opens...))
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)
	testpeer.WaitLog(t, e.logs, "publish_deadline", time.Second)
}

// dialFrom connects to addr from a loopback address of its own.
func dialFrom(t *testing.T, local, addr string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

// refused tells whether the server closed conn without a byte.
func refused(conn net.Conn) bool {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(append([]byte{3}, make([]byte, handshakeSize)...))
	_, err := conn.Read(make([]byte, 1))
	return err != nil && !ingest.IsTimeout(err)
}

// TestConnectionCaps: concurrent connections are capped in all and per
// address, at accept, and counted; a closed connection frees its place.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxConnections: 3, MaxConnectionsPerAddress: 2})
	var open []net.Conn
	for _, local := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		conn, err := dialFrom(t, local, e.addr())
		if err != nil {
			t.Fatal(err)
		}
		if refused(conn) {
			t.Fatalf("connection %d from %s refused", len(open)+1, local)
		}
		open = append(open, conn)
	}
	// Third from 127.0.0.1: the per-address cap; from 127.0.0.3: the global one.
	for i, local := range []string{"127.0.0.1", "127.0.0.3"} {
		conn, err := dialFrom(t, local, e.addr())
		if err != nil {
			t.Fatal(err)
		}
		if !refused(conn) {
			t.Fatalf("connection from %s accepted beyond the cap", local)
		}
		e.metrics.WaitErrors(ingest.ReasonTooManyConnections, float64(i+1))
	}
	// A connection that ends frees its place.
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := dialFrom(t, "127.0.0.3", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		if !refused(conn) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the place of a closed connection was not freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublishDeadline: a connection that keeps sending a little but never
// publishes is closed at the publish deadline (slow loris); a publishing
// one is not.
func TestPublishDeadline(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnv(t, Config{PublishDeadline: 600 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	trickle := func(c *rawClient, stop <-chan struct{}, done chan<- struct{}) {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if c.send(2, msgWindowAckSize, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30)) != nil {
				return
			}
		}
	}
	c := dialRaw(t, e.addr())
	c.connect("live")
	stop := make(chan struct{})
	defer close(stop)
	go trickle(c, stop, make(chan struct{}))
	start := time.Now()
	c.waitClosed(5 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %s", d)
	}
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)
	testpeer.WaitLog(t, e.logs, "not publishing 600ms after connecting (publish_deadline)", time.Second)

	// Publishing within the deadline, then well past it.
	p := dialRaw(t, e.addr())
	p.connect("live")
	if code := p.publish("late"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	stop2, done2 := make(chan struct{}), make(chan struct{})
	go trickle(p, stop2, done2)
	time.Sleep(time.Second)
	close(stop2)
	<-done2
	if err := p.sendTags(tags, 0); err != nil {
		t.Fatalf("publisher dropped past the publish deadline: %v", err)
	}
	cap := e.waitPublished("live/late", 1, 5*time.Second)
	p.conn.Close()
	cap.Wait(t, 5*time.Second)
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "timeout"); got != 1 {
		t.Errorf("timeouts = %v, want 1", got)
	}
}

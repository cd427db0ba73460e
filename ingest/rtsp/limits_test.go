package rtsp

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// optionsFrom opens a connection from a loopback address of its own and
// sends OPTIONS: the connection and its reader when answered 200, nil when
// the server closed it.
func optionsFrom(t *testing.T, local, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte("OPTIONS rtsp://" + addr + "/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")); err != nil {
		return nil, nil
	}
	line, err := br.ReadString('\n')
	if err != nil {
		if ingest.IsTimeout(err) {
			t.Fatalf("connection from %s neither served nor closed", local)
		}
		return nil, nil
	}
	if !strings.HasPrefix(line, "RTSP/1.0 200") {
		t.Fatalf("OPTIONS: %q", line)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	return c, br
}

// TestConnectionCaps: concurrent connections are capped in all and per
// address when they open, and counted; a closed one frees its place.
func TestConnectionCaps(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 3, MaxConnectionsPerAddress: 2})
	var open []net.Conn
	for _, local := range []string{"127.0.0.1", "127.0.0.1", "127.0.0.2"} {
		c, _ := optionsFrom(t, local, e.addr())
		if c == nil {
			t.Fatalf("connection %d from %s refused", len(open)+1, local)
		}
		open = append(open, c)
	}
	for i, local := range []string{"127.0.0.1", "127.0.0.3"} {
		if c, _ := optionsFrom(t, local, e.addr()); c != nil {
			t.Fatalf("connection from %s served beyond the cap", local)
		}
		e.metrics.WaitErrors(ingest.ReasonTooManyConnections, float64(i+1))
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _ := optionsFrom(t, "127.0.0.3", e.addr()); c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the place of a closed connection was not freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublishDeadline: a connection that keeps sending requests but never
// RECORDs or PLAYs is closed at the publish deadline (slow loris), and so
// is one that announced an interleaved frame and sends nothing more
// (gortsplib allocates the frame's 64 KiB before its bytes arrive: the
// deadline bounds how long that is held).
func TestPublishDeadline(t *testing.T) {
	e := newEnv(t, Config{PublishDeadline: 500 * time.Millisecond})
	c, br := optionsFrom(t, "127.0.0.1", e.addr())
	if c == nil {
		t.Fatal("refused")
	}
	start := time.Now()
	go func() {
		for i := 2; ; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte("OPTIONS rtsp://" + e.addr() + "/ RTSP/1.0\r\nCSeq: " + string(rune('0'+i%10)) + "\r\n\r\n")); err != nil {
				return
			}
		}
	}()
	waitClosed(t, c, br)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %s", d)
	}
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)
	testpeer.WaitLog(t, e.logs, "neither RECORD nor PLAY 500ms after connecting (publish_deadline)", time.Second)

	c2, br2 := optionsFrom(t, "127.0.0.1", e.addr())
	if c2 == nil {
		t.Fatal("refused")
	}
	_, _ = c2.Write([]byte{'$', 0, 0xff, 0xff})
	waitClosed(t, c2, br2)
	e.metrics.WaitErrors(ingest.ReasonTimeout, 2)
}

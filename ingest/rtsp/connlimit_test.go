package rtsp

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
)

// TestConnectionRateLimit closes the connections of an address that opens
// more a minute than allowed; the first ones are served.
func TestConnectionRateLimit(t *testing.T) {
	e := newEnv(t, Config{MaxConnectionsPerMinute: 1})
	options := func() (string, error) {
		c, err := net.Dial("tcp", e.addr())
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("OPTIONS rtsp://" + e.addr() + "/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	if line, err := options(); err != nil || !strings.HasPrefix(line, "RTSP/1.0 200") {
		t.Fatalf("first connection: %q %v", line, err)
	}
	if line, err := options(); err == nil && strings.HasPrefix(line, "RTSP/1.0 200") {
		t.Fatal("second connection in a minute was served")
	}
	e.metrics.WaitErrors(ingest.ReasonRateLimited, 1)
}

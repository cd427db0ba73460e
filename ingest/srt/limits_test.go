package srt

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestConnectionCaps: concurrent connections are capped per address and in
// all at the handshake (REJX_OVERLOAD), and counted; a closed connection
// frees its place.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{MaxConnectionsPerAddress: 2}, {MaxConnections: 2}} {
		e := newEnv(t, cfg).start()
		var open []gosrt.Conn
		for i := range 2 {
			c, err := e.dial("#!::r=live/cap"+strconv.Itoa(i)+",m=publish", "")
			if err != nil {
				t.Fatalf("%+v: connection %d refused: %v", cfg, i, err)
			}
			defer c.Close()
			open = append(open, c)
		}
		if _, err := e.dial("#!::r=live/cap2,m=publish", ""); !rejectedWith(err, gosrt.REJX_OVERLOAD) {
			t.Fatalf("%+v: third connection: %v, want REJX_OVERLOAD", cfg, err)
		}
		e.metrics.WaitErrors(ingest.ReasonTooManyConnections, 1)
		_ = open[0].Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := e.dial("#!::r=live/cap3,m=publish", "")
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%+v: the place of a closed connection was not freed: %v", cfg, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestPublishDeadline: a publisher that keeps sending but whose stream
// never gets published (null packets only) is dropped at the publish
// deadline, long before the idle timeout.
func TestPublishDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{PublishDeadline: 800 * time.Millisecond, IdleTimeout: 10 * time.Second}).start()
	conn, err := e.dial("live/loris", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	null := bytes.Repeat(append([]byte{tsSyncByte, 0x1f, 0xff, 0x10}, make([]byte, tsPacketSize-4)...), 7)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Since(start) < 5*time.Second {
			if _, err := conn.Write(null); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dropped after %s", d)
	}
	testpeer.WaitLog(t, e.logs, "not publishing 800ms after connecting (publish_deadline)", time.Second)
	_ = conn.Close()
	<-done
}

package rtmp

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

func TestConnectionRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxConnectionsPerMinute: 2})
	for range 2 {
		c := dialRaw(t, e.addr())
		c.connect("live")
	}
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection read %d bytes", n)
	}
	e.metrics.WaitErrors(ingest.ReasonTooManyPublishers, 1)
}

func TestRTMPSFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{TLSAddress: "127.0.0.1:0", TLSConfig: testpeer.SelfSignedTLS(t)})
	url := "rtmps://" + e.srv.TLSAddr().String() + "/live/secure"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(testsrcArgs("2"), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
		"-c:a", "aac", "-f", "flv", url)
	if out, err := testpeer.FFmpeg(ctx, append([]string{"-re"}, args...)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	c := e.waitPublished("live/secure", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, 2, false)

	// Plain RTMP on the RTMPS port fails at the TLS handshake.
	out, err := testpeer.FFmpeg(ctx, append(testsrcArgs("1"), "-c:v", "libx264", "-c:a", "aac", "-f", "flv",
		strings.Replace(url, "rtmps://", "rtmp://", 1))...)
	if err == nil {
		t.Fatalf("plain RTMP on the RTMPS port published:\n%s", out)
	}
}

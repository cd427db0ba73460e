package server_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestRTMPSAndAdminTLS publishes with ffmpeg over rtmps:// (self-signed
// certificate, which ffmpeg does not verify by default) with a static key,
// and reads the admin listener over HTTPS.
func TestRTMPSAndAdminTLS(t *testing.T) {
	cert, key, _ := testpeer.SelfSignedFiles(t)
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.RTMP.TLSAddress = "127.0.0.1:0"
		c.RTMP.TLSCert, c.RTMP.TLSKey = cert, key
		c.Admin.TLSCert, c.Admin.TLSKey = cert, key
		c.Auth.Publish.StaticKeys = []string{"live/secure=" + auth.HashKey(studioKey)}
	})
	url := fmt.Sprintf("rtmps://%s/live/secure?key=%s", s.RTMPSAddr(), studioKey)
	expectPublished(t, s, "live/secure", testpeer.PublishRTMP(t, url, 1500*time.Millisecond, 30))
	before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
	expectRefused(t, s, "live/secure", "rtmp", auth.ReasonBadKey, before,
		testpeer.PublishRTMP(t, fmt.Sprintf("rtmps://%s/live/secure?key=nope", s.RTMPSAddr()), 1500*time.Millisecond, 30))

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + s.AdminAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("admin over HTTPS: %d %v", resp.StatusCode, resp.TLS)
	}
}

func TestAdminLimits(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.Admin.MaxConnections = 2
	})
	// A body above 1 KiB is refused.
	req, _ := http.NewRequest(http.MethodDelete, s.adminURL("/api/v1/streams/live/x"), bytes.NewReader(make([]byte, 2048)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("DELETE with a 2 KiB body: %d", resp.StatusCode)
	}
	// Oversized headers are refused.
	req, _ = http.NewRequest(http.MethodGet, s.adminURL("/healthz"), nil)
	req.Header.Set("X-Big", strings.Repeat("x", 32<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("32 KiB header: %d", resp.StatusCode)
		}
	}

	// Two idle connections take both slots: past the cap a request is
	// answered 503 at once, except a health probe, which is served on one of
	// the reserve connections kept for probes.
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.AdminAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		defer c.Close()
	}
	quick := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	status := func(path string) int {
		resp, err := quick.Get(s.adminURL(path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testpeer.WaitFor(t, 5*time.Second, "the idle connections to hold both slots", func() bool {
		return status("/metrics") == http.StatusServiceUnavailable
	})
	for _, probe := range []string{"/healthz", "/readyz"} {
		if got := status(probe); got != http.StatusOK {
			t.Errorf("%s past the cap: %d, want 200 from the probe reserve", probe, got)
		}
	}
	idle[0].Close()
	testpeer.WaitFor(t, 5*time.Second, "a free admin connection", func() bool {
		return status("/metrics") == http.StatusOK
	})
}

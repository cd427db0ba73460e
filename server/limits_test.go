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

	// Two idle connections take both slots: a third request waits.
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.AdminAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
	quick := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := quick.Get(s.adminURL("/healthz")); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served")
	}
	idle[0].Close()
	testpeer.WaitFor(t, 5*time.Second, "a free admin connection", func() bool {
		resp, err := quick.Get(s.adminURL("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

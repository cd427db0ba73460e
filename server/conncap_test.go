package server_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestOriginMaxConnectionsPerAddress: with origin.max_connections_per_address
// set, an address's connections beyond it are closed at accept while another
// address is served; the refusals show in /metrics and are logged once.
func TestOriginMaxConnectionsPerAddress(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.Origin.MaxConnectionsPerAddress = 3 })
	addr := s.OriginAddr().String()
	served := func(from string) bool {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() }) // held open: keep-alive
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection from %s neither answered nor closed", from)
			}
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for i := range 3 {
		if !served("127.0.0.1") {
			t.Fatalf("connection %d of 127.0.0.1 refused under the cap", i+1)
		}
	}
	for range 2 {
		if served("127.0.0.1") {
			t.Fatal("a fourth concurrent connection of 127.0.0.1 was served (origin.max_connections_per_address 3)")
		}
	}
	if !served("127.0.0.2") {
		t.Fatal("another address was refused")
	}
	const series = `headwater_origin_connections_refused_total{reason="too_many_connections_per_address"}`
	testpeer.WaitFor(t, 5*time.Second, series+" = 2", func() bool { return metricValue(t, s, series) == 2 })
	if n := strings.Count(s.logs.String(), "origin: connection refused"); n != 1 {
		t.Fatalf("refusals logged %d times, want 1:\n%s", n, s.logs.String())
	}
}

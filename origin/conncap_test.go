package origin

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestServerMaxConnectionsPerAddress: an address holding
// MaxConnectionsPerAddress keep-alive connections has further ones closed
// at accept without an answer, other addresses are served, closing one
// frees a place; refusals are counted and logged once per address.
func TestServerMaxConnectionsPerAddress(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs testpeer.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Config{Address: "127.0.0.1:0", MaxConnections: 100, MaxConnectionsPerAddress: 2}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := NewServer(cfg, h, log, WithServerMetrics(m))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	addr := srv.Addr().String()

	// get sends a keep-alive request on a new connection from the local
	// address from and returns the connection and whether it was answered.
	get := func(from string) (net.Conn, bool) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return c, false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection from %s neither answered nor closed", from)
			}
			return c, false
		}
		resp.Body.Close()
		return c, resp.StatusCode == http.StatusOK
	}

	first, ok1 := get("127.0.0.1")
	_, ok2 := get("127.0.0.1")
	if !ok1 || !ok2 {
		t.Fatal("connections under the cap not served")
	}
	for range 3 {
		if _, ok := get("127.0.0.1"); ok {
			t.Fatal("a third concurrent connection of 127.0.0.1 was served (max_connections_per_address 2)")
		}
	}
	if _, ok := get("127.0.0.2"); !ok {
		t.Fatal("another address was refused")
	}
	_ = first.Close()
	testpeer.WaitFor(t, 5*time.Second, "a closed connection to free its place", func() bool {
		c, ok := get("127.0.0.1")
		_ = c.Close()
		return ok
	})

	want := 3.0
	testpeer.WaitMetricCond(t, reg, 5*time.Second, func(v float64) bool { return v >= want }, "≥ 3 refusals",
		"headwater_origin_connections_refused_total", "reason", "too_many_connections_per_address")
	if n := strings.Count(logs.String(), "origin: connection refused"); n != 1 {
		t.Fatalf("refusals logged %d times, want once per address:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "remote=127.0.0.1") {
		t.Fatalf("log lacks the address:\n%s", logs.String())
	}
}

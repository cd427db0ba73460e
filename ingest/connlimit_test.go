package ingest

import (
	"net"
	"testing"
	"time"
)

func TestConnLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewConnLimiter(60)
	l.now = func() time.Time { return now }
	a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}
	b := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1}
	for i := range 60 {
		if !l.Allow(a) {
			t.Fatalf("connection %d refused", i)
		}
	}
	if l.Allow(a) {
		t.Fatal("61st connection allowed")
	}
	if !l.Allow(b) {
		t.Fatal("another address refused")
	}
	now = now.Add(time.Second) // one token back
	if !l.Allow(a) || l.Allow(a) {
		t.Fatal("refill is not one per second")
	}
	// An IPv6 /64 is one client.
	v6a := &net.TCPAddr{IP: net.ParseIP("2001:db8::1")}
	v6b := &net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:2")}
	for range 60 {
		l.Allow(v6a)
	}
	if l.Allow(v6b) {
		t.Error("another address of the same /64 allowed")
	}
	// Bounded memory.
	l.max = 3
	for i := range 10 {
		l.Allow(&net.TCPAddr{IP: net.IPv4(198, 51, 100, byte(i))})
	}
	if n := l.len(); n != 3 {
		t.Errorf("%d addresses tracked, want 3", n)
	}
	var nilLimiter *ConnLimiter
	if !nilLimiter.Allow(a) || NewConnLimiter(0) != nil {
		t.Error("no limit refuses")
	}
}

func TestConnLimiterUDP(t *testing.T) {
	l := NewConnLimiter(1)
	a := &net.UDPAddr{IP: net.ParseIP("192.0.2.9"), Port: 5000}
	if !l.Allow(a) || l.Allow(&net.UDPAddr{IP: a.IP, Port: 5001}) {
		t.Fatal("UDP addresses are not limited per IP")
	}
}

package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func tcp(s string) net.Addr {
	ap := netip.MustParseAddrPort(s)
	return &net.TCPAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
}

func TestCapPerAddressAndIPv6Prefix(t *testing.T) {
	c := New(3, 2)
	r1, err := c.Acquire(tcp("[2001:db8::1]:1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(tcp("[2001:db8::2]:2")); err != nil {
		t.Fatal(err)
	}
	// Same /64: refused.
	if _, err := c.Acquire(tcp("[2001:db8::ffff]:3")); err == nil {
		t.Fatal("third connection of one /64 accepted")
	}
	// Another address: accepted, then the global cap refuses.
	if _, err := c.Acquire(tcp("192.0.2.1:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(tcp("192.0.2.2:1")); err == nil {
		t.Fatal("connection beyond max accepted")
	}
	r1()
	r1() // a second release does nothing
	if total, from := c.Count(tcp("[2001:db8::9]:1")); total != 2 || from != 1 {
		t.Fatalf("count = %d, %d; want 2, 1", total, from)
	}
	if _, err := c.Acquire(tcp("[2001:db8::3]:1")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	var nilCap *Cap
	if _, err := nilCap.Acquire(nil); err != nil || New(0, 0) != nil {
		t.Fatal("no limit")
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("192.0.2.1:5"), "192.0.2.1/32"},
		{tcp("[::ffff:192.0.2.2]:5"), "192.0.2.2/32"},
		{tcp("[2001:db8:1:2:3:4:5:6]:5"), "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, "invalid Prefix"},
	} {
		if k, _ := Key(tc.addr); k.String() != tc.want {
			t.Errorf("Key(%v) = %s, want %s", tc.addr, k, tc.want)
		}
	}
}

// refusal is one OnRefuse call.
type refusal struct {
	ip  netip.Addr
	log bool
}

// TestPerAddressListener: connections of one address beyond the cap are
// closed at accept, another address still gets through, closing one frees
// a place, and refusals are reported (to log once per address).
func TestPerAddressListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var refused []refusal
	ln := PerAddress(raw, 2, func(remote net.Addr, err error, log bool) {
		if err == nil {
			t.Error("refusal without error")
		}
		mu.Lock()
		refused = append(refused, refusal{AddrIP(remote), log})
		mu.Unlock()
	})
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	// refusedConn waits until the server closed c without a byte.
	refusedConn := func(c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		var ne net.Error
		if n > 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("connection over the cap not closed: %d bytes, %v", n, err)
		}
	}

	dial("127.0.0.1")
	dial("127.0.0.1")
	s1, s2 := accept(), accept()
	defer s2.Close()
	over := dial("127.0.0.1")
	refusedConn(over)
	refusedConn(dial("127.0.0.1"))
	select {
	case c := <-accepted:
		t.Fatalf("a third connection of 127.0.0.1 was accepted: %v", c.RemoteAddr())
	default:
	}

	// Another address still gets through.
	other := dial("127.0.0.2")
	if c := accept(); AddrIP(c.RemoteAddr()) != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("accepted %v, want 127.0.0.2", c.RemoteAddr())
	} else {
		defer c.Close()
	}
	_ = other

	// Closing one (server side, as http.Server does) frees a place.
	_ = s1.Close()
	_ = s1.Close() // gives the place back once only
	again := dial("127.0.0.1")
	c := accept()
	if AddrIP(c.RemoteAddr()) != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("accepted %v", c.RemoteAddr())
	}
	if _, err := again.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refusedConn(dial("127.0.0.1"))

	// The client may see the close before OnRefuse runs.
	deadline := time.Now().Add(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	for len(refused) < 3 && time.Now().Before(deadline) {
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
	}
	if len(refused) != 3 {
		t.Fatalf("%d refusals reported, want 3: %v", len(refused), refused)
	}
	for i, r := range refused {
		if r.ip != netip.MustParseAddr("127.0.0.1") || r.log != (i == 0) {
			t.Errorf("refusal %d = %+v (only the first of an address is to be logged)", i, r)
		}
	}
}

func TestLogGate(t *testing.T) {
	now := time.Unix(1000, 0)
	g := NewLogGate(time.Minute)
	g.now = func() time.Time { return now }
	g.max = 2
	a, b, c := tcp("192.0.2.1:1"), tcp("192.0.2.2:1"), tcp("192.0.2.3:1")
	if !g.Allow(a) || g.Allow(a) || g.Allow(tcp("192.0.2.1:9")) {
		t.Fatal("an address is logged once per interval")
	}
	if !g.Allow(b) || g.Allow(c) {
		t.Fatal("beyond max addresses, new ones wait")
	}
	now = now.Add(time.Minute)
	if !g.Allow(c) || !g.Allow(a) {
		t.Fatal("after the interval an address is logged again")
	}
	if len(g.last) > 2 {
		t.Fatalf("%d addresses remembered", len(g.last))
	}
}

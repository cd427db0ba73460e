// Package connlimit counts concurrent connections in all and per client
// address, for the ingest listeners (RTMP, RTSP, SRT) and the HTTP ones
// (origin, admin) alike. A client address is an IPv4 address or an IPv6 /64
// (one host usually holds a whole /64).
package connlimit

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// AddrIP returns the IP address of a network address, unmapped and without
// zone; the zero Addr when it has none.
func AddrIP(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone("")
}

// Key is the counting key of a remote address: its IPv4 address, or the
// /64 of its IPv6 address. ok is false for an address without IP.
func Key(a net.Addr) (key netip.Prefix, ok bool) {
	ip := AddrIP(a)
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// Cap limits concurrent connections: in all, and per client address (see
// Key). A limit of 0 or less is no limit. Safe for concurrent use; a nil
// Cap allows everything.
type Cap struct {
	max, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]int
}

// New limits connections to max in all and perAddr per address; it returns
// nil (no limit) when both are 0 or less.
func New(max, perAddr int) *Cap {
	if max <= 0 && perAddr <= 0 {
		return nil
	}
	return &Cap{max: max, perAddr: perAddr, byAddr: make(map[netip.Prefix]int)}
}

// Acquire counts a connection from a. When a limit is reached it returns an
// error saying which; otherwise release, which must be called once the
// connection ends (calling it again does nothing).
func (c *Cap) Acquire(a net.Addr) (release func(), err error) {
	if c == nil {
		return func() {}, nil
	}
	key, keyed := Key(a)
	keyed = keyed && c.perAddr > 0
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.total >= c.max {
		return nil, fmt.Errorf("%d connections already (max_connections)", c.total)
	}
	if keyed && c.byAddr[key] >= c.perAddr {
		return nil, fmt.Errorf("%d connections from this address already (max_connections_per_address)", c.byAddr[key])
	}
	c.total++
	if keyed {
		c.byAddr[key]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if keyed {
				if c.byAddr[key]--; c.byAddr[key] <= 0 {
					delete(c.byAddr, key)
				}
			}
		})
	}, nil
}

// Count is the number of connections counted, in all and from a.
func (c *Cap) Count(a net.Addr) (total, fromAddr int) {
	if c == nil {
		return 0, 0
	}
	key, _ := Key(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.byAddr[key]
}

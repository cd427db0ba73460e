package ingest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ConnCap limits concurrent connections: in all, and per client address
// (an IPv4 address or an IPv6 /64, as ConnLimiter). A limit of 0 or less is
// no limit. Safe for concurrent use; a nil ConnCap allows everything.
type ConnCap struct {
	max, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]int
}

// NewConnCap limits connections to max in all and perAddr per address; it
// returns nil (no limit) when both are 0 or less.
func NewConnCap(max, perAddr int) *ConnCap {
	if max <= 0 && perAddr <= 0 {
		return nil
	}
	return &ConnCap{max: max, perAddr: perAddr, byAddr: make(map[netip.Prefix]int)}
}

// Acquire counts a connection from a. When a limit is reached it returns an
// error saying which; otherwise release, which must be called once the
// connection ends (calling it again does nothing).
func (c *ConnCap) Acquire(a net.Addr) (release func(), err error) {
	if c == nil {
		return func() {}, nil
	}
	key, keyed := addrKey(a)
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
func (c *ConnCap) Count(a net.Addr) (total, fromAddr int) {
	if c == nil {
		return 0, 0
	}
	key, _ := addrKey(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.byAddr[key]
}

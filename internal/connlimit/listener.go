package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultLogInterval is how often a Listener reports refusals of one address
// as worth logging.
const DefaultLogInterval = time.Minute

// maxLoggedAddresses bounds the addresses a LogGate remembers.
const maxLoggedAddresses = 4096

// OnRefuse is called for each connection a Listener closes at accept: remote
// is the client's address, err says which limit was reached, and log is true
// at most once per address (see Key) per log interval, so that a flood is
// logged once and counted always.
type OnRefuse func(remote net.Addr, err error, log bool)

// PerAddress wraps ln so that an address (see Key) holds at most perAddr
// connections at a time: a connection beyond is closed at accept, before
// any byte is read or written (no TLS handshake, no HTTP response), and
// onRefuse (which may be nil) is told. A connection's place is given back
// when it is closed. perAddr <= 0 returns ln unchanged.
//
// Wrapped inside a listener that waits for a global slot before Accept
// (netutil.LimitListener), refused connections never take a slot.
func PerAddress(ln net.Listener, perAddr int, onRefuse OnRefuse) net.Listener {
	if perAddr <= 0 {
		return ln
	}
	return &listener{Listener: ln, cap: New(0, perAddr), onRefuse: onRefuse, gate: NewLogGate(DefaultLogInterval)}
}

type listener struct {
	net.Listener
	cap      *Cap
	onRefuse OnRefuse
	gate     *LogGate
}

// Accept returns the next connection whose address is under its limit.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, err := l.cap.Acquire(c.RemoteAddr())
		if err != nil {
			_ = c.Close()
			if l.onRefuse != nil {
				l.onRefuse(c.RemoteAddr(), err, l.gate.Allow(c.RemoteAddr()))
			}
			continue
		}
		return &conn{Conn: c, release: release}, nil
	}
}

// conn gives its place back on the first Close.
type conn struct {
	net.Conn
	release func() // runs once however often it is called
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// LogGate says whether an event of an address is worth logging: at most
// once per address (see Key) per interval. It remembers a bounded number of
// addresses; when that many were seen within the interval, events of other
// addresses are not logged until some expire. Safe for concurrent use.
type LogGate struct {
	interval time.Duration
	max      int
	now      func() time.Time

	mu   sync.Mutex
	last map[netip.Prefix]time.Time
}

// NewLogGate returns a gate letting through one event per address per
// interval.
func NewLogGate(interval time.Duration) *LogGate {
	return &LogGate{interval: interval, max: maxLoggedAddresses, now: time.Now, last: make(map[netip.Prefix]time.Time)}
}

// Allow reports whether an event of a should be logged, and if so notes
// the time.
func (g *LogGate) Allow(a net.Addr) bool {
	key, _ := Key(a) // addresses without IP share the zero key
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.last[key]; ok && now.Sub(at) < g.interval {
		return false
	}
	if len(g.last) >= g.max {
		for k, at := range g.last {
			if now.Sub(at) >= g.interval {
				delete(g.last, k)
			}
		}
		if len(g.last) >= g.max {
			return false
		}
	}
	g.last[key] = now
	return true
}

package ingest

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/headwater-live/headwater/internal/connlimit"
)

// maxLimitedAddresses bounds the addresses the connection limiter tracks.
const maxLimitedAddresses = 10000

// ConnLimiter is a token bucket per client address (an IPv4 address or an
// IPv6 /64): perMinute connections a minute, in bursts of as many. The least
// recently seen addresses are forgotten first beyond maxLimitedAddresses (a
// forgotten address starts again with a full bucket). Safe for concurrent use.
type ConnLimiter struct {
	burst float64
	rate  float64 // tokens per second
	max   int
	now   func() time.Time

	mu      sync.Mutex
	lru     list.List // of *connBucket, most recent first
	buckets map[netip.Prefix]*list.Element
}

type connBucket struct {
	key    netip.Prefix
	tokens float64
	at     time.Time
}

// NewConnLimiter limits each address to perMinute connections a minute; it
// returns nil (no limit) when perMinute <= 0.
func NewConnLimiter(perMinute int) *ConnLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &ConnLimiter{
		burst:   float64(perMinute),
		rate:    float64(perMinute) / 60,
		max:     maxLimitedAddresses,
		now:     time.Now,
		buckets: make(map[netip.Prefix]*list.Element),
	}
}

// addrKey is the limiting key of a remote address (connlimit.Key: an IPv4
// address or an IPv6 /64), shared with ConnCap and the HTTP listeners.
func addrKey(a net.Addr) (netip.Prefix, bool) { return connlimit.Key(a) }

// Allow takes a token for the address, reporting whether one was left. A
// nil limiter allows everything.
func (l *ConnLimiter) Allow(a net.Addr) bool {
	if l == nil {
		return true
	}
	key, ok := addrKey(a)
	if !ok {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *connBucket
	if e, ok := l.buckets[key]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*connBucket)
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
		b.at = now
	} else {
		if l.lru.Len() >= l.max {
			oldest := l.lru.Back()
			delete(l.buckets, oldest.Value.(*connBucket).key)
			l.lru.Remove(oldest)
		}
		b = &connBucket{key: key, tokens: l.burst, at: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// len is the number of addresses tracked.
func (l *ConnLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

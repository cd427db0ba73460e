package auth

import (
	"container/list"
	"sync"
	"time"
)

// DefaultMaxAddresses bounds the addresses a FailureLimiter remembers.
const DefaultMaxAddresses = 10000

// Defaults of the failure limiter's allowance (config.Default's
// auth.publish.rate_limit): DefaultRateLimitFailures failed attempts per
// address, coming back over DefaultRateLimitWindow.
const (
	DefaultRateLimitFailures = 10
	DefaultRateLimitWindow   = time.Minute
)

// FailureLimiter throttles clients that keep failing authentication: each
// client (an IPv4 address or an IPv6 /64) has a bucket of Failures tokens
// refilled at Failures per Window; a failed attempt takes a token, and a
// client whose bucket is empty is refused at once, without its credentials
// being checked, until a token has come back. Successful attempts cost
// nothing. At most MaxAddresses buckets are kept, the least recently used
// being forgotten first, so memory stays bounded whatever the number of
// attackers. It is safe for concurrent use.
type FailureLimiter struct {
	burst float64 // tokens in a full bucket
	rate  float64 // tokens per second
	max   int
	now   func() time.Time

	mu      sync.Mutex
	lru     list.List // of *bucket, most recent at the front
	buckets map[string]*list.Element
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was computed
}

// NewFailureLimiter returns a limiter allowing failures failed attempts per
// window per client, remembering maxAddresses clients (DefaultMaxAddresses
// when <= 0). failures and window must be positive.
func NewFailureLimiter(failures int, window time.Duration, maxAddresses int) *FailureLimiter {
	if failures < 1 {
		failures = 1
	}
	if window <= 0 {
		window = time.Minute
	}
	if maxAddresses <= 0 {
		maxAddresses = DefaultMaxAddresses
	}
	return &FailureLimiter{
		burst:   float64(failures),
		rate:    float64(failures) / window.Seconds(),
		max:     maxAddresses,
		now:     time.Now,
		buckets: make(map[string]*list.Element),
	}
}

// refill brings b up to date; the caller holds mu.
func (l *FailureLimiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens += d * l.rate
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
	}
	b.at = now
}

// Allow reports whether a client, by remote address, may attempt to
// authenticate now.
func (l *FailureLimiter) Allow(remoteAddr string) bool {
	key := clientKey(remoteAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.buckets[key]
	if !ok {
		return true
	}
	b := e.Value.(*bucket)
	l.refill(b, l.now())
	if b.tokens >= l.burst {
		// Full again: forget the client.
		l.lru.Remove(e)
		delete(l.buckets, key)
		return true
	}
	l.lru.MoveToFront(e)
	return b.tokens >= 1
}

// Failure records a failed attempt by a client.
func (l *FailureLimiter) Failure(remoteAddr string) {
	key := clientKey(remoteAddr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.buckets[key]
	var b *bucket
	if ok {
		b = e.Value.(*bucket)
		l.refill(b, now)
		l.lru.MoveToFront(e)
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.buckets, old.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: l.burst, at: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	b.tokens--
	if b.tokens < 0 {
		b.tokens = 0
	}
}

// Len returns the number of clients remembered.
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

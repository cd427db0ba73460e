package relay

import (
	"fmt"
	"net/http"
	"time"
)

// Config configures a Relay. A zero field takes its default.
type Config struct {
	// CacheBytes bounds the bytes of immutable objects (init sections,
	// segments, parts) kept in memory, counting their bodies and keys.
	// Default 256 MiB.
	CacheBytes int64
	// CacheTTL is the longest an object stays in the cache: a stream
	// republished after its grace time reuses its object names, so a cached
	// object must not outlive the live window by much. Default 1m.
	CacheTTL time.Duration
	// MaxIdleConnsPerHost is the number of idle keep-alive connections kept
	// to each owner. Every distinct in-flight upstream request (a blocking
	// playlist reload or part request per rendition, say) holds one
	// connection while it waits, so it should exceed what a node's viewers
	// wait for at once. Default 256.
	MaxIdleConnsPerHost int
	// DialTimeout bounds connecting to an owner. Default 2s.
	DialTimeout time.Duration
	// ResponseTimeout bounds the wait for an owner's response headers and
	// every gap between two reads of its body. It must exceed the owner's
	// origin.block_timeout, or blocking requests are cut. Default 10s.
	ResponseTimeout time.Duration
	// Header is added to every upstream request: the shared secret that
	// makes the owner trust this node (a token check already ran here), as
	// playback.RequireHeader checks it. It is never logged.
	Header http.Header
}

// Defaults of Config.
const (
	DefaultCacheBytes          = 256 << 20
	DefaultCacheTTL            = time.Minute
	DefaultMaxIdleConnsPerHost = 256
	DefaultDialTimeout         = 2 * time.Second
	DefaultResponseTimeout     = 10 * time.Second
)

// WithDefaults returns c with its zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	return c
}

// Validate reports a negative size, count or duration.
func (c Config) Validate() error {
	switch {
	case c.CacheBytes < 0:
		return fmt.Errorf("relay: cache bytes %d is negative", c.CacheBytes)
	case c.CacheTTL < 0:
		return fmt.Errorf("relay: cache TTL %s is negative", c.CacheTTL)
	case c.MaxIdleConnsPerHost < 0:
		return fmt.Errorf("relay: max idle connections per host %d is negative", c.MaxIdleConnsPerHost)
	case c.DialTimeout < 0:
		return fmt.Errorf("relay: dial timeout %s is negative", c.DialTimeout)
	case c.ResponseTimeout < 0:
		return fmt.Errorf("relay: response timeout %s is negative", c.ResponseTimeout)
	}
	return nil
}

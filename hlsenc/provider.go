package hlsenc

import (
	"errors"
	"sync"
)

// ErrKeyGone is returned for a segment whose key period has been dropped:
// the segment left the window long ago and can no longer be served.
var ErrKeyGone = errors.New("hlsenc: key of this segment no longer kept")

// KeyProvider hands out the content keys of streams. Its stream argument
// names a key timeline: the origin uses one per rendition of each stream
// instance ("<stream>#<n>/<rendition>", an opaque string), because the
// store numbers each rendition's segments on its own (a rendition added by
// a republish starts at 0 while the others are far ahead), and the periods
// a provider keeps are counted back from the newest of a timeline.
type KeyProvider interface {
	// KeyFor returns the key of segment msn of stream (and of its parts).
	// It returns the same key for the same arguments for as long as the
	// segment can be served.
	KeyFor(stream string, msn uint64) (Key, error)
	// Lookup returns a key by id, for the key file handler.
	Lookup(stream, id string) (Key, bool)
}

// DefaultKeepPeriods is MemoryConfig.Keep's default.
const DefaultKeepPeriods = 8

// MemoryConfig configures a MemoryProvider.
type MemoryConfig struct {
	// RotateEvery is the number of segments sharing a key: segment msn uses
	// the key of period msn / RotateEvery. 0 means one key per stream.
	RotateEvery uint64
	// Keep is the number of key periods kept per stream, counted back from
	// the newest; older ones are dropped (KeyFor returns ErrKeyGone, Lookup
	// false). It must cover every segment still served: at least
	// ceil((window + keep_extra) / RotateEvery) + 1. 0 means
	// DefaultKeepPeriods.
	Keep int
	// SequenceIV makes the keys use the segment's Media Sequence Number as
	// IV (no IV attribute in EXT-X-KEY) instead of a random explicit IV.
	SequenceIV bool
}

// MemoryProvider keeps random keys in memory, rotated every RotateEvery
// segments. Keys die with the process: after a restart a stream gets new
// keys (with new ids), which is right since its segments are new too. It
// is safe for concurrent use.
type MemoryProvider struct {
	cfg MemoryConfig

	mu      sync.Mutex
	streams map[string]*streamKeys
}

type streamKeys struct {
	newest  uint64
	periods map[uint64]Key
	ids     map[string]uint64
}

// NewMemoryProvider returns an empty provider.
func NewMemoryProvider(cfg MemoryConfig) *MemoryProvider {
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeepPeriods
	}
	return &MemoryProvider{cfg: cfg, streams: make(map[string]*streamKeys)}
}

func (p *MemoryProvider) period(msn uint64) uint64 {
	if p.cfg.RotateEvery == 0 {
		return 0
	}
	return msn / p.cfg.RotateEvery
}

// KeyFor implements KeyProvider, creating keys as new periods begin.
func (p *MemoryProvider) KeyFor(stream string, msn uint64) (Key, error) {
	per := p.period(msn)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.streams[stream]
	if s == nil {
		s = &streamKeys{newest: per, periods: make(map[uint64]Key), ids: make(map[string]uint64)}
		p.streams[stream] = s
	}
	if k, ok := s.periods[per]; ok {
		return k, nil
	}
	if per+uint64(p.cfg.Keep) <= s.newest {
		return Key{}, ErrKeyGone // dropped (or older than anything kept): never re-key served data
	}
	k := newRandomKey(p.cfg.SequenceIV)
	s.periods[per] = k
	s.ids[k.id] = per
	if per > s.newest {
		s.newest = per
		for old, key := range s.periods {
			if old+uint64(p.cfg.Keep) <= s.newest {
				delete(s.ids, key.id)
				delete(s.periods, old)
			}
		}
	}
	return k, nil
}

// Lookup implements KeyProvider.
func (p *MemoryProvider) Lookup(stream, id string) (Key, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.streams[stream]
	if s == nil {
		return Key{}, false
	}
	per, ok := s.ids[id]
	if !ok {
		return Key{}, false
	}
	return s.periods[per], true
}

// Forget drops every key of stream (once the stream is gone for good,
// after its ended grace period).
func (p *MemoryProvider) Forget(stream string) {
	p.mu.Lock()
	delete(p.streams, stream)
	p.mu.Unlock()
}

// Streams returns the number of streams with keys.
func (p *MemoryProvider) Streams() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.streams)
}

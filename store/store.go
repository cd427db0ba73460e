package store

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Config configures a Store.
type Config struct {
	// Window is the number of segments a media playlist lists. It defaults to 6.
	Window int
	// KeepExtra is the number of segments kept past the window so that late
	// readers of a just-dropped segment still get it. It defaults to 4.
	KeepExtra int
	// EndedGrace is how long an ended stream stays readable; a republish within
	// it continues the same playlists. It defaults to 60s.
	EndedGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = 6
	}
	if c.KeepExtra < 0 {
		c.KeepExtra = 0
	} else if c.KeepExtra == 0 {
		c.KeepExtra = 4
	}
	if c.EndedGrace <= 0 {
		c.EndedGrace = 60 * time.Second
	}
	return c
}

// Store holds the streams being served.
type Store struct {
	cfg     Config
	mu      sync.Mutex
	streams map[string]*Stream
}

// New returns an empty store.
func New(cfg Config) *Store {
	return &Store{cfg: cfg.withDefaults(), streams: make(map[string]*Stream)}
}

// Config returns the effective configuration.
func (s *Store) Config() Config { return s.cfg }

// Begin is called by the writer when a publish of name starts. A stream that
// ended less than EndedGrace ago is continued: its epoch increases and the
// next segment of every rendition is a discontinuity. Otherwise a new stream
// replaces any old one.
func (s *Store) Begin(name string) *Stream {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.streams[name]; ok {
		if st.resume(now, s.cfg.EndedGrace) {
			return st
		}
	}
	st := &Stream{name: name, store: s, live: true, started: now}
	s.streams[name] = st
	return st
}

// Stream returns a stream by name, live or ended within the grace time.
func (s *Store) Stream(name string) (*Stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[name]
	return st, ok
}

// Names lists the streams held, sorted.
func (s *Store) Names() []string {
	s.mu.Lock()
	out := make([]string, 0, len(s.streams))
	for name := range s.streams {
		out = append(out, name)
	}
	s.mu.Unlock()
	sort.Strings(out)
	return out
}

// Sweep forgets streams that ended more than EndedGrace before now.
func (s *Store) Sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range s.streams {
		if st.expired(now, s.cfg.EndedGrace) {
			delete(s.streams, name)
		}
	}
}

// Run sweeps expired streams every second until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Sweep(now)
		}
	}
}

// Stream is one stream's renditions, across republishes.
type Stream struct {
	name    string
	store   *Store
	started time.Time

	mu         sync.Mutex
	renditions []*Rendition
	epoch      int
	live       bool
	held       bool // Hold: End suspends instead of ending
	endedAt    time.Time
	// seeds are where renditions not added yet continue (BeginSeeded), by
	// name; seedEnd/seedTimescale where the timeline does.
	seeds         map[string]SeedRendition
	seedEnd       uint64
	seedTimescale uint32
}

// Name is the stream's name ("live/key").
func (st *Stream) Name() string { return st.name }

// Started is when the stream was first published (it survives republishes);
// DASH uses it as the availabilityStartTime.
func (st *Stream) Started() time.Time { return st.started }

// Epoch counts publishes: 0 for the first, +1 for each republish.
func (st *Stream) Epoch() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.epoch
}

// Live reports whether a publisher is currently feeding the stream.
func (st *Stream) Live() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.live
}

// Renditions returns the renditions in the order they were added.
func (st *Stream) Renditions() []*Rendition {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]*Rendition(nil), st.renditions...)
}

// Rendition finds a rendition by name.
func (st *Stream) Rendition(name string) (*Rendition, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.renditions {
		if r.name == name {
			return r, true
		}
	}
	return nil, false
}

// AddRendition returns the rendition called info.Name, creating it with info
// if it does not exist yet. A rendition carried over from an earlier publish
// keeps its sequence numbers and timeline.
func (st *Stream) AddRendition(info RenditionInfo) *Rendition {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.renditions {
		if r.name == info.Name {
			r.reopen()
			return r
		}
	}
	r := newRendition(st, info)
	st.renditions = append(st.renditions, r)
	if sr, ok := st.seeds[info.Name]; ok {
		r.seed(sr)
	}
	return r
}

// End marks the publish as over: every rendition closes its open segment and
// ends (readers see ENDLIST). The stream stays readable for EndedGrace.
// While the stream is held (Hold), End only suspends it: the open segments
// close, but the renditions stay live (no ENDLIST, blocking reloads keep
// waiting) for the next publish, which continues them as a republish does.
func (st *Stream) End() {
	st.mu.Lock()
	if st.held {
		rs := append([]*Rendition(nil), st.renditions...)
		st.mu.Unlock()
		for _, r := range rs {
			r.suspend()
		}
		return
	}
	st.live = false
	st.endedAt = time.Now()
	rs := append([]*Rendition(nil), st.renditions...)
	st.mu.Unlock()
	for _, r := range rs {
		r.End()
	}
}

// Hold keeps the stream live across the end of its publishes, until
// Release: a stream whose publisher may come back (a reconnect window, a
// backup publisher, a slate between them).
func (st *Stream) Hold() {
	st.mu.Lock()
	st.held = true
	st.mu.Unlock()
}

// Release undoes Hold and ends the stream (End): its publisher did not
// come back. Call it when no publish feeds the stream.
func (st *Stream) Release() {
	st.mu.Lock()
	st.held = false
	st.mu.Unlock()
	st.End()
}

// Held reports whether the stream is held (Hold).
func (st *Stream) Held() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.held
}

func (st *Stream) resume(now time.Time, grace time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.live {
		// The previous writer did not end cleanly; continue anyway.
		st.epoch++
		st.markDiscontinuity()
		return true
	}
	if now.Sub(st.endedAt) > grace {
		return false
	}
	st.live = true
	st.epoch++
	st.markDiscontinuity()
	return true
}

// markDiscontinuity runs with st.mu held.
func (st *Stream) markDiscontinuity() {
	for _, r := range st.renditions {
		r.markDiscontinuity(st.epoch)
	}
}

func (st *Stream) expired(now time.Time, grace time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return !st.live && now.Sub(st.endedAt) > grace
}

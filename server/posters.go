package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/thumbnail"
)

// posterWidth bounds a poster's width: a stream list's thumbnail, not a
// frame grab.
const posterWidth = 640

// posterLoop keeps a poster of every live stream (origin.Posters): every
// interval, a JPEG of the first picture of its first video rendition's
// newest complete segment (a key frame), decoded by ffmpeg from the
// segment's first part, apart from the packaging and the ABR ladder.
type posterLoop struct {
	maker *thumbnail.Maker
	every time.Duration
	log   *slog.Logger

	mu sync.Mutex
	m  map[string]poster
}

type poster struct {
	st   *store.Stream
	msn  uint64
	jpeg []byte
	made time.Time
}

func newPosterLoop(m *thumbnail.Maker, every time.Duration, log *slog.Logger) *posterLoop {
	return &posterLoop{maker: m, every: every, log: log, m: make(map[string]poster)}
}

// Poster implements origin.Posters.
func (l *posterLoop) Poster(stream string) ([]byte, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.m[stream]
	return p.jpeg, p.made, ok && len(p.jpeg) > 0
}

// run refreshes the posters every interval until ctx ends.
func (l *posterLoop) run(ctx context.Context, s *store.Store) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.refresh(ctx, s)
		}
	}
}

// refresh makes the posters that are due and forgets those of streams the
// store no longer holds.
func (l *posterLoop) refresh(ctx context.Context, s *store.Store) {
	names := s.Names()
	held := make(map[string]bool, len(names))
	for _, name := range names {
		held[name] = true
		st, ok := s.Stream(name)
		if !ok || !st.Live() {
			continue
		}
		l.refreshOne(ctx, st)
		if ctx.Err() != nil {
			return
		}
	}
	l.mu.Lock()
	for name := range l.m {
		if !held[name] {
			delete(l.m, name)
		}
	}
	l.mu.Unlock()
}

func (l *posterLoop) refreshOne(ctx context.Context, st *store.Stream) {
	for _, r := range st.Renditions() {
		snap := r.Snapshot()
		if snap.Info.Kind != media.KindVideo {
			continue
		}
		n := len(snap.Segments)
		if n == 0 {
			return
		}
		seg := snap.Segments[n-1]
		l.mu.Lock()
		old, had := l.m[st.Name()]
		l.mu.Unlock()
		if had && old.st == st && old.msn == seg.MSN || seg.Gap || len(seg.Parts) == 0 {
			return
		}
		in, ok := snap.Init(seg.InitName)
		if !ok {
			return
		}
		jpeg, err := l.maker.Poster(ctx, in.Data, seg.Parts[0].Data, posterWidth)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("poster: not made", "stream", st.Name(), "rendition", r.Name(), "msn", seg.MSN, "error", err)
			}
			return
		}
		l.mu.Lock()
		l.m[st.Name()] = poster{st: st, msn: seg.MSN, jpeg: jpeg, made: time.Now()}
		l.mu.Unlock()
		return
	}
}

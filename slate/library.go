package slate

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Library.
type Config struct {
	// Source is what the slates show; the zero value is the built-in card.
	Source Source
	// FFmpeg is the ffmpeg binary; default "ffmpeg" (looked up in PATH).
	FFmpeg string
	// GOP is the slate's key frame interval, normally the segment target;
	// default 2s. A loop is a whole number of GOPs.
	GOP time.Duration
	// MaxMedia is the longest loop taken from a media source, rounded up
	// to whole GOPs (a shorter file's loop is its length rounded up, its
	// last picture held); default 10s.
	MaxMedia time.Duration
	// MaxClips bounds the clips kept (least recently used go first);
	// default 32.
	MaxClips int
	// Timeout bounds one encode, whoever waits for it; default 2m.
	Timeout time.Duration
	// Log receives a line per encode; nil discards.
	Log *slog.Logger
}

// Library makes slate clips with ffmpeg and keeps them: each parameter set
// is encoded once (concurrent requests for it wait for the one encode), at
// most Config.MaxClips clips are kept (least recently used evicted). It is
// safe for concurrent use.
type Library struct {
	cfg Config

	mu      sync.Mutex
	clips   map[Params]*list.Element // of *Clip, most recently used in front
	lru     *list.List
	flights map[Params]*flight

	encodes atomic.Int64 // ffmpeg encodes started (probes not counted)
}

// flight is one encode in progress and the callers waiting for it.
type flight struct {
	done    chan struct{} // closed when clip and err are set
	clip    *Clip
	err     error
	waiters int                // callers waiting; the last to give up cancels
	cancel  context.CancelFunc // ends the encode
}

// NewLibrary returns a Library with cfg's defaults filled in.
func NewLibrary(cfg Config) *Library {
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.GOP <= 0 {
		cfg.GOP = 2 * time.Second
	}
	if cfg.MaxMedia <= 0 {
		cfg.MaxMedia = 10 * time.Second
	}
	if cfg.MaxClips <= 0 {
		cfg.MaxClips = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Library{
		cfg:     cfg,
		clips:   map[Params]*list.Element{},
		lru:     list.New(),
		flights: map[Params]*flight{},
	}
}

// Clip returns the clip for p, encoding it on first use. Callers asking for
// the same p while it is encoded wait for that encode; one whose ctx ends
// first returns ctx's error, and when the last waiting caller has gone the
// encode is stopped (its ffmpeg killed) before Clip returns. Failures are
// not kept: the next call tries again.
func (l *Library) Clip(ctx context.Context, p Params) (*Clip, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("slate %s: %w", p, err)
	}
	l.mu.Lock()
	if e, ok := l.clips[p]; ok {
		l.lru.MoveToFront(e)
		l.mu.Unlock()
		return e.Value.(*Clip), nil
	}
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("slate %s: %w", p, err)
	}
	f := l.flights[p]
	if f == nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
		f = &flight{done: make(chan struct{}), cancel: cancel}
		l.flights[p] = f
		go l.fly(fctx, f, p)
	}
	f.waiters++
	l.mu.Unlock()

	select {
	case <-f.done:
		return f.clip, f.err
	case <-ctx.Done():
	}
	l.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last {
		f.cancel()
		if l.flights[p] == f {
			delete(l.flights, p)
		}
	}
	l.mu.Unlock()
	if last {
		<-f.done // the encode ends promptly once cancelled: no ffmpeg outlives the call
	}
	select {
	case <-f.done:
		if f.err == nil {
			return f.clip, nil
		}
	default:
	}
	return nil, fmt.Errorf("slate %s: %w", p, ctx.Err())
}

// fly runs one encode and hands its result to the flight's waiters.
func (l *Library) fly(ctx context.Context, f *flight, p Params) {
	defer f.cancel()
	clip, err := l.encode(ctx, p)
	if err != nil {
		err = fmt.Errorf("slate %s: %w", p, err)
	}
	if err != nil && ctx.Err() == nil {
		l.cfg.Log.Warn("slate encode failed", "params", p.String(), "source", l.cfg.Source.String(), "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flights[p] == f {
		delete(l.flights, p)
	}
	if err == nil {
		l.clips[p] = l.lru.PushFront(clip)
		for l.lru.Len() > l.cfg.MaxClips {
			old := l.lru.Remove(l.lru.Back()).(*Clip)
			delete(l.clips, old.Params)
		}
	}
	f.clip, f.err = clip, err
	close(f.done)
}

// Len is the number of clips kept.
func (l *Library) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

package thumbnail

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	// DefaultFFmpeg is the ffmpeg binary looked up in PATH.
	DefaultFFmpeg = "ffmpeg"
	// DefaultPosterProcesses is how many poster ffmpeg processes run at
	// once.
	DefaultPosterProcesses = 2
	// DefaultSpriteProcesses is how many sprite ffmpeg processes run at
	// once.
	DefaultSpriteProcesses = 1
	// DefaultPosterTimeout bounds one Poster call.
	DefaultPosterTimeout = 10 * time.Second
)

// stderrLimit is how much of an ffmpeg process's stderr is kept for its
// error.
const stderrLimit = 2 << 10

// Config configures a Maker. Zero fields take their defaults.
type Config struct {
	// FFmpeg is the ffmpeg binary (DefaultFFmpeg), executed for each
	// process unless Starter is set.
	FFmpeg string
	// Starter, when set, starts the ffmpeg processes instead: a fork
	// server's, say, which saves a poster three quarters of its CPU
	// (see the package documentation).
	Starter Starter
	// PosterProcesses caps the ffmpeg processes making posters at once
	// (DefaultPosterProcesses); more Poster calls wait for a slot.
	PosterProcesses int
	// SpriteProcesses caps the ffmpeg processes making sprites at once
	// (DefaultSpriteProcesses), apart from the posters' so that a long
	// recording never holds up live posters.
	SpriteProcesses int
	// PosterTimeout bounds one Poster call, waiting for a slot included
	// (DefaultPosterTimeout).
	PosterTimeout time.Duration
}

// Validate checks the configuration: no negative value.
func (c Config) Validate() error {
	switch {
	case c.PosterProcesses < 0:
		return fmt.Errorf("thumbnail: poster processes %d: must not be negative", c.PosterProcesses)
	case c.SpriteProcesses < 0:
		return fmt.Errorf("thumbnail: sprite processes %d: must not be negative", c.SpriteProcesses)
	case c.PosterTimeout < 0:
		return fmt.Errorf("thumbnail: poster timeout %s: must not be negative", c.PosterTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.FFmpeg = orDefault(c.FFmpeg, DefaultFFmpeg)
	c.PosterProcesses = orDefault(c.PosterProcesses, DefaultPosterProcesses)
	c.SpriteProcesses = orDefault(c.SpriteProcesses, DefaultSpriteProcesses)
	c.PosterTimeout = orDefault(c.PosterTimeout, DefaultPosterTimeout)
	return c
}

// orDefault is v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Maker makes posters and sprites with ffmpeg. It is safe for concurrent
// use and holds no process between calls: each call starts its ffmpeg
// and waits for it before returning.
type Maker struct {
	cfg     Config
	starter Starter
	posters chan struct{} // a token per poster process running
	sprites chan struct{} // a token per sprite process running
}

// New returns a Maker for cfg, which must be valid.
func New(cfg Config) (*Maker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	starter := cfg.Starter
	if starter == nil {
		starter = execStarter{path: cfg.FFmpeg}
	}
	return &Maker{
		cfg:     cfg,
		starter: starter,
		posters: make(chan struct{}, cfg.PosterProcesses),
		sprites: make(chan struct{}, cfg.SpriteProcesses),
	}, nil
}

// acquire takes a slot of sem, or fails when ctx ends first (a slot
// freed as ctx ends is not taken: no process starts for a call already
// over). The slot is given back with release.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		if ctx.Err() == nil {
			return nil
		}
		release(sem)
	case <-ctx.Done():
	}
	return fmt.Errorf("waiting for a free ffmpeg slot (%d busy): %w", cap(sem), context.Cause(ctx))
}

func release(sem chan struct{}) { <-sem }

// tail keeps the last stderrLimit bytes written to it (ffmpeg's error is
// its last line).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - stderrLimit; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

// String returns the lines kept, trimmed, joined with " | ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for l := range strings.Lines(string(t.buf)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, " | ")
}

package thumbnail

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
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

// waitDelay is how long Wait waits for a killed process's output pipes to
// close (a process it started, holding them, could keep them open).
const waitDelay = 2 * time.Second

// Config configures a Maker. Zero fields take their defaults.
type Config struct {
	// FFmpeg is the ffmpeg binary (DefaultFFmpeg).
	FFmpeg string
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
	posters chan struct{} // a token per poster process running
	sprites chan struct{} // a token per sprite process running
}

// New returns a Maker for cfg, which must be valid.
func New(cfg Config) (*Maker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Maker{
		cfg:     cfg,
		posters: make(chan struct{}, cfg.PosterProcesses),
		sprites: make(chan struct{}, cfg.SpriteProcesses),
	}, nil
}

// acquire takes a slot of sem, or fails when ctx ends first. The slot is
// given back with release.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a free ffmpeg slot (%d busy): %w", cap(sem), context.Cause(ctx))
	}
}

func release(sem chan struct{}) { <-sem }

// command is ffmpeg with args in a process group of its own, the whole
// group killed when ctx ends. Its stderr goes to stderr.
func (m *Maker) command(ctx context.Context, args []string, stderr *tail) *exec.Cmd {
	cmd := exec.CommandContext(ctx, m.cfg.FFmpeg, args...)
	cmd.SysProcAttr = procAttr()
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing ffmpeg's process group: %w", err)
		}
		return nil
	}
	cmd.WaitDelay = waitDelay
	cmd.Stderr = stderr
	return cmd
}

// runError explains why an ffmpeg process failed: ctx ended (what says
// what was running), or it exited with an error, described with the tail
// of its stderr.
func runError(ctx context.Context, what string, err error, stderr *tail) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	if s := stderr.String(); s != "" {
		return fmt.Errorf("ffmpeg: %w: %s", err, s)
	}
	return fmt.Errorf("ffmpeg: %w", err)
}

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

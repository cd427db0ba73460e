package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/headwater-live/headwater/thumbnail"
	"github.com/headwater-live/headwater/transcoder"
)

// forkStarter starts the thumbnail maker's ffmpeg processes from a fork
// server of their own (transcoder.ForkServer), so that a poster costs
// about a quarter of an executed ffmpeg's CPU. A fork server that died is
// started again, at most once a minute; meanwhile starts fail (the poster
// or sprite job fails, logged, and is tried again later).
type forkStarter struct {
	ffmpeg, dir string
	log         *slog.Logger

	mu      sync.Mutex
	fs      *transcoder.ForkServer
	tried   time.Time
	closed  bool
	lastErr error
}

// newForkStarter starts the fork server per transcoder.fork_server: nil
// with "off", or with "auto" when it cannot start (thumbnails then execute
// ffmpeg), an error with "on".
func newForkStarter(mode transcoder.ForkServerMode, ffmpeg, dir string, log *slog.Logger) (*forkStarter, error) {
	if mode == transcoder.ForkServerOff {
		return nil, nil
	}
	f := &forkStarter{ffmpeg: ffmpeg, dir: dir, log: log}
	if err := f.restartLocked(); err != nil {
		if mode == transcoder.ForkServerOn {
			return nil, err
		}
		log.Warn("thumbnails: no fork server, each ffmpeg is executed (~60 ms more CPU per poster)", "error", err)
		return nil, nil
	}
	log.Info("thumbnails: ffmpeg forked from a fork server of their own")
	return f, nil
}

var errForkStarterClosed = errors.New("thumbnails: fork server closed")

func (f *forkStarter) restartLocked() error {
	f.tried = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fs, err := transcoder.StartForkServer(ctx, f.ffmpeg, f.dir)
	if err != nil {
		f.lastErr = err
		return err
	}
	f.fs = fs
	return nil
}

// StartFFmpeg implements thumbnail.Starter.
func (f *forkStarter) StartFFmpeg(args []string, stdin, stdout, stderr *os.File) (thumbnail.Process, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, errForkStarterClosed
	}
	if !f.fs.Alive() {
		if time.Since(f.tried) < time.Minute {
			err := f.lastErr
			f.mu.Unlock()
			return nil, err
		}
		f.fs.Close()
		if err := f.restartLocked(); err != nil {
			f.mu.Unlock()
			f.log.Error("thumbnails: fork server cannot restart", "error", err)
			return nil, err
		}
		f.log.Warn("thumbnails: fork server restarted")
	}
	fs := f.fs
	f.mu.Unlock()
	return fs.Start(args, stdin, stdout, stderr)
}

// close ends the fork server.
func (f *forkStarter) close() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.fs.Close()
}

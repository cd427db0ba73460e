package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// errEntryGone is store's error for an entry whose data file is missing.
var errEntryGone = errors.New("the entry's data file is gone")

// Run commits (see the package doc) and uploads the spooled entries until
// ctx ends, then waits for the commit and the uploads under way (uploads
// cut short by ctx: their entries stay spooled) and returns nil; Close
// commits what is left. Committed entries are started oldest first, up to
// Workers at once, never two of one key at once. After a failed upload no
// upload starts for a pause that doubles with each failure in a row
// (MinBackoff up to MaxBackoff), and until one succeeds again they go one
// at a time, so that an outage costs one request per pause, whatever the
// backlog. It fails at once when another Run is running.
func (s *Spool) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("spool: Run is running already")
	}
	s.running = true
	s.mu.Unlock()

	var uploads, committer sync.WaitGroup
	committer.Go(func() { s.commitLoop(ctx) })
	defer func() {
		committer.Wait()
		uploads.Wait()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		pause := s.dispatch(ctx, &uploads)
		var wait <-chan time.Time
		if pause > 0 {
			timer.Reset(pause)
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-wait:
		}
	}
}

// dispatch starts the uploads that may start now, and returns how long
// the pause after a failure still lasts (0 when there is none).
func (s *Spool) dispatch(ctx context.Context, uploads *sync.WaitGroup) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return 0
	}
	if d := time.Until(s.pauseUntil); d > 0 {
		return d
	}
	limit := s.cfg.Workers
	if s.failures > 0 {
		limit = 1
	}
	for el := s.queue.Front(); el != nil && s.uploads < limit; el = el.Next() {
		e := el.Value.(*entry)
		if !e.committed || e.uploading || s.busy[e.key] {
			continue
		}
		e.uploading = true
		s.busy[e.key] = true
		s.uploads++
		uploads.Add(1)
		go func() {
			defer uploads.Done()
			s.upload(ctx, e)
		}()
	}
	return 0
}

// backoff is the pause after the n-th failure in a row (n >= 1).
func (c Config) backoff(n int) time.Duration {
	d := c.MinBackoff
	for i := 1; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

// upload stores e and takes it out of the spool, or records the failure.
func (s *Spool) upload(ctx context.Context, e *entry) {
	defer s.signal()
	start := time.Now()
	uctx, cancel := context.WithTimeout(ctx, s.cfg.UploadTimeout)
	err := s.store(uctx, e)
	cancel()
	took := time.Since(start)

	s.mu.Lock()
	switch {
	case err != nil && ctx.Err() != nil:
		// Run is ending: the entry stays for the next Run, no failure.
		s.doneLocked(e)
		s.mu.Unlock()
	case errors.Is(err, errEntryGone):
		s.log.Error("recording spool: an entry's data file is gone, entry dropped", "key", e.key, "seq", e.seq)
		s.m.errors.WithLabelValues(opRead).Inc()
		s.doneLocked(e)
		remove := s.dropEntryLocked(e, dropUnreadable)
		s.mu.Unlock()
		for _, e := range remove {
			s.removeEntryFiles(e)
		}
	case err != nil:
		s.doneLocked(e)
		s.failedLocked(err)
		s.mu.Unlock()
	default:
		s.m.uploads.WithLabelValues(resultOK).Inc()
		s.m.duration.Observe(took.Seconds())
		if s.failures > 0 {
			s.log.Info("recording uploads resumed", "backend", s.backend.String(),
				"failing_for", time.Since(s.failingSince).Round(time.Millisecond), "failed_uploads", s.failures)
		}
		s.failures, s.pauseUntil, s.failingSince, s.lastErr = 0, time.Time{}, time.Time{}, nil
		s.mu.Unlock()
		// OnStored before the entry leaves (still marked uploading, so
		// that it is not started again): a Flush that returns has seen
		// its entries' OnStored calls.
		if s.cfg.OnStored != nil {
			s.cfg.OnStored(e.key, e.size)
		}
		s.mu.Lock()
		s.doneLocked(e)
		s.removeLocked(e)
		s.updateGaugesLocked()
		s.mu.Unlock()
		if s.putter != nil {
			s.releaseTaken(e)
		} else {
			s.removeEntryFiles(e)
		}
	}
}

// doneLocked marks e's upload as over.
func (s *Spool) doneLocked(e *entry) {
	e.uploading = false
	delete(s.busy, e.key)
	s.uploads--
}

// dropEntryLocked drops e (no longer uploading) for reason, and returns
// the entries whose files the caller removes (dropLocked).
func (s *Spool) dropEntryLocked(e *entry, reason string) []*entry {
	remove := s.dropLocked(e, reason)
	s.updateGaugesLocked()
	return remove
}

// failedLocked records a failed upload: the pause before the next one
// (unless it failed during a pause, started before it), the failure's
// start for Healthy, a log line at the first failure in a row.
func (s *Spool) failedLocked(err error) {
	now := time.Now()
	s.m.uploads.WithLabelValues(resultError).Inc()
	s.lastErr = err
	if s.failingSince.IsZero() {
		s.failingSince = now
		s.log.Warn("recording uploads failing, retrying with backoff", "backend", s.backend.String(), "err", err)
	}
	if now.Before(s.pauseUntil) {
		return
	}
	s.failures++
	s.pauseUntil = now.Add(s.cfg.backoff(s.failures))
}

// store uploads e's data (committed: durable): by PutSyncedFile or
// PutFile when the backend is a FilePutter, else by Put from the file.
func (s *Spool) store(ctx context.Context, e *entry) error {
	path := s.dataPath(e.seq)
	if s.putter != nil {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return errEntryGone
		}
		if s.synced != nil {
			return s.synced.PutSyncedFile(ctx, e.key, path)
		}
		return s.putter.PutFile(ctx, e.key, path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errEntryGone
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	return s.backend.Put(ctx, e.key, f, e.size, e.contentType)
}

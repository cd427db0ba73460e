package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// commitLoop is Run's committer: CommitInterval after an entry is added
// to an empty batch it commits the batch, until ctx ends (what is left
// then is Close's to commit, or the next Run's).
func (s *Spool) commitLoop(ctx context.Context) {
	timer := time.NewTimer(s.cfg.CommitInterval)
	defer timer.Stop()
	// Entries may be waiting from before: resumed, or added with no Run
	// (their wake-up taken by a Run that ended).
	s.mu.Lock()
	waiting := len(s.pending) > 0
	s.mu.Unlock()
	if waiting {
		s.signalCommit()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.commitC:
		}
		timer.Reset(s.cfg.CommitInterval)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		// A failure is logged, counted and reported by Healthy.
		_ = s.commit()
	}
}

// commit makes the entries added since the last commit durable and lets
// Run upload them; the older entries they replaced then leave the disk.
// When the sync fails, the entries whose files cannot be synced are
// dropped, and it returns an error saying how many, with the sync's.
func (s *Spool) commit() error {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	if len(batch) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.batches++
	s.mu.Unlock()

	start := time.Now()
	failed, syncErr := s.syncBatch(batch)
	s.m.commitDuration.Observe(time.Since(start).Seconds())

	s.mu.Lock()
	var remove []*entry
	dropped := 0
	for _, e := range batch {
		switch {
		case e.removed:
			// Replaced or dropped meanwhile: its files are gone, and the
			// older entries it replaced are its replacement's to remove.
		case failed[e.seq]:
			remove = append(remove, s.dropLocked(e, dropSync)...)
			dropped++
		default:
			e.committed = true
			remove = append(remove, e.obsolete...)
			e.obsolete = nil
		}
	}
	s.committed++
	close(s.commitEnd)
	s.commitEnd = make(chan struct{})
	var err error
	switch {
	case dropped > 0:
		err = fmt.Errorf("spool commit: %d entries dropped, their files could not be synced: %w", dropped, syncErr)
		if s.syncErr == nil {
			s.log.Error("recording spool: cannot make entries durable, dropping them", "entries", dropped, "err", syncErr)
		}
		s.syncErr = syncErr
		s.syncDrops += dropped
	case s.syncErr != nil:
		s.log.Info("recording spool: entries are made durable again", "dropped_entries", s.syncDrops)
		s.syncErr, s.syncDrops = nil, 0
	}
	s.updateGaugesLocked()
	s.mu.Unlock()

	for _, e := range remove {
		s.removeEntryFiles(e)
	}
	s.signal()
	return err
}

// syncBatch makes the files of batch's entries (their data files and the
// meta log segments holding their records) and the directory durable:
// with syncFS, or when there is none or it fails, one file at a time,
// then the directory. It returns the seqs of the entries whose files could
// not be synced (all of them when the directory could not) and the first
// error of those. A file that is gone belongs to an entry that left the
// spool meanwhile: not a failure.
func (s *Spool) syncBatch(batch []*entry) (failed map[uint64]bool, err error) {
	if s.syncFS != nil {
		ferr := s.syncFS()
		if ferr == nil {
			return nil, nil
		}
		s.m.errors.WithLabelValues(opSync).Inc()
		s.log.Warn("recording spool: syncfs failed, syncing the batch's files one by one", "entries", len(batch), "err", ferr)
	}
	failed = map[uint64]bool{}
	segs := map[uint64]error{} // a segment's sync's result, by name
	for _, e := range batch {
		perr := s.syncPath(s.dataPath(e.seq))
		switch {
		case perr != nil && !errors.Is(perr, fs.ErrNotExist):
		case e.seg == nil: // a legacy entry, resumed
			perr = s.syncPath(s.metaPath(e.seq))
		default:
			serr, done := segs[e.seg.name]
			if !done {
				serr = s.syncPath(s.path(e.seg.name, logSuffix))
				segs[e.seg.name] = serr
			}
			perr = serr
		}
		if perr == nil || errors.Is(perr, fs.ErrNotExist) {
			continue
		}
		s.m.errors.WithLabelValues(opSync).Inc()
		failed[e.seq] = true
		if err == nil {
			err = perr
		}
	}
	if derr := s.syncPath(s.cfg.Dir); derr != nil {
		// The batch's directory entries may not be durable: none of its
		// entries is.
		s.m.errors.WithLabelValues(opSync).Inc()
		for _, e := range batch {
			failed[e.seq] = true
		}
		err = derr
	}
	return failed, err
}

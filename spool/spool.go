// Package spool is the bounded, crash-safe local queue that recorded
// objects wait in until they are stored in an objstore.Backend, so that
// the live path never waits on storage: Add writes an entry to local disk
// and returns; Run uploads the entries, oldest first, retrying failures
// with exponential backoff for as long as it takes.
//
// Each entry is one file in the spool directory, <seq>.data, named by a
// sequence number that only grows: the object's bytes, which a FilePutter
// backend can take by rename. Its key, content type and size are its
// record, a JSON line of the meta log, <seq>.log files shared by the
// entries (see log.go). Add writes the data file, then appends the
// record (a data file without one is an Add cut short), and returns
// without syncing anything. Durability is made in groups (group commit):
// Run's committer, CommitInterval after the first entry added since its
// last commit, makes every entry added by then durable at once, with one
// syncfs(2) of the spool's file system (on Linux; elsewhere, or when the
// syncfs fails, with an fsync of each of the batch's files and one of the
// directory), and only then lets them be uploaded. So:
//
//   - an entry whose Add returned survives a crash of the process (kill
//     -9): its files are in the kernel's cache, and Open resumes it;
//   - an entry survives a crash of the machine (kernel crash, power loss)
//     once it is committed: at the latest CommitInterval, plus the time the
//     sync takes, after its Add returned (Durable waits for it). A machine
//     crash may lose the entries not committed yet, never resume one torn:
//     Open drops an entry whose record is missing or unreadable or does
//     not match its data file's size (file systems that order their
//     metadata after the data, as ext4's default data=ordered, XFS and
//     btrfs do, never show a crashed file's unwritten blocks);
//   - no entry is uploaded before it is committed; an entry that replaces
//     a committed one of its key keeps the older one's files until it is
//     committed itself, so that a machine crash leaves one of the two;
//   - removing an entry's files (after its upload, its replacement, or a
//     drop) is not synced: after a machine crash an entry stored just
//     before may come back and be stored again (the same bytes under the
//     same key);
//   - Close commits what is left.
//
// Open resumes the entries left by a previous process, in their order
// (those of a spool written before the meta log too, each with its record
// in a <seq>.meta file), and removes torn ones. A commit whose sync
// fails drops the entries whose files cannot be synced (logged, counted,
// reported by Healthy until a commit succeeds).
//
// The spool is bounded by Config.MaxBytes: past it the oldest entries not
// being uploaded are dropped (and counted), never the newest, and Add
// never blocks on the backend.
package spool

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxBytes       = 1 << 30
	DefaultWorkers        = 4
	DefaultMinBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultUnhealthyAfter = 30 * time.Second
	DefaultUploadTimeout  = 2 * time.Minute
	DefaultCommitInterval = 100 * time.Millisecond
)

// Config configures a Spool.
type Config struct {
	// Dir is the spool directory, created if missing. One spool (one
	// process) uses it at a time: Open locks it.
	Dir string
	// MaxBytes caps the bytes of the entries spooled (their data); past
	// it the oldest entries not being uploaded are dropped. It defaults to
	// DefaultMaxBytes (1 GiB).
	MaxBytes int64
	// Workers is the number of uploads at once. It defaults to 4.
	Workers int
	// MinBackoff and MaxBackoff bound the pause after a failed upload: it
	// starts at MinBackoff and doubles with each failure in a row, up to
	// MaxBackoff. They default to 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// UnhealthyAfter is how long uploads must have been failing (with no
	// success since) before Healthy reports it. It defaults to 30s.
	UnhealthyAfter time.Duration
	// UploadTimeout bounds one upload. It defaults to 2 minutes.
	UploadTimeout time.Duration
	// CommitInterval is how long the first entry added since the last
	// commit waits for others before Run's committer makes them all
	// durable with one sync (see the package doc): the longest an entry
	// stays exposed to a machine crash, not counting the sync itself, and
	// the delay it adds before an upload. It defaults to 100ms.
	CommitInterval time.Duration
	// OnStored, when set, is called after each entry has been stored,
	// from the goroutine that uploaded it. It must not block for long.
	OnStored func(key string, size int64)
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.UnhealthyAfter == 0 {
		c.UnhealthyAfter = DefaultUnhealthyAfter
	}
	if c.UploadTimeout == 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	return c
}

// check reports the first invalid field of c (after withDefaults).
func (c Config) check() error {
	switch {
	case c.Dir == "":
		return errors.New("spool: no directory")
	case c.MaxBytes < 0:
		return fmt.Errorf("spool: max bytes %d below 0", c.MaxBytes)
	case c.Workers < 0:
		return fmt.Errorf("spool: %d workers", c.Workers)
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("spool: backoff %s..%s is not a range", c.MinBackoff, c.MaxBackoff)
	case c.UnhealthyAfter < 0 || c.UploadTimeout < 0 || c.CommitInterval < 0:
		return errors.New("spool: a negative duration")
	}
	return nil
}

// Spool is an on-disk queue of objects waiting to be stored. Its methods
// are safe for concurrent use.
type Spool struct {
	cfg     Config
	backend objstore.Backend
	putter  objstore.FilePutter       // backend's, or nil
	synced  objstore.SyncedFilePutter // backend's, or nil: committed entries' files need no sync
	log     *slog.Logger
	m       *spoolMetrics
	lock    *os.File // the directory's lock file, flock'ed

	// syncFS makes everything written to the spool's file system durable
	// (syncfs(2) on the lock file); nil where there is no such call: each
	// file is synced then. syncPath syncs one file or directory. Tests
	// replace them to make syncs fail.
	syncFS   func() error
	syncPath func(path string) error

	adds sync.WaitGroup // Adds under way (Close waits for them)

	logMax int64      // maxLogBytes (tests lower it)
	logMu  sync.Mutex // guards the meta log: cur, and each segment's fields
	cur    *logSeg    // the segment Add appends to; nil before the first

	mu      sync.Mutex
	closed  bool
	running bool
	queue   list.List         // *entry, by seq
	latest  map[string]*entry // each key's newest entry
	busy    map[string]bool   // keys being uploaded
	bytes   int64             // data bytes of the queue
	nextSeq uint64
	uploads int                  // uploads running
	waiters map[*waiter]struct{} // Flush calls
	changed chan struct{}        // closed (and replaced) when an entry leaves
	wake    chan struct{}        // wakes Run: an entry or a free slot

	pending   []*entry      // entries not committed yet, by the end of their Add (some may have left the queue)
	commitC   chan struct{} // wakes the committer: pending is no longer empty
	batches   uint64        // batches taken by a commit so far
	committed uint64        // of them, those whose commit has ended
	commitEnd chan struct{} // closed (and replaced) when a commit ends
	syncErr   error         // the last commit's sync failure, nil once one succeeds
	syncDrops int           // entries dropped by failed syncs since syncErr was set

	failures     int       // uploads failed in a row (a failure during a pause not counted)
	pauseUntil   time.Time // no upload starts before
	failingSince time.Time // the first failure since the last success
	lastErr      error

	burst dropBurst // drops not yet logged
}

// entry is one spooled object.
type entry struct {
	seq         uint64
	flushSeq    uint64 // the seq of the oldest entry this one replaced (Flush waits for it as for that one)
	key         string
	contentType string
	size        int64
	elem        *list.Element
	uploading   bool
	seg         *logSeg  // the meta log segment holding its record; nil for a legacy entry (a .meta file)
	committed   bool     // durable: it may be uploaded
	removed     bool     // out of the queue (stored, replaced or dropped)
	obsolete    []*entry // older entries of its key out of the queue, whose files stay until it is committed
}

// waiter is a Flush call.
type waiter struct {
	prefix  string
	mark    uint64 // entries with a flushSeq up to mark are waited for
	dropped int    // of them, dropped
}

// dropBurst counts the drops since the last time the spool had room.
type dropBurst struct {
	entries     int
	bytes       int64
	first, last string
}

// Open opens (creating it if need be) and locks the spool directory
// cfg.Dir, resumes the entries a previous process left there and returns
// the spool; Run uploads them to backend. reg receives the spool's
// metrics (headwater_record_*); nil registers none.
func Open(cfg Config, backend objstore.Backend, log *slog.Logger, reg prometheus.Registerer) (*Spool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("spool: no backend")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{
		cfg:       cfg,
		backend:   backend,
		log:       log.With("spool", cfg.Dir),
		m:         newMetrics(reg),
		latest:    map[string]*entry{},
		busy:      map[string]bool{},
		waiters:   map[*waiter]struct{}{},
		changed:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		commitC:   make(chan struct{}, 1),
		commitEnd: make(chan struct{}),
		syncPath:  syncPath,
		logMax:    maxLogBytes,
	}
	s.putter, _ = backend.(objstore.FilePutter)
	s.synced, _ = backend.(objstore.SyncedFilePutter)
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool dir %s: %w", cfg.Dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spool dir %s: %w", cfg.Dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool dir %s: in use by another spool (process)", cfg.Dir)
		}
		return nil, fmt.Errorf("spool dir %s: lock: %w", cfg.Dir, err)
	}
	s.lock = lock
	s.syncFS = syncFSOf(lock)
	if err := s.resume(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close commits the entries not committed yet (waiting for the Adds under
// way) and unlocks the spool directory. The entries stay in it for the
// next Open. Call it after Run has returned; Add fails after it. It fails
// when the commit dropped entries (their files could not be synced) or
// the lock file cannot be closed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.adds.Wait()
	err := s.commit()
	s.closeLog()
	s.mu.Lock()
	s.endBurstLocked()
	s.mu.Unlock()
	if cerr := s.lock.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("spool dir %s: closing the lock file: %w", s.cfg.Dir, cerr))
	}
	return err
}

// Add spools data under key with contentType: it writes the entry to the
// spool directory and returns, without syncing (the committer makes it
// durable, see the package doc) nor touching the backend. An entry of the
// same key not yet being uploaded is replaced (the newest wins). When the
// spool then holds more than MaxBytes, the oldest entries not being
// uploaded are dropped. It fails for an invalid key (local.ValidateKey),
// data larger than MaxBytes, a closed spool, or an error writing the
// files (the disk).
func (s *Spool) Add(key string, data []byte, contentType string) error {
	if err := local.ValidateKey(key); err != nil {
		return fmt.Errorf("spool add: %w", err)
	}
	if int64(len(data)) > s.cfg.MaxBytes {
		return fmt.Errorf("spool add %s: %d bytes, more than the spool's cap %d", key, len(data), s.cfg.MaxBytes)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("spool add %s: spool closed", key)
	}
	s.adds.Add(1)
	defer s.adds.Done()
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()

	e := &entry{seq: seq, flushSeq: seq, key: key, contentType: contentType, size: int64(len(data))}
	if err := s.writeEntry(e, data); err != nil {
		return fmt.Errorf("spool add %s: %w", key, err)
	}

	s.mu.Lock()
	var remove []*entry
	kick := false
	if old := s.latest[key]; old != nil && old.seq > seq {
		// A concurrent Add of the same key, called later, finished first.
		remove = append(remove, e)
	} else {
		if old != nil && !old.uploading {
			e.flushSeq = min(e.flushSeq, old.flushSeq)
			s.removeLocked(old)
			if old.committed {
				// Its files stay until e is durable: a machine crash
				// before then must leave one of the two.
				e.obsolete = append(e.obsolete, old)
			} else {
				e.obsolete = append(e.obsolete, old.obsolete...)
				old.obsolete = nil
				remove = append(remove, old)
			}
		}
		s.insertLocked(e)
		kick = len(s.pending) == 0 // else the committer is waiting to commit them
		s.pending = append(s.pending, e)
		remove = append(remove, s.dropOverCapLocked()...)
	}
	s.updateGaugesLocked()
	s.mu.Unlock()

	for _, e := range remove {
		s.removeEntryFiles(e)
	}
	if kick {
		s.signalCommit()
	}
	return nil
}

// insertLocked puts e into the queue in seq order and makes it its key's
// newest entry.
func (s *Spool) insertLocked(e *entry) {
	at := s.queue.Back()
	for at != nil && at.Value.(*entry).seq > e.seq {
		at = at.Prev()
	}
	if at == nil {
		e.elem = s.queue.PushFront(e)
	} else {
		e.elem = s.queue.InsertAfter(e, at)
	}
	s.latest[e.key] = e
	s.bytes += e.size
}

// removeLocked takes e out of the queue and wakes the Flush calls.
func (s *Spool) removeLocked(e *entry) {
	e.removed = true
	s.queue.Remove(e.elem)
	if s.latest[e.key] == e {
		delete(s.latest, e.key)
	}
	s.bytes -= e.size
	close(s.changed)
	s.changed = make(chan struct{})
}

// dropOverCapLocked drops the oldest entries not being uploaded until the
// spool is within its cap, and returns the entries whose files the caller
// removes (them and the older entries they replaced). It ends a burst of
// drops when no drop was needed.
func (s *Spool) dropOverCapLocked() []*entry {
	var dropped []*entry
	for el := s.queue.Front(); el != nil && s.bytes > s.cfg.MaxBytes; {
		e := el.Value.(*entry)
		el = el.Next()
		if e.uploading {
			continue
		}
		if s.burst.entries == 0 {
			s.log.Warn("recording spool full: dropping the oldest entries not stored yet",
				"max_bytes", s.cfg.MaxBytes, "bytes", s.bytes, "entries", s.queue.Len())
			s.burst.first = e.key
		}
		s.burst.entries++
		s.burst.bytes += e.size
		s.burst.last = e.key
		dropped = append(dropped, s.dropLocked(e, dropCap)...)
	}
	if dropped == nil {
		s.endBurstLocked()
	}
	return dropped
}

// dropLocked takes e out of the queue for good, for reason, counting it
// in the metrics and against the Flush calls waiting for it. It returns
// the entries whose files the caller removes: e and the older entries of
// its key it replaced.
func (s *Spool) dropLocked(e *entry, reason string) []*entry {
	for w := range s.waiters {
		if strings.HasPrefix(e.key, w.prefix) && e.flushSeq <= w.mark {
			w.dropped++
		}
	}
	s.m.droppedEntries.WithLabelValues(reason).Inc()
	s.m.droppedBytes.WithLabelValues(reason).Add(float64(e.size))
	s.removeLocked(e)
	remove := append([]*entry{e}, e.obsolete...)
	e.obsolete = nil
	return remove
}

// endBurstLocked logs the drops since the spool last had room, if any.
func (s *Spool) endBurstLocked() {
	if s.burst.entries == 0 {
		return
	}
	s.log.Warn("recording spool dropped entries to stay within its cap",
		"dropped_entries", s.burst.entries, "dropped_bytes", s.burst.bytes,
		"first_key", s.burst.first, "last_key", s.burst.last, "max_bytes", s.cfg.MaxBytes)
	s.burst = dropBurst{}
}

// updateGaugesLocked sets the entries and bytes gauges.
func (s *Spool) updateGaugesLocked() {
	s.m.entries.Set(float64(s.queue.Len()))
	s.m.bytes.Set(float64(s.bytes))
}

// signal wakes Run.
func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// signalCommit wakes the committer.
func (s *Spool) signalCommit() {
	select {
	case s.commitC <- struct{}{}:
	default:
	}
}

// Pending returns the number of entries spooled and their bytes, those
// being uploaded included.
func (s *Spool) Pending() (entries int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.Len(), s.bytes
}

// Open opens the data of key's newest entry still in the spool, for a
// reader of an object that is not stored yet (DVR during an outage). It
// reports false when there is none (stored already, or never added): the
// backend has it, or nobody does.
func (s *Spool) Open(key string) (io.ReadCloser, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.latest[key]
	if e == nil {
		return nil, false
	}
	f, err := os.Open(s.dataPath(e.seq))
	if err != nil {
		return nil, false // taken by a FilePutter a moment ago: the backend has it
	}
	return f, true
}

// Flush waits until every entry under prefix that was added before the
// call has been stored, or ctx ends. An entry replaced by a newer one of
// its key is waited for as that one. It fails when ctx ends first, and
// when some of those entries were dropped (the spool was full) rather
// than stored.
func (s *Spool) Flush(ctx context.Context, prefix string) error {
	s.mu.Lock()
	if s.nextSeq == 0 {
		s.mu.Unlock()
		return nil // nothing was ever added
	}
	w := &waiter{prefix: prefix, mark: s.nextSeq - 1}
	s.waiters[w] = struct{}{}
	defer func() {
		s.mu.Lock()
		delete(s.waiters, w)
		s.mu.Unlock()
	}()
	for {
		waiting := false
		for el := s.queue.Front(); el != nil && !waiting; el = el.Next() {
			e := el.Value.(*entry)
			waiting = e.flushSeq <= w.mark && strings.HasPrefix(e.key, prefix)
		}
		dropped := w.dropped
		changed := s.changed
		s.mu.Unlock()
		if !waiting {
			if dropped > 0 {
				return fmt.Errorf("spool flush %s: %d entries dropped (the spool was full), the others stored", prefix, dropped)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("spool flush %s: %w", prefix, ctx.Err())
		case <-changed:
		}
		s.mu.Lock()
	}
}

// Durable waits until every entry whose Add returned before the call has
// been committed (it survives a machine crash) or has left the spool
// (replaced, dropped), or ctx ends. The commits are Run's, CommitInterval
// apart: without Run it waits for ctx. It fails when ctx ends first.
func (s *Spool) Durable(ctx context.Context) error {
	s.mu.Lock()
	target := s.batches // the commit under way, if any, ends the wait...
	if len(s.pending) > 0 {
		target++ // ...unless entries wait for the next one
	}
	for s.committed < target {
		end := s.commitEnd
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("spool durable: %w", ctx.Err())
		case <-end:
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// Healthy returns nil unless the last commit could not sync some entries
// (an error with the sync's), or uploads have been failing, with no
// success, for longer than UnhealthyAfter and there are entries waiting
// (an error naming the backend, for how long, and the last upload error).
func (s *Spool) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncErr != nil {
		return fmt.Errorf("spool: syncing %s failed, entries dropped: %w", s.cfg.Dir, s.syncErr)
	}
	if s.failingSince.IsZero() || s.queue.Len() == 0 {
		return nil
	}
	if d := time.Since(s.failingSince); d > s.cfg.UnhealthyAfter {
		return fmt.Errorf("spool: uploads to %s failing for %s: %w", s.backend, d.Round(time.Millisecond), s.lastErr)
	}
	return nil
}

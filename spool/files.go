package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/headwater-live/headwater/objstore/local"
)

// File names in the spool directory.
const (
	lockName   = "LOCK"
	dataSuffix = ".data"
	metaSuffix = ".meta"
	tmpSuffix  = ".tmp"
	seqDigits  = 20 // a uint64 in decimal, zero-padded: names sort as seqs do
)

// dataPath and metaPath are the files of the entry seq.
func (s *Spool) dataPath(seq uint64) string { return s.path(seq, dataSuffix) }
func (s *Spool) metaPath(seq uint64) string { return s.path(seq, metaSuffix) }

// path is the file of the entry seq with suffix.
func (s *Spool) path(seq uint64, suffix string) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%0*d%s", seqDigits, seq, suffix))
}

// writeEntry writes the files of the entry seq, unsynced (a commit syncs
// them): the data as <seq>.data, then the meta as a .tmp file renamed to
// <seq>.meta, whose presence makes the entry whole (a process that dies
// before leaves a torn .data and maybe a .tmp, which Open removes).
func (s *Spool) writeEntry(seq uint64, m meta, data []byte) error {
	mj, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("entry meta: %w", err)
	}
	dataPath, metaPath := s.dataPath(seq), s.metaPath(seq)
	if err := writeUnsynced(dataPath, data); err != nil {
		return err
	}
	if err := writeUnsynced(metaPath+tmpSuffix, mj); err != nil {
		os.Remove(dataPath)
		return err
	}
	if err := os.Rename(metaPath+tmpSuffix, metaPath); err != nil {
		os.Remove(metaPath + tmpSuffix)
		os.Remove(dataPath)
		return err
	}
	return nil
}

// writeUnsynced creates (or truncates) the file path holding data, unsynced;
// it removes it on failure.
func writeUnsynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// syncPath syncs the file or directory at path.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// removeFiles removes the files of the entry seq, unsynced: the .meta
// first, so that a crash in between leaves a torn .data, which Open
// removes, rather than an entry. A failure is logged and counted: the
// entry would come back at the next Open, as after a machine crash
// before the removal is durable.
func (s *Spool) removeFiles(seq uint64) {
	for _, p := range []string{s.metaPath(seq), s.dataPath(seq)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("recording spool: cannot remove a file", "file", p, "err", err)
			s.m.errors.WithLabelValues(opRemove).Inc()
		}
	}
}

// found is what resume finds of one seq.
type found struct {
	data, meta bool
}

// resume loads the entries in the spool directory into the queue, in seq
// order, as not committed (the previous process may have ended before
// their commit): the first commit makes them durable, and the older
// entries of a key with several (a replacement not committed) leave the
// disk then. It removes .tmp files (an Add cut short), a .data without
// its .meta (the same), a .meta without its .data (an entry whose upload
// took the file before the process ended), and unreadable entries (a
// machine crash before their commit, or a damaged disk).
func (s *Spool) resume() error {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool dir %s: %w", s.cfg.Dir, err)
	}
	seqs := map[uint64]*found{}
	var maxSeq uint64
	tmps := 0
	for _, de := range ents {
		name := de.Name()
		if name == lockName || de.IsDir() {
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			if err := os.Remove(filepath.Join(s.cfg.Dir, name)); err != nil {
				return fmt.Errorf("spool dir %s: removing a torn file: %w", s.cfg.Dir, err)
			}
			tmps++
			continue
		}
		base, suffix := name, ""
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			base, suffix = name[:i], name[i:]
		}
		seq, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != seqDigits || suffix != dataSuffix && suffix != metaSuffix {
			s.log.Warn("recording spool: a file that is not an entry's, left alone", "file", name)
			continue
		}
		f := seqs[seq]
		if f == nil {
			f = &found{}
			seqs[seq] = f
		}
		if suffix == dataSuffix {
			f.data = true
		} else {
			f.meta = true
		}
		maxSeq = max(maxSeq, seq)
	}
	s.nextSeq = maxSeq + 1

	order := make([]uint64, 0, len(seqs))
	for seq := range seqs {
		order = append(order, seq)
	}
	slices.Sort(order)
	var torn, bad int
	for _, seq := range order {
		f := seqs[seq]
		if !f.meta || !f.data {
			torn++
			s.removeFiles(seq)
			continue
		}
		e, err := s.loadEntry(seq)
		if err != nil {
			bad++
			s.log.Error("recording spool: an unreadable entry dropped", "seq", seq, "err", err)
			s.m.errors.WithLabelValues(opRead).Inc()
			s.m.droppedEntries.WithLabelValues(dropUnreadable).Inc()
			s.removeFiles(seq)
			continue
		}
		if old := s.latest[e.key]; old != nil {
			s.removeLocked(old)
			e.obsolete = append(e.obsolete, old.obsolete...)
			e.obsolete = append(e.obsolete, old.seq)
			old.obsolete = nil
		}
		s.insertLocked(e)
		s.pending = append(s.pending, e)
	}
	for _, seq := range s.dropOverCapLocked() {
		s.removeFiles(seq)
	}
	s.endBurstLocked()
	s.updateGaugesLocked()
	if len(s.pending) > 0 {
		s.signalCommit()
	}
	if s.queue.Len() > 0 || tmps+torn+bad > 0 {
		s.log.Info("recording spool resumed", "entries", s.queue.Len(), "bytes", s.bytes,
			"tmp_files_removed", tmps, "torn_entries_removed", torn, "unreadable_entries_dropped", bad)
	}
	return nil
}

// loadEntry reads the entry seq's .meta and checks its .data's size.
func (s *Spool) loadEntry(seq uint64) (*entry, error) {
	mj, err := os.ReadFile(s.metaPath(seq))
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(mj, &m); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if err := local.ValidateKey(m.Key); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	st, err := os.Stat(s.dataPath(seq))
	if err != nil {
		return nil, err
	}
	if st.Size() != m.Size {
		return nil, fmt.Errorf("data has %d bytes, its meta says %d", st.Size(), m.Size)
	}
	return &entry{seq: seq, flushSeq: seq, key: m.Key, contentType: m.ContentType, size: m.Size}, nil
}

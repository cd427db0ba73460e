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
	logSuffix  = ".log"
	metaSuffix = ".meta" // a legacy entry's record
	tmpSuffix  = ".tmp"
	seqDigits  = 20 // a uint64 in decimal, zero-padded: names sort as seqs do
)

// dataPath is the data file of the entry seq, metaPath its record in a
// legacy spool.
func (s *Spool) dataPath(seq uint64) string { return s.path(seq, dataSuffix) }
func (s *Spool) metaPath(seq uint64) string { return s.path(seq, metaSuffix) }

// path is the file of the entry seq with suffix.
func (s *Spool) path(seq uint64, suffix string) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%0*d%s", seqDigits, seq, suffix))
}

// writeEntry writes e's data file holding data, then appends its record
// to the meta log (setting e.seg), unsynced (a commit syncs them).
func (s *Spool) writeEntry(e *entry, data []byte) error {
	dataPath := s.dataPath(e.seq)
	if err := writeUnsynced(dataPath, data); err != nil {
		return err
	}
	seg, err := s.appendRecord(record{Seq: e.seq, Key: e.key, ContentType: e.contentType, Size: e.size})
	if err != nil {
		os.Remove(dataPath)
		return err
	}
	e.seg = seg
	return nil
}

// writeUnsynced creates (or truncates) the file path holding data,
// unsynced; it removes it on failure.
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

// removeEntryFiles removes e's data file, unsynced (after a machine crash
// it may come back, and the entry be stored again), and releases its
// record (a legacy entry's .meta is removed first, so that a crash in
// between leaves a torn .data, which Open removes). A failure is logged
// and counted: the entry would come back at the next Open.
func (s *Spool) removeEntryFiles(e *entry) {
	if e.seg == nil {
		s.removeFile(s.metaPath(e.seq))
	}
	s.removeFile(s.dataPath(e.seq))
	if e.seg != nil {
		s.release(e.seg)
	}
}

// releaseTaken removes the files of e, stored by a FilePutter, which took
// its data file (PutFile may leave it: then it is removed). It looks
// before it removes: unlinking a name that is not there takes the
// directory's lock, which the Adds creating files in it hold.
func (s *Spool) releaseTaken(e *entry) {
	if _, err := os.Lstat(s.dataPath(e.seq)); errors.Is(err, fs.ErrNotExist) && e.seg != nil {
		s.release(e.seg)
		return
	}
	s.removeEntryFiles(e)
}

// removeFile removes the file at path, if it is there, unsynced; a
// failure is logged and counted.
func (s *Spool) removeFile(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("recording spool: cannot remove a file", "file", path, "err", err)
		s.m.errors.WithLabelValues(opRemove).Inc()
	}
}

// found is the record resume found for a seq: in a meta log segment, or
// in a legacy .meta file (seg nil).
type found struct {
	rec record
	seg *logSeg
}

// resume loads the entries in the spool directory into the queue, in seq
// order, as not committed (the previous process may have ended before
// their commit): the first commit makes them durable, and the older
// entries of a key with several (a replacement not committed) leave the
// disk then. It removes .tmp files (left by older versions), a data file
// without a record (an Add cut short), the entries whose record is
// unreadable or does not match their data file's size (a machine crash
// before their commit, or a damaged disk), a legacy .meta without its
// data file, and the meta log segments no entry left needs. Records
// whose data files are gone are those of entries stored or dropped.
func (s *Spool) resume() error {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool dir %s: %w", s.cfg.Dir, err)
	}
	datas := map[uint64]bool{}
	var segNames, metas []uint64
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
		if err != nil || len(base) != seqDigits || suffix != dataSuffix && suffix != logSuffix && suffix != metaSuffix {
			s.log.Warn("recording spool: a file that is not an entry's, left alone", "file", name)
			continue
		}
		switch suffix {
		case dataSuffix:
			datas[seq] = true
		case logSuffix:
			segNames = append(segNames, seq)
		default:
			metas = append(metas, seq)
		}
		maxSeq = max(maxSeq, seq)
	}

	recs := map[uint64]found{}
	var segs []*logSeg
	bad := 0
	slices.Sort(segNames)
	for _, name := range segNames {
		seg := &logSeg{name: name}
		segs = append(segs, seg)
		rs, nbad, err := readSeg(s.path(name, logSuffix))
		if err != nil {
			return fmt.Errorf("spool dir %s: reading the meta log: %w", s.cfg.Dir, err)
		}
		if nbad > 0 {
			bad += nbad
			s.unreadable(nbad, "file", s.path(name, logSuffix), "err", "lines that are not records")
		}
		for _, r := range rs {
			recs[r.Seq] = found{r, seg}
			maxSeq = max(maxSeq, r.Seq)
		}
	}
	torn := 0
	for _, seq := range metas {
		if _, ok := recs[seq]; ok {
			s.removeFile(s.metaPath(seq)) // stale: the meta log has it
			continue
		}
		if !datas[seq] {
			torn++
			s.removeFile(s.metaPath(seq))
			continue
		}
		r, err := readMeta(s.metaPath(seq))
		if err != nil {
			bad++
			s.unreadable(1, "seq", seq, "err", err)
			s.removeFile(s.metaPath(seq))
			s.removeFile(s.dataPath(seq))
			delete(datas, seq)
			continue
		}
		r.Seq = seq
		recs[seq] = found{rec: r}
	}
	s.nextSeq = maxSeq + 1

	order := make([]uint64, 0, len(datas))
	for seq := range datas {
		order = append(order, seq)
	}
	slices.Sort(order)
	for _, seq := range order {
		f, ok := recs[seq]
		if !ok {
			torn++
			s.removeFile(s.dataPath(seq))
			continue
		}
		e := &entry{seq: seq, flushSeq: seq, key: f.rec.Key, contentType: f.rec.ContentType, size: f.rec.Size, seg: f.seg}
		if err := s.checkEntry(e); err != nil {
			bad++
			s.unreadable(1, "seq", seq, "err", err)
			if e.seg == nil {
				s.removeFile(s.metaPath(seq))
			}
			s.removeFile(s.dataPath(seq))
			continue
		}
		if e.seg != nil {
			e.seg.live++
		}
		if old := s.latest[e.key]; old != nil {
			s.removeLocked(old)
			e.obsolete = append(e.obsolete, old.obsolete...)
			e.obsolete = append(e.obsolete, old)
			old.obsolete = nil
		}
		s.insertLocked(e)
		s.pending = append(s.pending, e)
	}
	for _, seg := range segs {
		if seg.live == 0 {
			s.removeSegLocked(seg)
		}
	}
	for _, e := range s.dropOverCapLocked() {
		s.removeEntryFiles(e)
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

// unreadable logs and counts n unreadable entries dropped, described by
// args.
func (s *Spool) unreadable(n int, args ...any) {
	s.log.Error("recording spool: unreadable entries dropped", append([]any{"entries", n}, args...)...)
	s.m.errors.WithLabelValues(opRead).Add(float64(n))
	s.m.droppedEntries.WithLabelValues(dropUnreadable).Add(float64(n))
}

// readMeta reads a legacy .meta file.
func readMeta(path string) (record, error) {
	var r record
	mj, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(mj, &r); err != nil {
		return r, fmt.Errorf("meta: %w", err)
	}
	return r, nil
}

// checkEntry checks e's key and its data file's size against its record.
func (s *Spool) checkEntry(e *entry) error {
	if err := local.ValidateKey(e.key); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	st, err := os.Stat(s.dataPath(e.seq))
	if err != nil {
		return err
	}
	if st.Size() != e.size {
		return fmt.Errorf("data has %d bytes, its record says %d", st.Size(), e.size)
	}
	return nil
}

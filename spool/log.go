package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The meta log holds each entry's key, content type and size, one JSON
// line (a record) per entry, so that an entry is one file (its .data) and
// an Add creates one file, not two. Add appends its record to the current
// segment, <seq>.log (named by the seq of the entry whose record started
// it), after writing the entry's .data: a data file without a record is
// an Add cut short. A segment past Spool.logMax (maxLogBytes) is closed
// and the next Add starts one; a segment that is not the current one is
// removed once none of the entries it holds records of has files left (a
// record whose data file is gone is that of an entry stored or dropped).
// Open never appends to a segment left by a previous process: a line cut
// short at its end is never followed by another.

// maxLogBytes is the size past which a meta log segment is closed: some
// 8,000 records, a few minutes of recording.
const maxLogBytes = 1 << 20

// record is an entry's line in the meta log. Without Seq, it is also the
// content of a legacy <seq>.meta file (spools written before the meta log
// had one per entry).
type record struct {
	Seq         uint64 `json:"seq,omitempty"`
	Key         string `json:"key"`
	ContentType string `json:"content_type,omitempty"`
	Size        int64  `json:"size"`
}

// logSeg is a segment of the meta log.
type logSeg struct {
	name uint64   // the file is <name>.log
	f    *os.File // open for appending while it is the current segment, else nil
	size int64    // bytes appended
	live int      // entries whose records it holds and whose data files are not removed yet
}

// appendRecord appends r's line to the current segment, starting one when
// there is none or it is full, and returns it, r's entry counted live in
// it. When the line cannot be written whole the segment is closed, so that
// no record follows the torn line.
func (s *Spool) appendRecord(r record) (*logSeg, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("entry record: %w", err)
	}
	line = append(line, '\n')
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.cur == nil || s.cur.size >= s.logMax {
		f, err := os.OpenFile(s.path(r.Seq, logSuffix), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("meta log: %w", err)
		}
		s.endSegLocked()
		s.cur = &logSeg{name: r.Seq, f: f}
	}
	seg := s.cur
	n, err := seg.f.Write(line)
	seg.size += int64(n)
	if err != nil {
		s.endSegLocked()
		return nil, fmt.Errorf("meta log: %w", err)
	}
	seg.live++
	return seg, nil
}

// endSegLocked closes the current segment, if any, removing it when it
// holds no live entry.
func (s *Spool) endSegLocked() {
	seg := s.cur
	if seg == nil {
		return
	}
	s.cur = nil
	if err := seg.f.Close(); err != nil {
		// What was written is in the kernel's cache: the next commit's
		// sync reports a failure to write it.
		s.log.Warn("recording spool: closing a meta log segment", "file", s.path(seg.name, logSuffix), "err", err)
	}
	seg.f = nil
	if seg.live == 0 {
		s.removeSegLocked(seg)
	}
}

// release counts an entry whose record seg holds as gone from the disk,
// and removes seg when it was its last live entry and seg is not the
// current segment.
func (s *Spool) release(seg *logSeg) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	seg.live--
	if seg.live == 0 && seg != s.cur {
		s.removeSegLocked(seg)
	}
}

// removeSegLocked removes seg's file, unsynced: after a machine crash it
// may come back, its records then naming data files that are gone, which
// Open passes over.
func (s *Spool) removeSegLocked(seg *logSeg) {
	p := s.path(seg.name, logSuffix)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("recording spool: cannot remove a file", "file", p, "err", err)
		s.m.errors.WithLabelValues(opRemove).Inc()
	}
}

// closeLog ends the current segment (Close).
func (s *Spool) closeLog() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.endSegLocked()
}

// readSeg reads the records of the segment file at path: each complete
// line; a last line without its newline (an append cut short, whose Add
// did not return) is passed over, and so are the NUL bytes a line may
// start with (an append not committed before a machine crash, on a file
// system that shows unwritten blocks as zeros). It returns as bad the
// number of lines that are not records.
func readSeg(path string) (recs []record, bad int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	for {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			return recs, bad, nil
		}
		data = rest
		line = bytes.TrimLeft(line, "\x00")
		var r record
		if err := json.Unmarshal(line, &r); err != nil || r.Seq == 0 {
			bad++
			continue
		}
		recs = append(recs, r)
	}
}

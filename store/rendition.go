package store

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Rendition is one media playlist's worth of objects: init versions and a
// sliding window of segments. One writer, any number of readers.
type Rendition struct {
	name   string
	stream *Stream
	snap   atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change

	info        RenditionInfo
	inits       []*Init
	initCount   int
	segments    []*Segment
	open        *Segment
	buf         []byte // backing bytes of the open segment; parts are sub-slices
	nextMSN     uint64
	epoch       int
	pendingDisc bool
	ended       bool
	maxDur      time.Duration
	version     uint64
	lastSize    int
	droppedDisc uint64
	discSeq     uint64        // discontinuity tags so far, for Segment.DiscontinuitySequence
	maxPart     time.Duration // longest part ever appended
}

func newRendition(st *Stream, info RenditionInfo) *Rendition {
	r := &Rendition{
		name:    info.Name,
		stream:  st,
		changed: make(chan struct{}),
		info:    info,
		epoch:   st.epoch,
	}
	r.publishLocked()
	return r
}

// Name is the rendition's name.
func (r *Rendition) Name() string { return r.name }

// Stream is the stream the rendition belongs to.
func (r *Rendition) Stream() *Stream { return r.stream }

// Snapshot returns the current immutable view.
func (r *Rendition) Snapshot() *Snapshot { return r.snap.Load() }

// Changed returns a channel closed at the next change of the rendition.
func (r *Rendition) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Wait blocks until the rendition holds part index of segment msn (the whole
// segment when index < 0) or anything later, or it has ended, or ctx ends.
// It returns the snapshot that satisfied the wait, or the latest one together
// with ctx's error.
func (r *Rendition) Wait(ctx context.Context, msn uint64, index int) (*Snapshot, error) {
	for {
		r.mu.Lock()
		snap, ch := r.snap.Load(), r.changed
		r.mu.Unlock()
		if snap.Has(msn, index) || snap.Ended {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return snap, ctx.Err()
		}
	}
}

// SetInit records the init segment for the codec configuration described by
// info. When the bytes differ from the current init, a new version is added
// under a new name and the next segment is a discontinuity (unless it is the
// rendition's first). It returns the name of the current init. The store
// keeps its own copy of data, so the caller may reuse it.
func (r *Rendition) SetInit(info RenditionInfo, data []byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	info.Name = r.name
	r.info = info
	if n := len(r.inits); n > 0 && bytes.Equal(r.inits[n-1].Data, data) {
		// Same bytes, new description (e.g. a frame rate learnt later): replace
		// the entry in a fresh slice, snapshots share the old one.
		inits := append([]*Init(nil), r.inits...)
		inits[n-1] = &Init{Name: inits[n-1].Name, Data: inits[n-1].Data, Info: info}
		r.inits = inits
		r.publishLocked()
		return r.inits[n-1].Name
	}
	name := "init.mp4"
	if r.initCount > 0 {
		name = "init-" + strconv.Itoa(r.initCount) + ".mp4"
		if len(r.segments) > 0 || r.open != nil {
			r.pendingDisc = true
		}
	}
	r.initCount++
	r.inits = append(r.inits, &Init{Name: name, Data: append([]byte(nil), data...), Info: info})
	r.trimInitsLocked()
	r.publishLocked()
	return name
}

// AlignWith prepares r's first segment of the current epoch, to start at
// time at, for a rendition made from src's media (a transcoded one): when
// src has a segment (same epoch) starting at at, r's next segment takes its
// media sequence number and discontinuity sequence, so that a rendition
// starting later than src, or missing segments src has, keeps src's
// numbering (LL-HLS needs the renditions of a stream aligned by sequence
// number; numbers never go back). It returns false when src is known not
// to start a segment at at (its newest segment starts later): r must not
// start one there either. It returns true otherwise, aligned or not.
func (r *Rendition) AlignWith(src *Rendition, at time.Duration) bool {
	if src == nil || src == r {
		return true
	}
	snap := src.Snapshot()
	ts := snap.Info.Timescale
	if ts == 0 {
		return true
	}
	segs := snap.Segments
	if snap.Open != nil {
		segs = append(segs[:len(segs):len(segs)], snap.Open)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var match *Segment
	passed := false
	for _, s := range segs {
		if s.Epoch != r.epoch {
			continue
		}
		d := TicksToDuration(s.BaseTime, ts) - at
		if d > -time.Millisecond && d < time.Millisecond {
			match = s
			break
		}
		passed = passed || d > 0
	}
	if match == nil {
		return !passed
	}
	r.alignLocked(match)
	return true
}

// AlignWithin is AlignWith for a rendition of the same publish as src
// whose first segment of the current epoch starts inside one of src's
// segments rather than at its start (an audio track whose first frame
// comes after the video's segment began: OBS's audio, a transcoded one):
// r's next segment takes the sequence number of src's segment (same
// epoch) that time at falls in, so that the renditions' numbers agree.
// Numbers never go back; nothing changes when no segment of src holds at.
func (r *Rendition) AlignWithin(src *Rendition, at time.Duration) {
	if src == nil || src == r {
		return
	}
	snap := src.Snapshot()
	ts := snap.Info.Timescale
	if ts == 0 {
		return
	}
	segs := snap.Segments
	if snap.Open != nil {
		segs = append(segs[:len(segs):len(segs)], snap.Open)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range segs {
		if s.Epoch != r.epoch {
			continue
		}
		start := TicksToDuration(s.BaseTime, ts)
		if at < start-time.Millisecond {
			continue
		}
		if s != snap.Open && at >= start+TicksToDuration(s.DurationTicks, ts) {
			continue
		}
		r.alignLocked(s)
		return
	}
}

// alignLocked makes r's next segment take match's sequence number and
// discontinuity sequence, when that segment is r's first of its epoch and
// the numbers go forward. It runs with r.mu held.
func (r *Rendition) alignLocked(match *Segment) {
	if r.open != nil || match.MSN < r.nextMSN {
		return
	}
	for _, s := range r.segments {
		if s.Epoch == r.epoch {
			return // not the epoch's first segment
		}
	}
	r.nextMSN = match.MSN
	disc := match.DiscontinuitySequence
	if r.pendingDisc && disc > 0 {
		disc-- // StartSegment counts the pending discontinuity
	}
	if disc > r.discSeq {
		r.discSeq = disc
	}
}

// StartSegment opens a new segment whose first sample decodes at baseTime
// (Timescale ticks) and was captured at programDateTime. An open segment
// must have been finished first.
func (r *Rendition) StartSegment(programDateTime time.Time, baseTime uint64) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open != nil {
		return 0, fmt.Errorf("rendition %s: segment %d still open", r.name, r.open.MSN)
	}
	if len(r.inits) == 0 {
		return 0, fmt.Errorf("rendition %s: no init segment", r.name)
	}
	r.ended = false
	capacity := r.lastSize + r.lastSize/4
	if capacity < 64<<10 {
		capacity = 64 << 10
	}
	r.buf = make([]byte, 0, capacity)
	if r.pendingDisc {
		r.discSeq++
	}
	r.open = &Segment{
		MSN:                   r.nextMSN,
		Epoch:                 r.epoch,
		DiscontinuitySequence: r.discSeq,
		Discontinuity:         r.pendingDisc,
		InitName:              r.inits[len(r.inits)-1].Name,
		ProgramDateTime:       programDateTime,
		BaseTime:              baseTime,
	}
	r.nextMSN++
	r.pendingDisc = false
	r.publishLocked()
	return r.open.MSN, nil
}

// AppendPart adds a CMAF chunk to the open segment and makes it servable.
// The store copies data into the segment's buffer, so the caller may reuse it.
func (r *Rendition) AppendPart(data []byte, duration time.Duration, independent bool) (*Part, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		return nil, fmt.Errorf("rendition %s: no open segment", r.name)
	}
	start := len(r.buf)
	r.buf = append(r.buf, data...)
	p := &Part{
		Index:       len(r.open.Parts),
		Duration:    duration,
		Independent: independent,
		Data:        r.buf[start:len(r.buf):len(r.buf)],
		Published:   time.Now(),
	}
	if duration > r.maxPart {
		r.maxPart = duration
	}
	seg := *r.open
	seg.Parts = append(seg.Parts, p)
	seg.Size += len(data)
	r.open = &seg
	r.publishLocked()
	return p, nil
}

// FinishSegment closes the open segment with its exact duration in Timescale
// ticks. The segment's bytes are the parts back to back.
func (r *Rendition) FinishSegment(durationTicks uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finishLocked(durationTicks)
}

func (r *Rendition) finishLocked(durationTicks uint64) error {
	if r.open == nil {
		return fmt.Errorf("rendition %s: no open segment", r.name)
	}
	seg := *r.open
	seg.DurationTicks = durationTicks
	seg.Duration = TicksToDuration(durationTicks, r.info.Timescale)
	seg.Complete = true
	seg.Data = r.buf[:len(r.buf):len(r.buf)]
	r.buf = nil
	r.open = nil
	if len(seg.Parts) == 0 {
		// Nothing was written: forget the segment and give its number back.
		// Readers never saw any content under it (at most an empty open
		// segment, e.g. as a preload hint target), so the next segment taking
		// the number keeps them right, whereas a hole in the numbering would
		// break playlists (MSNs are implicit) and Snapshot.Segment. The
		// discontinuity it was to carry moves on to the next segment.
		if seg.MSN+1 == r.nextMSN {
			r.nextMSN--
		}
		if seg.Discontinuity {
			r.pendingDisc = true
			r.discSeq--
		}
		r.publishLocked()
		return nil
	}
	r.lastSize = len(seg.Data)
	if seg.Duration > r.maxDur {
		r.maxDur = seg.Duration
	}
	r.appendSegmentLocked(&seg)
	return nil
}

// AddGap records a segment that could not be produced (for example a failed
// transcode): it is listed with EXT-X-GAP and has no data.
func (r *Rendition) AddGap(programDateTime time.Time, baseTime, durationTicks uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open != nil {
		return fmt.Errorf("rendition %s: segment %d still open", r.name, r.open.MSN)
	}
	initName := ""
	if n := len(r.inits); n > 0 {
		initName = r.inits[n-1].Name
	}
	if r.pendingDisc {
		r.discSeq++
	}
	seg := &Segment{
		MSN:                   r.nextMSN,
		Epoch:                 r.epoch,
		DiscontinuitySequence: r.discSeq,
		Discontinuity:         r.pendingDisc,
		Gap:                   true,
		InitName:              initName,
		ProgramDateTime:       programDateTime,
		BaseTime:              baseTime,
		DurationTicks:         durationTicks,
		Duration:              TicksToDuration(durationTicks, r.info.Timescale),
		Complete:              true,
	}
	r.nextMSN++
	r.pendingDisc = false
	r.appendSegmentLocked(seg)
	return nil
}

// End finishes an open segment (with the duration of its parts) and marks the
// rendition ended. It is idempotent. While the stream is held (Stream.Hold)
// it only finishes the open segment.
func (r *Rendition) End() {
	if r.stream.Held() {
		r.suspend()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishOpenLocked()
	if r.ended {
		return
	}
	r.ended = true
	r.publishLocked()
}

// suspend finishes the open segment and leaves the rendition live: its
// stream is held (Stream.Hold) between two publishes.
func (r *Rendition) suspend() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishOpenLocked()
}

// finishOpenLocked finishes the open segment, if any, with the duration of its parts.
func (r *Rendition) finishOpenLocked() {
	if r.open == nil {
		return
	}
	var d time.Duration
	for _, p := range r.open.Parts {
		d += p.Duration
	}
	_ = r.finishLocked(DurationToTicks(d, r.info.Timescale))
}

// NextBaseTime is where the timeline continues: the end of the last segment
// in Timescale ticks, or 0 for a new rendition.
func (r *Rendition) NextBaseTime() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.segments); n > 0 {
		last := r.segments[n-1]
		return last.BaseTime + last.DurationTicks
	}
	return 0
}

func (r *Rendition) reopen() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = false
	r.publishLocked()
}

// markDiscontinuity runs with the stream's lock held. A segment left open by
// a writer that did not end cleanly is finished, so that the new writer can
// start its own.
func (r *Rendition) markDiscontinuity(epoch int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishOpenLocked()
	r.epoch = epoch
	if len(r.segments) > 0 || r.open != nil {
		r.pendingDisc = true
	}
}

func (r *Rendition) appendSegmentLocked(seg *Segment) {
	r.segments = append(r.segments, seg)
	keep := r.stream.store.cfg.Window + r.stream.store.cfg.KeepExtra
	if over := len(r.segments) - keep; over > 0 {
		for _, s := range r.segments[:over] {
			if s.Discontinuity {
				r.droppedDisc++
			}
		}
		// Copy so the dropped segments' memory is released with old snapshots.
		r.segments = append([]*Segment(nil), r.segments[over:]...)
		r.trimInitsLocked()
	}
	r.publishLocked()
}

// trimInitsLocked drops init versions no kept or open segment refers to,
// keeping the current one.
func (r *Rendition) trimInitsLocked() {
	if len(r.inits) <= 1 {
		return
	}
	used := make(map[string]bool, len(r.inits))
	for _, s := range r.segments {
		used[s.InitName] = true
	}
	if r.open != nil {
		used[r.open.InitName] = true
	}
	kept := r.inits[:0:0]
	for i, in := range r.inits {
		if used[in.Name] || i == len(r.inits)-1 {
			kept = append(kept, in)
		}
	}
	r.inits = kept
}

func (r *Rendition) publishLocked() {
	r.version++
	r.snap.Store(&Snapshot{
		Info:                   r.info,
		Inits:                  r.inits[:len(r.inits):len(r.inits)],
		Segments:               r.segments[:len(r.segments):len(r.segments)],
		Open:                   r.open,
		Ended:                  r.ended,
		MaxSegmentDuration:     r.maxDur,
		MaxPartDuration:        r.maxPart,
		DroppedDiscontinuities: r.droppedDisc,
		Updated:                time.Now(),
		Version:                r.version,
		Next:                   r.nextMSN,
	})
	close(r.changed)
	r.changed = make(chan struct{})
}

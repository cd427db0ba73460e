package store

import (
	"sort"
	"time"

	"github.com/headwater-live/headwater/media"
)

// RenditionInfo describes what a rendition carries. It is set by the writer
// and may change with a new codec configuration (a new init segment).
type RenditionInfo struct {
	// Name is the rendition's name in URLs ("video", "audio", "720p").
	Name string
	// Kind is video or audio.
	Kind media.Kind
	// Codec is the current codec with its parameters.
	Codec media.Codec
	// Timescale is the fMP4 track timescale (ticks per second).
	Timescale uint32
	// Width, Height and FrameRate describe video renditions.
	Width, Height int
	FrameRate     float64
	// SampleRate and Channels describe audio renditions.
	SampleRate int
	Channels   int
	// SegmentTarget is the configured target segment duration.
	SegmentTarget time.Duration
	// PartTarget is the configured target part duration.
	PartTarget time.Duration
}

// Part is one CMAF chunk (LL-HLS part): a moof+mdat pair. Immutable.
type Part struct {
	// Index is the part's position within its segment, from 0.
	Index int
	// Duration of the media in the part.
	Duration time.Duration
	// Independent is true when the part starts with a key frame.
	Independent bool
	// Data is the moof+mdat bytes.
	Data []byte
	// Published is when the part became servable.
	Published time.Time
}

// Segment is one CMAF segment: a run of parts starting at a key frame.
// A Segment value is immutable; while a segment is open, every update makes
// a new Segment value sharing the earlier parts.
type Segment struct {
	// MSN is the media sequence number; it never repeats within a stream.
	MSN uint64
	// Epoch counts publishes of the stream (0 for the first): a change of
	// epoch is a discontinuity and a new DASH period.
	Epoch int
	// DiscontinuitySequence counts the discontinuities of the rendition up
	// to and including this segment's own (EXT-X-DISCONTINUITY-SEQUENCE of
	// a playlist starting here is this number, less one when the segment
	// itself carries the tag).
	DiscontinuitySequence uint64
	// Discontinuity is set on the first segment after a republish or a
	// change of codec configuration.
	Discontinuity bool
	// Gap marks a segment that is missing (a failed transcode); it has no data.
	Gap bool
	// InitName is the init segment this segment needs ("init.mp4").
	InitName string
	// ProgramDateTime is the wall-clock time of the segment's first frame.
	ProgramDateTime time.Time
	// BaseTime is the decode time of the first sample in Timescale ticks
	// (the tfdt), continuous across segments and republishes.
	BaseTime uint64
	// DurationTicks is the segment's duration in Timescale ticks (0 while open).
	DurationTicks uint64
	// Duration is DurationTicks as a duration (0 while open).
	Duration time.Duration
	// Parts so far; all of them once the segment is complete.
	Parts []*Part
	// Complete is true once the segment has been closed.
	Complete bool
	// Data is the whole segment (the parts back to back) once complete.
	Data []byte
	// Size is the number of bytes in the parts so far.
	Size int
}

// Init is one version of a rendition's initialization segment.
type Init struct {
	// Name is the object name ("init.mp4", then "init-1.mp4", ...).
	Name string
	// Data is the ftyp+moov bytes.
	Data []byte
	// Info is the rendition description that goes with this init.
	Info RenditionInfo
}

// Snapshot is an immutable view of a rendition at one moment.
type Snapshot struct {
	// Info describes the rendition now.
	Info RenditionInfo
	// Inits are the init versions still referenced by kept segments, oldest first.
	Inits []*Init
	// Segments are the complete segments kept, oldest first. The window a
	// playlist lists is the tail of this slice.
	Segments []*Segment
	// Open is the segment being written, or nil.
	Open *Segment
	// Ended is true once the publisher has gone and the open segment was closed.
	Ended bool
	// DroppedDiscontinuities counts discontinuity segments that have left
	// Segments; with the flags of the kept segments it gives a playlist's
	// EXT-X-DISCONTINUITY-SEQUENCE.
	DroppedDiscontinuities uint64
	// MaxPartDuration is the longest part ever appended to this rendition;
	// it never decreases, so a PART-TARGET derived from it never drops.
	MaxPartDuration time.Duration
	// MaxSegmentDuration is the longest segment seen in this rendition.
	MaxSegmentDuration time.Duration
	// Updated is when this snapshot was taken.
	Updated time.Time
	// Version increases with every change.
	Version uint64
	// Next is the sequence number the rendition's next segment takes, as
	// the rendition knew when the snapshot was taken (a seeded rendition,
	// Store.BeginSeeded, has one before its first segment).
	Next uint64
}

// LastMSN returns the sequence number of the last segment listed (the open
// one if any) and the index of its last part (-1 if it has none). ok is false
// when the rendition has no segment yet.
func (s *Snapshot) LastMSN() (msn uint64, part int, ok bool) {
	if s.Open != nil {
		return s.Open.MSN, len(s.Open.Parts) - 1, true
	}
	if n := len(s.Segments); n > 0 {
		return s.Segments[n-1].MSN, len(s.Segments[n-1].Parts) - 1, true
	}
	return 0, -1, false
}

// NextMSN is the sequence number the next new segment will get.
func (s *Snapshot) NextMSN() uint64 {
	msn, _, ok := s.LastMSN()
	if !ok {
		return s.Next
	}
	return msn + 1
}

// Segment finds a segment by sequence number, complete or open.
func (s *Snapshot) Segment(msn uint64) (*Segment, bool) {
	if s.Open != nil && s.Open.MSN == msn {
		return s.Open, true
	}
	n := len(s.Segments)
	if n == 0 {
		return nil, false
	}
	first := s.Segments[0].MSN
	if msn < first || msn > s.Segments[n-1].MSN {
		return nil, false
	}
	// Sequence numbers are consecutive, so the segment is normally at
	// msn-first; fall back to a search should they ever not be.
	if i := msn - first; i < uint64(n) && s.Segments[i].MSN == msn {
		return s.Segments[i], true
	}
	i := sort.Search(n, func(i int) bool { return s.Segments[i].MSN >= msn })
	if i < n && s.Segments[i].MSN == msn {
		return s.Segments[i], true
	}
	return nil, false
}

// Part finds a part by segment sequence number and part index.
func (s *Snapshot) Part(msn uint64, index int) (*Part, bool) {
	seg, ok := s.Segment(msn)
	if !ok || index < 0 || index >= len(seg.Parts) {
		return nil, false
	}
	return seg.Parts[index], true
}

// Init finds an init segment version by name.
func (s *Snapshot) Init(name string) (*Init, bool) {
	for _, in := range s.Inits {
		if in.Name == name {
			return in, true
		}
	}
	return nil, false
}

// Has reports whether the snapshot holds part index of segment msn, or the
// whole segment msn when index is negative, or anything later.
//
// As LL-HLS requires, a part index past the last part of a complete segment
// stands for part 0 of the next segment: it is only satisfied once that
// segment has a part (or is complete, or a later one exists), not as soon as
// the next segment has been opened.
func (s *Snapshot) Has(msn uint64, index int) bool {
	last, lastPart, ok := s.LastMSN()
	if !ok || last < msn {
		return false
	}
	if index < 0 {
		return last > msn || s.Open == nil || s.Open.MSN != msn
	}
	if last == msn {
		return lastPart >= index
	}
	if last > msn+1 || lastPart >= 0 || s.Open == nil || s.Open.MSN != last {
		return true
	}
	// The segment after msn is open and still empty: only parts segment msn
	// really has are there.
	if seg, ok := s.Segment(msn); ok {
		return index < len(seg.Parts)
	}
	return true
}

package playlist

import (
	"time"

	"github.com/headwater-live/headwater/store"
)

// mediaLayout is what a media playlist lists, decided before a byte is
// written: the complete segments, the open segment's parts, how many
// segments a delta update skips and which segments get their parts.
type mediaLayout struct {
	s  *store.Snapshot
	ll bool // low-latency: parts, preload hint, server control, reports

	playlistType string // EXT-X-PLAYLIST-TYPE, "" for none

	// list is the complete segments listed, skipped ones included.
	list []*store.Segment
	// open is the snapshot's open segment (nil when none); openListed says
	// whether its parts are listed, openDur is their total duration.
	open       *store.Segment
	openListed bool
	openDur    time.Duration

	td    int64         // EXT-X-TARGETDURATION in seconds
	tdDur time.Duration // the same as a duration

	// skipped is the number of list's first segments replaced by
	// EXT-X-SKIP; list[partsFrom:] get their parts listed.
	skipped, partsFrom int

	msn  uint64 // EXT-X-MEDIA-SEQUENCE
	dseq int    // EXT-X-DISCONTINUITY-SEQUENCE
}

// newMediaLayout lays out the media playlist of s with options o.
func newMediaLayout(s *store.Snapshot, o MediaOptions) mediaLayout {
	window := o.Window
	if window <= 0 {
		window = DefaultWindow
	}
	l := mediaLayout{s: s, ll: o.LowLatency, list: tail(s.Segments, window), open: s.Open, playlistType: o.PlaylistType}
	l.openListed = l.ll && l.open != nil && len(l.open.Parts) > 0
	if l.openListed && len(l.list) > 0 && l.open.MSN != l.list[len(l.list)-1].MSN+1 {
		// The open segment does not follow the last complete one (a number
		// was used by a segment the store discarded): list it alone rather
		// than give its parts the wrong sequence number.
		l.list = nil
	}
	if l.openListed {
		for _, p := range l.open.Parts {
			l.openDur += p.Duration
		}
	}
	l.td = targetDuration(s, l.list)
	l.tdDur = time.Duration(l.td) * time.Second
	if l.ll && o.Skip {
		l.skipped = l.skippable()
	}
	l.partsFrom = len(l.list)
	if l.ll {
		l.partsFrom = l.firstWithParts()
	}
	l.msn, l.dseq = l.sequences()
	return l
}

// skippable is the number of segments a delta update skips: those that end
// at least the Skip Boundary before the end of the playlist, keeping at
// least one.
func (l *mediaLayout) skippable() int {
	if len(l.list) <= 1 {
		return 0
	}
	boundary := skipBoundaryTargets * l.tdDur
	total := l.openDur
	for _, seg := range l.list {
		total += seg.Duration
	}
	skipped := 0
	var end time.Duration
	for i, seg := range l.list[:len(l.list)-1] {
		end += seg.Duration
		if total-end < boundary {
			break
		}
		skipped = i + 1
	}
	return skipped
}

// firstWithParts is the index in list of the first complete segment whose
// parts are listed: at most partsMaxSegments segments (the open one
// included), within partsTargetDurations target durations of the end, none
// of the skipped ones.
func (l *mediaLayout) firstWithParts() int {
	maxSegs := partsMaxSegments
	if l.openListed {
		maxSegs--
	}
	from := max(len(l.list)-maxSegs, l.skipped, 0)
	dist := l.openDur // from the end of list[i] to the end of the playlist
	for i := len(l.list) - 1; i >= from; i-- {
		if dist >= partsTargetDurations*l.tdDur {
			return i + 1
		}
		dist += l.list[i].Duration
	}
	return from
}

// sequences returns the media and discontinuity sequence numbers of the
// first entry (complete segment or open parts).
func (l *mediaLayout) sequences() (msn uint64, dseq int) {
	var first *store.Segment
	segs := l.s.Segments
	switch {
	case len(l.list) > 0:
		first, msn = l.list[0], l.list[0].MSN
	case l.openListed:
		first, msn = l.open, l.open.MSN
	case l.open != nil:
		msn = l.open.MSN
	case len(segs) > 0:
		msn = segs[len(segs)-1].MSN + 1
	}
	if first != nil {
		dseq = discontinuitySequence(first)
	}
	return msn, dseq
}

// size estimates the playlist's length, so that its buffer is allocated
// once: header, segments, parts, rendition reports and keys.
func (l *mediaLayout) size(siblings int, enc *Encryption) int {
	n := 400 + 180*(len(l.list)-l.skipped) + 100*siblings
	if l.ll {
		for _, seg := range l.list[l.partsFrom:] {
			n += 72 * len(seg.Parts)
		}
		if l.openListed {
			n += 140 + 72*len(l.open.Parts)
		}
	}
	if enc != nil {
		n += 2 * (120 + 3*len(enc.Stream)) // the first EXT-X-KEY and one change, usually
	}
	return n
}

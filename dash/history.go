package dash

import (
	"slices"
	"sync"
	"time"
)

// maxAnchors bounds the Periods a History remembers; the oldest go first.
const maxAnchors = 64

// History remembers the timing of the Periods a stream's MPDs have listed:
// for each Period its id, start and media start (presentationTimeOffset).
// A Period's timing is frozen the first time an MPD lists it and reused by
// every later MPD, so that it stays the same for as long as the Period is
// listed, as ISO/IEC 23009-1 requires of MPD updates, even after the segments
// it was derived from have left the store.
//
// The origin should keep one History per stream, next to its other
// per-stream state, and pass it in Options.History to every MPD call for the
// stream. It resets itself when Options.AvailabilityStart changes (a new
// stream under the same name). MPDs of the same stream with and without
// LowLatency may share it: they derive the same timing. The zero value is
// ready to use and it is safe
// for concurrent use; MPD calls sharing it are serialised while they plan
// their Periods.
type History struct {
	mu      sync.Mutex
	ast     time.Time
	anchors []anchor
}

// anchor is what a History remembers of a Period.
type anchor struct {
	id    string
	epoch int
	first bool          // the Period that starts the epoch
	t     mediaTime     // media time at the Period's start (presentationTimeOffset)
	start time.Duration // Period@start
}

// reset forgets everything when the stream changed. Called with mu held.
func (h *History) reset(ast time.Time) {
	if !h.ast.Equal(ast) {
		h.ast = ast
		h.anchors = h.anchors[:0]
	}
}

// lookup finds a Period by id. Called with mu held; h may be nil.
func (h *History) lookup(id string) (anchor, bool) {
	if h == nil {
		return anchor{}, false
	}
	for _, a := range h.anchors {
		if a.id == id {
			return a, true
		}
	}
	return anchor{}, false
}

// record remembers a Period, keeping the anchors ordered by epoch and start.
// Called with mu held; h may be nil.
func (h *History) record(a anchor) {
	if h == nil {
		return
	}
	if _, ok := h.lookup(a.id); ok {
		return
	}
	i, _ := slices.BinarySearchFunc(h.anchors, a, func(x, y anchor) int {
		if x.epoch != y.epoch {
			return x.epoch - y.epoch
		}
		return x.t.cmp(y.t)
	})
	h.anchors = slices.Insert(h.anchors, i, a)
	if len(h.anchors) > maxAnchors {
		h.anchors = slices.Delete(h.anchors, 0, len(h.anchors)-maxAnchors)
	}
}

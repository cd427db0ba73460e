package recording

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/headwater-live/headwater/store"
)

// history is the DVR window of one live stream: per rendition, the
// recorded segments (their descriptions, not their bytes) of the last
// DVRWindow, across the stream's republishes.
type history struct {
	st *store.Stream

	mu   sync.Mutex
	rend map[string]*renditionHistory
}

type renditionHistory struct {
	segs     []recorded
	duration time.Duration // total of segs
}

// recorded is a segment of the DVR window and the session that holds it.
type recorded struct {
	seg     *store.Segment // Data and Parts left out
	session string
}

// historyFor returns the DVR history of st, replacing one kept for an
// earlier stream of the same name.
func (r *Recorder) historyFor(st *store.Stream) *history {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.history[st.Name()]; ok && h.st == st {
		return h
	}
	h := &history{st: st, rend: make(map[string]*renditionHistory)}
	r.history[st.Name()] = h
	return h
}

// Sweep forgets the DVR history of streams the store no longer holds (or
// holds as a new stream).
func (r *Recorder) Sweep(s *store.Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, h := range r.history {
		if st, ok := s.Stream(name); !ok || st != h.st {
			delete(r.history, name)
		}
	}
}

// add appends a segment to the rendition's window and trims it to window.
func (h *history) add(rendition, session string, seg *store.Segment, window time.Duration) {
	if window <= 0 {
		return
	}
	c := *seg
	c.Data, c.Parts = nil, nil
	h.mu.Lock()
	defer h.mu.Unlock()
	rh := h.rend[rendition]
	if rh == nil {
		rh = &renditionHistory{}
		h.rend[rendition] = rh
	}
	rh.segs = append(rh.segs, recorded{seg: &c, session: session})
	rh.duration += c.Duration
	drop := 0
	for drop < len(rh.segs)-1 && rh.duration-rh.segs[drop].seg.Duration >= window {
		rh.duration -= rh.segs[drop].seg.Duration
		drop++
	}
	if drop > 0 {
		// Copy rather than reslice, so the dropped entries can go.
		rh.segs = append(rh.segs[:0:0], rh.segs[drop:]...)
	}
}

// DVR returns the DVR view of a rendition of a live stream: live with the
// recorded segments older than its window put in front, so that the view
// reaches DVRWindow back. It returns live itself when nothing older is
// recorded (DVR off, or the stream not recorded).
func (r *Recorder) DVR(st *store.Stream, rendition string, live *store.Snapshot) *store.Snapshot {
	r.mu.Lock()
	h, ok := r.history[st.Name()]
	r.mu.Unlock()
	if !ok || h.st != st {
		return live
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rh := h.rend[rendition]
	if rh == nil || len(rh.segs) == 0 {
		return live
	}
	first, _, ok := live.LastMSN()
	if n := len(live.Segments); n > 0 {
		first = live.Segments[0].MSN
	} else if !ok {
		first = live.NextMSN()
	}
	older := make([]*store.Segment, 0, len(rh.segs)+len(live.Segments))
	for _, rs := range rh.segs {
		if rs.seg.MSN < first {
			older = append(older, rs.seg)
		}
	}
	if len(older) == 0 {
		return live
	}
	view := *live
	older = append(older, live.Segments...)
	view.Segments = older
	for _, seg := range view.Segments {
		view.MaxSegmentDuration = max(view.MaxSegmentDuration, seg.Duration)
	}
	return &view
}

// OpenDVR opens a media object of a live stream's rendition that the DVR
// window holds but the store no longer does: segment msn (object
// "seg<msn>.m4s") or an init section by name. It returns false when the
// window does not hold it.
func (r *Recorder) OpenDVR(ctx context.Context, st *store.Stream, rendition, object string) (io.ReadCloser, bool, error) {
	r.mu.Lock()
	h, ok := r.history[st.Name()]
	r.mu.Unlock()
	if !ok || h.st != st {
		return nil, false, nil
	}
	msn, isSegment := parseSegmentObject(object)
	h.mu.Lock()
	session := ""
	if rh := h.rend[rendition]; rh != nil {
		if isSegment {
			// The window is in sequence order: binary search.
			i := sort.Search(len(rh.segs), func(i int) bool { return rh.segs[i].seg.MSN >= msn })
			if i < len(rh.segs) && rh.segs[i].seg.MSN == msn && !rh.segs[i].seg.Gap {
				session = rh.segs[i].session
			}
		} else {
			for i := len(rh.segs) - 1; i >= 0; i-- {
				if rh.segs[i].seg.InitName == object {
					session = rh.segs[i].session
					break
				}
			}
		}
	}
	h.mu.Unlock()
	if session == "" {
		return nil, false, nil
	}
	rc, err := r.open(ctx, MediaKey(st.Name(), session, rendition, object))
	if err != nil {
		return nil, true, fmt.Errorf("dvr %s/%s/%s: %w", st.Name(), rendition, object, err)
	}
	return rc, true, nil
}

// parseSegmentObject returns the sequence number of "seg<N>.m4s".
func parseSegmentObject(object string) (uint64, bool) {
	n, ok := strings.CutPrefix(object, "seg")
	if !ok {
		return 0, false
	}
	if n, ok = strings.CutSuffix(n, ".m4s"); !ok {
		return 0, false
	}
	msn, err := strconv.ParseUint(n, 10, 64)
	return msn, err == nil
}

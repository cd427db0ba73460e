package origin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// wait blocks until rend holds part index of segment msn (the whole segment
// when index < 0), for at most BlockTimeout and while the client is there.
func (h *handler) wait(r *http.Request, rend *store.Rendition, msn uint64, index int) (*store.Snapshot, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BlockTimeout)
	t0 := time.Now()
	if h.waitHook != nil {
		h.waitHook()
	}
	snap, err := rend.Wait(ctx, msn, index)
	cancel()
	h.m.observeWait(time.Since(t0).Seconds())
	return snap, err == nil
}

// maxPartAdvance bounds the part index of a request: about twice the parts
// of the longest segment seen or configured, so that an index no segment of
// this rendition can reach is refused instead of waited for.
func maxPartAdvance(s *store.Snapshot) int {
	const fallback = 64
	pt := s.Info.PartTarget
	seg := max(s.Info.SegmentTarget, s.MaxSegmentDuration)
	if pt <= 0 || seg <= 0 {
		return fallback
	}
	n := int((seg + pt - 1) / pt)
	return min(max(2*n+2, 8), maxPartIndexURL)
}

// serveObject serves init segments, segments and parts.
func (h *handler) serveObject(w *respWriter, r *http.Request, t *target) object {
	var o object
	switch t.kind {
	case objInit:
		o = objectInit
	case objSegment:
		o = objectSegment
	default:
		o = objectPart
	}
	st, ok := h.st.Stream(t.stream())
	if u, remote := h.owner(t.stream(), st, ok); remote {
		return h.relayed(w, r, u, t.stream(), relayKind(t.kind), o)
	}
	if ok {
		tagStream(r, st)
	}
	if !ok {
		return h.notFound(w, o)
	}
	if outOfScope(r, st.Name()) {
		return h.forbidden(w, o)
	}
	rend, ok := st.Rendition(t.rendition())
	if !ok {
		return h.notFound(w, o)
	}
	encrypted := h.enc.covers(st.Name())
	snap := rend.Snapshot()
	var buf [96]byte
	switch t.kind {
	case objInit:
		in, ok := snap.Init(t.object)
		if !ok {
			if h.serveFromDVR(w, r, st, rend, t, o) {
				return o
			}
			return h.notFound(w, o)
		}
		tag := append(buf[:0], '"')
		tag = appendStreamTag(tag, st)
		tag = append(tag, ".i."...)
		tag = append(tag, t.object...)
		tag = append(tag, '.')
		tag = strconv.AppendInt(tag, int64(len(in.Data)), 36)
		tag = append(tag, '"')
		// An init name is never reused for other bytes by a stream, so the
		// stream's start is a safe (if early) modification time.
		h.serveBytes(w, r, in.Data, kindType(in.Info.Kind), tag, st.Started())
		return o

	case objSegment:
		seg, ok := snap.Segment(t.msn)
		if !ok && olderThanWindow(snap, t.msn) && h.serveFromDVR(w, r, st, rend, t, o) {
			return o
		}
		if !ok || !seg.Complete && len(seg.Parts) == 0 {
			// The next segment, or the open one before its first part:
			// wait for its first part (low-latency DASH players ask for it
			// about a part after it starts).
			if !segmentBlockable(snap, t.msn) {
				return h.notFound(w, o)
			}
			if snap, ok = h.wait(r, rend, t.msn, 0); !ok {
				return h.timeout(w, o)
			}
			if seg, ok = snap.Segment(t.msn); !ok {
				return h.notFound(w, o)
			}
		}
		if !seg.Complete {
			// An encrypted segment is one CBC ciphertext with its padding
			// at the end: it is only served complete.
			if !conditional(r) && !encrypted {
				// Being written: stream its parts as they come.
				h.streamSegment(w, r, st, rend, seg, kindType(snap.Info.Kind))
				return o
			}
			// Ranges and preconditions need the complete object.
			if snap, ok = h.wait(r, rend, t.msn, -1); !ok {
				return h.timeout(w, o)
			}
			seg, ok = snap.Segment(t.msn)
		}
		if !ok || !seg.Complete || seg.Gap || len(seg.Data) == 0 {
			return h.notFound(w, o)
		}
		var mod time.Time
		if n := len(seg.Parts); n > 0 {
			mod = seg.Parts[n-1].Published
		}
		tag := appendMediaTag(buf[:0], st, seg, -1)
		data := seg.Data
		if encrypted {
			if data, ok = h.enc.encrypt(st, rend.Name(), seg.MSN, -1, data); !ok {
				return h.notFound(w, o) // its key is gone: the segment left the window long ago
			}
			tag = encryptedTag(tag)
		}
		h.serveBytes(w, r, data, kindType(snap.Info.Kind), tag, mod)
		return o

	default:
		seg, p := findPart(snap, t.msn, t.part)
		if p == nil {
			if !partBlockable(snap, t.msn, t.part) {
				return h.notFound(w, o)
			}
			if snap, ok = h.wait(r, rend, t.msn, t.part); !ok {
				return h.timeout(w, o)
			}
			if seg, p = findPart(snap, t.msn, t.part); p == nil {
				return h.notFound(w, o)
			}
		}
		tag := appendMediaTag(buf[:0], st, seg, p.Index)
		data := p.Data
		if encrypted {
			// A part is a resource of its own, encrypted on its own with
			// its segment's key and IV.
			if data, ok = h.enc.encrypt(st, rend.Name(), seg.MSN, p.Index, data); !ok {
				return h.notFound(w, o)
			}
			tag = encryptedTag(tag)
		}
		h.serveBytes(w, r, data, kindType(snap.Info.Kind), tag, p.Published)
		return o
	}
}

// olderThanWindow reports whether segment msn precedes what s holds.
func olderThanWindow(s *store.Snapshot, msn uint64) bool {
	if len(s.Segments) > 0 {
		return msn < s.Segments[0].MSN
	}
	return msn < s.NextMSN()
}

// findPart returns part index of segment msn and its segment, or nils.
func findPart(s *store.Snapshot, msn uint64, index int) (*store.Segment, *store.Part) {
	seg, ok := s.Segment(msn)
	if !ok || index < 0 || index >= len(seg.Parts) {
		return nil, nil
	}
	return seg, seg.Parts[index]
}

// partBlockable reports whether a part that is not there yet is worth
// waiting for: it belongs to the segment the next part goes into (the
// preload hint's) or to the one after, and its index is sane.
func partBlockable(s *store.Snapshot, msn uint64, index int) bool {
	if s.Ended || index > maxPartAdvance(s) {
		return false
	}
	last, _, ok := s.LastMSN()
	var next uint64 // the segment the next part will be in
	switch {
	case !ok:
		next = 0
	case s.Open != nil:
		next = last
	default:
		next = last + 1
	}
	return msn == next || msn == next+1
}

// kindType is the Content-Type of a rendition's media objects.
func kindType(k media.Kind) []string {
	if k == media.KindAudio {
		return hvAudioMP4
	}
	return hvVideoMP4
}

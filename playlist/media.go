package playlist

import (
	"time"

	"github.com/headwater-live/headwater/store"
)

// Rendition pairs a rendition name with a snapshot of it.
type Rendition struct {
	Name string
	Snap *store.Snapshot
}

// MediaOptions tune a media playlist.
type MediaOptions struct {
	// Window is the number of complete segments listed; 0 means DefaultWindow.
	Window int
	// Skip asks for a Playlist Delta Update (_HLS_skip=YES): the oldest
	// segments further than the Skip Boundary (CAN-SKIP-UNTIL) from the end
	// of the playlist are replaced by EXT-X-SKIP. Ignored without LowLatency,
	// and a no-op while the window is not longer than the Skip Boundary.
	Skip bool
	// LowLatency lists parts, the preload hint, server control and
	// rendition reports (LL-HLS). The zero value is plain HLS; see
	// DefaultMediaOptions.
	LowLatency bool
	// Encryption, when set, lists the segments and parts as encrypted with
	// METHOD=AES-128 (EXT-X-KEY tags); nil lists them in the clear.
	Encryption *Encryption
	// PlaylistType, when set, is written as EXT-X-PLAYLIST-TYPE ("VOD"
	// for a recorded session, whose snapshot has ended).
	PlaylistType string
}

// DefaultWindow is the number of complete segments a media playlist lists
// when MediaOptions.Window is 0.
const DefaultWindow = 6

// DefaultMediaOptions is the LL-HLS configuration: the default window,
// low latency on, no delta update.
func DefaultMediaOptions() MediaOptions {
	return MediaOptions{Window: DefaultWindow, LowLatency: true}
}

const (
	// versionLowLatency is the EXT-X-VERSION of LL-HLS media playlists. 9 is
	// what EXT-X-SKIP needs; since any reload may be answered with a delta
	// update once CAN-SKIP-UNTIL is advertised, full and delta playlists of a
	// rendition carry the same version rather than flipping between 6 and 9.
	versionLowLatency = 9
	// versionPlain is the EXT-X-VERSION of plain HLS media playlists and of
	// the multivariant playlist: 6 is the lowest that allows EXT-X-MAP in a
	// playlist that is not I-frames only, nothing else they contain needs
	// more, and old players reject versions they do not know.
	versionPlain = 6

	// skipBoundaryTargets is CAN-SKIP-UNTIL in target durations (the minimum
	// the spec allows).
	skipBoundaryTargets = 6
	// partHoldBackParts is PART-HOLD-BACK in part targets (the spec's SHOULD).
	partHoldBackParts = 3
	// Parts are listed for the segments within partsTargetDurations target
	// durations of the end of the playlist, and for at most partsMaxSegments
	// segments, the open one included (Apple's validator and hls-parser flag
	// parts on older segments).
	partsTargetDurations = 3
	partsMaxSegments     = 3
)

// Media renders the media playlist of rendition r. siblings are the stream's
// other renditions, reported with EXT-X-RENDITION-REPORT in low-latency mode
// (r itself and renditions without segments are left out, so the caller may
// pass all of the stream's renditions). It returns nil when r has no snapshot.
//
// The playlist lists the last o.Window complete segments and, in low-latency
// mode, the parts of the open segment followed by a preload hint for the next
// part. URIs are relative to the rendition's directory: init.mp4 (or the
// segment's InitName), seg<MSN>.m4s and part<MSN>.<index>.m4s.
//
// With o.Encryption, a key that cannot be had makes Media return nil; use
// RenderMedia to get the error.
func Media(r Rendition, siblings []Rendition, o MediaOptions) []byte {
	b, _ := RenderMedia(r, siblings, o)
	return b
}

// RenderMedia is Media, returning the error of o.Encryption.KeyFor (the only
// source of errors) instead of nil.
func RenderMedia(r Rendition, siblings []Rendition, o MediaOptions) ([]byte, error) {
	s := r.Snap
	if s == nil {
		return nil, nil
	}
	l := newMediaLayout(s, o)
	var keys *keyWriter
	if o.Encryption != nil {
		keys = &keyWriter{enc: o.Encryption}
	}
	b := make([]byte, 0, l.size(len(siblings), o.Encryption))
	b = l.appendHeader(b)
	b = l.appendSegments(b, keys)
	if l.ll {
		if !s.Ended {
			b = l.appendPreloadHint(b, keys)
		}
		b = appendRenditionReports(b, r.Name, siblings)
	}
	if s.Ended {
		b = append(b, "#EXT-X-ENDLIST\n"...)
	}
	if keys != nil && keys.err != nil {
		return nil, keys.err
	}
	return b, nil
}

// tail returns the last window segments whose sequence numbers are
// consecutive: a segment the store discarded leaves a hole in the numbers,
// and the segments listed must be numbered from EXT-X-MEDIA-SEQUENCE on.
func tail(segs []*store.Segment, window int) []*store.Segment {
	start := max(len(segs)-window, 0)
	for i := len(segs) - 1; i > start; i-- {
		if segs[i].MSN != segs[i-1].MSN+1 {
			return segs[i:]
		}
	}
	return segs[start:]
}

// targetDuration is EXT-X-TARGETDURATION in seconds: the largest of the
// configured segment target, the longest segment the rendition has had and
// the segments listed, each rounded to the nearest second (the spec compares
// EXTINF durations "rounded to the nearest integer"), at least 1.
func targetDuration(s *store.Snapshot, list []*store.Segment) int64 {
	td := max(roundSeconds(s.Info.SegmentTarget), roundSeconds(s.MaxSegmentDuration), 1)
	for _, seg := range list {
		// Gap segments do not count in MaxSegmentDuration.
		td = max(td, roundSeconds(seg.Duration))
	}
	return td
}

// partTarget is PART-TARGET: the configured part target, or the longest
// part the rendition ever had when that is longer (every part must fit, and
// the value must not change between reloads), rounded up to a millisecond.
func partTarget(s *store.Snapshot) time.Duration {
	pt := max(s.Info.PartTarget, s.MaxPartDuration)
	if pt <= 0 {
		pt = time.Second
	}
	return ceilMillis(pt)
}

// discontinuitySequence is EXT-X-DISCONTINUITY-SEQUENCE for a playlist whose
// first segment is first: the number of discontinuities before it. The store
// stamps each segment with the count up to and including its own.
func discontinuitySequence(first *store.Segment) int {
	n := int(first.DiscontinuitySequence)
	if first.Discontinuity {
		n-- // the segment's own EXT-X-DISCONTINUITY is counted by the client
	}
	return max(n, 0)
}

// lastPartOf returns what EXT-X-RENDITION-REPORT says of a rendition: the
// sequence number of its last listed segment or open segment with parts, and
// the index of that segment's last part (-1 when it has none, e.g. a gap).
func lastPartOf(s *store.Snapshot) (msn uint64, part int, ok bool) {
	if s.Open != nil && len(s.Open.Parts) > 0 {
		return s.Open.MSN, len(s.Open.Parts) - 1, true
	}
	if n := len(s.Segments); n > 0 {
		last := s.Segments[n-1]
		return last.MSN, len(last.Parts) - 1, true
	}
	return 0, -1, false
}

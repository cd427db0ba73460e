package playlist

import (
	"strconv"
	"time"

	"github.com/headwater-live/headwater/hlsenc"
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
	// Now is reserved: nothing in the output depends on the time, so that
	// playlists are deterministic functions of the snapshots.
	Now time.Time
	// Encryption, when set, lists the segments and parts as encrypted with
	// METHOD=AES-128 (EXT-X-KEY tags); nil lists them in the clear.
	Encryption *Encryption
}

// Encryption describes the AES-128 encryption of a rendition's segments and
// parts (see package hlsenc). Init sections stay in the clear.
//
// The playlist writes an EXT-X-KEY after the first EXT-X-MAP and again
// whenever the key changes (keys change at segment boundaries, so the tag
// precedes the EXTINF and the first EXT-X-PART of the segment it applies
// to), including before the preload hint when the hinted part starts a key
// period. A later EXT-X-MAP (an init change) is preceded by
// "#EXT-X-KEY:METHOD=NONE", so that the init is read in the clear, and
// followed by the EXT-X-KEY in force. A delta update repeats the key in
// force after EXT-X-SKIP. Key URIs are relative (hlsenc.RelativeKeyURI),
// so that a playback token in the playlist's path carries to the key
// requests.
type Encryption struct {
	// Stream is the stream's name, from which key URIs are made.
	Stream string
	// KeyFor returns the key of segment msn, which its parts share. It
	// must return the same key for the same msn for as long as the segment
	// can be listed (hlsenc.KeyProvider.KeyFor does).
	KeyFor func(msn uint64) (hlsenc.Key, error)
}

// keyWriter writes the EXT-X-KEY tags of an encrypted playlist. A nil
// *keyWriter writes nothing.
type keyWriter struct {
	enc *Encryption
	cur hlsenc.Key // key in force; zero before the first EXT-X-KEY and after METHOD=NONE
	err error      // first KeyFor error
}

// beforeMap writes METHOD=NONE before an EXT-X-MAP that follows an
// EXT-X-KEY, so that the init section is not taken for encrypted.
func (k *keyWriter) beforeMap(b []byte) []byte {
	if k == nil || k.cur.IsZero() {
		return b
	}
	k.cur = hlsenc.Key{}
	b = append(b, hlsenc.NoneKeyTag...)
	return append(b, '\n')
}

// forSegment writes the EXT-X-KEY of segment msn unless it is in force.
func (k *keyWriter) forSegment(b []byte, msn uint64) []byte {
	if k == nil || k.err != nil {
		return b
	}
	key, err := k.enc.KeyFor(msn)
	if err != nil {
		k.err = err
		return b
	}
	if !k.cur.IsZero() && key.ID() == k.cur.ID() {
		return b
	}
	k.cur = key
	b = hlsenc.AppendKeyTag(b, key, hlsenc.RelativeKeyURI(k.enc.Stream, key.ID()))
	return append(b, '\n')
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
	window := o.Window
	if window <= 0 {
		window = DefaultWindow
	}
	ll := o.LowLatency

	segs := s.Segments
	list := tail(segs, window)
	open := s.Open
	openListed := ll && open != nil && len(open.Parts) > 0
	if openListed && len(list) > 0 && open.MSN != list[len(list)-1].MSN+1 {
		// The open segment does not follow the last complete one (a number
		// was used by a segment the store discarded): list it alone rather
		// than give its parts the wrong sequence number.
		list = nil
	}

	var openDur time.Duration
	if openListed {
		for _, p := range open.Parts {
			openDur += p.Duration
		}
	}
	td := targetDuration(s, list)
	tdDur := time.Duration(td) * time.Second

	// Delta update: skip the segments that end at least the Skip Boundary
	// before the end of the playlist, keeping at least one.
	skipped := 0
	if ll && o.Skip && len(list) > 1 {
		boundary := skipBoundaryTargets * tdDur
		total := openDur
		for _, seg := range list {
			total += seg.Duration
		}
		var end time.Duration
		for i, seg := range list[:len(list)-1] {
			end += seg.Duration
			if total-end < boundary {
				break
			}
			skipped = i + 1
		}
	}

	// Complete segments from index partsFrom of list on get their parts.
	partsFrom := len(list)
	if ll {
		maxSegs := partsMaxSegments
		if openListed {
			maxSegs--
		}
		partsFrom = max(len(list)-maxSegs, skipped, 0)
		dist := openDur // from the end of list[i] to the end of the playlist
		for i := len(list) - 1; i >= partsFrom; i-- {
			if dist >= partsTargetDurations*tdDur {
				partsFrom = i + 1
				break
			}
			dist += list[i].Duration
		}
	}

	// Sequence numbers of the first entry (complete segment or open parts).
	var first *store.Segment
	var msn uint64
	switch {
	case len(list) > 0:
		first, msn = list[0], list[0].MSN
	case openListed:
		first, msn = open, open.MSN
	case open != nil:
		msn = open.MSN
	case len(segs) > 0:
		msn = segs[len(segs)-1].MSN + 1
	}
	dseq := 0
	if first != nil {
		dseq = discontinuitySequence(first)
	}

	// Size the buffer once: header, segments, parts, reports.
	size := 400 + 180*(len(list)-skipped) + 100*len(siblings)
	if ll {
		for _, seg := range list[partsFrom:] {
			size += 72 * len(seg.Parts)
		}
		if openListed {
			size += 140 + 72*len(open.Parts)
		}
	}
	var keys *keyWriter
	if o.Encryption != nil {
		keys = &keyWriter{enc: o.Encryption}
		size += 2 * (120 + 3*len(o.Encryption.Stream)) // the first EXT-X-KEY and one change, usually
	}
	b := make([]byte, 0, size)

	b = append(b, "#EXTM3U\n#EXT-X-VERSION:"...)
	if ll {
		b = strconv.AppendInt(b, versionLowLatency, 10)
	} else {
		b = strconv.AppendInt(b, versionPlain, 10)
	}
	b = append(b, "\n#EXT-X-TARGETDURATION:"...)
	b = strconv.AppendInt(b, td, 10)
	b = append(b, '\n')
	if ll {
		pt := partTarget(s)
		b = append(b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="...)
		b = appendSecondsShort(b, partHoldBackParts*pt)
		b = append(b, ",CAN-SKIP-UNTIL="...)
		b = appendSecondsShort(b, skipBoundaryTargets*tdDur)
		b = append(b, "\n#EXT-X-PART-INF:PART-TARGET="...)
		b = appendSecondsShort(b, pt)
		b = append(b, '\n')
	}
	b = append(b, "#EXT-X-MEDIA-SEQUENCE:"...)
	b = strconv.AppendUint(b, msn, 10)
	b = append(b, "\n#EXT-X-DISCONTINUITY-SEQUENCE:"...)
	b = strconv.AppendInt(b, int64(dseq), 10)
	// Every segment starts with a key frame (audio frames all are).
	b = append(b, "\n#EXT-X-INDEPENDENT-SEGMENTS\n"...)
	if skipped > 0 {
		b = append(b, "#EXT-X-SKIP:SKIPPED-SEGMENTS="...)
		b = strconv.AppendInt(b, int64(skipped), 10)
		b = append(b, '\n')
	}

	curInit := "" // EXT-X-MAP in effect; written again before the first listed segment
	for i, seg := range list[skipped:] {
		i += skipped
		b = appendSegmentTags(b, seg, &curInit, keys)
		if i >= partsFrom {
			b = appendParts(b, seg)
		}
		b = append(b, "#EXTINF:"...)
		b = appendSeconds(b, seg.Duration)
		b = append(b, ",\nseg"...)
		b = strconv.AppendUint(b, seg.MSN, 10)
		b = append(b, ".m4s\n"...)
	}
	if openListed {
		b = appendSegmentTags(b, open, &curInit, keys)
		b = appendParts(b, open)
	}

	if ll {
		if !s.Ended {
			hintMSN, hintPart := msn, 0
			switch {
			case open != nil:
				hintMSN, hintPart = open.MSN, len(open.Parts)
			case len(segs) > 0:
				hintMSN = segs[len(segs)-1].MSN + 1
			}
			// The hinted part may start the next key period.
			b = keys.forSegment(b, hintMSN)
			b = append(b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part"...)
			b = strconv.AppendUint(b, hintMSN, 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(hintPart), 10)
			b = append(b, ".m4s\"\n"...)
		}
		for _, sib := range siblings {
			if sib.Name == r.Name || sib.Snap == nil {
				continue
			}
			lastMSN, lastPart, ok := lastPartOf(sib.Snap)
			if !ok {
				continue
			}
			b = append(b, "#EXT-X-RENDITION-REPORT:URI=\"../"...)
			b = append(b, sib.Name...)
			b = append(b, "/index.m3u8\",LAST-MSN="...)
			b = strconv.AppendUint(b, lastMSN, 10)
			if lastPart >= 0 {
				b = append(b, ",LAST-PART="...)
				b = strconv.AppendInt(b, int64(lastPart), 10)
			}
			b = append(b, '\n')
		}
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

// appendSegmentTags writes the tags that precede a segment's parts and URI
// (keys is nil for a playlist in the clear).
func appendSegmentTags(b []byte, seg *store.Segment, curInit *string, keys *keyWriter) []byte {
	if seg.Discontinuity {
		b = append(b, "#EXT-X-DISCONTINUITY\n"...)
	}
	if seg.InitName != "" && seg.InitName != *curInit {
		*curInit = seg.InitName
		b = keys.beforeMap(b)
		b = append(b, "#EXT-X-MAP:URI=\""...)
		b = append(b, seg.InitName...)
		b = append(b, "\"\n"...)
	}
	b = keys.forSegment(b, seg.MSN)
	if !seg.ProgramDateTime.IsZero() {
		b = append(b, "#EXT-X-PROGRAM-DATE-TIME:"...)
		b = appendDateTime(b, seg.ProgramDateTime)
		b = append(b, '\n')
	}
	if seg.Gap {
		b = append(b, "#EXT-X-GAP\n"...)
	}
	return b
}

func appendParts(b []byte, seg *store.Segment) []byte {
	for _, p := range seg.Parts {
		b = append(b, "#EXT-X-PART:DURATION="...)
		b = appendSeconds(b, p.Duration)
		b = append(b, ",URI=\"part"...)
		b = strconv.AppendUint(b, seg.MSN, 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(p.Index), 10)
		b = append(b, ".m4s\""...)
		if p.Independent {
			b = append(b, ",INDEPENDENT=YES"...)
		}
		b = append(b, '\n')
	}
	return b
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

package playlist

import (
	"strconv"

	"github.com/headwater-live/headwater/store"
)

// appendHeader writes the tags before the first segment: version, target
// duration, LL-HLS server control and part target, sequence numbers and,
// in a delta update, EXT-X-SKIP.
func (l *mediaLayout) appendHeader(b []byte) []byte {
	b = append(b, "#EXTM3U\n#EXT-X-VERSION:"...)
	if l.ll {
		b = strconv.AppendInt(b, versionLowLatency, 10)
	} else {
		b = strconv.AppendInt(b, versionPlain, 10)
	}
	b = append(b, "\n#EXT-X-TARGETDURATION:"...)
	b = strconv.AppendInt(b, l.td, 10)
	b = append(b, '\n')
	if l.ll {
		pt := partTarget(l.s)
		b = append(b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="...)
		b = appendSecondsShort(b, partHoldBackParts*pt)
		b = append(b, ",CAN-SKIP-UNTIL="...)
		b = appendSecondsShort(b, skipBoundaryTargets*l.tdDur)
		b = append(b, "\n#EXT-X-PART-INF:PART-TARGET="...)
		b = appendSecondsShort(b, pt)
		b = append(b, '\n')
	}
	if l.playlistType != "" {
		b = append(b, "#EXT-X-PLAYLIST-TYPE:"...)
		b = append(b, l.playlistType...)
		b = append(b, '\n')
	}
	b = append(b, "#EXT-X-MEDIA-SEQUENCE:"...)
	b = strconv.AppendUint(b, l.msn, 10)
	b = append(b, "\n#EXT-X-DISCONTINUITY-SEQUENCE:"...)
	b = strconv.AppendInt(b, int64(l.dseq), 10)
	// Every segment starts with a key frame (audio frames all are).
	b = append(b, "\n#EXT-X-INDEPENDENT-SEGMENTS\n"...)
	if l.skipped > 0 {
		b = append(b, "#EXT-X-SKIP:SKIPPED-SEGMENTS="...)
		b = strconv.AppendInt(b, int64(l.skipped), 10)
		b = append(b, '\n')
	}
	return b
}

// appendSegments writes the listed complete segments after the skipped
// ones, with their parts from partsFrom on, then the open segment's parts.
func (l *mediaLayout) appendSegments(b []byte, keys *keyWriter) []byte {
	curInit := "" // EXT-X-MAP in effect; written again before the first listed segment
	for i, seg := range l.list[l.skipped:] {
		i += l.skipped
		b = appendSegmentTags(b, seg, &curInit, keys)
		if i >= l.partsFrom {
			b = appendParts(b, seg)
		}
		b = append(b, "#EXTINF:"...)
		b = appendSeconds(b, seg.Duration)
		b = append(b, ",\nseg"...)
		b = strconv.AppendUint(b, seg.MSN, 10)
		b = append(b, ".m4s\n"...)
	}
	if l.openListed {
		b = appendSegmentTags(b, l.open, &curInit, keys)
		b = appendParts(b, l.open)
	}
	return b
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

// appendPreloadHint writes the EXT-X-PRELOAD-HINT of the next part (after
// its EXT-X-KEY when it starts a key period).
func (l *mediaLayout) appendPreloadHint(b []byte, keys *keyWriter) []byte {
	hintMSN, hintPart := l.msn, 0
	switch segs := l.s.Segments; {
	case l.open != nil:
		hintMSN, hintPart = l.open.MSN, len(l.open.Parts)
	case len(segs) > 0:
		hintMSN = segs[len(segs)-1].MSN + 1
	}
	// The hinted part may start the next key period.
	b = keys.forSegment(b, hintMSN)
	b = append(b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part"...)
	b = strconv.AppendUint(b, hintMSN, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(hintPart), 10)
	return append(b, ".m4s\"\n"...)
}

// appendRenditionReports writes an EXT-X-RENDITION-REPORT for each sibling
// other than self that has segments or parts.
func appendRenditionReports(b []byte, self string, siblings []Rendition) []byte {
	for _, sib := range siblings {
		if sib.Name == self || sib.Snap == nil {
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
	return b
}

package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// partKey names an LL-HLS part: media sequence number and part index.
type partKey struct {
	MSN  uint64
	Part int
}

func (k partKey) less(o partKey) bool {
	return k.MSN < o.MSN || (k.MSN == o.MSN && k.Part < o.Part)
}

func (k partKey) String() string { return fmt.Sprintf("%d.%d", k.MSN, k.Part) }

// query is the blocking-reload query string asking for this part.
func (k partKey) query() string {
	return url.Values{"_HLS_msn": {fmt.Sprint(k.MSN)}, "_HLS_part": {fmt.Sprint(k.Part)}}.Encode()
}

// partInfo is one EXT-X-PART of a media playlist.
type partInfo struct {
	Key      partKey
	URI      string
	Duration time.Duration
	// End is the media time from the start of the part's segment to the end
	// of the part.
	End time.Duration
}

// mediaView is what an LL-HLS player needs from one media playlist.
type mediaView struct {
	// Parts lists every part in the playlist, oldest first.
	Parts []partInfo
	// SegmentStart holds the EXT-X-PROGRAM-DATE-TIME of the complete
	// segments that have one: Headwater stamps a segment with the wall-clock
	// arrival of its first frame.
	SegmentStart map[uint64]time.Time
	// FirstMSN is the sequence number of the oldest segment listed.
	FirstMSN uint64
	// Next is the part a blocking reload asks for next (_HLS_msn/_HLS_part):
	// the one the EXT-X-PRELOAD-HINT announces. It is derived from the
	// playlist's structure: the next part of the open segment, or part 0 of
	// the segment after the last complete one.
	Next partKey
	// HintURI is the EXT-X-PRELOAD-HINT URI, "" if none.
	HintURI  string
	InitURI  string
	CanBlock bool
	Ended    bool
}

// viewOf interprets a parsed media playlist.
func viewOf(m *playlist.Media) mediaView {
	v := mediaView{SegmentStart: map[uint64]time.Time{}, Ended: m.Endlist}
	v.FirstMSN = uint64(m.MediaSequence)
	if m.Skip != nil {
		v.FirstMSN += uint64(m.Skip.SkippedSegments)
	}
	if m.Map != nil {
		v.InitURI = m.Map.URI
	}
	if m.ServerControl != nil {
		v.CanBlock = m.ServerControl.CanBlockReload
	}
	if m.PreloadHint != nil {
		v.HintURI = m.PreloadHint.URI
	}
	addParts := func(msn uint64, parts []*playlist.MediaPart) {
		var end time.Duration
		for i, p := range parts {
			end += p.Duration
			v.Parts = append(v.Parts, partInfo{Key: partKey{MSN: msn, Part: i}, URI: p.URI, Duration: p.Duration, End: end})
		}
	}
	for i, s := range m.Segments {
		msn := v.FirstMSN + uint64(i)
		if s.DateTime != nil {
			v.SegmentStart[msn] = *s.DateTime
		}
		addParts(msn, s.Parts)
	}
	open := v.FirstMSN + uint64(len(m.Segments))
	addParts(open, m.Parts)
	v.Next = partKey{MSN: open, Part: len(m.Parts)}
	return v
}

// newest returns the newest part of the playlist.
func (v mediaView) newest() (partInfo, bool) {
	if len(v.Parts) == 0 {
		return partInfo{}, false
	}
	return v.Parts[len(v.Parts)-1], true
}

// partsAfter returns the parts a player that last fetched `last` should
// fetch now, oldest first. A player with nothing yet (have == false) starts
// at the live edge with the newest part. A player more than maxCatchUp parts
// behind, or whose last part has left the playlist, jumps to the live edge:
// it gets the newest part only and resync is true.
func (v mediaView) partsAfter(last partKey, have bool, maxCatchUp int) (parts []partInfo, resync bool) {
	newest, ok := v.newest()
	if !ok {
		return nil, false
	}
	if !have {
		return []partInfo{newest}, false
	}
	if last.less(v.Parts[0].Key) {
		return []partInfo{newest}, true
	}
	for i := len(v.Parts) - 1; i >= 0; i-- {
		if !last.less(v.Parts[i].Key) {
			parts = v.Parts[i+1:]
			break
		}
	}
	if len(parts) > maxCatchUp {
		return []partInfo{newest}, true
	}
	return parts, false
}

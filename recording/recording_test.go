package recording

import (
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/store"
)

func TestRulesMatch(t *testing.T) {
	r := Rules{Include: []string{"live/"}, Exclude: []string{"live/test/"}}
	all := Rules{Include: []string{""}, Exclude: []string{"test/"}}
	for _, tc := range []struct {
		rules Rules
		name  string
		want  bool
	}{
		{r, "live/cam1", true},
		{r, "live/test/x", false},
		{r, "live/testy", true},
		{r, "other/cam", false},
		{all, "anything/at/all", true},
		{all, "test/a", false},
		{Rules{}, "live/a", false},
		{Rules{Include: []string{"live/vip/"}, Exclude: []string{"live/"}}, "live/vip/a", true},
		{Rules{Include: []string{"live/vip/"}, Exclude: []string{"live/"}}, "live/b", false},
	} {
		if got := tc.rules.Match(tc.name); got != tc.want {
			t.Errorf("%+v.Match(%q) = %v, want %v", tc.rules, tc.name, got, tc.want)
		}
	}
}

func TestKeys(t *testing.T) {
	id := NewSessionID(time.Date(2026, 12, 7, 16, 18, 0, 123e6, time.UTC))
	if id != "20261207T161800.123Z" || !IsSessionID(id) {
		t.Fatalf("session id %q", id)
	}
	for _, bad := range []string{"", "video", "20261207T161800Z", "20261307T161800.123Z"} {
		if IsSessionID(bad) {
			t.Errorf("IsSessionID(%q) = true", bad)
		}
	}
	if got := MediaKey("live/a", id, "720p", "seg3.m4s"); got != "media/live/a/20261207T161800.123Z/720p/seg3.m4s" {
		t.Errorf("MediaKey = %q", got)
	}
	if got := ChunkKey("live/a", id, 2); got != "index/live/a/20261207T161800.123Z/000002.json" {
		t.Errorf("ChunkKey = %q", got)
	}
	for _, tc := range []struct {
		key            string
		stream, sessID string
		ok             bool
	}{
		{SummaryKey("live/a", id), "live/a", id, true},
		{SummaryKey("live/a/b", id), "live/a/b", id, true},
		{ChunkKey("live/a", id, 0), "", "", false},
		{"index/live/a/notasession.json", "", "", false},
		{"media/live/a/" + id + ".json", "", "", false},
	} {
		st, se, ok := parseSummaryKey(tc.key)
		if ok != tc.ok || st != tc.stream || se != tc.sessID {
			t.Errorf("parseSummaryKey(%q) = %q %q %v, want %q %q %v", tc.key, st, se, ok, tc.stream, tc.sessID, tc.ok)
		}
	}
}

// entries is a 90 kHz video rendition of n 2 s segments from msn 10,
// with a discontinuity at 13 and segment 14 missed by the recorder.
func entries(n int) []Entry {
	var out []Entry
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range n {
		e := Entry{Rendition: "video", MSN: uint64(10 + i), Time: uint64(i) * 180000, Ticks: 180000,
			PDT: start.Add(time.Duration(i) * 2 * time.Second), Init: "init.mp4", Size: 1000 + i}
		switch i {
		case 0:
			e.Disc = true // the first of a republished session: not a discontinuity in its VOD
		case 3:
			e.Disc, e.Init = true, "init-1.mp4"
		case 4:
			e = Entry{Rendition: "video", MSN: 14, Gap: true, Missed: true}
		}
		if i > 3 {
			e.Init = "init-1.mp4"
			if e.Missed {
				e.Init = ""
			}
		}
		out = append(out, e)
	}
	return out
}

func testSession(n int) *Session {
	sum := Summary{Stream: "live/a", Session: "20261207T120000.000Z", State: StateComplete, Epoch: 2,
		Renditions: []RenditionMeta{{Name: "video", Kind: "video", Codec: "avc1.64001f", Timescale: 90000, Width: 1280, Height: 720,
			SegmentTarget: Seconds(2 * time.Second)}}}
	return buildSession(sum, entries(n))
}

func TestBuildSession(t *testing.T) {
	s := testSession(8)
	if len(s.Renditions) != 1 {
		t.Fatalf("%d renditions", len(s.Renditions))
	}
	snap := s.Renditions[0].Snap
	if !snap.Ended || len(snap.Segments) != 8 || snap.Next != 18 {
		t.Fatalf("snapshot ended=%v segments=%d next=%d", snap.Ended, len(snap.Segments), snap.Next)
	}
	if snap.Info.Codec.RFC6381() != "avc1.64001f" || snap.Info.Codec.Name() != "avc1" {
		t.Errorf("codec %q %q", snap.Info.Codec.RFC6381(), snap.Info.Codec.Name())
	}
	if len(snap.Inits) != 2 || snap.Inits[0].Name != "init.mp4" || snap.Inits[1].Name != "init-1.mp4" {
		t.Errorf("inits %v", snap.Inits)
	}
	first, disc, missed := snap.Segments[0], snap.Segments[3], snap.Segments[4]
	if first.Discontinuity || first.DiscontinuitySequence != 0 {
		t.Errorf("first segment: discontinuity %v seq %d", first.Discontinuity, first.DiscontinuitySequence)
	}
	if !disc.Discontinuity || disc.DiscontinuitySequence != 1 || snap.Segments[5].DiscontinuitySequence != 1 {
		t.Errorf("discontinuity at 13: %v seq %d", disc.Discontinuity, disc.DiscontinuitySequence)
	}
	// The missed segment gets the time between its neighbours.
	if !missed.Gap || missed.BaseTime != 4*180000 || missed.DurationTicks != 180000 || missed.Duration != 2*time.Second || missed.InitName != "init-1.mp4" {
		t.Errorf("missed segment %+v", *missed)
	}
	if want := first.ProgramDateTime.Add(8 * time.Second); !missed.ProgramDateTime.Equal(want) {
		t.Errorf("missed PDT %v, want %v", missed.ProgramDateTime, want)
	}
}

func TestClip(t *testing.T) {
	s := testSession(8) // 16 s: segments at 0,2,...,14
	for _, tc := range []struct {
		from, to  time.Duration
		first     uint64
		n         int
		ok        bool
		firstDisc bool
	}{
		{0, 0, 10, 8, true, false},
		{3 * time.Second, 7 * time.Second, 11, 3, true, false}, // 2-4, 4-6, 6-8
		{6 * time.Second, 0, 13, 5, true, false},               // starts on the discontinuity: cleared
		{4 * time.Second, 6 * time.Second, 12, 1, true, false},
		{20 * time.Second, 0, 0, 0, false, false},
	} {
		c, ok := s.Clip(tc.from, tc.to)
		if ok != tc.ok {
			t.Errorf("Clip(%v, %v) ok = %v", tc.from, tc.to, ok)
			continue
		}
		if !ok {
			continue
		}
		segs := c.Renditions[0].Snap.Segments
		if len(segs) != tc.n || segs[0].MSN != tc.first || segs[0].Discontinuity != tc.firstDisc {
			t.Errorf("Clip(%v, %v) = %d segments from %d (disc %v), want %d from %d", tc.from, tc.to, len(segs), segs[0].MSN, segs[0].Discontinuity, tc.n, tc.first)
		}
	}
	// The original is untouched.
	if !s.Renditions[0].Snap.Segments[3].Discontinuity {
		t.Error("Clip changed the session's segments")
	}
	if off := s.Offset(time.Date(2026, 12, 7, 12, 0, 5, 0, time.UTC)); off != 5*time.Second {
		t.Errorf("Offset = %v", off)
	}
}

func TestHistoryWindow(t *testing.T) {
	h := &history{rend: make(map[string]*renditionHistory)}
	for i := range 10 {
		h.add("video", "s1", &store.Segment{MSN: uint64(i), Duration: 2 * time.Second, Data: []byte("x"), Complete: true}, 9*time.Second)
	}
	rh := h.rend["video"]
	// 9 s of 2 s segments: the newest five (10 s) are kept, since dropping
	// one more would leave less than the window.
	if len(rh.segs) != 5 || rh.segs[0].seg.MSN != 5 || rh.duration != 10*time.Second {
		t.Fatalf("kept %d from %d (%v)", len(rh.segs), rh.segs[0].seg.MSN, rh.duration)
	}
	if rh.segs[0].seg.Data != nil {
		t.Error("history keeps segment bytes")
	}
	h.add("audio", "s1", &store.Segment{MSN: 1}, 0)
	if h.rend["audio"] != nil {
		t.Error("a zero window keeps history")
	}
}

func TestSecondsJSON(t *testing.T) {
	b, err := Seconds(1500 * time.Millisecond).MarshalJSON()
	if err != nil || string(b) != "1.500" {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	var s Seconds
	if err := s.UnmarshalJSON([]byte("2.25")); err != nil || s.D() != 2250*time.Millisecond {
		t.Fatalf("UnmarshalJSON = %v, %v", s.D(), err)
	}
	if err := s.UnmarshalJSON([]byte(`"x"`)); err == nil || !strings.Contains(err.Error(), "seconds") {
		t.Fatalf("UnmarshalJSON of a string: %v", err)
	}
}

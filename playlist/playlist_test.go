package playlist

import (
	"fmt"
	"strings"
	"testing"
	"time"

	hls "github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/store"
)

func ll() MediaOptions { return DefaultMediaOptions() }

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestFirstPart(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 10000)
	v.openWith(1)
	text := f.media("video", ll())
	golden(t, "first_part", text)

	m := parseMedia(t, text, true)
	eq(t, "target duration", m.TargetDuration, 2)
	eq(t, "media sequence", m.MediaSequence, 0)
	eq(t, "segments", len(m.Segments), 0)
	eq(t, "open parts", len(m.Parts), 1)
	eq(t, "part independent", m.Parts[0].Independent, true)
	eq(t, "part target", m.PartInf.PartTarget, 500*time.Millisecond)
	eq(t, "part hold back", *m.ServerControl.PartHoldBack, 1500*time.Millisecond)
	eq(t, "preload hint", m.PreloadHint.URI, "part0.1.m4s")
	eq(t, "map", m.Map.URI, "init.mp4")
}

func TestInitOnly(t *testing.T) {
	f := newFixture(t, store.Config{})
	f.video("video", 640, 360, 10000)
	text := string(f.media("video", ll()))
	for _, want := range []string{"#EXT-X-MEDIA-SEQUENCE:0\n", "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.0.m4s\"\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	if Media(Rendition{Name: "x"}, nil, ll()) != nil {
		t.Error("a rendition without snapshot has a playlist")
	}
}

// steady is a live stream past its start: 8 video segments and an open one
// with 2 parts, audio alongside.
func steady(t *testing.T) *fixture {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	a := f.audio("audio")
	v.segments(8)
	a.segments(8)
	v.openWith(2)
	a.openWith(1)
	return f
}

func TestSteady(t *testing.T) {
	f := steady(t)
	text := f.media("video", ll())
	golden(t, "steady", text)

	m := parseMedia(t, text, false)
	eq(t, "target duration", m.TargetDuration, 2)
	eq(t, "media sequence", m.MediaSequence, 2)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 0)
	eq(t, "segments", len(m.Segments), 6)
	for i, seg := range m.Segments {
		want := 0
		if i >= 4 {
			want = 4 // the last two complete segments, with the open one
		}
		eq(t, fmt.Sprintf("parts of %s", seg.URI), len(seg.Parts), want)
		eq(t, "EXTINF", seg.Duration, 2*time.Second)
		eq(t, "program date time", seg.DateTime.Equal(t0.Add(time.Duration(i+2)*2*time.Second)), true)
	}
	eq(t, "open parts", len(m.Parts), 2)
	eq(t, "preload hint", m.PreloadHint.URI, "part8.2.m4s")
	eq(t, "can block reload", m.ServerControl.CanBlockReload, true)
	eq(t, "part hold back", *m.ServerControl.PartHoldBack, 1500*time.Millisecond)
	eq(t, "can skip until", *m.ServerControl.CanSkipUntil, 12*time.Second)
	eq(t, "skip", m.Skip == nil, true)
	eq(t, "endlist", m.Endlist, false)
	eq(t, "reports", len(m.RenditionReport), 1)
	r := report(t, m, "../audio/index.m3u8")
	eq(t, "audio LAST-MSN", r.LastMSN, 8)
	eq(t, "audio LAST-PART", *r.LastPart, 0)
}

func TestSteadyAudio(t *testing.T) {
	f := steady(t)
	text := f.media("audio", ll())
	golden(t, "steady_audio", text)

	m := parseMedia(t, text, false)
	// 2.048 s segments round to 2 s; 0.512 s parts raise PART-TARGET.
	eq(t, "target duration", m.TargetDuration, 2)
	eq(t, "part target", m.PartInf.PartTarget, 512*time.Millisecond)
	eq(t, "part hold back", *m.ServerControl.PartHoldBack, 1536*time.Millisecond)
	eq(t, "EXTINF", m.Segments[0].Duration, 2048*time.Millisecond)
	eq(t, "preload hint", m.PreloadHint.URI, "part8.1.m4s")
	r := report(t, m, "../video/index.m3u8")
	eq(t, "video LAST-MSN", r.LastMSN, 8)
	eq(t, "video LAST-PART", *r.LastPart, 1)
}

func TestPartsWindow(t *testing.T) {
	// The open segment has no part yet: the last three complete segments
	// carry parts and the hint is the open segment's part 0.
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	a := f.audio("audio")
	v.segments(8)
	a.segments(8)
	v.start()
	text := f.media("video", ll())
	golden(t, "parts_window", text)

	m := parseMedia(t, text, false)
	eq(t, "segments", len(m.Segments), 6)
	for i, seg := range m.Segments {
		want := 0
		if i >= 3 {
			want = 4
		}
		eq(t, fmt.Sprintf("parts of %s", seg.URI), len(seg.Parts), want)
	}
	eq(t, "open parts", len(m.Parts), 0)
	eq(t, "preload hint", m.PreloadHint.URI, "part8.0.m4s")
	r := report(t, m, "../audio/index.m3u8")
	eq(t, "audio LAST-MSN", r.LastMSN, 7)
	eq(t, "audio LAST-PART", *r.LastPart, 3)

	// Between two segments (none open) the hint is the next segment's part 0.
	f = newFixture(t, store.Config{})
	f.video("video", 640, 360, 20000).segments(3)
	m = parseMedia(t, f.media("video", ll()), false)
	eq(t, "preload hint between segments", m.PreloadHint.URI, "part3.0.m4s")
	eq(t, "parts of the last segment", len(m.Segments[2].Parts), 4)
}

func TestPlain(t *testing.T) {
	f := steady(t)
	text := f.media("video", MediaOptions{Skip: true})
	golden(t, "plain", text)

	m := parseMedia(t, text, false)
	eq(t, "version", m.Version, 6)
	eq(t, "media sequence", m.MediaSequence, 2)
	eq(t, "segments", len(m.Segments), 6)
	eq(t, "server control", m.ServerControl == nil, true)
	eq(t, "open parts", len(m.Parts), 0)
}

func TestRepublish(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(4)
	f.republish(10 * time.Second)
	v.segments(2)
	v.openWith(1)
	text := f.media("video", ll())
	golden(t, "republish", text)

	m := parseMedia(t, text, false)
	eq(t, "media sequence", m.MediaSequence, 0)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 0)
	for i, seg := range m.Segments {
		eq(t, fmt.Sprintf("discontinuity on %s", seg.URI), seg.Discontinuity, i == 4)
	}
	eq(t, "program date time after the pause", m.Segments[4].DateTime.Equal(t0.Add(18*time.Second)), true)

	// Once the discontinuity has left the window, the sequence counts it.
	v.complete()
	v.segments(4)
	text = f.media("video", ll())
	golden(t, "republish_out", text)
	m = parseMedia(t, text, false)
	eq(t, "media sequence", m.MediaSequence, 5)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 1)
	for _, seg := range m.Segments {
		eq(t, fmt.Sprintf("discontinuity on %s", seg.URI), seg.Discontinuity, false)
	}

	// While the discontinuity is the first segment listed, its tag is there
	// and the sequence is one lower.
	f2 := newFixture(t, store.Config{})
	v2 := f2.video("video", 640, 360, 20000)
	v2.segments(4)
	f2.republish(10 * time.Second)
	v2.segments(6)
	m = parseMedia(t, f2.media("video", ll()), false)
	eq(t, "media sequence", m.MediaSequence, 4)
	eq(t, "first segment discontinuity", m.Segments[0].Discontinuity, true)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 0)
}

func TestRepublishOpen(t *testing.T) {
	// The first segment after a republish is still open: its parts come
	// after EXT-X-DISCONTINUITY and its program date time.
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(3)
	f.republish(5 * time.Second)
	v.openWith(2)
	text := string(f.media("video", ll()))
	want := "seg2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-01-02T03:04:16.000Z\n#EXT-X-PART:DURATION=0.50000,URI=\"part3.0.m4s\",INDEPENDENT=YES\n"
	if !strings.Contains(text, want) {
		t.Errorf("missing\n%s\nin\n%s", want, text)
	}
	parseMedia(t, []byte(text), false)
}

func TestInitChange(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(3)
	v.changeInit(1280, 720, 0x28)
	v.segments(2)
	v.openWith(1)
	text := f.media("video", ll())
	golden(t, "init_change", text)

	m := parseMedia(t, text, false)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 0)
	eq(t, "discontinuity on seg3", m.Segments[3].Discontinuity, true)
	s := string(text)
	first := strings.Index(s, "#EXT-X-MAP:URI=\"init.mp4\"\n")
	second := strings.Index(s, "#EXT-X-MAP:URI=\"init-1.mp4\"\n")
	seg3 := strings.Index(s, "seg3.m4s")
	seg2 := strings.Index(s, "seg2.m4s")
	if first < 0 || second < 0 || first > seg2 || second < seg2 || second > seg3 {
		t.Errorf("EXT-X-MAP init.mp4 at %d, init-1.mp4 at %d; seg2 at %d, seg3 at %d", first, second, seg2, seg3)
	}
	eq(t, "last map", m.Map.URI, "init-1.mp4") // gohlslib keeps the last EXT-X-MAP

	// After the change left the window: one map, sequence 1.
	v.complete()
	v.segments(4)
	m = parseMedia(t, f.media("video", ll()), false)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, 1)
	eq(t, "map", m.Map.URI, "init-1.mp4")
}

func TestGap(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(3)
	v.gap()
	v.segments(2)
	v.openWith(1)
	text := f.media("video", ll())
	golden(t, "gap", text)

	m := parseMedia(t, text, false)
	for i, seg := range m.Segments {
		eq(t, fmt.Sprintf("gap on %s", seg.URI), seg.Gap, i == 3)
	}
	eq(t, "gap duration", m.Segments[3].Duration, 2*time.Second)
	eq(t, "gap parts", len(m.Segments[3].Parts), 0)
}

func TestEnded(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	a := f.audio("audio")
	v.segments(7)
	a.segments(7)
	v.openWith(2)
	a.openWith(2)
	f.stream.End()
	text := f.media("video", ll())
	golden(t, "ended", text)

	m := parseMedia(t, text, false)
	eq(t, "endlist", m.Endlist, true)
	eq(t, "preload hint", m.PreloadHint == nil, true)
	eq(t, "segments", len(m.Segments), 6)
	last := m.Segments[5]
	eq(t, "last segment", last.URI, "seg7.m4s")
	eq(t, "last segment duration", last.Duration, time.Second) // closed by End with its 2 parts
	eq(t, "last segment parts", len(last.Parts), 2)
	eq(t, "open parts", len(m.Parts), 0)
	r := report(t, m, "../audio/index.m3u8")
	eq(t, "audio LAST-MSN", r.LastMSN, 7)
	eq(t, "audio LAST-PART", *r.LastPart, 1)

	m = parseMedia(t, f.media("video", MediaOptions{}), false)
	eq(t, "plain endlist", m.Endlist, true)
}

func TestSkip(t *testing.T) {
	f := newFixture(t, store.Config{Window: 12})
	v := f.video("video", 640, 360, 20000)
	a := f.audio("audio")
	v.segments(14)
	a.segments(14)
	v.openWith(1)
	a.openWith(1)
	o := ll()
	o.Window = 12
	full := parseMedia(t, f.media("video", o), false)
	o.Skip = true
	text := f.media("video", o)
	golden(t, "skip", text)

	m := parseMedia(t, text, false)
	eq(t, "media sequence", m.MediaSequence, 2)
	eq(t, "full segments", len(full.Segments), 12)
	eq(t, "full skip", full.Skip == nil, true)
	// 12 × 2 s + 0.5 s listed: the 6 segments ending 12 s or more before
	// the end are skipped.
	eq(t, "skipped", m.Skip.SkippedSegments, 6)
	eq(t, "segments", len(m.Segments), 6)
	for i, seg := range m.Segments {
		eq(t, "segment", seg.URI, full.Segments[6+i].URI)
		eq(t, "parts", len(seg.Parts), len(full.Segments[6+i].Parts))
	}
	eq(t, "map", m.Map.URI, "init.mp4")
	eq(t, "preload hint", m.PreloadHint.URI, full.PreloadHint.URI)
	eq(t, "reports", len(m.RenditionReport), 1)
	eq(t, "discontinuity sequence", *m.DiscontinuitySequence, *full.DiscontinuitySequence)

	// With the default window the playlist is never longer than the Skip
	// Boundary: a delta request gets the full playlist.
	m = parseMedia(t, f.media("video", MediaOptions{Skip: true, LowLatency: true}), false)
	eq(t, "default window skip", m.Skip == nil, true)
	eq(t, "default window segments", len(m.Segments), 6)
}

func TestEmptySegment(t *testing.T) {
	// A segment finished without parts is discarded by the store, which
	// gives its sequence number back: no hole in the numbering.
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(5)
	v.start()
	v.finish()
	v.segments(2)
	m := parseMedia(t, f.media("video", ll()), false)
	eq(t, "media sequence", m.MediaSequence, 1)
	eq(t, "last segment", m.Segments[5].URI, "seg6.m4s")
}

// Should the store ever leave a hole in the sequence numbers, the playlist
// starts after it rather than misnumber segments (MSNs are implicit).
func TestHole(t *testing.T) {
	seg := func(msn uint64, parts int) *store.Segment {
		s := &store.Segment{MSN: msn, InitName: "init.mp4", ProgramDateTime: t0.Add(time.Duration(msn) * 2 * time.Second), Complete: true, Duration: 2 * time.Second}
		for i := range parts {
			s.Parts = append(s.Parts, &store.Part{Index: i, Duration: 500 * time.Millisecond, Independent: i == 0})
		}
		return s
	}
	info := store.RenditionInfo{Name: "video", SegmentTarget: 2 * time.Second, PartTarget: 500 * time.Millisecond}
	snap := &store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 4), seg(1, 4), seg(2, 4), seg(4, 4), seg(5, 4)}}
	text := Media(Rendition{Name: "video", Snap: snap}, nil, ll())
	golden(t, "hole", text)
	m := parseMedia(t, text, false)
	eq(t, "media sequence", m.MediaSequence, 4)
	eq(t, "segments", len(m.Segments), 2)

	// The open segment does not follow the last complete one.
	open := seg(7, 2)
	open.Complete, open.Duration = false, 0
	snap = &store.Snapshot{Info: info, Segments: []*store.Segment{seg(4, 4), seg(5, 4)}, Open: open}
	m = parseMedia(t, Media(Rendition{Name: "video", Snap: snap}, nil, ll()), true)
	eq(t, "media sequence", m.MediaSequence, 7)
	eq(t, "open parts", len(m.Parts), 2)
}

// TestDiscontinuitySequenceStable slides a window over a stream with
// republishes and codec changes and checks that every segment keeps the
// same discontinuity sequence number in every playlist that lists it.
func TestDiscontinuitySequenceStable(t *testing.T) {
	events := map[int]string{4: "republish", 9: "init", 15: "republish", 16: "republish", 22: "init", 30: "republish"}
	inconsistent := runDiscontinuityScenario(t, events)
	for _, msg := range inconsistent {
		t.Error(msg)
	}
}

// TestDiscontinuitySequenceRepublishWithNewInit is the case the store does
// not give enough information for (see discontinuitySequence): a republish
// with a new codec configuration is one discontinuity but moves both the
// epoch and the init version.
func TestDiscontinuitySequenceRepublishWithNewInit(t *testing.T) {
	inconsistent := runDiscontinuityScenario(t, map[int]string{4: "republish+init"})
	if len(inconsistent) > 0 {
		t.Fatalf("discontinuity sequence changes as the window slides: %s", inconsistent[0])
	}
}

func runDiscontinuityScenario(t *testing.T, events map[int]string) []string {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	level := byte(0x1f)
	seen := map[string]int{} // segment URI → discontinuity sequence number
	var out []string
	for i := range 40 {
		switch events[i] {
		case "republish":
			f.republish(3 * time.Second)
		case "init":
			level++
			v.changeInit(640, 360, level)
		case "republish+init":
			f.republish(3 * time.Second)
			level++
			v.changeInit(640, 360, level)
		}
		v.openWith(2)
		m := parseMedia(t, f.media("video", ll()), i == 0)
		dsn := *m.DiscontinuitySequence
		for _, seg := range m.Segments {
			if seg.Discontinuity {
				dsn++
			}
			if prev, ok := seen[seg.URI]; ok && prev != dsn {
				out = append(out, fmt.Sprintf("step %d: %s has discontinuity sequence %d, was %d", i, seg.URI, dsn, prev))
			}
			seen[seg.URI] = dsn
		}
		v.part()
		v.part()
		v.finish()
	}
	return out
}

func TestMultivariant(t *testing.T) {
	f := steady(t)
	f.pending("pending") // no init yet: left out
	text := Multivariant(f.renditions())
	golden(t, "multivariant", text)

	m := parseMultivariant(t, text)
	eq(t, "variants", len(m.Variants), 1)
	eq(t, "renditions", len(m.Renditions), 1)
	vp, va := Bandwidth(f.rendition("video").Snap, DefaultWindow)
	ap, aa := Bandwidth(f.rendition("audio").Snap, DefaultWindow)
	v := m.Variants[0]
	eq(t, "bandwidth", v.Bandwidth, vp+ap)
	eq(t, "average bandwidth", *v.AverageBandwidth, va+aa)
	eq(t, "codecs", strings.Join(v.Codecs, ","), "avc1.64001f,mp4a.40.2")
	eq(t, "resolution", v.Resolution, "640x360")
	eq(t, "frame rate", *v.FrameRate, 30.0)
	eq(t, "audio group", v.Audio, "audio")
	eq(t, "uri", v.URI, "video/index.m3u8")
	r := m.Renditions[0]
	eq(t, "rendition type", r.Type, hls.MultivariantRenditionTypeAudio)
	eq(t, "rendition group", r.GroupID, "audio")
	eq(t, "rendition name", r.Name, "audio")
	eq(t, "rendition default", r.Default, true)
	eq(t, "rendition autoselect", r.Autoselect, true)
	eq(t, "rendition channels", *r.Channels, "2")
	eq(t, "rendition uri", *r.URI, "audio/index.m3u8")
}

func TestMultivariantLadder(t *testing.T) {
	f := newFixture(t, store.Config{})
	src := f.video("source", 1280, 720, 60000)
	low := f.video("360p", 640, 360, 15000)
	a := f.audio("audio")
	for _, tr := range []*track{src, low, a} {
		tr.segments(3)
	}
	text := Multivariant(f.renditions())
	golden(t, "multivariant_ladder", text)

	m := parseMultivariant(t, text)
	eq(t, "variants", len(m.Variants), 2)
	eq(t, "first variant", m.Variants[0].URI, "source/index.m3u8")
	eq(t, "second variant", m.Variants[1].URI, "360p/index.m3u8")
	if m.Variants[0].Bandwidth <= m.Variants[1].Bandwidth {
		t.Errorf("source bandwidth %d not above 360p's %d", m.Variants[0].Bandwidth, m.Variants[1].Bandwidth)
	}
	eq(t, "resolution", m.Variants[0].Resolution, "1280x720")
}

func TestAudioOnly(t *testing.T) {
	f := newFixture(t, store.Config{})
	a := f.audio("audio")
	a.segments(3)
	a.openWith(1)
	text := Multivariant(f.renditions())
	golden(t, "multivariant_audio_only", text)

	m := parseMultivariant(t, text)
	eq(t, "variants", len(m.Variants), 1)
	eq(t, "renditions", len(m.Renditions), 0)
	v := m.Variants[0]
	peak, avg := Bandwidth(f.rendition("audio").Snap, DefaultWindow)
	eq(t, "bandwidth", v.Bandwidth, peak)
	eq(t, "average bandwidth", *v.AverageBandwidth, avg)
	eq(t, "codecs", strings.Join(v.Codecs, ","), "mp4a.40.2")
	eq(t, "uri", v.URI, "audio/index.m3u8")
	eq(t, "audio group", v.Audio, "")

	text = f.media("audio", ll())
	golden(t, "audio_only", text)
	mm := parseMedia(t, text, false)
	eq(t, "reports", len(mm.RenditionReport), 0)
}

func TestMultivariantNotReady(t *testing.T) {
	f := newFixture(t, store.Config{})
	f.pending("video")
	if text := Multivariant(f.renditions()); text != nil {
		t.Errorf("multivariant without any init:\n%s", text)
	}
}

func TestBandwidth(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 10000)
	if p, a := Bandwidth(f.rendition("video").Snap, 0); p != 0 || a != 0 {
		t.Errorf("no media: %d, %d", p, a)
	}
	// Open segment only: estimated from its parts. Part 0 is
	// 3×10000+1000 bytes (count 1), part 1 10000, over 1 s.
	v.openWith(2)
	p, a := Bandwidth(f.rendition("video").Snap, 0)
	eq(t, "estimated peak", p, 41000*8)
	eq(t, "estimated average", a, 41000*8)
	v.part()
	v.part()
	v.finish()
	v.segments(2)
	v.gap() // left out
	// Segments: 61000, 62000, 60000 bytes over 2 s each.
	p, a = Bandwidth(f.rendition("video").Snap, 0)
	eq(t, "peak", p, 62000*8/2)
	eq(t, "average", a, (61000+62000+60000)*8/6)
	// Window of the last 2 segments (one of them the gap).
	p, a = Bandwidth(f.rendition("video").Snap, 2)
	eq(t, "window peak", p, 60000*8/2)
	eq(t, "window average", a, 60000*8/2)
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		d           time.Duration
		full, short string
	}{
		{2 * time.Second, "2.00000", "2.0"},
		{500 * time.Millisecond, "0.50000", "0.5"},
		{2048 * time.Millisecond, "2.04800", "2.048"},
		{1999999 * time.Microsecond, "2.00000", "2.0"},
		{1333333 * time.Microsecond, "1.33333", "1.33333"},
		{15 * time.Microsecond, "0.00002", "0.00002"},
		{-time.Second, "0.00000", "0.0"},
	} {
		eq(t, "appendSeconds", string(appendSeconds(nil, c.d)), c.full)
		eq(t, "appendSecondsShort", string(appendSecondsShort(nil, c.d)), c.short)
	}
	eq(t, "round 2.5", roundSeconds(2500*time.Millisecond), 3)
	eq(t, "round 2.499", roundSeconds(2499*time.Millisecond), 2)
	eq(t, "ceil ms", ceilMillis(512001*time.Microsecond), 513*time.Millisecond)
	eq(t, "date", string(appendDateTime(nil, time.Date(2024, 1, 2, 4, 4, 5, 678_900_000, time.FixedZone("x", 3600)))), "2024-01-02T03:04:05.678Z")
}

func TestTargetDurationFollowsLongSegment(t *testing.T) {
	// A segment of 4 parts plus 3 more (a late key frame): 3.5 s → 4.
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(2)
	v.openWith(7)
	v.finish()
	v.segments(1)
	m := parseMedia(t, f.media("video", ll()), false)
	eq(t, "target duration", m.TargetDuration, 4)
	eq(t, "can skip until", *m.ServerControl.CanSkipUntil, 24*time.Second)
}

package dash

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T) (*fixture, Options)
	}{
		{"single", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("video", sps720)
			f.audio("audio")
			for i := range 8 {
				d := segTgt
				if i == 5 {
					d = 2100 * time.Millisecond // a longer GOP
				}
				f.step(d)
			}
			return f, f.options()
		}},
		{"ladder", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("720p", sps720)
			f.video("360p", sps360)
			f.audio("audio")
			for range 7 {
				f.step(segTgt)
			}
			return f, f.options()
		}},
		{"republish", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("video", sps720)
			f.audio("audio")
			for range 4 {
				f.step(segTgt)
			}
			f.republish(10 * time.Second)
			for range 3 {
				f.step(segTgt)
			}
			return f, f.options()
		}},
		{"ended", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("video", sps720)
			f.audio("audio")
			for range 7 {
				f.step(segTgt)
			}
			f.st.End()
			o := f.options()
			o.EndGrace = -1 // final at once (the store's clock is real time)
			return f, o
		}},
		{"lowlatency", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("video", sps720)
			f.audio("audio")
			for range 7 {
				f.step(segTgt)
			}
			f.open(2)
			o := f.options()
			o.LowLatency = true
			return f, o
		}},
		{"gap", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("720p", sps720)
			f.video("360p", sps360)
			f.audio("audio")
			for i := range 7 {
				if i == 4 {
					f.step(segTgt, 1) // the 360p transcode failed
					continue
				}
				f.step(segTgt)
			}
			return f, f.options()
		}},
		{"codecchange", func(t *testing.T) (*fixture, Options) {
			f := newFixture(t, 6)
			f.video("video", sps720)
			f.audio("audio")
			for range 4 {
				f.step(segTgt)
			}
			info := f.infos[0]
			info.Codec = &media.H264{SPS: sps360, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}
			info.Width, info.Height = 640, 360
			f.setInit(0, info, []byte("init:360"))
			for range 3 {
				f.step(segTgt)
			}
			return f, f.options()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, o := tc.build(t)
			out, err := MPD(f.renditions(), o)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, out)
			check(t, f, o, out, nil)
			again, err := MPD(f.renditions(), o)
			if err != nil || !bytes.Equal(out, again) {
				t.Errorf("second call differs (err %v)", err)
			}
		})
	}
}

// TestGoldenShapes checks what each golden scenario is about, on top of the
// generic rules check verifies.
func TestGoldenShapes(t *testing.T) {
	read := func(name string) *mpd.MPD {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name+".mpd"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mpd.ReadFromString(string(data))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ids := func(m *mpd.MPD) []string {
		var out []string
		for _, p := range m.Periods {
			out = append(out, p.Id)
		}
		return out
	}

	m := read("single")
	eqSlice(t, "single periods", ids(m), []string{"p0"})
	eq(t, "single minimumUpdatePeriod", durOf(m.MinimumUpdatePeriod), segTgt)
	eq(t, "single suggestedPresentationDelay", durOf(m.SuggestedPresentationDelay), 3*segTgt)
	eq(t, "single period start", durOf(m.Periods[0].Start), 0)
	v := m.Periods[0].AdaptationSets[0]
	eq(t, "video frameRate", string(v.Representations[0].FrameRate), "30")
	eq(t, "video codecs", v.Representations[0].Codecs, "avc1.64001f")
	eq(t, "video size", [2]uint32{v.Representations[0].Width, v.Representations[0].Height}, [2]uint32{1280, 720})
	a := m.Periods[0].AdaptationSets[1]
	eq(t, "audio codecs", a.Representations[0].Codecs, "mp4a.40.2")
	eq(t, "audio channels", a.Representations[0].AudioChannelConfigurations[0].Value, "2")
	if m.ServiceDescription != nil || strings.Contains(string(m.Profiles), ProfileLowLatency) {
		t.Error("low-latency signalling without LowLatency")
	}

	m = read("ladder")
	v = m.Periods[0].AdaptationSets[0]
	if v.SegmentTemplate == nil || v.SegmentTemplate.Media != "$RepresentationID$/seg$Number$.m4s" {
		t.Errorf("aligned ladder: template not shared on the AdaptationSet: %+v", v.SegmentTemplate)
	}
	eq(t, "ladder representations", len(v.Representations), 2)
	eq(t, "360p codecs", v.Representations[1].Codecs, "avc1.4d401e")

	m = read("republish")
	eqSlice(t, "republish periods", ids(m), []string{"p0", "p1"})
	// The second publish's first segment was received 10s (the downtime)
	// later than continuous media time says, and 7ms later still for audio.
	p1 := m.Periods[1]
	st := p1.AdaptationSets[0].Representations[0].SegmentTemplate
	want := store.TicksToDuration(*st.PresentationTimeOffset, *st.Timescale) + 10*time.Second - 20*time.Millisecond + 7*time.Millisecond
	eq(t, "p1 start", durOf(p1.Start), want)
	eq(t, "p1 startNumber", *st.StartNumber, uint32(4))

	m = read("ended")
	if m.MinimumUpdatePeriod != nil || m.TimeShiftBufferDepth != nil || m.MediaPresentationDuration == nil {
		t.Errorf("ended: minimumUpdatePeriod %v timeShiftBufferDepth %v mediaPresentationDuration %v",
			m.MinimumUpdatePeriod, m.TimeShiftBufferDepth, m.MediaPresentationDuration)
	}
	eq(t, "ended type", m.GetType(), "dynamic")
	eq(t, "ended mediaPresentationDuration", durOf(m.MediaPresentationDuration), 14*time.Second+16*time.Millisecond)

	m = read("lowlatency")
	if !strings.Contains(string(m.Profiles), ProfileLowLatency) {
		t.Error("no low-latency profile")
	}
	eq(t, "ll minimumUpdatePeriod", durOf(m.MinimumUpdatePeriod), partTgt)
	eq(t, "ll minBufferTime", durOf(m.MinBufferTime), partTgt)
	eq(t, "ll suggestedPresentationDelay", durOf(m.SuggestedPresentationDelay), minTargetLatency)
	sd := m.ServiceDescription[0]
	eq(t, "ll latency", [3]uint32{*sd.Latencies[0].Target, *sd.Latencies[0].Min, *sd.Latencies[0].Max}, [3]uint32{1500, 1125, 3000})
	eq(t, "ll playback rate", [2]float64{sd.PlaybackRates[0].Min, sd.PlaybackRates[0].Max}, [2]float64{0.96, 1.04})
	for _, as := range m.Periods[0].AdaptationSets {
		st := as.Representations[0].SegmentTemplate
		eq(t, "ll availabilityTimeOffset", float64(st.AvailabilityTimeOffset), 1.5)
		if st.AvailabilityTimeComplete == nil || *st.AvailabilityTimeComplete {
			t.Error("ll: availabilityTimeComplete is not false")
		}
	}

	m = read("gap")
	eqSlice(t, "gap periods", ids(m), []string{"p0", "p0-5"})
	for _, p := range m.Periods {
		for _, rep := range p.AdaptationSets[0].Representations {
			if rep.Id == "360p" && rep.GetSegmentTemplate() == nil {
				t.Error("360p without template")
			}
		}
	}

	m = read("codecchange")
	eqSlice(t, "codec change periods", ids(m), []string{"p0", "p0-4"})
	r1 := m.Periods[1].AdaptationSets[0].Representations[0]
	eq(t, "new init", r1.SegmentTemplate.Initialization, "video/init-1.mp4")
	eq(t, "new codecs", r1.Codecs, "avc1.4d401e")
	eq(t, "codec change period start", durOf(m.Periods[1].Start), 8*time.Second)
}

// check verifies the DASH rules the package relies on in a rendered MPD:
// the timelines list exactly the store's segments (numbers, t and d), in
// Periods whose starts increase and are consistent with their
// presentationTimeOffset, and whose wall-clock mapping announces each
// segment about when its first frame was received. want overrides the
// expected numbers per rendition (the window's non-gap segments, and the
// open one in low-latency mode).
func check(t *testing.T, f *fixture, o Options, out []byte, want map[string][]uint64) *mpd.MPD {
	t.Helper()
	m, err := mpd.ReadFromString(string(out))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	xmllint(t, out)
	snaps := map[string]*store.Snapshot{}
	ended := true
	var endedAt time.Time
	for _, r := range f.renditions() {
		snaps[r.Name] = r.Snap
		ended = ended && r.Snap.Ended
		if r.Snap.Updated.After(endedAt) {
			endedAt = r.Snap.Updated
		}
	}
	grace := o.EndGrace
	if grace == 0 {
		grace = DefaultEndGrace
	}
	ended = ended && (grace < 0 || !o.PublishTime.Before(endedAt.Add(grace)))
	window := o.Window
	if window <= 0 {
		window = DefaultWindow
	}

	if m.GetType() != mpd.DYNAMIC_TYPE {
		t.Errorf("type %q", m.GetType())
	}
	ast, err := time.Parse(time.RFC3339Nano, string(m.AvailabilityStartTime))
	if err != nil || !ast.Equal(o.AvailabilityStart.Truncate(time.Millisecond)) {
		t.Errorf("availabilityStartTime %s, want %s (%v)", m.AvailabilityStartTime, o.AvailabilityStart, err)
	}
	for _, p := range []string{ProfileLive, ProfileCMAF} {
		if !strings.Contains(string(m.Profiles), p) {
			t.Errorf("profiles %q lack %s", m.Profiles, p)
		}
	}
	if o.UTCTimingURL != "" && (len(m.UTCTimings) != 1 || m.UTCTimings[0].SchemeIdUri != SchemeUTCHTTPISO || m.UTCTimings[0].Value != o.UTCTimingURL) {
		t.Errorf("UTCTiming %+v", m.UTCTimings)
	}
	if ended {
		if m.MinimumUpdatePeriod != nil || m.MediaPresentationDuration == nil || m.TimeShiftBufferDepth != nil {
			t.Error("ended: want mediaPresentationDuration, no minimumUpdatePeriod nor timeShiftBufferDepth")
		}
	} else {
		if m.MinimumUpdatePeriod == nil || m.MediaPresentationDuration != nil {
			t.Error("live: want minimumUpdatePeriod and no mediaPresentationDuration")
		}
		var tsbd time.Duration
		for _, s := range snaps {
			var d time.Duration
			for _, seg := range s.Segments[max(len(s.Segments)-window, 0):] {
				d += seg.Duration
			}
			tsbd = max(tsbd, d)
		}
		if got := durOf(m.TimeShiftBufferDepth); got != tsbd.Round(time.Millisecond) {
			t.Errorf("timeShiftBufferDepth %v, want the window's duration %v", got, tsbd)
		}
	}

	listed := map[string][]uint64{}
	ends := map[string]time.Duration{} // media end of each rendition in the previous Period
	prevStart := time.Duration(-1)
	var end time.Duration
	for pi, p := range m.Periods {
		if p.Start == nil {
			t.Fatalf("period %s without start", p.Id)
		}
		start := durOf(p.Start)
		if start <= prevStart {
			t.Errorf("period %s start %v not after %v", p.Id, start, prevStart)
		}
		prevStart = start
		for name, e := range ends {
			// Media of the previous Period ends at this one's start, give or
			// take an audio frame cut at the boundary.
			if e > start+25*time.Millisecond {
				t.Errorf("period %d: %s media of the previous period ends at %v, after %v", pi, name, e, start)
			}
		}
		clear(ends)
		for _, as := range p.AdaptationSets {
			for _, rep := range as.Representations {
				st := rep.GetSegmentTemplate()
				name := rep.Id
				s := snaps[name]
				if s == nil || st == nil || st.SegmentTimeline == nil || st.StartNumber == nil || st.Timescale == nil {
					t.Fatalf("period %s: representation %q incomplete", p.Id, name)
				}
				media := strings.ReplaceAll(st.Media, "$RepresentationID$", name)
				if media != name+"/seg$Number$.m4s" {
					t.Errorf("media %q", st.Media)
				}
				initURL := strings.ReplaceAll(st.Initialization, "$RepresentationID$", name)
				ts := *st.Timescale
				var pto uint64
				if st.PresentationTimeOffset != nil {
					pto = *st.PresentationTimeOffset
				}
				n := uint64(*st.StartNumber)
				var tc uint64
				for si, e := range st.SegmentTimeline.S {
					if e.T != nil {
						tc = *e.T
					} else if si == 0 {
						t.Errorf("%s: first S without t", name)
					}
					for range e.R + 1 {
						seg, ok := s.Segment(n)
						switch {
						case !ok:
							t.Errorf("period %s %s: number %d not in the store", p.Id, name, n)
						case seg.Gap:
							t.Errorf("period %s %s: gap segment %d listed", p.Id, name, n)
						case tc != seg.BaseTime:
							t.Errorf("period %s %s: segment %d t=%d, store BaseTime %d", p.Id, name, n, tc, seg.BaseTime)
						case seg.Complete && e.D != seg.DurationTicks:
							t.Errorf("period %s %s: segment %d d=%d, store %d", p.Id, name, n, e.D, seg.DurationTicks)
						case !seg.Complete && (!o.LowLatency || e.D < store.DurationToTicks(segTgt, ts)):
							t.Errorf("period %s %s: open segment %d listed with d=%d", p.Id, name, n, e.D)
						case initURL != name+"/"+seg.InitName:
							t.Errorf("period %s %s: segment %d needs %s, template says %s", p.Id, name, n, seg.InitName, initURL)
						case tc < pto:
							t.Errorf("period %s %s: segment %d starts at %d, before the period (%d)", p.Id, name, n, tc, pto)
						}
						if ok {
							// Wall-clock mapping: announced about when received.
							at := start + store.TicksToDuration(tc-pto, ts)
							recv := seg.ProgramDateTime.Sub(o.AvailabilityStart.Truncate(time.Millisecond))
							if d := at - recv; d < -time.Millisecond-maxJitter || d > 30*time.Millisecond {
								t.Errorf("period %s %s: segment %d announced at %v, received at %v", p.Id, name, n, at, recv)
							}
							e := start + store.TicksToDuration(tc+e.D-pto, ts)
							if seg.Complete {
								ends[name] = e
								end = max(end, e)
							}
						}
						listed[name] = append(listed[name], n)
						tc += e.D
						n++
					}
				}
			}
		}
	}
	if ended {
		eq(t, "mediaPresentationDuration", durOf(m.MediaPresentationDuration), end.Round(time.Millisecond))
	}
	for name, s := range snaps {
		exp, ok := want[name]
		if !ok {
			for _, seg := range s.Segments[max(len(s.Segments)-window, 0):] {
				if !seg.Gap {
					exp = append(exp, seg.MSN)
				}
			}
			if o.LowLatency && s.Open != nil && len(s.Open.Parts) > 0 {
				exp = append(exp, s.Open.MSN)
			}
		}
		if !slices.Equal(listed[name], exp) {
			t.Errorf("%s: numbers listed %v, want %v", name, listed[name], exp)
		}
	}
	return m
}

// maxJitter is the ingest jitter of TestHistory's fixture: a segment may be
// announced that much before its first frame was received.
const maxJitter = 10 * time.Millisecond

func xmllint(t *testing.T, out []byte) {
	t.Helper()
	testpeer.RequireBinary(t, "apt-get install -y libxml2-utils; ./scripts/test.sh installs it", "xmllint")
	path, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--noout", "-")
	cmd.Stdin = bytes.NewReader(out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("xmllint: %v\n%s", err, msg)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".mpd")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n%s", path, got)
	}
}

func durOf(d *mpd.Duration) time.Duration {
	if d == nil {
		return -1
	}
	return time.Duration(*d)
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func eqSlice[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// TestAvailabilityStartFixed: availabilityStartTime is Started() and does
// not move as the stream goes on.
func TestAvailabilityStartFixed(t *testing.T) {
	f := newFixture(t, 6)
	f.ast = f.st.Started()
	f.video("video", sps720)
	f.audio("audio")
	var first *mpd.MPD
	for i := range 12 {
		f.step(segTgt)
		o := f.options()
		o.AvailabilityStart = f.st.Started()
		out, err := MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m := check(t, f, o, out, nil)
		if i == 0 {
			first = m
			continue
		}
		eq(t, "availabilityStartTime", m.AvailabilityStartTime, first.AvailabilityStartTime)
		eq(t, "p0 start", durOf(m.Periods[0].Start), 0)
	}
	want := f.st.Started().UTC().Truncate(time.Millisecond)
	if got, _ := time.Parse(time.RFC3339Nano, string(first.AvailabilityStartTime)); !got.Equal(want) {
		t.Errorf("availabilityStartTime %s, want Started() %s", first.AvailabilityStartTime, want)
	}
}

// TestHistory: a republished Period keeps its start and
// presentationTimeOffset after its first segment has left the store, with a
// History. Without one it moves by the ingest jitter, which is what History
// is for.
func TestHistory(t *testing.T) {
	f := newFixture(t, 6)
	f.jitter = func(r int, msn uint64) time.Duration {
		return time.Duration((msn*7+uint64(r)*3)%11) * time.Millisecond
	}
	f.video("video", sps720)
	f.audio("audio")
	for range 4 {
		f.step(segTgt)
	}
	f.republish(7 * time.Second)
	type timing struct {
		start time.Duration
		pto   uint64
	}
	get := func(m *mpd.MPD) (timing, bool) {
		for _, p := range m.Periods {
			if p.Id == "p1" {
				st := p.AdaptationSets[0].Representations[0].SegmentTemplate
				return timing{durOf(p.Start), *st.PresentationTimeOffset}, true
			}
		}
		return timing{}, false
	}
	var h History
	var with, without []timing
	for range 16 {
		f.step(segTgt)
		o := f.options()
		o.History = &h
		out, err := MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m := check(t, f, o, out, nil)
		tm, ok := get(m)
		if !ok {
			t.Fatal("no p1")
		}
		with = append(with, tm)
		o.History = nil
		out, err = MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m, err = mpd.ReadFromString(string(out))
		if err != nil {
			t.Fatal(err)
		}
		tm, _ = get(m)
		without = append(without, tm)
	}
	if snap := f.rends[0].Snapshot(); snap.Segments[0].Epoch != 1 {
		t.Fatal("the first segment of the republish is still in the store")
	}
	for i, tm := range with {
		if tm != with[0] {
			t.Errorf("with a History, update %d: p1 %+v, first listed as %+v", i, tm, with[0])
		}
		if i < 9 && without[i] != with[0] {
			t.Errorf("without a History, update %d: p1 %+v while its first segment is kept, want %+v", i, without[i], with[0])
		}
	}
	if without[len(without)-1] == with[0] {
		t.Log("without a History p1 happened not to move")
	}
	if len(h.anchors) != 1 || h.anchors[0].id != "p1" {
		t.Errorf("history %+v", h.anchors)
	}

	// A new stream under the same name resets the History.
	o := f.options()
	o.AvailabilityStart = o.AvailabilityStart.Add(time.Hour)
	o.History = &h
	if _, err := MPD(f.renditions(), o); err != nil {
		t.Fatal(err)
	}
	if !h.ast.Equal(o.AvailabilityStart) {
		t.Error("history not reset for a new availability start")
	}
}

// TestHistoryBoundary: a Period started by a codec change stays a Period,
// with the same timing, after the segments that showed the change have left
// the store.
func TestHistoryBoundary(t *testing.T) {
	f := newFixture(t, 4)
	f.video("video", sps720)
	f.audio("audio")
	for range 3 {
		f.step(segTgt)
	}
	info := f.infos[0]
	info.Codec = &media.H264{SPS: sps360}
	info.Width, info.Height = 640, 360
	f.setInit(0, info, []byte("init:360"))
	var h History
	var first *mpd.Period
	for i := range 12 {
		f.step(segTgt)
		o := f.options()
		o.History = &h
		out, err := MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m := check(t, f, o, out, nil)
		p := m.Periods[len(m.Periods)-1]
		if i == 0 {
			first = p
		}
		eq(t, "period id", p.Id, "p0-3")
		eq(t, "period start", durOf(p.Start), durOf(first.Start))
		eq(t, "period pto", *p.AdaptationSets[1].Representations[0].SegmentTemplate.PresentationTimeOffset,
			*first.AdaptationSets[1].Representations[0].SegmentTemplate.PresentationTimeOffset)
	}
	if f.rends[0].Snapshot().Segments[0].InitName != "init-1.mp4" {
		t.Fatal("the old init's segments are still in the store")
	}
}

// TestHoldBack: a republished Period is listed once every live rendition
// has a segment in it, not before.
func TestHoldBack(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	for range 3 {
		f.step(segTgt)
	}
	f.republish(5 * time.Second)
	// Only the video has finished its first segment.
	base, d := f.span(0, f.end, f.end+segTgt)
	if _, err := f.rends[0].StartSegment(f.pdt(0, base), base); err != nil {
		t.Fatal(err)
	}
	f.parts(0, segTgt, 4)
	if err := f.rends[0].FinishSegment(d); err != nil {
		t.Fatal(err)
	}
	o := f.options()
	out, err := MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := check(t, f, o, out, map[string][]uint64{"video": {0, 1, 2}, "audio": {0, 1, 2}})
	eq(t, "periods", len(m.Periods), 1)

	abase, ad := f.span(1, f.end, f.end+segTgt)
	if _, err := f.rends[1].StartSegment(f.pdt(1, abase), abase); err != nil {
		t.Fatal(err)
	}
	f.parts(1, segTgt, 4)
	if err := f.rends[1].FinishSegment(ad); err != nil {
		t.Fatal(err)
	}
	f.end += segTgt
	out, err = MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m = check(t, f, o, out, nil)
	eq(t, "periods", len(m.Periods), 2)
}

// TestHoldBackLowLatency: in low-latency mode a republished Period is listed
// as soon as every live rendition has an open segment with a part in it.
func TestHoldBackLowLatency(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	for range 3 {
		f.step(segTgt)
	}
	f.republish(5 * time.Second)
	o := f.options()
	o.LowLatency = true
	var h History
	o.History = &h
	start := func(i int) {
		base, _ := f.span(i, f.end, f.end)
		if _, err := f.rends[i].StartSegment(f.pdt(i, base), base); err != nil {
			t.Fatal(err)
		}
		f.parts(i, partTgt, 1)
	}
	start(0)
	out, err := MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := check(t, f, o, out, map[string][]uint64{"video": {0, 1, 2}, "audio": {0, 1, 2}})
	eq(t, "periods before audio", len(m.Periods), 1)
	if len(h.anchors) != 0 {
		t.Errorf("a Period not listed was remembered: %+v", h.anchors)
	}
	start(1)
	out, err = MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m = check(t, f, o, out, nil)
	eq(t, "periods", len(m.Periods), 2)
	eq(t, "p1 remembered", len(h.anchors), 1)
}

func TestNoMedia(t *testing.T) {
	f := newFixture(t, 6)
	o := f.options()
	if _, err := MPD(nil, o); !errors.Is(err, ErrNoMedia) {
		t.Errorf("no renditions: %v", err)
	}
	f.video("video", sps720)
	f.audio("audio")
	if _, err := MPD(f.renditions(), o); !errors.Is(err, ErrNoMedia) {
		t.Errorf("no segments: %v", err)
	}
	f.open(1)
	if _, err := MPD(f.renditions(), o); !errors.Is(err, ErrNoMedia) {
		t.Errorf("open segments only: %v", err)
	}
	o.LowLatency = true
	out, err := MPD(f.renditions(), o)
	if err != nil {
		t.Fatalf("low latency, open segments with a part: %v", err)
	}
	check(t, f, o, out, nil)
	o.AvailabilityStart = time.Time{}
	if _, err := MPD(f.renditions(), o); !errors.Is(err, ErrNoAvailabilityStart) {
		t.Errorf("no availability start: %v", err)
	}
}

// TestLowLatencyOpenSegment: the segment being written is listed with its
// expected duration, then with its real one.
func TestLowLatencyOpenSegment(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	for range 3 {
		f.step(segTgt)
	}
	f.open(1)
	o := f.options()
	o.LowLatency = true
	lastS := func() (uint64, uint64) {
		out, err := MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m := check(t, f, o, out, nil)
		st := m.Periods[0].AdaptationSets[0].Representations[0].SegmentTemplate
		n := uint64(*st.StartNumber)
		for _, s := range st.SegmentTimeline.S {
			n += uint64(s.R + 1)
		}
		ss := st.SegmentTimeline.S
		return n - 1, ss[len(ss)-1].D
	}
	n, d := lastS()
	eq(t, "open segment listed", n, 3)
	eq(t, "expected duration", d, store.DurationToTicks(segTgt, videoTS))

	// Past the target, the expected duration runs one part ahead.
	f.parts(0, 4*partTgt, 4)
	_, d = lastS()
	eq(t, "expected duration of a long segment", d, store.DurationToTicks(5*partTgt+partTgt, videoTS))

	if err := f.rends[0].FinishSegment(store.DurationToTicks(2500*time.Millisecond, videoTS)); err != nil {
		t.Fatal(err)
	}
	n, d = lastS()
	eq(t, "complete segment", n, 3)
	eq(t, "real duration", d, store.DurationToTicks(2500*time.Millisecond, videoTS))
}

func TestEndedLowLatency(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	for range 3 {
		f.step(segTgt)
	}
	f.open(2)
	f.st.End() // closes the open segments
	o := f.options()
	o.LowLatency = true
	o.EndGrace = -1
	out, err := MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := check(t, f, o, out, nil)
	if m.ServiceDescription != nil || strings.Contains(string(out), "availabilityTime") {
		t.Error("low-latency signalling in an ended stream's MPD")
	}
}

// TestEndGrace: an ended stream's MPD stays live for EndGrace, so that a
// republish continues it, then becomes final.
func TestEndGrace(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	for range 4 {
		f.step(segTgt)
	}
	f.st.End()
	endedAt := f.rends[0].Snapshot().Updated
	if u := f.rends[1].Snapshot().Updated; u.After(endedAt) {
		endedAt = u
	}
	for _, tc := range []struct {
		after time.Duration
		final bool
	}{{0, false}, {5 * time.Second, false}, {DefaultEndGrace, true}, {time.Minute, true}} {
		o := f.options()
		o.PublishTime = endedAt.Add(tc.after)
		out, err := MPD(f.renditions(), o)
		if err != nil {
			t.Fatal(err)
		}
		m := check(t, f, o, out, nil)
		if final := m.MinimumUpdatePeriod == nil; final != tc.final {
			t.Errorf("%v after the end: final %v, want %v", tc.after, final, tc.final)
		}
	}
	// A republish within the grace continues the presentation.
	f.republish(3 * time.Second)
	f.step(segTgt)
	o := f.options()
	o.PublishTime = time.Now()
	out, err := MPD(f.renditions(), o)
	if err != nil {
		t.Fatal(err)
	}
	m := check(t, f, o, out, nil)
	eq(t, "periods after the republish", len(m.Periods), 2)
}

func TestFrameRate(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{30, "30"}, {25, "25"}, {29.97002997, "30000/1001"}, {59.94, "60000/1001"},
		{23.976, "24000/1001"}, {12.5, "25/2"}, {0, ""}, {math.NaN(), ""},
	} {
		eq(t, "frameRate", frameRate(tc.in), tc.want)
	}
}

func TestPathName(t *testing.T) {
	eq(t, "plain", pathName("720p"), "720p")
	eq(t, "dollar", pathName("a$b"), "a$$b")
	eq(t, "space", pathName("a b"), "a%20b")
	if plainName("a b") || !plainName("video") {
		t.Error("plainName")
	}
}

func TestMediaTime(t *testing.T) {
	a, b := mediaTime{90000, 90000}, mediaTime{48000, 48000}
	eq(t, "equal across timescales", a.cmp(b), 0)
	eq(t, "less", mediaTime{1, 90000}.cmp(mediaTime{1, 48000}), -1)
	eq(t, "rescale", mediaTime{96000, 48000}.in(90000), uint64(180000))
	eq(t, "rescale rounds down", mediaTime{1, 48000}.in(90000), uint64(1))
}

// TestConcurrent renders MPDs sharing a History while the stream is written.
func TestConcurrent(t *testing.T) {
	f := newFixture(t, 6)
	f.video("video", sps720)
	f.audio("audio")
	f.step(segTgt)
	var h History
	base := f.options()
	rends := slices.Clone(f.rends) // AddRendition on republish returns the same ones
	done := make(chan struct{})
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				o := base
				o.LowLatency = i%2 == 1
				o.History = &h
				var rs []Rendition
				for _, r := range rends {
					rs = append(rs, Rendition{Name: r.Name(), Snap: r.Snapshot()})
				}
				if _, err := MPD(rs, o); err != nil && !errors.Is(err, ErrNoMedia) {
					errs <- err
					return
				}
			}
		}()
	}
	for range 20 {
		f.step(segTgt)
	}
	f.republish(time.Second)
	for range 20 {
		f.step(segTgt)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

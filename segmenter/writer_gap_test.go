package segmenter

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// TestWriterGapsKeepSourceSegments packages a source with GOPs shorter than
// the segment target (two 1 s GOPs per 2 s segment) and a rendition Writer
// given some GOPs as Gap calls: the rendition keeps the source's segments
// one for one (same start times, program date times and durations, so the
// same media sequence numbers), a gap inside a source segment leaving the
// segment media and a gap starting one making the whole segment a gap.
func TestWriterGapsKeepSourceSegments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gops   int   // GOPs of the source (default 13: 7 segments, the last of one GOP)
		gop    int   // frames per GOP (default 30: 1 s)
		gapped []int // GOPs the rendition gets as Gap calls
		gaps   []int // rendition segments expected listed as gaps
		drops  int   // rendition frames dropped as in a gap segment
		lead   int   // source segments before the rendition's first (its first GOPs gapped)
		// frozen: the parts of every media segment are back to back, a gap
		// inside one filled by its last frame before (GOPs not a whole
		// number of parts long leave a part open at the gap)
		frozen bool
	}{
		{name: "no gap", frozen: true},
		{name: "2nd GOP of a segment", gapped: []int{3}},
		{name: "1st GOP of a segment", gapped: []int{4}, gaps: []int{2}, drops: 30},
		{name: "one whole segment", gapped: []int{6, 7}, gaps: []int{3}},
		{name: "three from a segment's 2nd GOP", gapped: []int{3, 4, 5}, gaps: []int{2}},
		{name: "2nd and 1st GOPs", gapped: []int{3, 4}, gaps: []int{2}, drops: 30},
		{name: "1st GOPs of two segments", gapped: []int{4, 6}, gaps: []int{2, 3}, drops: 60},
		{name: "every 2nd GOP", gapped: []int{1, 3, 5, 7, 9, 11}},
		{name: "last GOP, 1st of its segment", gapped: []int{12}, gaps: []int{6}},
		{name: "last two GOPs", gapped: []int{11, 12}, gaps: []int{6}},
		{name: "1st and last GOPs of the last segment", gapped: []int{10, 12}, gaps: []int{5, 6}, drops: 30},
		{name: "last GOP, 2nd of its segment", gops: 12, gapped: []int{11}},
		{name: "2 s GOPs", gops: 6, gop: 60, gapped: []int{2, 3}, gaps: []int{2, 3}},
		{name: "3 s GOPs", gops: 4, gop: 90, gapped: []int{1}, gaps: []int{1}},
		{name: "GOPs of 25 frames", gops: 12, gop: 25, gapped: []int{4, 11}, frozen: true},
		{name: "GOPs of 25 frames, 1st gapped", gops: 12, gop: 25, gapped: []int{3, 9}, gaps: []int{1, 3}, drops: 100},
		// Gaps before the rendition's first frame are not listed (it has no
		// init segment yet): it starts at the source's next cut, with the
		// source's sequence number there.
		{name: "1st GOP of the stream", gapped: []int{0}, lead: 1, drops: 1},
		{name: "first segment", gapped: []int{0, 1}, lead: 1},
		{name: "first segment and a half", gapped: []int{0, 1, 2}, lead: 2, drops: 1},
		{name: "first 2 s GOP", gops: 6, gop: 60, gapped: []int{0, 3}, lead: 1, gaps: []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gops == 0 {
				tc.gops = 13
			}
			if tc.gop == 0 {
				tc.gop = 30
			}
			src, rend, m := runWithGaps(t, tc.gops, tc.gop, tc.gapped)
			if len(rend)+tc.lead != len(src) {
				t.Fatalf("segments: source %d, 480p %d (want %d)", len(src), len(rend), len(src)-tc.lead)
			}
			for i, s := range rend {
				v := src[i+tc.lead]
				if s.Epoch != v.Epoch || s.MSN != v.MSN || s.at() != v.at() || s.Duration != v.Duration ||
					!s.ProgramDateTime.Equal(v.ProgramDateTime) || s.Gap != slices.Contains(tc.gaps, i) || v.Gap {
					t.Errorf("480p segment %d: MSN %d at %s for %s gap %v pdt %s; source MSN %d at %s for %s pdt %s", i,
						s.MSN, s.at(), s.Duration, s.Gap, s.ProgramDateTime.Format(time.StampMilli),
						v.MSN, v.at(), v.Duration, v.ProgramDateTime.Format(time.StampMilli))
				}
				if s.Gap {
					continue
				}
				// A media segment starts with its key frame, at its start,
				// and has the frames of its GOPs not gapped.
				tracks := parseSegment(t, s.Data)
				samples := samplesOf(tracks)
				want := 0
				for g := 0; g < tc.gops; g++ {
					at := media.TicksToDuration(int64(g*tc.gop)*3000, 90000)
					if at >= v.at() && at < v.at()+v.Duration && !slices.Contains(tc.gapped, g) {
						want += tc.gop
					}
				}
				if tracks[0].BaseTime != s.BaseTime || samples[0].IsNonSyncSample || len(samples) != want {
					t.Errorf("480p segment %d: tfdt %d, base %d, %d samples (want %d), first non-sync %v",
						i, tracks[0].BaseTime, s.BaseTime, len(samples), want, samples[0].IsNonSyncSample)
				}
				end := tracks[0].BaseTime
				for j, p := range tracks {
					if tc.frozen && p.BaseTime != end {
						t.Errorf("480p segment %d part %d: tfdt %d, previous part ends at %d", i, j, p.BaseTime, end)
					}
					end = p.BaseTime
					for _, x := range p.Samples {
						end += uint64(x.Duration)
					}
				}
				if last := s.BaseTime + s.DurationTicks; end > last || tc.frozen && end != last {
					t.Errorf("480p segment %d: media ends at %d, the segment at %d", i, end, last)
				}
			}
			if got := testutil.ToFloat64(m.dropped.WithLabelValues(DropGapSegment)); got != float64(tc.drops) {
				t.Errorf("dropped{%s} = %v, want %d", DropGapSegment, got, tc.drops)
			}
		})
	}
}

// gapSegment is a segment with its start as a duration.
type gapSegment struct {
	*store.Segment
	timescale uint32
}

func (s gapSegment) at() time.Duration {
	return media.TicksToDuration(int64(s.BaseTime), s.timescale)
}

// runWithGaps packages gops GOPs of gop frames (30 fps) as a source run
// with a rendition Writer following it, given the GOPs in gapped as Gap
// calls (one per GOP) and the others as frames, and returns both
// renditions' segments.
func runWithGaps(t *testing.T, gops, gop int, gapped []int) (src, rend []gapSegment, m *Metrics) {
	t.Helper()
	st := store.New(store.Config{Window: 50})
	m = NewMetrics(nil)
	seg := New(Config{}, m, nil)
	t0 := time.Unix(1700000000, 0)
	reg := media.NewRegistry(media.RegistryConfig{})
	vt := h264Track(t, 1)
	hub, err := reg.Publish("live/test", media.PublishInfo{Protocol: "test"}, []*media.Track{vt})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(1 << 16)
	dst := st.Begin("live/test")
	tl := NewTimeline()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- seg.RunWith(ctx, sub, dst, RunOptions{Timeline: tl}) }()

	const startDTS = 7 * 90000
	video := videoFrames(vt, videoSpec{frames: gops * gop, gop: gop, startDTS: startDTS}, t0)
	for _, f := range video {
		hub.WriteFrame(f)
	}
	// The source is packaged before its renditions arrive, as when they
	// are transcoded: wait until the run has taken every frame and its
	// store no longer changes.
	vr := func() uint64 {
		if r, ok := dst.Rendition("video"); ok {
			return r.Snapshot().Version
		}
		return 0
	}
	for v := vr(); ; {
		time.Sleep(20 * time.Millisecond)
		if n := vr(); len(sub.Frames()) == 0 && n == v && n > 0 {
			break
		} else {
			v = n
		}
	}
	w, err := seg.NewWriter(ctx, dst, WriterOptions{Name: "480p", Timeline: tl})
	if err != nil {
		t.Fatal(err)
	}
	rt := smallTrack(t, 100)
	for i := 0; i < gops; i++ {
		frames := video[i*gop : (i+1)*gop]
		if slices.Contains(gapped, i) {
			w.Gap(frames[0].DTS, 90000, int64(gop)*3000, frames[0].Received)
			continue
		}
		for k, f := range frames {
			g := *f
			g.Track, g.Key, g.Payload = rt, k == 0, fakeAU(500, k == 0)
			w.WriteFrame(&g)
		}
	}
	w.Close()
	hub.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := sub.Dropped(); d != 0 {
		t.Fatalf("the hub dropped %d frames", d)
	}
	dst.End()
	for name, out := range map[string]*[]gapSegment{"video": &src, "480p": &rend} {
		r, ok := dst.Rendition(name)
		if !ok {
			t.Fatalf("no %s rendition", name)
		}
		snap := r.Snapshot()
		for _, s := range snap.Segments {
			*out = append(*out, gapSegment{s, snap.Info.Timescale})
		}
	}
	return src, rend, m
}

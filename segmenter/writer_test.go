package segmenter

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// TestWriterFollowsSourceTimeline packages a republish (whose timeline is
// shifted after the first publish) with a rendition Writer following the
// source run's Timeline: the rendition's segments start at the source's
// times, and a Gap becomes an EXT-X-GAP segment in its place.
func TestWriterFollowsSourceTimeline(t *testing.T) {
	st := store.New(store.Config{Window: 20})
	seg := New(Config{}, nil, nil)
	t0 := time.Unix(1700000000, 0)

	// A first publish: two 2 s GOPs.
	first := newHarness(t, st, Config{}, h264Track(t, 1))
	first.write(videoFrames(first.hub.Tracks()[0], videoSpec{frames: 120, gop: 60, startDTS: 90000}, t0)...)
	first.end()
	first.dst.End()

	// The republish, with its own clock, packaged by RunWith.
	reg := media.NewRegistry(media.RegistryConfig{})
	src := h264Track(t, 1)
	aud := aacTrack(2, 48000)
	hub, err := reg.Publish("live/test", media.PublishInfo{Protocol: "test"}, []*media.Track{src, aud})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(1 << 16)
	dst := st.Begin("live/test")
	tl := NewTimeline()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- seg.RunWith(ctx, sub, dst, RunOptions{Timeline: tl}) }()

	const startDTS = 5 * 90000
	video := videoFrames(src, videoSpec{frames: 360, gop: 60, startDTS: startDTS}, t0.Add(time.Minute))
	for _, f := range interleave(audioFrames(aud, 500, startDTS/90000*48000-2048, t0.Add(time.Minute)), video) {
		hub.WriteFrame(f)
	}

	w, err := seg.NewWriter(ctx, dst, WriterOptions{Name: "480p", Timeline: tl})
	if err != nil {
		t.Fatal(err)
	}
	rend := smallTrack(t, 100)
	for i := 0; i < 6; i++ {
		gop := video[i*60 : (i+1)*60]
		if i == 3 {
			w.Gap(gop[0].DTS, 90000, 60*3000, gop[0].Received)
			continue
		}
		// Frames in PTS order (the source's PTS), DTS = PTS as made by a
		// rendition without B-frames of a source without them.
		out := make([]*media.Frame, len(gop))
		for k, f := range gop {
			g := *f
			g.Track, g.DTS, g.Key = rend, f.PTS, k == 0
			g.Payload = fakeAU(500, k == 0)
			out[k] = &g
		}
		slices.SortFunc(out, func(a, b *media.Frame) int { return cmp.Compare(a.PTS, b.PTS) })
		for _, f := range out {
			w.WriteFrame(f)
		}
	}
	w.Close()
	hub.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dst.End()

	vr, _ := dst.Rendition("video")
	rr, ok := dst.Rendition("480p")
	if !ok {
		t.Fatal("no 480p rendition")
	}
	vs, rs := vr.Snapshot(), rr.Snapshot()
	var srcSegs []*store.Segment
	for _, s := range vs.Segments {
		if s.Epoch == 1 {
			srcSegs = append(srcSegs, s)
		}
	}
	if len(srcSegs) != 6 || len(rs.Segments) != 6 {
		t.Fatalf("segments: source %d, 480p %d", len(srcSegs), len(rs.Segments))
	}
	if got := srcSegs[0].BaseTime; got < 4*90000 {
		t.Fatalf("republish starts at %d, before the first publish's end", got)
	}
	names := dst.Renditions()
	if names[0].Name() != "video" || names[2].Name() != "480p" {
		t.Errorf("rendition order: %s %s %s", names[0].Name(), names[1].Name(), names[2].Name())
	}
	for i, s := range rs.Segments {
		v := srcSegs[i]
		at := func(s *store.Segment, ts uint32) time.Duration {
			return media.TicksToDuration(int64(s.BaseTime), ts)
		}
		if at(s, rs.Info.Timescale) != at(v, vs.Info.Timescale) || s.Gap != (i == 3) ||
			!s.ProgramDateTime.Equal(v.ProgramDateTime) || (i < 5 && s.Duration != v.Duration) {
			t.Errorf("480p segment %d: at %s for %s gap %v pdt %s; source at %s for %s pdt %s", i,
				at(s, rs.Info.Timescale), s.Duration, s.Gap, s.ProgramDateTime,
				at(v, vs.Info.Timescale), v.Duration, v.ProgramDateTime)
		}
	}
}

// TestRunSkipAndExtra packages a publish whose Opus track is left out
// (Skip) and replaced by AAC frames arriving late on Extra: the AAC track
// is the "audio" rendition, on the video's segment boundaries, continuous,
// and the run waits for Extra to close after the publish ends.
func TestRunSkipAndExtra(t *testing.T) {
	st := store.New(store.Config{Window: 20})
	seg := New(Config{}, nil, nil)
	t0 := time.Unix(1700000000, 0)
	reg := media.NewRegistry(media.RegistryConfig{})
	vid := h264Track(t, 1)
	op := &media.Track{ID: 2, Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
	hub, err := reg.Publish("live/test", media.PublishInfo{Protocol: "test"}, []*media.Track{vid, op})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(1 << 16)
	dst := st.Begin("live/test")
	extra := make(chan *media.Frame)
	done := make(chan error, 1)
	go func() {
		done <- seg.RunWith(context.Background(), sub, dst, RunOptions{
			Skip:  func(tr *media.Track) bool { _, ok := tr.Codec.(*media.Opus); return ok },
			Extra: extra,
		})
	}()
	// 6 s of video, 3 GOPs, and Opus packets (skipped).
	opus := make([]*media.Frame, 300)
	for i := range opus {
		opus[i] = &media.Frame{Track: op, DTS: int64(i) * 960, PTS: int64(i) * 960, Key: true, Payload: []byte{0xfc, 1, 2}}
	}
	for _, f := range interleave(videoFrames(vid, videoSpec{frames: 180, gop: 60}, t0), opus) {
		hub.WriteFrame(f)
	}
	hub.Close()
	// The AAC frames come late, after the publish ended.
	select {
	case err := <-done:
		t.Fatalf("RunWith returned before Extra closed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	for _, f := range audioFrames(aacTrack(1002, 48000), 281, 0, t0) {
		extra <- f
	}
	close(extra)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dst.End()
	if n := len(dst.Renditions()); n != 2 {
		t.Fatalf("%d renditions, want video and audio", n)
	}
	a, ok := dst.Rendition("audio")
	if !ok {
		t.Fatal("no audio rendition")
	}
	v, _ := dst.Rendition("video")
	as, vs := a.Snapshot(), v.Snapshot()
	if _, ok := as.Info.Codec.(*media.AAC); !ok {
		t.Fatalf("audio codec %v", as.Info.Codec)
	}
	if len(as.Segments) != len(vs.Segments) || len(as.Segments) != 3 {
		t.Fatalf("audio %d segments, video %d", len(as.Segments), len(vs.Segments))
	}
	for i, s := range as.Segments {
		if s.MSN != vs.Segments[i].MSN {
			t.Errorf("segment %d: audio MSN %d, video %d", i, s.MSN, vs.Segments[i].MSN)
		}
		if i > 0 && s.BaseTime != as.Segments[i-1].BaseTime+as.Segments[i-1].DurationTicks {
			t.Errorf("audio segment %d at %d, previous ends at %d", i, s.BaseTime, as.Segments[i-1].BaseTime+as.Segments[i-1].DurationTicks)
		}
	}
	checkSegments(t, as)
}

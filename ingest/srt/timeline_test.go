package srt

import (
	"testing"

	"github.com/headwater-live/headwater/media"
)

func TestTimelineUnwrap(t *testing.T) {
	t.Parallel()
	const wrap = 1 << 33
	var tl timeline
	steps := []struct {
		raw, gap int64
		want     int64
		jump     bool
	}{
		{wrap - 6000, 0, 0, false},     // start 6000 ticks before the wrap
		{wrap - 3000, 0, 3000, false},  // +3000
		{1000, 0, 7000, false},         // wrapped: +4000
		{-2000 + wrap, 0, 4000, false}, // back across the wrap (interleaved audio): -3000
		{4000, 0, 10000, false},
		{4000 + 60*90000, 3000, 13000, true}, // a minute later: re-based one gap after the furthest point
		{7000 + 60*90000, 0, 16000, false},
		{7000, 3000, 19000, true}, // back by a minute: re-based again
	}
	for i, s := range steps {
		got, jumped := tl.unwrap(s.raw, s.gap)
		if got != s.want || jumped != s.jump {
			t.Fatalf("step %d: unwrap(%d) = %d, %v; want %d, %v", i, s.raw, got, jumped, s.want, s.jump)
		}
	}
	if tl.jumps != 2 {
		t.Errorf("%d jumps", tl.jumps)
	}
}

func TestPTSOffset(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ pts, dts, want int64 }{
		{9000, 3000, 6000},
		{3000, 9000, 0},                // PTS before DTS: ignored
		{1000, (1 << 33) - 2000, 3000}, // across the wrap
		{90000 * 60, 0, 0},             // implausible
	} {
		if got := ptsOffset(c.pts, c.dts); got != c.want {
			t.Errorf("ptsOffset(%d, %d) = %d, want %d", c.pts, c.dts, got, c.want)
		}
	}
}

// TestRetimer: the publish starts at its earliest buffered frame, video DTS
// strictly increase, AAC steps are exactly 1024 samples whatever the source
// jitter.
func TestRetimer(t *testing.T) {
	t.Parallel()
	video := &media.Track{ID: videoTrackID, Codec: &media.H264{}, ClockRate: 90000}
	audio := &media.Track{ID: audioTrackID, Codec: &media.AAC{}, ClockRate: 48000}
	vf := func(dts, pts int64) demuxFrame { return demuxFrame{f: &media.Frame{Track: video, DTS: dts, PTS: pts}} }
	af := func(ts int64) demuxFrame {
		return demuxFrame{f: &media.Frame{Track: audio, DTS: ts, PTS: ts}, samples: 1024}
	}

	pending := []demuxFrame{vf(3000, 9000), af(1000), af(2030)} // audio at 1000/48000 s = 1875/90000
	r := newRetimer(pending)
	for _, df := range pending {
		r.apply(df)
	}
	if got := pending[0].f; got.DTS != 3000-1875 || got.PTS != 9000-1875 {
		t.Errorf("video %d/%d", got.DTS, got.PTS)
	}
	if pending[1].f.DTS != 0 || pending[2].f.DTS != 1024 {
		t.Errorf("audio %d, %d", pending[1].f.DTS, pending[2].f.DTS)
	}
	// A video DTS going back is moved forward.
	back := vf(2000, 2000)
	r.apply(back)
	if back.f.DTS != 3000-1875+1 || r.videoClamped != 1 {
		t.Errorf("backwards video frame at %d", back.f.DTS)
	}
	// Audio jitter does not show; a gap of more than two frames re-syncs.
	a := af(3100)
	r.apply(a)
	if a.f.DTS != 2048 {
		t.Errorf("jittered audio at %d, want 2048", a.f.DTS)
	}
	a = af(20000)
	r.apply(a)
	if a.f.DTS != 20000-1000 {
		t.Errorf("audio after a gap at %d, want %d", a.f.DTS, 20000-1000)
	}
}

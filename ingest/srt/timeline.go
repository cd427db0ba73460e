package srt

import (
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

const (
	tsClockRate = 90000
	tsMask      = 1<<33 - 1
	// maxJump is the largest step between consecutive PES timestamps taken
	// as continuous; a larger one (either way) is a discontinuity (encoder
	// restart, splice, playlist loop) and the timeline is re-based over it.
	maxJump = 5 * tsClockRate
)

// timeline unwraps the 33-bit 90 kHz MPEG-TS timestamps of one program into
// a continuous int64 timeline. The first timestamp seen is 0; the tracks'
// timestamps are unwrapped together since they share the program clock. A
// jump of more than maxJump continues the timeline one frame duration (the
// caller's gap) after the furthest point it had reached, so that the output
// neither jumps nor goes back.
type timeline struct {
	started bool
	lastRaw int64
	cur     int64
	max     int64
	// jumps counts the discontinuities re-based.
	jumps int
}

// signed33 interprets a difference of 33-bit timestamps as signed.
func signed33(d int64) int64 {
	d &= tsMask
	if d >= 1<<32 {
		d -= 1 << 33
	}
	return d
}

// unwrap maps a raw 33-bit timestamp onto the timeline. gap is the duration
// of the caller's previous frame, by which the timeline advances over a
// discontinuity; jumped tells that one was re-based.
func (t *timeline) unwrap(raw, gap int64) (ts int64, jumped bool) {
	raw &= tsMask
	if !t.started {
		t.started, t.lastRaw = true, raw
		return 0, false
	}
	d := signed33(raw - t.lastRaw)
	t.lastRaw = raw
	if d > maxJump || d < -maxJump {
		t.jumps++
		t.cur = t.max + max(gap, 0)
		jumped = true
	} else {
		t.cur += d
	}
	t.max = max(t.max, t.cur)
	return t.cur, jumped
}

// ptsOffset is the composition offset PTS-DTS of raw timestamps, 0 when it
// is negative or implausibly large.
func ptsOffset(pts, dts int64) int64 {
	d := signed33(pts - dts)
	if d < 0 || d > maxJump {
		return 0
	}
	return d
}

// retimer turns the demuxer's timeline timestamps into the publish's:
// relative to the earliest frame buffered before the publish, never going
// backwards within a track (video DTS strictly increasing), audio
// timestamps regenerated from the sample count so that consecutive AAC
// frames are exactly 1024 samples apart.
type retimer struct {
	base int64 // 90 kHz timeline timestamp of the publish's time 0

	videoStarted bool
	videoLast    int64
	videoClamped int // frames whose DTS had to be moved forward

	audio ingest.SampleClock
}

// newRetimer starts the publish's timeline at the earliest of the frames.
func newRetimer(frames []demuxFrame) *retimer {
	r := &retimer{}
	for i, df := range frames {
		ts := media.Rescale(df.f.DTS, df.f.Track.ClockRate, tsClockRate)
		if i == 0 || ts < r.base {
			r.base = ts
		}
	}
	return r
}

// apply rewrites a frame's timestamps in place.
func (r *retimer) apply(df demuxFrame) {
	f := df.f
	if f.Track.Kind() == media.KindVideo {
		off := f.PTS - f.DTS
		dts := f.DTS - r.base
		if r.videoStarted && dts <= r.videoLast {
			dts = r.videoLast + 1
			r.videoClamped++
		}
		dts = max(dts, 0)
		r.videoStarted, r.videoLast = true, dts
		f.DTS, f.PTS = dts, dts+off
		return
	}
	src := max(f.DTS-media.Rescale(r.base, tsClockRate, f.Track.ClockRate), 0)
	r.audio.FrameSamples = df.samples
	ts, _, _ := r.audio.Next(src)
	f.DTS, f.PTS = ts, ts
}

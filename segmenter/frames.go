package segmenter

import (
	"log/slog"
	"time"

	"github.com/headwater-live/headwater/media"
)

// checkDTS takes a frame's DTS: false when the frame goes back in time and
// is dropped. A DTS far enough behind the track's is a source that
// restarted its clock: the track then continues right after what it wrote.
func (t *track) checkDTS(f *media.Frame) bool {
	if t.haveDTS && f.DTS < t.lastDTS {
		if !t.backward {
			t.backward, t.backFrom = true, f.DTS
		}
		if f.DTS-t.backFrom < int64(t.clockRate)*resetAfter {
			t.r.drop(t, DropNonMonotonicDTS)
			t.gap = true
			return false
		}
		t.r.logOnce(logKey{"reset", t.id}, slog.LevelWarn,
			"timestamps restarted behind the track's timeline; continuing after it",
			"track", t.id, "back", media.TicksToDuration(t.lastDTS-f.DTS, t.clockRate))
		t.remap(t.timescale)
		if t.kind == media.KindVideo && !f.Key {
			t.waitKey = true
		}
	}
	t.backward = false
	return true
}

// frame places a frame on the timeline and packages it.
func (t *track) frame(f *media.Frame) {
	if !t.mapped {
		t.mapTrack(f)
	}
	tm := t.timeOf(f.DTS)
	if t == t.r.master {
		t.seenNs = media.TicksToDuration(tm, t.timescale)
	}
	if t.kind == media.KindVideo {
		t.video(f, tm)
	} else {
		t.audioFrame(f, tm)
	}
}

// timeOf is the timeline time of ticks of the track's clock (a DTS or PTS).
func (t *track) timeOf(ticks int64) int64 {
	return media.Rescale(ticks, t.clockRate, t.timescale) + t.offset
}

// nextDur is the duration expected of the next video frame.
func (t *track) nextDur() int64 {
	if t.lastDelta > 0 {
		return t.lastDelta
	}
	return t.defaultDur
}

// forgetBounds forgets the video boundaries at or before ns (audio).
func (t *track) forgetBounds(ns time.Duration) {
	for len(t.bounds) > 0 && t.bounds[0] <= ns {
		t.bounds = t.bounds[1:]
	}
}

// mapTrack places the track on the timeline: its DTS minus the publish's
// first DTS, after the common start, and never before where its rendition
// ended.
func (t *track) mapTrack(f *media.Frame) {
	r := t.r
	t.mapped = true
	start := media.RescaleUp(r.start.ticks, r.start.rate, t.timescale)
	t.offset = start - media.Rescale(r.origin.ticks, r.origin.rate, t.timescale)
	tm := t.timeOf(f.DTS)
	if tm < t.floor {
		if t.floor-tm > 1 && t.segCount == 0 {
			// Its first DTS is before the publish's first (other track's)
			// DTS and there is no room before: it loses that much sync.
			r.logOnce(logKey{"shift", t.id}, slog.LevelInfo,
				"track starts before the publish's first frame; delaying it",
				"track", t.id, "shift", media.TicksToDuration(t.floor-tm, t.timescale))
		}
		t.offset += t.floor - tm
	}
}

// video handles a video frame at timeline time tm.
func (t *track) video(f *media.Frame, tm int64) {
	r := t.r
	if r.pending.on && t == r.master && !t.gapFrame(f, tm) {
		return
	}
	if t.waitKey {
		if !f.Key {
			r.drop(t, DropBeforeKeyframe)
			t.gap = true
			return
		}
		t.waitKey = false
	}
	if t.haveTime && tm <= t.lastTime {
		// Same DTS as the previous frame: keep the frame one tick later
		// rather than writing a sample without duration.
		r.logOnce(logKey{"dupdts", t.id}, slog.LevelWarn,
			"video frames with equal DTS; nudging them apart", "track", t.id)
		tm = t.lastTime + 1
	}
	pts := t.timeOf(f.PTS)
	if t.haveTime {
		delta := tm - t.lastTime
		if !t.gap { // a delta across dropped frames is no frame duration
			t.lastDelta = delta
		}
		t.gap = false
		// The previous sample, when still in the open part, gets its true
		// duration.
		t.setLastDuration(delta)
		if t.segOpen && f.Key && tm-t.segStart >= t.segTicks {
			t.finishSegment(tm - t.segStart)
		}
	}
	t.haveDTS, t.lastDTS = true, f.DTS
	t.haveTime = true
	if !t.segOpen && !t.startSegment(f, tm) {
		return
	}
	t.addSample(f, tm, t.nextDur(), clampInt32(pts-tm), !f.Key)
}

// audioFrame handles an audio frame whose DTS maps to timeline time tm.
func (t *track) audioFrame(f *media.Frame, tm int64) {
	r := t.r
	dur := t.frameDur
	if dur == 0 { // Opus: from the packet's TOC, else the DTS delta
		dur = opusDuration(f.Payload, t.timescale)
		if dur <= 0 {
			dur = t.lastDelta
		}
		if dur <= 0 {
			dur = t.defaultDur
		}
	}
	// Audio time follows the sample count; the DTS only moves it forward
	// over a gap in the source.
	at := tm
	if t.haveTime {
		at = t.lastTime + t.lastDur
		tol := dur / 2
		switch drift := tm - at; {
		case drift > tol:
			r.logOnce(logKey{"audiogap", t.id}, slog.LevelInfo,
				"gap in the audio timestamps; following them (logged once)",
				"track", t.id, "gap", media.TicksToDuration(drift, t.timescale))
			t.flushPart() // the next part's tfdt carries the jump
			at = tm
		case drift < -tol:
			r.logOnce(logKey{"audiobehind", t.id}, slog.LevelInfo,
				"audio timestamps behind the sample count; following the sample count (logged once)",
				"track", t.id, "drift", media.TicksToDuration(-drift, t.timescale))
		}
		if d := tm - t.lastDTSTime; d > 0 {
			t.lastDelta = d
		}
	}
	t.lastDTSTime = tm
	t.haveDTS, t.lastDTS = true, f.DTS
	t.haveTime = true
	if t.segOpen && t.audioCut(at, true) {
		t.finishSegment(at - t.segStart)
	}
	if !t.segOpen && !t.startSegment(f, at) {
		return
	}
	t.addSample(f, at, dur, 0, false)
	// Close the part now when the next frame will start a new segment.
	if len(t.samples) > 0 && t.audioCut(at+dur, false) {
		t.flushPart()
	}
}

// audioCut reports whether an audio frame at time at starts a new segment.
// With consume, it forgets the video boundaries at or before at.
func (t *track) audioCut(at int64, consume bool) bool {
	r := t.r
	atNs := media.TicksToDuration(at, t.timescale)
	if m := r.master; m != nil && m.seenNs+2*r.cfg.SegmentDuration >= atNs {
		if len(t.bounds) > 0 && t.bounds[0] <= atNs {
			if consume {
				t.forgetBounds(atNs)
			}
			return true
		}
		// Audio ahead of a boundary not known yet keeps appending parts, up
		// to a safety limit for video without key frames.
		if at-t.segStart < 5*t.segTicks {
			return false
		}
		r.logOnce(logKey{"audiocap", t.id}, slog.LevelWarn,
			"no video segment boundary for a long time; cutting audio by duration", "track", t.id)
	}
	return at-t.segStart >= t.segTicks
}

func clampInt32(v int64) int32 {
	switch {
	case v > 1<<31-1:
		return 1<<31 - 1
	case v < -1<<31:
		return -1 << 31
	}
	return int32(v)
}

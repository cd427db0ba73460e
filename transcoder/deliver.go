package transcoder

import (
	"bytes"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
)

// pendingGOP is a GOP submitted and not yet entirely written.
type pendingGOP struct {
	seq      uint64
	dts, pts int64 // first frame
	dur      int64 // ticks
	rate     uint32
	received map[int64]time.Time // source PTS -> receive time
	first    time.Time
	closed   time.Time
	res      *Result // nil until done
	gap      string  // the whole GOP is a gap for this reason (no job)
	parts    []gopPart
	span     trace.Span // the job's span, ended when its result arrives
}

// gopPart is what is known of one rendition of a pending GOP: the frames
// streamed so far (from whichever attempt) and how many were written.
type gopPart struct {
	codec    media.Codec
	frames   []OutFrame
	sent     int
	shift    int64 // DTS shift of this GOP (from its first frame)
	mismatch bool  // a retry did not reproduce the frames already written
	done     bool
}

// event is a job's progress or completion, handed from the pool's
// goroutines to Run's.
type event struct {
	seq     uint64
	res     *Result // completion
	name    string  // progress: rendition
	attempt int
	k       int
	codec   media.Codec
	frame   OutFrame
}

// post hands an event to Run's goroutine.
func (r *run) post(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// deliver applies the jobs' progress and completions, and writes what can
// be written: the oldest unfinished GOP's frames as they stream in, then
// the next GOPs in order.
func (r *run) deliver() {
	r.mu.Lock()
	evs := r.events
	r.events = nil
	r.mu.Unlock()
	for _, e := range evs {
		p := r.pending[e.seq]
		if e.res != nil {
			r.outstanding--
			if p != nil {
				r.complete(p, e.res)
			}
			continue
		}
		if p == nil {
			continue
		}
		if o := r.byName[e.name]; o != nil {
			r.progress(p, &p.parts[o.idx], e)
		}
	}
	for {
		p := r.pending[r.next]
		if p == nil {
			return
		}
		finished := p.gap != "" || p.res != nil
		if p.gap == "" {
			for _, o := range r.outs {
				r.flush(o, p)
			}
		} else {
			r.gapAll(p, p.gap)
		}
		if !finished {
			return // the head GOP is still being transcoded
		}
		delete(r.pending, r.next)
		r.next++
		if p.res != nil && p.gap == "" {
			r.t.m.latency.Observe(time.Since(p.closed).Seconds())
		}
	}
}

// progress records a streamed frame.
func (r *run) progress(p *pendingGOP, part *gopPart, e event) {
	if !part.done && !part.mismatch {
		merge(part, e.k, e.codec, e.frame)
	}
}

// merge adds the k-th frame of an attempt to what is known of a rendition
// GOP. A retry streams the GOP again from its first frame: frames already
// known must come back bit for bit (x264 is deterministic), else, if none
// was written yet, the retry's frames replace them, and if some were, the
// rest of the GOP is not used.
func merge(part *gopPart, k int, codec media.Codec, f OutFrame) {
	if k < len(part.frames) {
		if part.frames[k].PTS == f.PTS && bytes.Equal(part.frames[k].AU, f.AU) {
			return
		}
		if part.sent > 0 {
			part.mismatch = true
			return
		}
		part.frames = part.frames[:k]
		if k == 0 {
			part.codec = nil
		}
	}
	if k == len(part.frames) {
		if part.codec == nil {
			part.codec = codec
		}
		part.frames = append(part.frames, f)
	}
}

// complete records a job's result.
func (r *run) complete(p *pendingGOP, res *Result) {
	p.res = res
	if p.span != nil {
		failed := 0
		for i := range res.Renditions {
			rr := &res.Renditions[i]
			p.span.SetAttributes(attribute.String("headwater.outcome."+rr.Rendition.Name, string(rr.Outcome)))
			if rr.Outcome != OutcomeOK {
				failed++
			}
		}
		if failed > 0 {
			p.span.SetStatus(codes.Error, fmt.Sprintf("%d of %d renditions not produced", failed, len(res.Renditions)))
		}
		p.span.End()
		p.span = nil
	}
	for i := range res.Renditions {
		rr := &res.Renditions[i]
		o := r.byName[rr.Rendition.Name]
		if o == nil {
			continue
		}
		part := &p.parts[o.idx]
		if rr.Outcome != OutcomeOK || rr.Track == nil {
			continue
		}
		// Frames not streamed (a runner that does not stream, or a retry).
		for k, f := range rr.Track.Frames {
			if part.mismatch {
				break
			}
			merge(part, k, rr.Track.Codec, f)
		}
	}
}

// flush writes a rendition's frames of the head GOP not written yet and,
// once the GOP's job is finished, reports a gap for a rendition without
// frames.
func (r *run) flush(o *rendOut, p *pendingGOP) {
	part := &p.parts[o.idx]
	if part.done {
		return
	}
	if p.res == nil {
		r.writeFrames(o, p, part)
		return
	}
	var rr *RenditionResult
	for i := range p.res.Renditions {
		if p.res.Renditions[i].Rendition.Name == o.r.Name {
			rr = &p.res.Renditions[i]
		}
	}
	ok := rr != nil && rr.Outcome == OutcomeOK && !part.mismatch && len(part.frames) > 0
	switch {
	case ok:
		r.writeFrames(o, p, part)
	case part.sent > 0:
		// Frames were written before the job failed: the GOP ends early
		// (its last frame lasts until the next GOP).
		r.t.m.gaps.WithLabelValues("truncated").Inc()
		r.logOnce("truncated", "transcoder: a rendition GOP failed after frames were written; it is cut short",
			"rendition", o.r.Name, "gop", p.seq)
	default:
		reason := "failed"
		if rr != nil && rr.Reason != "" {
			reason = rr.Reason
		}
		if reason != "canceled" {
			r.gap(o, p, reason)
		}
	}
	part.done = true
	part.frames = nil
}

// gapAll reports the GOP as a gap on every output not done with it.
func (r *run) gapAll(p *pendingGOP, reason string) {
	for _, o := range r.outs {
		if !p.parts[o.idx].done {
			r.gap(o, p, reason)
			p.parts[o.idx].done = true
		}
	}
}

// gap reports the GOP as a gap on one output.
func (r *run) gap(o *rendOut, p *pendingGOP, reason string) {
	r.t.m.gaps.WithLabelValues(reason).Inc()
	o.o.Gap(Gap{Seq: p.seq, DTS: p.dts, PTS: p.pts, Duration: p.dur, ClockRate: p.rate,
		Received: p.first, Reason: reason})
}

// writeFrames writes a rendition's frames of one GOP not written yet. PTS
// are the source's; DTS are moved so that the GOP's first DTS is the
// source's when the output reorders no more than the source (always with
// bframes 0), never later than the encoder's, and kept increasing.
func (r *run) writeFrames(o *rendOut, p *pendingGOP, part *gopPart) {
	if part.mismatch || part.sent >= len(part.frames) {
		return
	}
	if part.sent == 0 {
		if o.track == nil || !media.SameVideoParams(o.track.Codec, part.codec) {
			o.track = &media.Track{ID: o.trackID, Codec: part.codec, ClockRate: p.rate}
		}
		part.shift = min(p.dts-part.frames[0].DTS, 0)
	}
	for ; part.sent < len(part.frames); part.sent++ {
		f := part.frames[part.sent]
		dts := f.DTS + part.shift
		if o.haveDTS && dts <= o.lastDTS {
			dts = o.lastDTS + 1
		}
		o.lastDTS, o.haveDTS = dts, true
		rec, ok := p.received[f.PTS]
		if !ok {
			rec = p.first
		}
		o.o.WriteFrame(&media.Frame{Track: o.track, DTS: dts, PTS: f.PTS, Key: f.Key, Received: rec, Payload: f.AU})
	}
}

// closeOutputs closes every output and ends the spans of jobs never completed.
func (r *run) closeOutputs() {
	for _, o := range r.outs {
		o.o.Close()
	}
	// Jobs whose results never came (the run was cancelled) end their spans.
	for _, p := range r.pending {
		if p.span != nil {
			p.span.SetStatus(codes.Error, "abandoned: the stream's transcoding ended first")
			p.span.End()
			p.span = nil
		}
	}
}

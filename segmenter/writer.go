package segmenter

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Name is the rendition name of the frames' video track ("480p").
	Name string
	// Timeline is the source run's placement to follow; nil places the
	// writer's frames like a new Run would.
	Timeline *Timeline
}

// Writer packages frames pushed by its caller (not read from a
// subscription) into one video rendition of a stream: a transcoded
// rendition of a publish whose source is packaged by RunWith into the same
// store.Stream. Its methods must be called from one goroutine.
type Writer struct {
	r      *run
	closed bool
}

// NewWriter returns a Writer into dst. With opts.Timeline it waits until
// the source run has placed the publish (or ctx ends: the error is ctx's),
// then adds the rendition to dst (listed once it has an init segment), so
// that renditions are listed in the order their writers were made.
func (s *Segmenter) NewWriter(ctx context.Context, dst *store.Stream, opts WriterOptions) (*Writer, error) {
	var origin, start timePoint
	placed := false
	if tl := opts.Timeline; tl != nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tl.ready:
		}
		origin, start, placed = tl.origin, tl.start, tl.ok
	}
	var r *run
	if placed {
		r = newRunAt(s, dst)
	} else {
		r = newRun(s, dst)
	}
	r.ctx = ctx
	r.tracer = trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
	r.log = r.log.With("rendition", opts.Name)
	r.fixedName = opts.Name
	if placed {
		r.begun, r.origin, r.start = true, origin, start
		r.follows = opts.Timeline
	}
	if opts.Name != "" {
		dst.AddRendition(store.RenditionInfo{Name: opts.Name, Kind: media.KindVideo})
	}
	return &Writer{r: r}, nil
}

// WriteFrame packages a frame.
func (w *Writer) WriteFrame(f *media.Frame) {
	if !w.closed {
		w.r.handle(f)
	}
}

// pendingGap is a Writer's gap that starts a segment, not listed yet: it
// becomes one EXT-X-GAP segment at the source's next cut.
type pendingGap struct {
	on         bool
	start, end int64 // timeline ticks of the master track
	received   time.Time
}

// Gap records that the rendition has no media from dts (in ticks of
// clockRate, on the frames' clock) for duration ticks: a source GOP that
// could not be transcoded. So that the rendition keeps the source's
// segments, hence its media sequence numbers (LL-HLS requires them aligned
// across renditions), gaps follow the source's cut rule, their starts and
// ends being key frame times: a gap inside a source segment leaves a hole in
// the open segment, and a gap starting one makes it, up to the source's next
// cut, one segment listed with EXT-X-GAP (frames within are dropped). A gap
// before the first frame is not recorded: the rendition starts later, at a
// segment start of the source, with its sequence number.
func (w *Writer) Gap(dts int64, clockRate uint32, duration int64, received time.Time) {
	if w.closed {
		return
	}
	r := w.r
	t := r.master
	if t == nil || !t.mapped || t.rend == nil || t.failed != "" || duration <= 0 || clockRate == 0 {
		r.logOnce(logKey{"earlygap", -1}, slog.LevelInfo, "gap before the rendition's first frame; not listed")
		return
	}
	tm := media.Rescale(dts, clockRate, t.timescale) + t.offset
	t.gapAt(tm, tm+media.Rescale(duration, clockRate, t.timescale), received)
}

// gapAt records that the (master) track has no media from tm to end,
// timeline times, by the source's cut rule (see Writer.Gap).
func (t *track) gapAt(tm, end int64, received time.Time) {
	if t.haveTime && tm < t.lastTime+1 {
		tm = t.lastTime + 1
	}
	if end <= tm {
		return
	}
	g := &t.r.pending
	switch {
	case g.on:
		if tm-g.start >= t.segTicks {
			// The source cut at tm: the pending gap is a segment of its own.
			t.listGap(tm)
		}
	case t.segOpen && tm-t.segStart < t.segTicks:
		// The source's segment goes on through the gap: so does the open
		// one, with a hole in its media, cut by the source's rule at a
		// later key frame. Its last sample, when still in the open part,
		// lasts until the gap's end (the segment's end if the rendition
		// ends there), and until the next frame once it comes (video).
		t.setLastDuration(end - t.lastTime)
		t.lastDur = end - t.lastTime
		t.gap = true
		t.waitKey = true
		return
	case t.segOpen:
		// The source cut at tm: the segment ends there.
		if d := tm - t.lastTime; d > 0 && len(t.samples) > 0 {
			t.setLastDuration(d)
			t.lastDur = d
		}
		t.finishSegment(tm - t.segStart)
	}
	// The gap starts a segment (or extends the gap that does).
	if g.on {
		g.end = max(g.end, end)
	} else {
		*g = pendingGap{on: true, start: tm, end: end, received: received}
	}
	t.haveTime, t.lastTime, t.lastDur = true, g.start, g.end-g.start
	t.gap = true
	t.waitKey = true
	if g.end-g.start >= t.segTicks {
		// The next GOP's key frame, at the gap's end, is the source's cut.
		t.listGap(g.end)
	}
}

// gapFrame handles a video frame at tm of the master track while a gap
// segment is pending: a key frame where the source cuts lists the gap and is
// taken (true); any other frame belongs to the source's segment the gap
// starts and is dropped.
func (t *track) gapFrame(f *media.Frame, tm int64) bool {
	r := t.r
	g := &r.pending
	if f.Key && tm-g.start >= t.segTicks {
		t.listGap(tm)
		return true
	}
	r.drop(t, DropGapSegment)
	if e := tm + t.nextDur(); e > g.end {
		g.end = e // listed this long if the rendition ends first
		t.lastDur = g.end - g.start
	}
	t.gap = true
	t.waitKey = true
	return false
}

// listGap adds the pending gap as a segment ending at end.
func (t *track) listGap(end int64) {
	r := t.r
	g := &r.pending
	g.on = false
	if end <= g.start {
		return
	}
	t.haveTime, t.lastTime, t.lastDur = true, g.start, end-g.start
	if err := t.rend.AddGap(g.received, uint64(g.start), uint64(end-g.start)); err != nil {
		r.logOnce(logKey{"gap", t.id}, slog.LevelError, "cannot record a gap", "track", t.id, "error", err)
	}
}

// Close finishes the open segment, lists a pending gap segment and ends the
// rendition (not dst).
func (w *Writer) Close() {
	if w.closed {
		return
	}
	w.closed = true
	if w.r.pending.on {
		w.r.master.listGap(w.r.pending.end)
	}
	w.r.close()
}

package segmenter

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// RunOptions are the options of Segmenter.RunWith.
type RunOptions struct {
	// Timeline, when not nil, is given the run's placement of the publish
	// on the stream's timeline (its first DTS and where it starts) once its
	// first video track is placed, so that Writers of renditions made from
	// the same publish (transcoded renditions) put their frames, which
	// carry the source's timestamps, on the same timeline: their segments
	// then start at the same times as the source's.
	Timeline *Timeline
	// Skip, when not nil, leaves out the frames of the tracks it returns
	// true for (a source track replaced by a transcoded one in Extra).
	Skip func(*media.Track) bool
	// Extra, when not nil, carries frames of further tracks of the same
	// publish, on the source's clock (transcoded audio), packaged with the
	// source's; their track IDs must differ from the source's. Once the
	// source's subscription closes, the run keeps reading Extra until it
	// closes (or ctx ends), so that the caller must close it.
	Extra <-chan *media.Frame
}

// Timeline is a publish's placement on its stream's timeline, shared by the
// run packaging the source (RunWith) and the Writers following it.
type Timeline struct {
	once          sync.Once
	ready         chan struct{}
	ok            bool
	origin, start timePoint
}

// NewTimeline returns a Timeline not placed yet.
func NewTimeline() *Timeline { return &Timeline{ready: make(chan struct{})} }

// Ready is closed once the leading run has placed the publish, or ended
// without video.
func (tl *Timeline) Ready() <-chan struct{} { return tl.ready }

func (tl *Timeline) publish(origin, start timePoint) {
	tl.once.Do(func() {
		tl.origin, tl.start, tl.ok = origin, start, true
		close(tl.ready)
	})
}

func (tl *Timeline) abandon() { tl.once.Do(func() { close(tl.ready) }) }

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

// Gap records that the rendition has no media from dts (in ticks of
// clockRate, on the frames' clock) for duration ticks: the open segment
// ends there and a segment listed with EXT-X-GAP takes its place. A gap
// before the first frame is not recorded (the rendition starts later).
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
	tm := rescale(dts, clockRate, t.timescale) + t.offset
	end := tm + rescale(duration, clockRate, t.timescale)
	if t.haveTime && tm < t.lastTime+1 {
		tm = t.lastTime + 1
	}
	if end <= tm {
		return
	}
	if t.segOpen {
		if n := len(t.samples); n > 0 {
			if d := tm - t.lastTime; d > 0 {
				t.partDur += d - int64(t.samples[n-1].Duration)
				t.samples[n-1].Duration = uint32(d)
				t.lastDur = d
			}
		}
		r.finishSegment(t, tm-t.segStart)
	}
	if err := t.rend.AddGap(received, uint64(tm), uint64(end-tm)); err != nil {
		r.logOnce(logKey{"gap", t.id}, slog.LevelError, "cannot record a gap", "track", t.id, "error", err)
		return
	}
	t.haveTime, t.lastTime, t.lastDur = true, tm, end-tm
	t.gap = true
	t.waitKey = true
}

// Close finishes the open segment and ends the rendition (not dst).
func (w *Writer) Close() {
	if w.closed {
		return
	}
	w.closed = true
	w.r.close()
}

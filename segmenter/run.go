package segmenter

import (
	"context"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// timePoint is a time as ticks of a clock rate.
type timePoint struct {
	ticks int64
	rate  uint32
}

// run is the state of one Run.
type run struct {
	cfg  Config
	m    *Metrics
	log  *slog.Logger
	dst  *store.Stream
	bufs *sync.Pool             // the Segmenter's, buf goes back to it
	buf  *seekablebuffer.Buffer // marshals the parts

	tracks map[int]*track
	order  []*track        // in creation order, for a deterministic close
	names  map[string]int  // rendition name -> track ID
	logged map[logKey]bool // anomalies already logged
	master *track          // the video track audio segments follow
	audio  []*track        // audio tracks, to hand video boundaries to
	bounds []time.Duration // the latest video segment starts, for audio tracks to come
	origin timePoint       // the publish's first DTS
	start  timePoint       // where the timeline continues (0 for a new stream)
	begun  bool            // origin is set
	// timeline, when set, receives origin and start once the first video
	// track is placed (a leading Run) or gave them (a following Writer).
	timeline  *Timeline
	published bool      // timeline published
	follows   *Timeline // a Writer's: the source run's, whose numbering it takes
	fixedName string    // a Writer's rendition name
	kinds     map[media.Kind]*kindMetrics
	// pending is a Writer's gap segment not listed yet (see Writer.Gap).
	pending pendingGap

	ctx    context.Context // Run's, parent of the segment spans
	tracer trace.Tracer
}

// tracerName is the instrumentation scope of the segment spans.
const tracerName = "github.com/headwater-live/headwater/segmenter"

type kindMetrics struct {
	segments, parts prometheus.Counter
}

func newRun(s *Segmenter, dst *store.Stream) *run {
	r := newRunAt(s, dst)
	r.continueTimeline()
	return r
}

// newRunAt is newRun without placing the run after an earlier publish.
func newRunAt(s *Segmenter, dst *store.Stream) *run {
	r := &run{
		ctx:    context.Background(),
		tracer: noop.NewTracerProvider().Tracer(tracerName),
		cfg:    s.cfg,
		m:      s.m,
		log:    s.log,
		dst:    dst,
		bufs:   s.bufs,
		buf:    s.bufs.Get().(*seekablebuffer.Buffer),
		tracks: make(map[int]*track),
		names:  make(map[string]int),
		logged: make(map[logKey]bool),
		kinds:  make(map[media.Kind]*kindMetrics),
		start:  timePoint{rate: 1},
	}
	for _, k := range []media.Kind{media.KindVideo, media.KindAudio} {
		r.kinds[k] = &kindMetrics{
			segments: r.m.segments.WithLabelValues(k.String()),
			parts:    r.m.parts.WithLabelValues(k.String()),
		}
	}
	return r
}

// continueTimeline makes a republish continue after the longest rendition
// of the earlier publish, or after the end of the publish a seeded stream
// continues (store.Store.BeginSeeded: one made on another node).
func (r *run) continueTimeline() {
	endTicks, endRate := r.dst.TimelineEnd()
	if endTicks > 0 && endRate > 0 {
		r.start = timePoint{ticks: int64(endTicks), rate: endRate}
		r.log.Info("continuing the timeline of an earlier publish",
			"start", media.TicksToDuration(r.start.ticks, r.start.rate))
	}
}

// later reports whether a/ra is later than b/rb.
func later(a uint64, ra uint32, b uint64, rb uint32) bool {
	ah, al := bits.Mul64(a, uint64(rb))
	bh, bl := bits.Mul64(b, uint64(ra))
	return ah > bh || ah == bh && al > bl
}

// logKey identifies an anomaly of a track, logged once per run.
type logKey struct {
	kind  string
	track int
}

// logOnce logs an anomaly the first time it happens for a track.
func (r *run) logOnce(key logKey, level slog.Level, msg string, args ...any) {
	if r.logged[key] {
		return
	}
	r.logged[key] = true
	r.log.Log(context.Background(), level, msg, args...)
}

func (r *run) drop(t *track, reason string) {
	r.m.drop(reason)
	id := -1
	if t != nil {
		id = t.id
	}
	r.logOnce(logKey{reason, id}, slog.LevelWarn,
		"dropping frames (logged once per track and reason)", "track", id, "reason", reason)
}

func (r *run) close() {
	if r.timeline != nil {
		r.timeline.abandon() // followers waiting for a video track that never came
	}
	for _, t := range r.order {
		if t.rend == nil {
			continue
		}
		t.finishOpen()
		t.rend.End()
	}
	r.buf.Reset()
	r.bufs.Put(r.buf)
	r.buf = nil
}

func (r *run) handle(f *media.Frame) {
	if f == nil || f.Track == nil || f.Track.Codec == nil {
		r.drop(nil, DropUnknownTrack)
		return
	}
	t := r.tracks[f.Track.ID]
	if t == nil {
		t = r.newTrack(f.Track)
	}
	if f.Track != t.cur {
		t.changeParams(f)
	}
	if t.failed != "" {
		r.drop(t, t.failed)
		return
	}
	if len(f.Payload) == 0 {
		r.drop(t, DropEmptyPayload)
		return
	}
	if !t.checkDTS(f) {
		return
	}
	if !r.begun {
		r.begun = true
		r.origin = timePoint{ticks: f.DTS, rate: f.Track.ClockRate}
	}
	if r.timeline != nil && !r.published && r.master != nil {
		r.published = true
		r.timeline.publish(r.origin, r.start)
	}
	t.frame(f)
}

// appendBound appends a video boundary to b, keeping the latest 16.
func appendBound(b []time.Duration, ns time.Duration) []time.Duration {
	if len(b) >= 16 {
		b = b[1:]
	}
	return append(b, ns)
}

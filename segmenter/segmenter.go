// Package segmenter turns one publish (a media.Subscription) into CMAF
// renditions in the store: one fMP4 track per rendition, video and audio
// apart, cut into segments that start on key frames and into parts (CMAF
// chunks, LL-HLS partial segments) written to the store as soon as they are
// complete, so that HLS (LL-HLS) and DASH can serve the same objects.
package segmenter

import (
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// Config configures a Segmenter.
type Config struct {
	// SegmentDuration is the target segment duration. A video segment is cut
	// at the first key frame at least this far from its start, so a longer
	// GOP makes longer segments. It defaults to 2s.
	SegmentDuration time.Duration
	// PartDuration is the target part duration. A part is closed as soon as
	// it reaches it, that is, as soon as one more frame of the usual
	// duration would take it past it (by more than a 2ms timestamp-jitter
	// allowance), and when its segment ends. It defaults to 200ms.
	PartDuration time.Duration
	// RenditionName names the rendition of a track; nil names renditions
	// after the track kind ("video", "audio"). Two tracks given the same
	// name get "-<track ID>" appended to the second.
	RenditionName func(*media.Track) string
}

func (c Config) withDefaults() Config {
	if c.SegmentDuration <= 0 {
		c.SegmentDuration = 2 * time.Second
	}
	if c.PartDuration <= 0 {
		c.PartDuration = 200 * time.Millisecond
	}
	if c.PartDuration > c.SegmentDuration {
		c.PartDuration = c.SegmentDuration
	}
	return c
}

// resetAfter is how many seconds of frames going back in time a track drops
// before it takes them for a restarted source clock.
const resetAfter = 1

// partJitter is how far past PartDuration a part may go rather than being
// closed one frame earlier: it absorbs millisecond-rounded timestamps.
const partJitter = 2 * time.Millisecond

// Segmenter packages publishes into the store. It holds no per-publish
// state: Run may be called for any number of publishes, concurrently.
type Segmenter struct {
	cfg Config
	m   *Metrics
	log *slog.Logger
}

// New returns a Segmenter. m may be nil (metrics are then kept but not
// registered anywhere); log may be nil (nothing is logged).
func New(cfg Config, m *Metrics, log *slog.Logger) *Segmenter {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Segmenter{cfg: cfg.withDefaults(), m: m, log: log}
}

// Config returns the effective configuration.
func (s *Segmenter) Config() Config { return s.cfg }

var bufPool = sync.Pool{New: func() any { return new(seekablebuffer.Buffer) }}

// Run consumes src until its channel closes or ctx ends, writing into dst.
// On return it has finished every open segment and called End on each
// rendition it wrote, but not dst.End: the caller owns the stream. Run
// returns ctx's error when ctx ended first, nil otherwise.
//
// When dst already holds segments (a republish within the store's grace
// time), the new publish continues the timeline where the longest
// rendition ends; the store marks the discontinuity.
func (s *Segmenter) Run(ctx context.Context, src *media.Subscription, dst *store.Stream) error {
	return s.RunWith(ctx, src, dst, RunOptions{})
}

// RunWith is Run with options: with opts.Timeline, the run publishes where
// it placed the publish on dst's timeline, for Writers of the same publish
// (transcoded renditions) to follow.
func (s *Segmenter) RunWith(ctx context.Context, src *media.Subscription, dst *store.Stream, opts RunOptions) error {
	if src == nil || dst == nil {
		return errors.New("segmenter: nil subscription or stream")
	}
	r := newRun(s, dst)
	r.timeline = opts.Timeline
	r.ctx = ctx
	// Segment spans are children of the caller's span (the publish), on its
	// provider: a no-op unless tracing is enabled.
	r.tracer = trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
	defer r.close()
	frames, extra := src.Frames(), opts.Extra
	for frames != nil || extra != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f, ok := <-frames:
			if !ok {
				frames = nil
				continue
			}
			if opts.Skip != nil && f != nil && f.Track != nil && opts.Skip(f.Track) {
				continue
			}
			r.handle(f)
		case f, ok := <-extra:
			if !ok {
				extra = nil
				continue
			}
			r.handle(f)
		}
	}
	return nil
}

// timePoint is a time as ticks of a clock rate.
type timePoint struct {
	ticks int64
	rate  uint32
}

// run is the state of one Run.
type run struct {
	cfg Config
	m   *Metrics
	log *slog.Logger
	dst *store.Stream
	buf *seekablebuffer.Buffer

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
		buf:    bufPool.Get().(*seekablebuffer.Buffer),
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
// of the earlier publish.
func (r *run) continueTimeline() {
	dst := r.dst
	var endTicks uint64
	var endRate uint32 = 1
	for _, rd := range dst.Renditions() {
		snap := rd.Snapshot()
		if len(snap.Segments) == 0 || snap.Info.Timescale == 0 {
			continue
		}
		next := rd.NextBaseTime()
		if later(next, snap.Info.Timescale, endTicks, endRate) {
			endTicks, endRate = next, snap.Info.Timescale
		}
	}
	if endTicks > 0 {
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
		if t.segOpen {
			// The last segment lasts until the end of its last sample, whose
			// duration is estimated for video.
			r.finishSegment(t, t.lastTime+t.lastDur-t.segStart)
		}
		t.rend.End()
	}
	r.buf.Reset()
	bufPool.Put(r.buf)
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
		r.changeParams(t, f)
	}
	if t.failed != "" {
		r.drop(t, t.failed)
		return
	}
	if len(f.Payload) == 0 {
		r.drop(t, DropEmptyPayload)
		return
	}
	if t.haveDTS && f.DTS < t.lastDTS {
		if !t.backward {
			t.backward, t.backFrom = true, f.DTS
		}
		if f.DTS-t.backFrom < int64(t.clockRate)*resetAfter {
			r.drop(t, DropNonMonotonicDTS)
			t.gap = true
			return
		}
		// A whole new timeline behind the old one: the source restarted its
		// clock. Continue the track right after what it has written.
		r.logOnce(logKey{"reset", t.id}, slog.LevelWarn,
			"timestamps restarted behind the track's timeline; continuing after it",
			"track", t.id, "back", media.TicksToDuration(t.lastDTS-f.DTS, t.clockRate))
		r.remap(t, t.timescale)
		if t.kind == media.KindVideo && !f.Key {
			t.waitKey = true
		}
	}
	t.backward = false
	if !r.begun {
		r.begun = true
		r.origin = timePoint{ticks: f.DTS, rate: f.Track.ClockRate}
	}
	if r.timeline != nil && !r.published && r.master != nil {
		r.published = true
		r.timeline.publish(r.origin, r.start)
	}
	if !t.mapped {
		r.mapTrack(t, f)
	}
	tm := media.Rescale(f.DTS, t.clockRate, t.timescale) + t.offset
	if t == r.master {
		t.seenNs = media.TicksToDuration(tm, t.timescale)
	}
	if t.kind == media.KindVideo {
		r.video(t, f, tm)
	} else {
		r.audioFrame(t, f, tm)
	}
}

// mapTrack places the track on the timeline: its DTS minus the publish's
// first DTS, after the common start, and never before where its rendition
// ended.
func (r *run) mapTrack(t *track, f *media.Frame) {
	t.mapped = true
	start := media.RescaleUp(r.start.ticks, r.start.rate, t.timescale)
	t.offset = start - media.Rescale(r.origin.ticks, r.origin.rate, t.timescale)
	tm := media.Rescale(f.DTS, t.clockRate, t.timescale) + t.offset
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
func (r *run) video(t *track, f *media.Frame, tm int64) {
	if r.pending.on && t == r.master && !r.gapFrame(t, f, tm) {
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
	pts := media.Rescale(f.PTS, t.clockRate, t.timescale) + t.offset
	if t.haveTime {
		delta := tm - t.lastTime
		if !t.gap { // a delta across dropped frames is no frame duration
			t.lastDelta = delta
		}
		t.gap = false
		if n := len(t.samples); n > 0 {
			// The previous sample is still ours: give it its true duration.
			t.partDur += delta - int64(t.samples[n-1].Duration)
			t.samples[n-1].Duration = uint32(delta)
		}
		if t.segOpen && f.Key && tm-t.segStart >= t.segTicks {
			r.finishSegment(t, tm-t.segStart)
		}
	}
	t.haveDTS, t.lastDTS = true, f.DTS
	t.haveTime = true
	if !t.segOpen && !r.startSegment(t, f, tm) {
		return
	}
	est := t.lastDelta
	if est <= 0 {
		est = t.defaultDur
	}
	r.addSample(t, f, tm, est, clampInt32(pts-tm), !f.Key)
}

// audioFrame handles an audio frame whose DTS maps to timeline time tm.
func (r *run) audioFrame(t *track, f *media.Frame, tm int64) {
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
			r.flushPart(t) // the next part's tfdt carries the jump
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
	if t.segOpen && r.audioCut(t, at, true) {
		r.finishSegment(t, at-t.segStart)
	}
	if !t.segOpen && !r.startSegment(t, f, at) {
		return
	}
	r.addSample(t, f, at, dur, 0, false)
	// Close the part now when the next frame will start a new segment.
	if len(t.samples) > 0 && r.audioCut(t, at+dur, false) {
		r.flushPart(t)
	}
}

// audioCut reports whether an audio frame at time at starts a new segment.
// With consume, it forgets the video boundaries at or before at.
func (r *run) audioCut(t *track, at int64, consume bool) bool {
	atNs := media.TicksToDuration(at, t.timescale)
	if m := r.master; m != nil && m.seenNs+2*r.cfg.SegmentDuration >= atNs {
		if len(t.bounds) > 0 && t.bounds[0] <= atNs {
			if consume {
				for len(t.bounds) > 0 && t.bounds[0] <= atNs {
					t.bounds = t.bounds[1:]
				}
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

// startSegment opens a segment at a frame; false when the store refused.
func (r *run) startSegment(t *track, f *media.Frame, tm int64) bool {
	if t.segCount == 0 && t == r.master && r.follows != nil &&
		!t.rend.AlignWith(r.follows.source.Load(), media.TicksToDuration(tm, t.timescale)) {
		// A Writer's first segment starts where the source's does, with its
		// sequence number: the rendition may start later than the source
		// (its first GOPs lost); until a source cut, its frames are dropped.
		r.drop(t, DropGapSegment)
		t.waitKey = true
		return false
	}
	msn, err := t.rend.StartSegment(f.Received, uint64(tm))
	if err != nil {
		r.logOnce(logKey{"start", t.id}, slog.LevelError,
			"cannot start a segment", "track", t.id, "rendition", t.name, "error", err)
		r.drop(t, DropStoreError)
		return false
	}
	_, t.segSpan = r.tracer.Start(r.ctx, "segment", trace.WithAttributes(
		attribute.String("headwater.rendition", t.name), attribute.Int64("headwater.msn", int64(msn))))
	t.segOpen = true
	t.segStart = tm
	t.segSamples = 0
	if t.kind == media.KindAudio && t.segCount == 0 {
		// A track that came late (transcoded audio) was given the video
		// boundaries so far: forget those at or before its start.
		ns := media.TicksToDuration(tm, t.timescale)
		for len(t.bounds) > 0 && t.bounds[0] <= ns {
			t.bounds = t.bounds[1:]
		}
	}
	if t == r.master {
		// The first video segment gives no boundary: the first audio segment
		// runs from the first audio frame to the second video segment, so
		// that audio and video sequence numbers match.
		if t.segCount > 0 {
			ns := media.TicksToDuration(tm, t.timescale)
			if len(r.bounds) >= 16 {
				r.bounds = r.bounds[1:]
			}
			r.bounds = append(r.bounds, ns)
			for _, a := range r.audio {
				if len(a.bounds) >= 16 {
					a.bounds = a.bounds[1:]
				}
				a.bounds = append(a.bounds, ns)
			}
		}
	}
	t.segCount++
	return true
}

// addSample appends a sample to the open part and closes the part when it
// reaches the part duration.
func (r *run) addSample(t *track, f *media.Frame, tm, dur int64, ptsOffset int32, nonSync bool) {
	if len(t.samples) == 0 {
		t.partStart = tm
		t.partIndependent = !nonSync
		t.partDur = 0
	}
	t.samples = append(t.samples, fmp4.Sample{
		Duration:        uint32(dur),
		PTSOffset:       ptsOffset,
		IsNonSyncSample: nonSync,
		Payload:         f.Payload,
	})
	t.partDur += dur
	t.segSamples++
	t.lastTime, t.lastDur = tm, dur
	t.lastReceived = f.Received
	if t.firstReceived.IsZero() {
		t.firstReceived = f.Received
	}
	if t.partDur >= t.partTicks || t.partDur+dur > t.partTicks+t.jitterTicks {
		r.flushPart(t)
	}
}

// flushPart writes the open part, if any, to the store.
func (r *run) flushPart(t *track) {
	n := len(t.samples)
	if n == 0 {
		return
	}
	t.ptrs = t.ptrs[:0]
	for i := range t.samples {
		t.ptrs = append(t.ptrs, &t.samples[i])
	}
	t.pt.ID = 1
	t.pt.BaseTime = uint64(t.partStart)
	t.pt.Samples = t.ptrs
	t.seq++
	part := fmp4.Part{SequenceNumber: t.seq, Tracks: t.pts[:]}
	r.buf.Reset()
	err := part.Marshal(r.buf)
	if err == nil {
		_, err = t.rend.AppendPart(r.buf.Bytes(), media.TicksToDuration(t.partDur, t.timescale), t.partIndependent)
	}
	if err != nil {
		r.logOnce(logKey{"part", t.id}, slog.LevelError,
			"cannot write a part", "track", t.id, "rendition", t.name, "error", err)
		r.m.dropped.WithLabelValues(DropStoreError).Add(float64(n))
	} else {
		r.kinds[t.kind].parts.Inc()
		now := time.Now()
		if !t.lastReceived.IsZero() {
			r.m.partLatency.Observe(now.Sub(t.lastReceived).Seconds())
		}
		if !t.firstPartDone && !t.firstReceived.IsZero() {
			t.firstPartDone = true
			r.m.firstPartLatency.Observe(now.Sub(t.firstReceived).Seconds())
		}
	}
	clear(t.samples) // do not keep the payloads alive
	t.samples = t.samples[:0]
	clear(t.ptrs)
	t.ptrs = t.ptrs[:0]
	t.pt.Samples = nil
	t.partDur = 0
}

// finishSegment closes the open part and the segment, durTicks long.
func (r *run) finishSegment(t *track, durTicks int64) {
	r.flushPart(t)
	t.segOpen = false
	if durTicks < 0 {
		durTicks = 0
	}
	span := t.segSpan
	t.segSpan = nil
	if err := t.rend.FinishSegment(uint64(durTicks)); err != nil {
		r.logOnce(logKey{"finish", t.id}, slog.LevelError,
			"cannot finish a segment", "track", t.id, "rendition", t.name, "error", err)
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
			span.End()
		}
		return
	}
	if span != nil {
		span.SetAttributes(attribute.Float64("headwater.duration_seconds", media.TicksToDuration(durTicks, t.timescale).Seconds()),
			attribute.Int("headwater.samples", t.segSamples))
		span.End()
	}
	r.kinds[t.kind].segments.Inc()
	r.m.segmentDuration.Observe(media.TicksToDuration(durTicks, t.timescale).Seconds())
	if t.kind == media.KindVideo && t.info.FrameRate == 0 && t.segSamples > 1 && durTicks > 0 {
		// The SPS has no timing information: describe the frame rate seen.
		fps := float64(t.segSamples) * float64(t.timescale) / float64(durTicks)
		t.info.FrameRate = float64(int64(fps*1000+0.5)) / 1000
		t.rend.SetInit(t.info, t.initData)
	}
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

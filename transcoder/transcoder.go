package transcoder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
)

// Config configures a Transcoder.
type Config struct {
	// Ladders are the ABR ladders by stream-name prefix (longest prefix
	// wins); nil means {"": DefaultLadder()}. A stream without a ladder is
	// not transcoded.
	Ladders Ladders
	// Deadline is how long after its GOP closed a job may finish, in GOP
	// durations (3 by default): a run still going then is killed, and a
	// failed run is retried only if the retry can finish before it.
	Deadline float64
	// MaxGOP is the longest GOP transcoded (10s by default): a longer one
	// is not buffered further and becomes a gap.
	MaxGOP time.Duration
	// MaxGOPBytes bounds a GOP's size the same way (64 MiB by default).
	MaxGOPBytes int
	// MinGOP is the shortest job (500ms by default): shorter source GOPs
	// are transcoded together, their key frames kept, so that a source
	// with very short GOPs does not cost a process per GOP.
	MinGOP time.Duration
}

func (c Config) withDefaults() Config {
	if c.Ladders == nil {
		c.Ladders = Ladders{"": DefaultLadder()}
	}
	if c.Deadline <= 0 {
		c.Deadline = 3
	}
	if c.MaxGOP <= 0 {
		c.MaxGOP = 10 * time.Second
	}
	if c.MaxGOPBytes <= 0 {
		c.MaxGOPBytes = 64 << 20
	}
	if c.MinGOP <= 0 {
		c.MinGOP = 500 * time.Millisecond
	}
	return c
}

// Validate checks the configuration (and the ladders' renditions).
func (c *Config) Validate() error {
	*c = c.withDefaults()
	if c.Deadline < 1 {
		return fmt.Errorf("deadline %.2f GOPs: must be at least 1", c.Deadline)
	}
	return c.Ladders.Validate()
}

// RenditionInfo describes a rendition output being opened.
type RenditionInfo struct {
	Stream    string
	Rendition Rendition
	// Width and Height are the expected output dimensions.
	Width, Height int
	// Source is the source video track the rendition is made from.
	Source *media.Track
	// TrackID is the ID of the rendition's frames' tracks: 100 + the
	// rendition's index in the ladder, distinct from the source's tracks
	// so that source and renditions can share one packaging run.
	TrackID int
}

// Gap is a GOP of a rendition that will not be produced (shed, failed,
// timed out, or a source GOP longer than MaxGOP). Times are the source's:
// the rendition's frames would have started at DTS (and PTS) and lasted
// Duration ticks of ClockRate. A packager lists it with EXT-X-GAP.
type Gap struct {
	Seq       uint64
	DTS, PTS  int64
	Duration  int64
	ClockRate uint32
	// Received is when the GOP's first frame arrived at ingest.
	Received time.Time
	// Reason is "shed", "late", "failed", "timeout" or "oversized".
	Reason string
}

// Output receives one rendition of a stream, in order: frames and gaps
// GOP after GOP, then Close. Calls come from the Run goroutine.
type Output interface {
	// WriteFrame writes a frame: AVCC payload, source timestamps, the
	// first frame of every GOP an IDR (Key). The frame is not modified
	// afterwards.
	WriteFrame(*media.Frame)
	// Gap reports a GOP that will not be produced.
	Gap(Gap)
	// Close ends the rendition.
	Close()
}

// Transcoder turns source streams into ABR renditions by submitting one
// job per GOP to an Executor (the Pool). It holds no per-stream state: Run
// may be called for any number of streams at once.
type Transcoder struct {
	cfg  Config
	exec Executor
	m    *Metrics
	log  *slog.Logger
	ids  atomic.Uint64
}

// New returns a Transcoder submitting to exec. m and log may be nil.
func New(cfg Config, exec Executor, m *Metrics, log *slog.Logger) (*Transcoder, error) {
	if exec == nil {
		return nil, errors.New("transcoder: nil executor")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transcoder{cfg: cfg, exec: exec, m: m, log: log}, nil
}

// Ladder returns the renditions Run would produce for a stream whose video
// is sourceHeight pixels high.
func (t *Transcoder) Ladder(stream string, sourceHeight int) Ladder {
	return t.cfg.Ladders.For(stream).For(sourceHeight)
}

// Run transcodes the first video track of src until its channel closes or
// ctx ends. At the first key frame it calls out once per rendition of the
// stream's ladder below the source height (a nil Output skips that
// rendition); then every GOP is written to every output, as frames or as a
// Gap. Audio and other tracks are ignored: the source's audio rendition
// serves every video rendition. On return every output has been closed.
// Run returns ctx's error when ctx ended first, nil otherwise.
func (t *Transcoder) Run(ctx context.Context, stream string, src *media.Subscription, out func(RenditionInfo) Output) error {
	if src == nil || out == nil {
		return errors.New("transcoder: nil subscription or output factory")
	}
	r := &run{t: t, stream: stream, out: out, videoID: -1, wake: make(chan struct{}, 1),
		pending: map[uint64]*pendingGOP{}, log: t.log.With("stream", stream)}
	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.ctx = jobCtx
	defer r.closeOutputs()
	frames := src.Frames()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.wake:
			r.deliver()
		case f, ok := <-frames:
			if !ok {
				r.finish()
				for r.outstanding > 0 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-r.wake:
						r.deliver()
					}
				}
				r.deliver()
				return nil
			}
			r.handle(f)
		}
	}
}

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

type rendOut struct {
	r       Rendition
	o       Output
	idx     int
	trackID int
	track   *media.Track
	lastDTS int64
	haveDTS bool
}

type run struct {
	t       *Transcoder
	ctx     context.Context
	stream  string
	out     func(RenditionInfo) Output
	log     *slog.Logger
	videoID int
	src     *media.Track
	decided bool
	outs    []*rendOut
	byName  map[string]*rendOut
	ladder  Ladder

	gop       []*media.Frame
	gopBytes  int
	oversized bool
	overStart *media.Frame
	lastDelta int64
	seq       uint64
	logged    map[string]bool

	mu          sync.Mutex
	events      []event
	wake        chan struct{}
	pending     map[uint64]*pendingGOP
	next        uint64
	outstanding int
}

func (r *run) logOnce(key, msg string, args ...any) {
	if r.logged == nil {
		r.logged = map[string]bool{}
	}
	if r.logged[key] {
		return
	}
	r.logged[key] = true
	r.log.Warn(msg, args...)
}

func (r *run) handle(f *media.Frame) {
	if f == nil || f.Track == nil || f.Track.Codec == nil || f.Track.Kind() != media.KindVideo {
		return
	}
	if r.videoID < 0 {
		r.videoID = f.Track.ID
	}
	if f.Track.ID != r.videoID {
		return
	}
	switch f.Track.Codec.(type) {
	case *media.H264, *media.H265:
	default:
		r.logOnce("codec", "transcoder: unsupported video codec; not transcoding", "codec", f.Track.Codec.Name())
		return
	}
	if n := len(r.gop); n > 0 {
		if d := f.DTS - r.gop[n-1].DTS; d > 0 {
			r.lastDelta = d
		}
	}
	// A key frame closes the GOP, unless the GOP is shorter than MinGOP:
	// then the job goes on and ffmpeg keeps the key frame.
	closes := f.Key && (len(r.gop) == 0 || r.oversized ||
		media.TicksToDuration(f.DTS-r.gop[0].DTS, f.Track.ClockRate) >= r.t.cfg.MinGOP)
	if closes {
		r.closeGOP(f.DTS)
		if !r.decided {
			r.decide(f.Track)
		}
		if len(r.outs) == 0 {
			return
		}
		r.gop = append(r.gop[:0], f)
		r.gopBytes = len(f.Payload)
		return
	}
	if r.oversized || len(r.gop) == 0 {
		return // before the first key frame, or dropping an oversized GOP
	}
	r.gop = append(r.gop, f)
	r.gopBytes += len(f.Payload)
	first := r.gop[0]
	if media.TicksToDuration(f.DTS-first.DTS, f.Track.ClockRate) > r.t.cfg.MaxGOP || r.gopBytes > r.t.cfg.MaxGOPBytes {
		r.logOnce("oversized", "transcoder: GOP longer than the maximum; its renditions become gaps",
			"max", r.t.cfg.MaxGOP, "max_bytes", r.t.cfg.MaxGOPBytes)
		r.oversized, r.overStart = true, first
		clear(r.gop)
		r.gop = r.gop[:0]
		r.gopBytes = 0
	}
}

// decide picks the renditions from the first key frame's track and opens
// the outputs.
func (r *run) decide(tr *media.Track) {
	r.decided = true
	r.src = tr
	info, err := media.ParseVideoInfo(tr.Codec)
	if err != nil || info.Height <= 0 {
		r.logOnce("sps", "transcoder: cannot read the source's size; not transcoding", "error", err)
		return
	}
	r.ladder = r.t.cfg.Ladders.For(r.stream).For(info.Height)
	for i, rd := range r.ladder {
		w := int(float64(rd.Height)*float64(info.Width)/float64(info.Height)/2+0.5) * 2
		id := 100 + i
		o := r.out(RenditionInfo{Stream: r.stream, Rendition: rd, Width: w, Height: rd.Height, Source: tr, TrackID: id})
		if o == nil {
			continue
		}
		ro := &rendOut{r: rd, o: o, idx: len(r.outs), trackID: id}
		r.outs = append(r.outs, ro)
		if r.byName == nil {
			r.byName = map[string]*rendOut{}
		}
		r.byName[rd.Name] = ro
	}
	if len(r.outs) > 0 {
		names := make([]string, len(r.outs))
		for i, o := range r.outs {
			names[i] = o.r.Name
		}
		r.log.Info("transcoder: started", "source", fmt.Sprintf("%dx%d", info.Width, info.Height), "renditions", names)
	}
}

// closeGOP turns the open GOP (or an oversized one) into a job, the next
// GOP starting at DTS end.
func (r *run) closeGOP(end int64) {
	now := time.Now()
	if r.oversized {
		s := r.overStart
		r.oversized, r.overStart = false, nil
		p := &pendingGOP{seq: r.seq, dts: s.DTS, pts: s.PTS, dur: end - s.DTS, rate: s.Track.ClockRate,
			first: s.Received, closed: now, gap: "oversized", parts: make([]gopPart, len(r.outs))}
		r.seq++
		r.pending[p.seq] = p
		return
	}
	if len(r.gop) == 0 {
		return
	}
	g := r.gop
	first := g[0]
	rate := first.Track.ClockRate
	p := &pendingGOP{seq: r.seq, dts: first.DTS, pts: first.PTS, dur: end - first.DTS, rate: rate,
		first: first.Received, closed: now, received: make(map[int64]time.Time, len(g)),
		parts: make([]gopPart, len(r.outs))}
	r.seq++
	r.pending[p.seq] = p
	defer func() {
		clear(r.gop)
		r.gop = r.gop[:0]
		r.gopBytes = 0
	}()
	input, err := muxGOP(g, first.DTS)
	if err != nil {
		r.logOnce("mux", "transcoder: cannot package a GOP for ffmpeg", "error", err)
		p.gap = "failed"
		return
	}
	pts := make([]int64, len(g))
	dts := make([]int64, len(g))
	for i, f := range g {
		pts[i], dts[i] = f.PTS, f.DTS
		p.received[f.PTS] = f.Received
	}
	rs := make([]Rendition, len(r.outs))
	for i, o := range r.outs {
		rs[i] = o.r
	}
	dur := media.TicksToDuration(p.dur, rate)
	j := &Job{
		ID: r.t.ids.Add(1), Stream: r.stream, Seq: p.seq, Renditions: rs, Input: input,
		Base: first.DTS, ClockRate: rate, PTS: pts, DTS: dts, Duration: dur,
		Closed: now, Deadline: now.Add(time.Duration(float64(dur) * r.t.cfg.Deadline)),
		Ctx: r.ctx,
	}
	j.Done = func(res *Result) { r.post(event{seq: p.seq, res: res}) }
	j.Progress = func(name string, attempt, k int, codec media.Codec, f OutFrame) {
		r.post(event{seq: p.seq, name: name, attempt: attempt, k: k, codec: codec, frame: f})
	}
	// A span per job, child of the caller's (the publish), on its provider:
	// a no-op unless tracing is enabled.
	_, p.span = trace.SpanFromContext(r.ctx).TracerProvider().Tracer(tracerName).Start(r.ctx, "transcode job",
		trace.WithAttributes(attribute.String("headwater.stream", r.stream), attribute.Int64("headwater.gop", int64(p.seq)),
			attribute.Int("headwater.renditions", len(rs)), attribute.Float64("headwater.duration_seconds", dur.Seconds())))
	r.outstanding++
	r.t.exec.Submit(j)
}

// tracerName is the instrumentation scope of the transcode job spans.
const tracerName = "github.com/headwater-live/headwater/transcoder"

// finish closes the last GOP at the end of the stream.
func (r *run) finish() {
	if n := len(r.gop); n > 0 {
		d := r.lastDelta
		if d <= 0 {
			d = int64(r.gop[0].Track.ClockRate) / 30
		}
		r.closeGOP(r.gop[n-1].DTS + d)
	} else if r.oversized {
		r.closeGOP(r.overStart.DTS + media.DurationToTicks(r.t.cfg.MaxGOP, r.overStart.Track.ClockRate))
	}
}

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

func (r *run) gapAll(p *pendingGOP, reason string) {
	for _, o := range r.outs {
		if !p.parts[o.idx].done {
			r.gap(o, p, reason)
			p.parts[o.idx].done = true
		}
	}
}

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
		if o.track == nil || !sameParams(o.track.Codec, part.codec) {
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

func sameParams(a, b media.Codec) bool {
	switch a := a.(type) {
	case *media.H264:
		b, ok := b.(*media.H264)
		return ok && bytes.Equal(a.SPS, b.SPS) && bytes.Equal(a.PPS, b.PPS)
	case *media.H265:
		b, ok := b.(*media.H265)
		return ok && bytes.Equal(a.VPS, b.VPS) && bytes.Equal(a.SPS, b.SPS) && bytes.Equal(a.PPS, b.PPS)
	}
	return false
}

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

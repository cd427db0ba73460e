package transcoder

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
)

// rendOut is one rendition of a run and its Output.
type rendOut struct {
	r       Rendition
	o       Output
	idx     int
	trackID int
	track   *media.Track
	lastDTS int64
	haveDTS bool
}

// run is the state of one Transcoder.Run: the GOP being cut from the
// source (this file) and the jobs submitted and not yet delivered to the
// outputs (deliver.go).
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

// logOnce logs a warning the first time key comes up in the run.
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

// handle takes a source frame: it adds it to the open GOP or closes the GOP.
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

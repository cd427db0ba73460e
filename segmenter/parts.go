package segmenter

import (
	"log/slog"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
)

// setLastDuration gives the last sample of the open part, if any, the
// duration d.
func (t *track) setLastDuration(d int64) {
	if n := len(t.samples); n > 0 {
		t.partDur += d - int64(t.samples[n-1].Duration)
		t.samples[n-1].Duration = uint32(d)
	}
}

// finishOpen finishes the open segment, if any, at the end of its last
// sample.
func (t *track) finishOpen() {
	if t.segOpen {
		// The last segment lasts until the end of its last sample, whose
		// duration is estimated for video.
		t.finishSegment(t.lastTime + t.lastDur - t.segStart)
	}
}

// startSegment opens a segment at a frame; false when the store refused.
func (t *track) startSegment(f *media.Frame, tm int64) bool {
	r := t.r
	if t.segCount == 0 && t == r.master && r.follows != nil &&
		!t.rend.AlignWith(r.follows.source.Load(), media.TicksToDuration(tm, t.timescale)) {
		// A Writer's first segment starts where the source's does, with its
		// sequence number: the rendition may start later than the source
		// (its first GOPs lost); until a source cut, its frames are dropped.
		r.drop(t, DropGapSegment)
		t.waitKey = true
		return false
	}
	if t.segCount == 0 && t.kind == media.KindAudio && r.follows == nil && r.master != nil && r.master.rend != nil {
		// A late audio track numbers its first segment as the video
		// segment it starts in.
		t.rend.AlignWithin(r.master.rend, media.TicksToDuration(tm, t.timescale))
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
		t.forgetBounds(media.TicksToDuration(tm, t.timescale))
	}
	if t == r.master {
		// The first video segment gives no boundary: the first audio segment
		// runs from the first audio frame to the second video segment, so
		// that audio and video sequence numbers match.
		if t.segCount > 0 {
			ns := media.TicksToDuration(tm, t.timescale)
			r.bounds = appendBound(r.bounds, ns)
			for _, a := range r.audio {
				a.bounds = appendBound(a.bounds, ns)
			}
		}
	}
	t.segCount++
	return true
}

// addSample appends a sample to the open part and closes the part when it
// reaches the part duration.
func (t *track) addSample(f *media.Frame, tm, dur int64, ptsOffset int32, nonSync bool) {
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
		t.flushPart()
	}
}

// flushPart writes the open part, if any, to the store.
func (t *track) flushPart() {
	r := t.r
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
func (t *track) finishSegment(durTicks int64) {
	r := t.r
	t.flushPart()
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

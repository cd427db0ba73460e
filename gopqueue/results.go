package gopqueue

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// onResult handles one result message (the subscription's goroutine:
// messages of one worker arrive in the order it sent them).
func (e *Executor) onResult(msg *nats.Msg) {
	key := msg.Subject[len(ResultSubjectPrefix)+len(e.cfg.Node)+2:]
	e.mu.Lock()
	p := e.jobs[key]
	e.mu.Unlock()
	if p == nil || len(msg.Data) == 0 {
		e.m.discarded.Inc()
		return
	}
	data := msg.Data[1:]
	switch msg.Data[0] {
	case kindStart:
		r := reader{b: data}
		d := r.uvarint()
		if r.err != nil {
			return
		}
		p.mu.Lock()
		if p.done || d < p.delivery {
			e.m.discarded.Inc()
		} else {
			p.started = true
			p.advance(d, 0)
		}
		p.mu.Unlock()
	case kindFrame:
		w, err := decodeFrame(data)
		if err != nil {
			e.log.Warn("gopqueue: bad frame message", "job", key, "error", err)
			return
		}
		e.frame(p, w)
	case kindResult:
		d, wr, err := decodeResult(data)
		if err != nil {
			e.log.Warn("gopqueue: bad result message", "job", key, "error", err)
			return
		}
		p.mu.Lock()
		stale := p.done || d < p.delivery || (d == p.delivery && wr.Attempt < p.attempt)
		if !stale {
			p.advance(d, wr.Attempt)
		}
		var res *transcoder.Result
		var outcome string
		if !stale {
			res, outcome = p.result(wr)
		}
		p.mu.Unlock()
		if stale {
			e.m.discarded.Inc()
			return
		}
		e.finish(p, res, outcome)
	}
}

// advance makes (d, attempt) the current attempt when it is newer; p.mu
// is held.
func (p *pending) advance(d uint64, attempt int) {
	if d < p.delivery || (d == p.delivery && attempt <= p.attempt) {
		return
	}
	if p.delivery != 0 || attempt != 0 {
		p.outAtt++
	}
	p.delivery, p.attempt = d, attempt
	for i := range p.parts {
		p.parts[i] = part{}
	}
}

// frame hands a frame of the current attempt to Progress.
func (e *Executor) frame(p *pending, w wireFrame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || w.delivery < p.delivery || (w.delivery == p.delivery && w.attempt < p.attempt) {
		e.m.discarded.Inc()
		return
	}
	p.started = true
	p.advance(w.delivery, w.attempt)
	if w.rendition >= len(p.parts) {
		return
	}
	pt := &p.parts[w.rendition]
	if pt.broken || w.k < len(pt.frames) {
		return // a duplicate
	}
	if w.k > len(pt.frames) {
		pt.broken = true // a frame was lost: no hole in the rendition
		return
	}
	if pt.codec != nil && media.SameVideoParams(pt.codec, w.codec) {
		w.codec = pt.codec
	}
	pt.codec = w.codec
	f := w.frame // its AU aliases the message's own buffer
	pt.frames = append(pt.frames, f)
	if !p.first {
		p.first = true
		e.m.firstFrame.Observe(time.Since(p.job.Closed).Seconds())
	}
	if p.job.Progress != nil {
		p.job.Progress(p.job.Renditions[w.rendition].Name, p.job.Attempt+p.outAtt, w.k, pt.codec, f)
	}
}

// result turns the current delivery's final result into the job's, in the
// order of the job's renditions; p.mu is held.
func (p *pending) result(wr *wireResult) (*transcoder.Result, string) {
	res := &transcoder.Result{Job: p.job, Retried: wr.Retried || p.outAtt > 0, Wall: wr.Wall, CPU: wr.CPU}
	if wr.Err != "" {
		res.Err = errors.New(wr.Err)
	}
	byName := make(map[string]wireRendition, len(wr.Renditions))
	for _, r := range wr.Renditions {
		byName[r.Name] = r
	}
	ok := 0
	for i, r := range p.job.Renditions {
		rr := transcoder.RenditionResult{Rendition: r}
		w, found := byName[r.Name]
		pt := &p.parts[i]
		switch {
		case !found:
			rr.Outcome, rr.Reason = transcoder.OutcomeFailed, "failed"
		case w.Outcome == transcoder.OutcomeOK && (pt.broken || w.Frames != len(pt.frames)):
			rr.Outcome, rr.Reason = transcoder.OutcomeFailed, "failed"
			if res.Err == nil {
				res.Err = fmt.Errorf("gopqueue: rendition %s: %d of %d frames arrived", r.Name, len(pt.frames), w.Frames)
			}
		case w.Outcome == transcoder.OutcomeOK:
			rr.Outcome = transcoder.OutcomeOK
			rr.Track = &transcoder.OutTrack{Codec: pt.codec, Frames: pt.frames}
			ok++
		default:
			rr.Outcome, rr.Reason = w.Outcome, w.Reason
		}
		res.Renditions = append(res.Renditions, rr)
	}
	switch {
	case ok == len(p.job.Renditions):
		return res, outcomeOK
	case ok > 0:
		return res, outcomePartial
	}
	for _, rr := range res.Renditions {
		if rr.Reason == "late" {
			return res, outcomeLate
		}
	}
	return res, outcomeFailed
}

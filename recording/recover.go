package recording

import (
	"context"
	"fmt"
	"time"
)

// Recover finds the sessions this node was recording when it stopped
// without ending them (a kill -9, a crash, a shutdown that outlasted its
// timeout): their summary still says "recording". Each is completed from
// the entries it has (the spool resumes uploading what it held) and marked
// interrupted, then announced ready once stored. Call it once at start,
// before the first Follow, after the spool has been opened.
func (r *Recorder) Recover(ctx context.Context) error {
	sums, err := r.Sessions(ctx, "")
	if err != nil {
		return err
	}
	for _, sum := range sums {
		if sum.Node != r.cfg.Node || r.recordingNow(sum.Stream, sum.Session) {
			continue
		}
		switch {
		case sum.State == StateRecording:
			if err := r.interrupt(ctx, sum); err != nil {
				return err
			}
		case !sum.Ready:
			// Ended, but the node stopped before it was all stored.
			log := r.log.With("stream", sum.Stream, "recording", sum.Session)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.finalise(ctx, sum, log)
			}()
		}
	}
	return nil
}

// interrupt rewrites a left-over session's summary from its entries.
func (r *Recorder) interrupt(ctx context.Context, sum Summary) error {
	entries, chunks, err := r.readEntries(ctx, sum.Stream, sum.Session, sum.Chunks)
	if err != nil {
		return fmt.Errorf("recording: recover %s %s: %w", sum.Stream, sum.Session, err)
	}
	sum.Chunks = chunks
	sum.Segments, sum.Gaps, sum.Bytes = 0, 0, 0
	durations := make(map[string]time.Duration)
	ts := make(map[string]uint32)
	for _, m := range sum.Renditions {
		ts[m.Name] = m.Timescale
	}
	var last time.Time
	for _, e := range entries {
		sum.Segments++
		if e.Gap {
			sum.Gaps++
		}
		sum.Bytes += int64(e.Size)
		if t := ts[e.Rendition]; t > 0 {
			d := time.Duration(e.Ticks) * time.Second / time.Duration(t)
			durations[e.Rendition] += d
			if end := e.PDT.Add(d); end.After(last) {
				last = end
			}
		}
	}
	for _, d := range durations {
		sum.Duration = Seconds(max(sum.Duration.D(), d))
	}
	sum.State = StateInterrupted
	if last.IsZero() {
		last = sum.Updated
	}
	sum.Ended = last
	sum.Updated = time.Now()
	b, err := marshalSummary(sum)
	if err != nil {
		return err
	}
	if err := r.cfg.Writer.Add(SummaryKey(sum.Stream, sum.Session), b, "application/json"); err != nil {
		return fmt.Errorf("recording: recover %s %s: %w", sum.Stream, sum.Session, err)
	}
	log := r.log.With("stream", sum.Stream, "recording", sum.Session)
	log.Warn("recording: found interrupted, finalising", "segments", sum.Segments, "duration", sum.Duration.D().Round(time.Millisecond))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.finalise(ctx, sum, log)
	}()
	return nil
}

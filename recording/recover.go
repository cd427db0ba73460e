package recording

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
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
	// The segments stored after the index was last written are indexed
	// again from their own boxes, as one more chunk.
	if more := r.reindex(ctx, sum, entries); len(more) > 0 {
		b, err := json.Marshal(Chunk{Entries: more})
		if err != nil {
			return fmt.Errorf("recording: recover %s %s: %w", sum.Stream, sum.Session, err)
		}
		if err := r.cfg.Writer.Add(ChunkKey(sum.Stream, sum.Session, chunks), b, "application/json"); err != nil {
			return fmt.Errorf("recording: recover %s %s: %w", sum.Stream, sum.Session, err)
		}
		chunks++
		entries = append(entries, more...)
		r.log.Info("recording: segments indexed again from their boxes", "stream", sum.Stream, "recording", sum.Session, "segments", len(more))
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

// reindex finds, per rendition, the segments stored after the last one
// indexed (a crash came before the index was written again) and makes
// their entries from their own moof boxes: decode time and duration from
// tfdt and trun, the init and wall-clock time following the previous entry.
// A rendition with no entry starts where the others do (their sequence
// numbers are aligned). It stops at the first sequence number not stored.
func (r *Recorder) reindex(ctx context.Context, sum Summary, entries []Entry) []Entry {
	last := make(map[string]Entry)
	var first uint64
	haveFirst := false
	for _, e := range entries {
		if l, ok := last[e.Rendition]; !ok || e.MSN > l.MSN {
			last[e.Rendition] = e
		}
		if !haveFirst || e.MSN < first {
			first, haveFirst = e.MSN, true
		}
	}
	var out []Entry
	for _, m := range sum.Renditions {
		prev, ok := last[m.Name]
		next := first
		if ok {
			next = prev.MSN + 1
		} else if !haveFirst {
			continue
		}
		for ; ctx.Err() == nil; next++ {
			e, found := r.segmentEntry(ctx, sum, m, next)
			if !found {
				break
			}
			if ok {
				e.Init = prev.Init
				e.PDT = prev.PDT.Add(time.Duration(prev.Ticks) * time.Second / time.Duration(max(m.Timescale, 1)))
			} else {
				e.Init = "init.mp4"
				e.PDT = sum.Started
			}
			out = append(out, e)
			prev, ok = e, true
		}
	}
	return out
}

// segmentEntry reads stored segment msn of rendition m and makes its
// entry (without init and wall-clock time); false when it is not stored
// or not readable as fMP4.
func (r *Recorder) segmentEntry(ctx context.Context, sum Summary, m RenditionMeta, msn uint64) (Entry, bool) {
	rc, err := r.open(ctx, MediaKey(sum.Stream, sum.Session, m.Name, SegmentObject(msn)))
	if err != nil {
		return Entry{}, false
	}
	data, err := io.ReadAll(io.LimitReader(rc, 256<<20))
	_ = rc.Close()
	if err != nil {
		return Entry{}, false
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(data); err != nil || len(parts) == 0 || len(parts[0].Tracks) == 0 {
		return Entry{}, false
	}
	e := Entry{Rendition: m.Name, MSN: msn, Time: parts[0].Tracks[0].BaseTime, Size: len(data)}
	for _, p := range parts {
		for _, tr := range p.Tracks {
			for _, smp := range tr.Samples {
				e.Ticks += uint64(smp.Duration)
			}
		}
	}
	return e, true
}

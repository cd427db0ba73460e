package transcoder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/headwater-live/headwater/media"
)

// run feeds a job to the process and reads its renditions back.
func (p *proc) run(ctx context.Context, j *Job) ([]OutTrack, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := p.stdin.Write(j.Input)
		if cerr := p.stdin.Close(); err == nil {
			err = cerr
		}
		werr <- err
	}()
	type demuxed struct {
		outs []OutTrack
		err  error
	}
	dc := make(chan demuxed, 1)
	go func() {
		outs, err := demuxOutput(p.stdout, p.tmpl.N, timestampMapper(j), progress(j))
		if err != nil {
			p.kill() // do not leave it blocked writing to a pipe nobody reads
		}
		_, _ = io.Copy(io.Discard, p.stdout)
		p.stdout.Close()
		dc <- demuxed{outs, err}
	}()
	var d demuxed
	select {
	case d = <-dc:
	case <-ctx.Done():
		p.kill()
		d = <-dc
	}
	select {
	case <-p.exited:
	case <-ctx.Done(): // output complete, yet the process does not exit
		p.kill()
		<-p.exited
	}
	wErr := <-werr
	switch {
	case p.waitErr == nil && d.err == nil:
		// Complete, even if ctx ended meanwhile.
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errTimeout
		}
		return nil, ctx.Err()
	case p.waitErr != nil:
		return nil, fmt.Errorf("ffmpeg: %w", p.waitErr)
	case d.err != nil:
		return nil, d.err
	}
	if wErr != nil && !errors.Is(wErr, syscall.EPIPE) {
		return nil, fmt.Errorf("writing the GOP to ffmpeg: %w", wErr)
	}
	return d.outs, nil
}

// progress streams a run's frames to j.Progress.
func progress(j *Job) func(i int, o *OutTrack) {
	if j.Progress == nil {
		return nil
	}
	return func(i int, o *OutTrack) {
		if i < len(j.Renditions) {
			k := len(o.Frames) - 1
			j.Progress(j.Renditions[i].Name, j.Attempt, k, o.Codec, o.Frames[k])
		}
	}
}

var errTimeout = errors.New("ffmpeg did not finish before the job's deadline")

// timestampMapper maps the output's MPEG-TS timestamps back to the
// source's: a PTS onto the source frame it was made from (exact), a DTS by
// the clock conversion.
func timestampMapper(j *Job) func(pts, dts int64) (int64, int64) {
	byTS := make(map[int64]int64, len(j.PTS))
	for _, pts := range j.PTS {
		byTS[media.RescaleNearest(pts-j.Base, j.ClockRate, tsClock)+tsOffset] = pts
	}
	back := func(ts int64) int64 { return media.RescaleNearest(ts-tsOffset, tsClock, j.ClockRate) + j.Base }
	return func(pts, dts int64) (int64, int64) {
		if src, ok := byTS[pts]; ok {
			pts = src
		} else {
			pts = back(pts)
		}
		return pts, back(dts)
	}
}

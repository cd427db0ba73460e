package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/transcoder"
)

// abr is the ABR ladder: the executor running GOP jobs and the transcoder
// submitting a stream's GOPs to it. nil when transcoder.enabled is false.
// Its two pipeline stages are abrStage (the ladder) and audioStage (the
// Opus → AAC detour).
type abr struct {
	exec   jobExecutor
	tc     atomic.Pointer[transcoder.Transcoder] // swapped by a reload of the ladders
	ffmpeg string
	m      *transcoder.Metrics
	log    *slog.Logger
	// onGap, when set (in a cluster), is told of every rendition gap.
	onGap func(stream, rendition string, g transcoder.Gap)
}

// jobExecutor is where GOP jobs run: the local ffmpeg worker pool, or a
// client of a remote pool (the cluster's) with the same life cycle.
type jobExecutor interface {
	transcoder.Executor
	// Start starts the workers; ctx ends them.
	Start(ctx context.Context) error
	// Ready reports whether the warm processes are waiting for work.
	Ready() bool
	// Close stops the workers and kills their processes.
	Close()
}

var _ jobExecutor = (*transcoder.Pool)(nil)

// newExecutor builds a job executor (not started) from the pool's
// configuration.
type newExecutor func(transcoder.PoolConfig, *transcoder.Metrics, *slog.Logger) jobExecutor

// newLocalPool is the default newExecutor: the local ffmpeg worker pool.
func newLocalPool(pc transcoder.PoolConfig, m *transcoder.Metrics, log *slog.Logger) jobExecutor {
	return transcoder.NewPool(pc, m, log)
}

// newABR checks the ladders and ffmpeg's encoders and builds the job
// executor (not started) with newExec, the local worker pool when nil.
func newABR(cfg config.TranscoderConfig, reg prometheus.Registerer, log *slog.Logger, newExec newExecutor) (*abr, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	ladders, err := checkedLadders(cfg, cfg.FFmpeg)
	if err != nil {
		return nil, err
	}
	pc, err := poolConfig(cfg, ladders)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "transcoder")
	m := transcoder.NewMetrics(reg)
	if newExec == nil {
		newExec = newLocalPool
	}
	a := &abr{exec: newExec(pc, m, log), ffmpeg: cfg.FFmpeg, m: m, log: log}
	if err := a.useLadders(cfg, ladders); err != nil {
		a.exec.Close()
		return nil, err
	}
	return a, nil
}

// checkedLadders are the transcoder section's ladders, once ffmpeg is known
// to have their encoders.
func checkedLadders(cfg config.TranscoderConfig, ffmpeg string) (transcoder.Ladders, error) {
	ladders, err := cfg.Ladders()
	if err != nil {
		return nil, err
	}
	all := make([]transcoder.Ladder, 0, len(ladders))
	for _, l := range ladders {
		all = append(all, l)
	}
	if err := transcoder.CheckEncoders(context.Background(), ffmpeg, all...); err != nil {
		return nil, fmt.Errorf("transcoder.ladder: %w", err)
	}
	return ladders, nil
}

// useLadders builds a transcoder for ladders on the executor and makes it
// the one publishes starting from now on use.
func (a *abr) useLadders(cfg config.TranscoderConfig, ladders transcoder.Ladders) error {
	tc, err := a.newTranscoder(cfg, ladders)
	if err != nil {
		return err
	}
	a.tc.Store(tc)
	return nil
}

// newTranscoder builds a transcoder for ladders on the executor.
func (a *abr) newTranscoder(cfg config.TranscoderConfig, ladders transcoder.Ladders) (*transcoder.Transcoder, error) {
	tc, err := transcoder.New(transcoderConfig(cfg, ladders), a.exec, a.m, a.log)
	if err != nil {
		return nil, fmt.Errorf("transcoder: %w", err)
	}
	return tc, nil
}

// buildLadders checks new ladders and builds their transcoder on the same
// executor, without using it: Reload swaps it in (a.tc.Store) once every
// component of the reload is built. Publishes that start afterwards use
// the new ladders, live ones keep theirs (their renditions must not change
// mid-stream).
func (a *abr) buildLadders(cfg config.TranscoderConfig) (*transcoder.Transcoder, error) {
	ladders, err := checkedLadders(cfg, a.ffmpeg)
	if err != nil {
		return nil, err
	}
	return a.newTranscoder(cfg, ladders)
}

// start starts the executor's workers.
func (a *abr) start(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if err := a.exec.Start(ctx); err != nil {
		return fmt.Errorf("transcoder: %w", err)
	}
	return nil
}

// ready reports whether the warm processes are waiting for work.
func (a *abr) ready() bool { return a == nil || a.exec.Ready() }

// close kills the executor's processes.
func (a *abr) close() {
	if a != nil {
		a.exec.Close()
	}
}

// stages are the abr's pipeline stages, none when it is off; seg makes
// the renditions' Writers.
func (a *abr) stages(seg *segmenter.Segmenter) []stage {
	if a == nil {
		return nil
	}
	return []stage{abrStage{a: a, seg: seg}, audioStage{a}}
}

// abrStage transcodes every publish's video into the ladder: each closed
// GOP is a job for the executor, and each rendition is packaged by a
// segmenter.Writer into the publish's store.Stream, following the source
// run's placement on the timeline.
type abrStage struct {
	a   *abr
	seg *segmenter.Segmenter // makes the renditions' Writers
}

var _ stage = abrStage{}

func (s abrStage) attach(ms *media.Stream, buffer int) stageRun {
	return &abrRun{a: s.a, seg: s.seg, sub: ms.Subscribe(buffer)}
}

// abrRun is the ladder of one publish.
type abrRun struct {
	a   *abr
	seg *segmenter.Segmenter
	sub *media.Subscription
	tl  *segmenter.Timeline
}

var _ stageRun = (*abrRun)(nil)

// join follows the source run's timeline.
func (r *abrRun) join(_ *publish, opts *segmenter.RunOptions) {
	if opts.Timeline == nil {
		opts.Timeline = segmenter.NewTimeline()
	}
	r.tl = opts.Timeline
}

// run transcodes with the ladders in force when the publish got its place
// in the store. It returns when the subscription's channel closes (the
// publish ended) and every queued GOP is done, or ctx ends.
func (r *abrRun) run(ctx context.Context, p *publish) {
	defer r.sub.Close()
	err := r.a.tc.Load().Run(ctx, p.name, r.sub, func(info transcoder.RenditionInfo) transcoder.Output {
		w, err := r.seg.NewWriter(ctx, p.dst, segmenter.WriterOptions{Name: info.Rendition.Name, Timeline: r.tl})
		if err != nil {
			return nil
		}
		out := renditionOutput{w: w}
		if r.a.onGap != nil {
			name, onGap := info.Rendition.Name, r.a.onGap
			out.gap = func(g transcoder.Gap) { onGap(p.name, name, g) }
		}
		return out
	})
	if err != nil && ctx.Err() == nil {
		p.log.Error("transcoder: ended with error", "error", err)
	}
}

func (r *abrRun) close() { r.sub.Close() }

// audioStage transcodes the publish's audio when HLS clients cannot all
// play it (Opus) to AAC with one ffmpeg process, whose AAC frames, on the
// source's clock, the source run packages in place of the source track
// (transcoder.NeedsAudioTranscode says which tracks it skips).
type audioStage struct{ a *abr }

var _ stage = audioStage{}

func (s audioStage) attach(ms *media.Stream, buffer int) stageRun {
	return &audioRun{a: s.a, sub: ms.Subscribe(buffer)}
}

// audioRun is the audio detour of one publish.
type audioRun struct {
	a   *abr
	sub *media.Subscription
	aac chan *media.Frame
}

var _ stageRun = (*audioRun)(nil)

// join feeds the source run the AAC frames in place of the Opus track.
func (r *audioRun) join(_ *publish, opts *segmenter.RunOptions) {
	r.aac = make(chan *media.Frame, 64)
	opts.Skip, opts.Extra = transcoder.NeedsAudioTranscode, r.aac
}

// run returns when the subscription's channel closes and ffmpeg has
// delivered its last frame, or ctx ends; it closes the AAC channel.
func (r *audioRun) run(ctx context.Context, p *publish) {
	defer close(r.aac)
	err := transcoder.RunAudio(ctx, transcoder.AudioConfig{FFmpeg: r.a.ffmpeg, Log: p.log.With("component", "transcoder"), Metrics: r.a.m}, r.sub.Frames(), r.aac)
	if err != nil && ctx.Err() == nil {
		p.log.Error("audio transcoder: ended with error; the stream has no audio until it is republished", "error", err)
	}
}

func (r *audioRun) close() { r.sub.Close() }

// renditionOutput writes a transcoded rendition with a segmenter Writer;
// gap, when set, is told of its gaps.
type renditionOutput struct {
	w   *segmenter.Writer
	gap func(transcoder.Gap)
}

var _ transcoder.Output = renditionOutput{}

// WriteFrame implements transcoder.Output.
func (o renditionOutput) WriteFrame(f *media.Frame) { o.w.WriteFrame(f) }

// Gap implements transcoder.Output.
func (o renditionOutput) Gap(g transcoder.Gap) {
	o.w.Gap(g.DTS, g.ClockRate, g.Duration, g.Received)
	if o.gap != nil {
		o.gap(g)
	}
}

// Close implements transcoder.Output.
func (o renditionOutput) Close() { o.w.Close() }

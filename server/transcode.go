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
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/transcoder"
)

// abr is the ABR ladder: the ffmpeg worker pool and the transcoder
// submitting a stream's GOPs to it. nil when transcoder.enabled is false.
type abr struct {
	pool   *transcoder.Pool
	tc     atomic.Pointer[transcoder.Transcoder] // swapped by a reload of the ladders
	ffmpeg string
	m      *transcoder.Metrics
	log    *slog.Logger
}

// newABR checks the ladders and ffmpeg's encoders and builds the pool (not
// started).
func newABR(cfg config.TranscoderConfig, reg prometheus.Registerer, log *slog.Logger) (*abr, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	ladders, err := cfg.Ladders()
	if err != nil {
		return nil, err
	}
	all := make([]transcoder.Ladder, 0, len(ladders))
	for _, l := range ladders {
		all = append(all, l)
	}
	if err := transcoder.CheckEncoders(context.Background(), cfg.FFmpeg, all...); err != nil {
		return nil, fmt.Errorf("transcoder.ladder: %w", err)
	}
	pc, err := poolConfig(cfg, ladders)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "transcoder")
	m := transcoder.NewMetrics(reg)
	pool := transcoder.NewPool(pc, m, log)
	tc, err := transcoder.New(transcoder.Config{Ladders: ladders, Deadline: float64(cfg.Deadline)}, pool, m, log)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("transcoder: %w", err)
	}
	a := &abr{pool: pool, ffmpeg: cfg.FFmpeg, m: m, log: log}
	a.tc.Store(tc)
	return a, nil
}

// poolConfig is the worker pool's configuration from the transcoder
// section (the pool's keys are not reloadable: it is built once).
func poolConfig(cfg config.TranscoderConfig, ladders transcoder.Ladders) (transcoder.PoolConfig, error) {
	reserve, err := cfg.Reservations()
	if err != nil {
		return transcoder.PoolConfig{}, err
	}
	fork, err := transcoder.ParseForkServerMode(cfg.ForkServer)
	if err != nil {
		return transcoder.PoolConfig{}, fmt.Errorf("transcoder.fork_server: %w", err)
	}
	return transcoder.PoolConfig{
		FFmpeg:     cfg.FFmpeg,
		Size:       cfg.PoolSize,
		Warm:       cfg.PoolWarm,
		QueueSize:  cfg.QueueSize,
		MaxWait:    cfg.MaxWait,
		Reserve:    reserve,
		ForkServer: fork,
		Prewarm:    transcoder.PrewarmFor(ladders, 1080, 720),
	}, nil
}

// reloadLadders builds a transcoder for new ladders on the same pool and
// swaps it in: publishes that start afterwards use them, live ones keep
// theirs (their renditions must not change mid-stream).
func (a *abr) reloadLadders(cfg config.TranscoderConfig) error {
	ladders, err := cfg.Ladders()
	if err != nil {
		return err
	}
	all := make([]transcoder.Ladder, 0, len(ladders))
	for _, l := range ladders {
		all = append(all, l)
	}
	if err := transcoder.CheckEncoders(context.Background(), a.ffmpeg, all...); err != nil {
		return fmt.Errorf("transcoder.ladder: %w", err)
	}
	tc, err := transcoder.New(transcoder.Config{Ladders: ladders, Deadline: float64(cfg.Deadline)}, a.pool, a.m, a.log)
	if err != nil {
		return fmt.Errorf("transcoder: %w", err)
	}
	a.tc.Store(tc)
	return nil
}

// ready reports whether the warm processes are waiting for work.
func (a *abr) ready() bool { return a == nil || a.pool.Ready() }

// close kills the pool's processes.
func (a *abr) close() {
	if a != nil {
		a.pool.Close()
	}
}

// run transcodes one publish: each rendition is packaged by a segmenter
// Writer into dst, the source's store.Stream, on the source run's timeline
// tl. It returns when sub's channel closes (the publish ended) and every
// queued GOP is done, or ctx ends.
func (a *abr) run(ctx context.Context, seg *segmenter.Segmenter, name string, sub *media.Subscription, dst *store.Stream, tl *segmenter.Timeline, log *slog.Logger) {
	err := a.tc.Load().Run(ctx, name, sub, func(info transcoder.RenditionInfo) transcoder.Output {
		w, err := seg.NewWriter(ctx, dst, segmenter.WriterOptions{Name: info.Rendition.Name, Timeline: tl})
		if err != nil {
			return nil
		}
		return renditionOutput{w}
	})
	if err != nil && ctx.Err() == nil {
		log.Error("transcoder: ended with error", "error", err)
	}
}

// runAudio transcodes the publish's audio when HLS clients cannot all play
// it (Opus) to AAC with one ffmpeg process, sending the AAC frames, on the
// source's clock, to out (closed on return) for the source run to package
// in place of the source track (transcoder.NeedsAudioTranscode says which
// tracks it skips). It returns when src's channel closes and ffmpeg has
// delivered its last frame, or ctx ends.
func (a *abr) runAudio(ctx context.Context, src *media.Subscription, out chan<- *media.Frame, log *slog.Logger) {
	defer close(out)
	err := transcoder.RunAudio(ctx, transcoder.AudioConfig{FFmpeg: a.ffmpeg, Log: log.With("component", "transcoder"), Metrics: a.m}, src.Frames(), out)
	if err != nil && ctx.Err() == nil {
		log.Error("audio transcoder: ended with error; the stream has no audio until it is republished", "error", err)
	}
}

// renditionOutput writes a transcoded rendition with a segmenter Writer.
type renditionOutput struct{ w *segmenter.Writer }

func (o renditionOutput) WriteFrame(f *media.Frame) { o.w.WriteFrame(f) }
func (o renditionOutput) Gap(g transcoder.Gap)      { o.w.Gap(g.DTS, g.ClockRate, g.Duration, g.Received) }
func (o renditionOutput) Close()                    { o.w.Close() }

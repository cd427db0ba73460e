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
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"go.opentelemetry.io/otel/trace"

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

// Defaults applied by New to zero Config fields (and config.Default's).
const (
	DefaultSegmentDuration = 2 * time.Second
	DefaultPartDuration    = 200 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.SegmentDuration <= 0 {
		c.SegmentDuration = DefaultSegmentDuration
	}
	if c.PartDuration <= 0 {
		c.PartDuration = DefaultPartDuration
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
	cfg  Config
	m    *Metrics
	log  *slog.Logger
	bufs *sync.Pool // *seekablebuffer.Buffer, for marshalling parts
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
	bufs := &sync.Pool{New: func() any { return new(seekablebuffer.Buffer) }}
	return &Segmenter{cfg: cfg.withDefaults(), m: m, log: log, bufs: bufs}
}

// Config returns the effective configuration.
func (s *Segmenter) Config() Config { return s.cfg }

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
	for _, tr := range opts.Tracks {
		if tr == nil || tr.Codec == nil || r.tracks[tr.ID] != nil || opts.Skip != nil && opts.Skip(tr) {
			continue
		}
		r.newTrack(tr)
	}
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

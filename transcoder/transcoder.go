package transcoder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

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

// DefaultDeadline is Config.Deadline's default, in GOP durations.
const DefaultDeadline = 3

func (c Config) withDefaults() Config {
	if c.Ladders == nil {
		c.Ladders = Ladders{"": DefaultLadder()}
	}
	if c.Deadline <= 0 {
		c.Deadline = DefaultDeadline
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

// tracerName is the instrumentation scope of the transcode job spans.
const tracerName = "github.com/headwater-live/headwater/transcoder"

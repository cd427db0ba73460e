package segmenter

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// track is the state of one track (by Track.ID) within a run. Times are in
// timescale ticks on the rendition's timeline (the tfdt axis).
type track struct {
	id        int
	kind      media.Kind
	cur       *media.Track // current parameters
	clockRate uint32       // cur.ClockRate: the unit of the frames' DTS/PTS
	name      string
	rend      *store.Rendition
	info      store.RenditionInfo
	initData  []byte
	timescale uint32
	failed    string // drop reason while the track cannot be packaged

	segTicks, partTicks, jitterTicks int64
	defaultDur                       int64 // duration of a sample when nothing better is known
	frameDur                         int64 // fixed audio frame duration (AAC), 0 otherwise

	// timeline
	mapped      bool
	offset      int64 // timeline time = DTS (in timescale) + offset
	floor       int64 // earliest time allowed (where the rendition ended)
	haveDTS     bool
	lastDTS     int64 // raw DTS of the last frame taken, for the monotonic check
	haveTime    bool
	lastTime    int64 // time of the last sample
	lastDur     int64 // duration given to the last sample (an estimate for video)
	lastDelta   int64 // last DTS delta
	lastDTSTime int64 // audio: timeline DTS of the last frame (may differ from lastTime)
	waitKey     bool  // video: dropping until a key frame
	// first sample taken (a key frame for video) and whether its part was
	// published: headwater_first_part_latency_seconds
	firstReceived time.Time
	firstPartDone bool
	gap           bool  // frames were dropped since the last one taken
	backward      bool  // frames are going back in time
	backFrom      int64 // DTS of the first of them
	seenNs        time.Duration
	bounds        []time.Duration // audio: starts of video segments not reached yet

	// segment and part being written
	segSpan         trace.Span // the open segment's span
	segOpen         bool
	segStart        int64
	segSamples      int
	segCount        int
	samples         []fmp4.Sample
	ptrs            []*fmp4.Sample
	pt              fmp4.PartTrack
	pts             [1]*fmp4.PartTrack
	partStart       int64
	partDur         int64
	partIndependent bool
	lastReceived    time.Time
	seq             uint32
}

// newTrack sets up the state of a track seen for the first time.
func (r *run) newTrack(tr *media.Track) *track {
	t := &track{id: tr.ID, kind: tr.Kind()}
	t.pts[0] = &t.pt
	t.samples = make([]fmp4.Sample, 0, 64)
	t.ptrs = make([]*fmp4.Sample, 0, 64)
	r.tracks[tr.ID] = t
	r.order = append(r.order, t)
	switch {
	case t.kind == media.KindAudio:
		r.audio = append(r.audio, t)
		// Video segments already started, later than its first frame,
		// are boundaries for it too (a late track: transcoded audio).
		t.bounds = slices.Clone(r.bounds)
	case r.master == nil:
		r.master = t
	}
	r.configure(t, tr, nil)
	return t
}

// changeParams handles a frame pointing to a new *Track for a known track ID.
func (r *run) changeParams(t *track, f *media.Frame) {
	if f.Track.Kind() != t.kind {
		if t.segOpen {
			r.finishSegment(t, t.lastTime+t.lastDur-t.segStart)
		}
		t.cur, t.failed = f.Track, DropUnsupportedCodec
		r.log.Error("track changed kind; ignoring it", "track", t.id,
			"from", t.kind.String(), "to", f.Track.Kind().String())
		return
	}
	r.configure(t, f.Track, f)
}

// params is what a track's codec configuration means for packaging.
type params struct {
	info       store.RenditionInfo
	data       []byte
	timescale  uint32
	frameDur   int64
	defaultDur int64
}

// configure applies the codec configuration tr to t. f is the frame that
// brought it (nil for the first). A real change of the init segment finishes
// the open segment; the store names the new init and marks a discontinuity.
func (r *run) configure(t *track, tr *media.Track, f *media.Frame) {
	p, reason, err := buildParams(tr, r.cfg)
	if err != nil {
		if t.segOpen {
			r.finishSegment(t, t.lastTime+t.lastDur-t.segStart)
		}
		t.cur, t.failed = tr, reason
		r.logOnce(logKey{"config/" + reason, t.id}, slog.LevelError,
			"cannot package track", "track", t.id, "codec", tr.Codec.Name(), "error", err)
		return
	}
	clockChanged := t.cur != nil && tr.ClockRate != t.clockRate
	if t.rend != nil && t.failed == "" && bytes.Equal(p.data, t.initData) && p.timescale == t.timescale {
		// Same parameters in a new Track value.
		t.cur = tr
		if clockChanged {
			r.remap(t, p.timescale)
			t.clockRate = tr.ClockRate
		}
		return
	}

	if t.rend == nil {
		if t.name == "" {
			t.name = r.renditionName(tr)
		}
		p.info.Name = t.name
		t.rend = r.dst.AddRendition(p.info)
		if t == r.master && r.timeline != nil {
			r.timeline.source.Store(t.rend)
		}
		// Never write before where an earlier publish left the rendition.
		prev := t.rend.Snapshot().Info.Timescale
		t.floor = media.RescaleUp(int64(t.rend.NextBaseTime()), prev, p.timescale)
	} else {
		if t.segOpen {
			end := t.lastTime + t.lastDur
			if t.kind == media.KindVideo && f != nil && !clockChanged {
				if tm := media.Rescale(f.DTS, t.clockRate, t.timescale) + t.offset; tm > t.lastTime {
					end = tm // the true distance to the next segment
				}
			}
			r.finishSegment(t, end-t.segStart)
		}
		if clockChanged || p.timescale != t.timescale {
			r.remap(t, p.timescale)
		}
		r.log.Info("codec parameters changed; new init segment", "track", t.id,
			"rendition", t.name, "codec", tr.Codec.RFC6381())
	}

	t.cur, t.clockRate, t.failed = tr, tr.ClockRate, ""
	t.timescale = p.timescale
	t.frameDur = p.frameDur
	t.defaultDur = p.defaultDur
	t.segTicks = media.DurationToTicks(r.cfg.SegmentDuration, p.timescale)
	t.partTicks = media.DurationToTicks(r.cfg.PartDuration, p.timescale)
	t.jitterTicks = media.DurationToTicks(partJitter, p.timescale)
	p.info.Name = t.name
	t.info = p.info
	t.initData = p.data
	t.rend.SetInit(p.info, p.data)
	if t.kind == media.KindVideo {
		t.waitKey = true
	}
}

// remap makes the track place its next frame afresh on the timeline (its
// clock rate or timescale changed), after what it has written so far.
func (r *run) remap(t *track, timescale uint32) {
	if t.haveTime {
		t.floor = media.RescaleUp(t.lastTime+t.lastDur, t.timescale, timescale)
	} else {
		t.floor = media.RescaleUp(t.floor, t.timescale, timescale)
	}
	t.mapped = false
	t.haveDTS = false
	if t.timescale != timescale {
		t.haveTime = false
		t.lastDelta = 0
	}
}

func (r *run) renditionName(tr *media.Track) string {
	name := r.fixedName
	if name == "" && r.cfg.RenditionName != nil {
		name = r.cfg.RenditionName(tr)
	}
	if name == "" {
		name = tr.Kind().String()
	}
	if id, ok := r.names[name]; ok && id != tr.ID {
		alt := name + "-" + strconv.Itoa(tr.ID)
		r.log.Warn("two tracks named alike; renaming the second", "track", tr.ID, "name", name, "rendition", alt)
		name = alt
	}
	r.names[name] = tr.ID
	return name
}

var errUnsupported = errors.New("unsupported codec")

// buildParams derives the fMP4 init segment and the rendition description
// from a track's codec.
func buildParams(tr *media.Track, cfg Config) (params, string, error) {
	p := params{info: store.RenditionInfo{
		Kind:          tr.Kind(),
		Codec:         tr.Codec,
		SegmentTarget: cfg.SegmentDuration,
		PartTarget:    cfg.PartDuration,
	}}
	var codec codecs.Codec
	switch c := tr.Codec.(type) {
	case *media.H264:
		codec = &codecs.H264{SPS: c.SPS, PPS: c.PPS}
	case *media.H265:
		codec = &codecs.H265{VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}
	case *media.AV1:
		// Frames already are ISOBMFF AV1 samples (sized OBUs, no temporal
		// delimiters): they go to the mdat as they are, like AVCC.
		codec = &codecs.AV1{SequenceHeader: c.SequenceHeader}
	case *media.AAC:
		codec = &codecs.MPEG4Audio{Config: c.Config}
		p.timescale = uint32(c.Config.SampleRate)
		if c.Config.SampleRate <= 0 {
			p.timescale = tr.ClockRate
		}
		p.frameDur = 1024
		if c.Config.FrameLengthFlag {
			p.frameDur = 960
		}
		p.defaultDur = p.frameDur
		p.info.SampleRate = int(p.timescale)
		p.info.Channels = aacChannels(c)
	case *media.Opus:
		codec = &codecs.Opus{ChannelCount: c.ChannelCount}
		p.timescale = 48000
		p.defaultDur = 960
		p.info.SampleRate = 48000
		p.info.Channels = c.ChannelCount
	default:
		return p, DropUnsupportedCodec, fmt.Errorf("%w %q", errUnsupported, tr.Codec.Name())
	}
	if tr.Kind() == media.KindVideo {
		vi, err := media.ParseVideoInfo(tr.Codec)
		if err != nil {
			return p, DropInitError, err
		}
		p.timescale = 90000
		p.info.Width, p.info.Height, p.info.FrameRate = vi.Width, vi.Height, vi.FrameRate
		p.defaultDur = 3000 // 1/30 s
		if vi.FrameRate >= 1 && vi.FrameRate <= 1000 {
			p.defaultDur = int64(math.Round(90000 / vi.FrameRate))
		}
	}
	if p.timescale == 0 {
		return p, DropInitError, errors.New("no sample rate")
	}
	p.info.Timescale = p.timescale
	var buf seekablebuffer.Buffer
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: p.timescale, Codec: codec}}}
	if err := init.Marshal(&buf); err != nil {
		return p, DropInitError, fmt.Errorf("init segment: %w", err)
	}
	p.data = buf.Bytes()
	return p, "", nil
}

func aacChannels(c *media.AAC) int {
	if c.Config.ChannelCount > 0 {
		return c.Config.ChannelCount
	}
	switch n := int(c.Config.ChannelConfig); {
	case n >= 1 && n <= 6:
		return n
	case n == 7:
		return 8
	}
	return 0
}

// opusDuration is an Opus packet's duration from its TOC, in ticks.
func opusDuration(pkt []byte, timescale uint32) int64 {
	return media.Rescale(opus.PacketDuration2(pkt), 48000, timescale)
}

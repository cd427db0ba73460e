package segmenter

import (
	"bytes"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// track is the state of one track (by Track.ID) within a run. Times are in
// timescale ticks on the rendition's timeline (the tfdt axis).
type track struct {
	r         *run // the run it belongs to: store buffer, metrics, logs, video boundaries
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
	t := &track{r: r, id: tr.ID, kind: tr.Kind()}
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
	t.configure(tr, nil)
	return t
}

// changeParams handles a frame pointing to a new *Track for a known track ID.
func (t *track) changeParams(f *media.Frame) {
	r := t.r
	if f.Track.Kind() != t.kind {
		t.finishOpen()
		t.cur, t.failed = f.Track, DropUnsupportedCodec
		r.log.Error("track changed kind; ignoring it", "track", t.id,
			"from", t.kind.String(), "to", f.Track.Kind().String())
		return
	}
	t.configure(f.Track, f)
}

// configure applies the codec configuration tr to t. f is the frame that
// brought it (nil for the first). A real change of the init segment finishes
// the open segment; the store names the new init and marks a discontinuity.
func (t *track) configure(tr *media.Track, f *media.Frame) {
	r := t.r
	p, reason, err := buildParams(tr, r.cfg)
	if err != nil {
		t.finishOpen()
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
			t.remap(p.timescale)
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
				if tm := t.timeOf(f.DTS); tm > t.lastTime {
					end = tm // the true distance to the next segment
				}
			}
			t.finishSegment(end - t.segStart)
		}
		if clockChanged || p.timescale != t.timescale {
			t.remap(p.timescale)
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
func (t *track) remap(timescale uint32) {
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

package dash

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/dash-mpd/xml"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// Profiles and schemes used in the MPD.
const (
	ProfileLive       = "urn:mpeg:dash:profile:isoff-live:2011"
	ProfileCMAF       = "urn:mpeg:dash:profile:cmaf:2019"
	ProfileLowLatency = "http://www.dashif.org/guidelines/low-latency-live-v5"
	SchemeUTCHTTPISO  = "urn:mpeg:dash:utc:http-iso:2014"
	SchemeUTCDirect   = "urn:mpeg:dash:utc:direct:2014"
)

// DefaultWindow is the number of segments listed when Options.Window is not
// set, like store.Config's default.
const DefaultWindow = 6

// DefaultEndGrace is Options.EndGrace's default: long enough for an encoder
// to reconnect after a network failure (OBS retries after 2s to 10s).
const DefaultEndGrace = 10 * time.Second

// Defaults and bounds of the derived timing values (see the package doc).
const (
	defaultSegmentTarget = 2 * time.Second
	minLowLatencyUpdate  = 500 * time.Millisecond
	minTargetLatency     = 1500 * time.Millisecond
	maxTargetLatency     = 3 * time.Second
)

// Errors returned by MPD.
var (
	// ErrNoMedia is returned while no Period can be listed yet: no
	// rendition has a segment (a complete one, or with Options.LowLatency an
	// open one with a part), or a Period has just started and not every
	// live rendition has a segment in it yet. The origin should answer 404
	// with a short cache lifetime, as for a playlist not yet available.
	ErrNoMedia = errors.New("dash: no segment to list yet")
	// ErrNoAvailabilityStart is returned when Options.AvailabilityStart is zero.
	ErrNoAvailabilityStart = errors.New("dash: availability start time not set")
)

// Rendition is a rendition's snapshot under its name in URLs.
type Rendition struct {
	Name string
	Snap *store.Snapshot
}

// Options are the stream-level inputs of MPD.
type Options struct {
	// AvailabilityStart is MPD@availabilityStartTime, store.Stream.Started():
	// fixed for the life of the stream. It is used with millisecond precision.
	AvailabilityStart time.Time
	// PublishTime is MPD@publishTime, normally now; when zero, the time of
	// the newest snapshot is used. MPD never reads the clock.
	PublishTime time.Time
	// Window is the number of complete segments of each rendition listed
	// (DefaultWindow when <= 0), as in the HLS media playlists.
	Window int
	// LowLatency enables low-latency DASH (see the package doc).
	LowLatency bool
	// TargetLatency is the ServiceDescription latency target in low-latency
	// mode; the default is three part targets within [1.5s, 3s].
	TargetLatency time.Duration
	// UTCTimingURL is the URL (absolute, or relative to the MPD) of the
	// origin's time endpoint, answering an ISO 8601 UTC time
	// (urn:mpeg:dash:utc:http-iso:2014). No UTCTiming is written without it.
	UTCTimingURL string
	// History keeps the Periods' timing across calls; see History. It may
	// be nil, at the cost described in the package doc.
	History *History
	// EndGrace is how long the MPD of a stream whose renditions have all
	// ended stays live (minimumUpdatePeriod kept, no
	// mediaPresentationDuration), measured from the newest snapshot to
	// PublishTime, so that players keep reloading it and a republish within
	// that time continues the presentation in a new Period. After it the MPD
	// is final. 0 means DefaultEndGrace; a negative value makes the MPD final
	// as soon as the stream ends.
	EndGrace time.Duration
	// Static renders a static MPD (MPD@type="static", a recording played
	// as VOD) of renditions that have all ended: no availability or update
	// timing, mediaPresentationDuration set. It implies an EndGrace of -1.
	Static bool
}

// MPD renders the live MPD of a stream from its renditions' snapshots, in
// the order given (video Representations in that order, then audio).
// Renditions without an init segment, or of an unknown kind, are skipped. It
// returns ErrNoMedia while there is nothing to list.
func MPD(renditions []Rendition, o Options) ([]byte, error) {
	if o.AvailabilityStart.IsZero() {
		return nil, ErrNoAvailabilityStart
	}
	b := builder{o: o}
	b.collect(renditions)
	b.planWith(o.History)
	if len(b.listed) == 0 {
		return nil, ErrNoMedia
	}
	m := b.build()
	// What mpd.MPD.Write does, encoding straight into one buffer.
	var buf bytes.Buffer
	buf.Grow(768 + 640*len(b.listed)*len(b.rends))
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// planWith plans the Periods with h (which may be nil) locked.
func (b *builder) planWith(h *History) {
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.reset(b.ast)
		b.hist = h
		defer func() { b.hist = nil }()
	}
	b.plan()
}

// mediaTime is a time on a track's media timeline: ticks/ts seconds.
type mediaTime struct {
	ticks uint64
	ts    uint32
}

// cmp compares two media times exactly, whatever their timescales.
func (a mediaTime) cmp(b mediaTime) int {
	ah, al := bits.Mul64(a.ticks, uint64(b.ts))
	bh, bl := bits.Mul64(b.ticks, uint64(a.ts))
	switch {
	case ah < bh || ah == bh && al < bl:
		return -1
	case ah == bh && al == bl:
		return 0
	}
	return 1
}

// duration converts to a duration (rounded down to the nanosecond).
func (a mediaTime) duration() time.Duration { return store.TicksToDuration(a.ticks, a.ts) }

// in converts to ticks of timescale ts, rounding down.
func (a mediaTime) in(ts uint32) uint64 {
	if a.ts == ts || a.ts == 0 {
		return a.ticks
	}
	hi, lo := bits.Mul64(a.ticks, uint64(ts))
	if hi >= uint64(a.ts) {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, uint64(a.ts))
	return q
}

// item is one segment of a rendition as MPD sees it.
type item struct {
	seg    *store.Segment
	info   *store.RenditionInfo // of the segment's init
	t, d   uint64               // start and duration in ts ticks (d predicted while open)
	ts     uint32
	open   bool
	listed bool // in the window (or the open segment, in low-latency mode)
	p      *period
}

func (it *item) time() mediaTime { return mediaTime{it.t, it.ts} }
func (it *item) mid() mediaTime  { return mediaTime{it.t + it.d/2, it.ts} }
func (it *item) end() mediaTime  { return mediaTime{it.t + it.d, it.ts} }

// rend is a rendition with its segments as items, oldest first.
type rend struct {
	name      string
	snap      *store.Snapshot
	kind      media.Kind
	live      bool
	items     []item
	bandwidth uint32
	window    time.Duration // duration of the listed complete segments
}

// period is a Period being planned.
type period struct {
	id     string
	epoch  int
	first  bool          // starts its epoch
	b      mediaTime     // boundary: items whose middle is at or after it belong here
	t      mediaTime     // media time at Period@start (presentationTimeOffset)
	start  time.Duration // Period@start
	frozen bool          // timing from the History (or fixed, for p0)
	n      int           // listed non-gap items
}

type builder struct {
	o       Options
	ast     time.Time
	ll      bool // low-latency features on (not once the stream has ended)
	ended   bool // every rendition has ended, EndGrace ago: the MPD is final
	segTgt  time.Duration
	partTgt time.Duration
	rends   []rend
	hist    *History
	periods []*period
	listed  []*period
}

// collect turns the snapshots into items.
func (b *builder) collect(renditions []Rendition) {
	b.ast = b.o.AvailabilityStart.UTC().Truncate(time.Millisecond)
	window := b.o.Window
	if window <= 0 {
		window = DefaultWindow
	}
	var maxSeg time.Duration
	for _, r := range renditions {
		s := r.Snap
		if s == nil || len(s.Inits) == 0 {
			continue
		}
		b.segTgt = max(b.segTgt, s.Info.SegmentTarget)
		b.partTgt = max(b.partTgt, s.Info.PartTarget)
		maxSeg = max(maxSeg, s.MaxSegmentDuration)
	}
	if b.segTgt <= 0 {
		b.segTgt = maxSeg
	}
	if b.segTgt <= 0 {
		b.segTgt = defaultSegmentTarget
	}
	if b.partTgt <= 0 || b.partTgt >= b.segTgt {
		b.partTgt = min(time.Second, b.segTgt/2)
	}

	b.rends = make([]rend, 0, len(renditions))
	b.ended = true
	for _, r := range renditions {
		s := r.Snap
		if s == nil || len(s.Inits) == 0 {
			continue
		}
		kind := s.Info.Kind
		if kind != media.KindVideo && kind != media.KindAudio {
			continue
		}
		rd := rend{name: r.Name, snap: s, kind: kind, live: !s.Ended}
		if !s.Ended || s.Open != nil {
			b.ended = false
		}
		n := len(s.Segments)
		first := max(n-window, 0)
		rd.items = make([]item, 0, n+1)
		var peak float64 // bit/s
		for i, seg := range s.Segments {
			it := newItem(s, seg)
			if it.ts == 0 {
				continue
			}
			it.listed = i >= first
			if it.listed {
				rd.window += seg.Duration
				if !seg.Gap && seg.Duration > 0 {
					peak = max(peak, float64(seg.Size)*8/seg.Duration.Seconds())
				}
			}
			rd.items = append(rd.items, it)
		}
		if open := s.Open; open != nil && len(open.Parts) > 0 && !s.Ended {
			it := newItem(s, open)
			if it.ts != 0 {
				var elapsed time.Duration
				for _, p := range open.Parts {
					elapsed += p.Duration
				}
				target, part := it.info.SegmentTarget, it.info.PartTarget
				if target <= 0 {
					target = b.segTgt
				}
				if part <= 0 {
					part = b.partTgt
				}
				it.open = true
				it.d = store.DurationToTicks(max(target, elapsed+part), it.ts)
				it.listed = b.o.LowLatency
				rd.items = append(rd.items, it)
				if peak == 0 && elapsed > 0 {
					peak = float64(open.Size) * 8 / elapsed.Seconds()
				}
			}
		}
		rd.bandwidth = uint32(min(math.Ceil(peak), math.MaxUint32))
		b.rends = append(b.rends, rd)
	}
	if len(b.rends) == 0 {
		b.ended = false
	}
	if b.ended {
		// Final only once a republish can no longer be expected.
		var endedAt time.Time
		for i := range b.rends {
			if u := b.rends[i].snap.Updated; u.After(endedAt) {
				endedAt = u
			}
		}
		grace := b.o.EndGrace
		if grace == 0 {
			grace = DefaultEndGrace
		}
		b.ended = grace < 0 || b.o.Static || !b.o.PublishTime.Before(endedAt.Add(grace))
	}
	b.ll = b.o.LowLatency && !b.ended
}

func newItem(s *store.Snapshot, seg *store.Segment) item {
	info := &s.Info
	for _, in := range s.Inits {
		if in.Name == seg.InitName {
			info = &in.Info
			break
		}
	}
	return item{seg: seg, info: info, t: seg.BaseTime, d: seg.DurationTicks, ts: info.Timescale}
}

// build makes the MPD model of the planned Periods.
func (b *builder) build() *mpd.MPD {
	static := b.o.Static && b.ended
	m := mpd.NewMPD(mpd.DYNAMIC_TYPE)
	if static {
		m = mpd.NewMPD(mpd.STATIC_TYPE)
	}
	m.Profiles = ProfileLive + "," + ProfileCMAF
	if b.ll {
		m.Profiles += "," + ProfileLowLatency
	}
	if !static {
		m.AvailabilityStartTime = dateTime(b.ast)
	}
	publish := b.o.PublishTime
	if publish.IsZero() {
		for i := range b.rends {
			if u := b.rends[i].snap.Updated; u.After(publish) {
				publish = u
			}
		}
	}
	m.PublishTime = dateTime(publish)

	maxSeg := b.segTgt
	var window time.Duration
	for i := range b.rends {
		maxSeg = max(maxSeg, b.rends[i].snap.MaxSegmentDuration)
		window = max(window, b.rends[i].window)
	}
	targetLatency := b.targetLatency()
	switch {
	case b.ended:
		var end time.Duration
		for i := range b.rends {
			for j := range b.rends[i].items {
				it := &b.rends[i].items[j]
				if it.listed && it.p != nil && it.p.n > 0 && !it.open && !it.seg.Gap {
					end = max(end, presentation(it.p, it.end()))
				}
			}
		}
		m.MediaPresentationDuration = dur(end.Round(time.Millisecond))
	case b.ll:
		m.MinimumUpdatePeriod = dur(min(max(b.partTgt, minLowLatencyUpdate), b.segTgt))
	default:
		m.MinimumUpdatePeriod = dur(b.segTgt)
	}
	switch {
	case static:
		m.MinBufferTime = dur(b.segTgt)
	case b.ll:
		m.MinBufferTime = dur(b.partTgt)
		m.SuggestedPresentationDelay = dur(targetLatency)
	default:
		m.MinBufferTime = dur(b.segTgt)
		m.SuggestedPresentationDelay = dur(3 * b.segTgt)
	}
	if !b.ended {
		m.TimeShiftBufferDepth = dur(window.Round(time.Millisecond))
	}
	m.MaxSegmentDuration = dur(ceilMillis(maxSeg))
	if b.ll {
		ms := uint32(targetLatency.Milliseconds())
		m.ServiceDescription = []*mpd.ServiceDescriptionType{{
			Id: 0,
			Latencies: []*mpd.LatencyType{{
				Target: &ms,
				Min:    mpd.Ptr(ms * 3 / 4),
				Max:    mpd.Ptr(ms * 2),
			}},
			PlaybackRates: []*mpd.PlaybackRateType{{Min: 0.96, Max: 1.04}},
		}}
	}

	m.Periods = make([]*mpd.Period, 0, len(b.listed))
	for _, p := range b.listed {
		mp := &mpd.Period{Id: p.id, Start: dur(p.start)}
		for _, kind := range [...]media.Kind{media.KindVideo, media.KindAudio} {
			if as := b.adaptationSet(p, kind); as != nil {
				mp.AdaptationSets = append(mp.AdaptationSets, as)
			}
		}
		m.Periods = append(m.Periods, mp)
	}
	if b.o.UTCTimingURL != "" {
		m.UTCTimings = []*mpd.DescriptorType{{SchemeIdUri: SchemeUTCHTTPISO, Value: b.o.UTCTimingURL}}
	}
	return m
}

// targetLatency is Options.TargetLatency or its default.
func (b *builder) targetLatency() time.Duration {
	if b.o.TargetLatency > 0 {
		return b.o.TargetLatency.Round(time.Millisecond)
	}
	return min(max(3*b.partTgt, minTargetLatency), maxTargetLatency).Round(time.Millisecond)
}

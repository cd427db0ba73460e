package dash

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"net/url"
	"strconv"
	"strings"
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
		b.ended = grace < 0 || !b.o.PublishTime.Before(endedAt.Add(grace))
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
	m := mpd.NewMPD(mpd.DYNAMIC_TYPE)
	m.Profiles = ProfileLive + "," + ProfileCMAF
	if b.ll {
		m.Profiles += "," + ProfileLowLatency
	}
	m.AvailabilityStartTime = dateTime(b.ast)
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
	if b.ll {
		m.MinBufferTime = dur(b.partTgt)
		m.SuggestedPresentationDelay = dur(targetLatency)
	} else {
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

// repPlan is a Representation's segments in a Period.
type repPlan struct {
	r     *rend
	items []*item
	info  *store.RenditionInfo
	init  string
	ts    uint32
	pto   uint64
	start uint64
	ss    []*mpd.S
	ato   time.Duration
}

// adaptationSet makes the AdaptationSet of kind in p, nil if no rendition
// of that kind has a listed segment in p.
func (b *builder) adaptationSet(p *period, kind media.Kind) *mpd.AdaptationSetType {
	var plans []repPlan
	for i := range b.rends {
		r := &b.rends[i]
		if r.kind != kind {
			continue
		}
		if rp, ok := b.plan1(r, p); ok {
			plans = append(plans, rp)
		}
	}
	if len(plans) == 0 {
		return nil
	}
	as := &mpd.AdaptationSetType{SegmentAlignment: true}
	as.StartWithSAP = 1
	if kind == media.KindVideo {
		as.Id = mpd.Ptr(uint32(0))
		as.ContentType = "video"
		as.MimeType = mpd.MIME_TYPE_VIDEO_MP4
	} else {
		as.Id = mpd.Ptr(uint32(1))
		as.ContentType = "audio"
		as.MimeType = mpd.MIME_TYPE_AUDIO_MP4
	}
	hoist := len(plans) > 1
	for i := range plans {
		hoist = hoist && sameTemplate(&plans[0], &plans[i]) && plainName(plans[i].r.name)
	}
	if hoist {
		as.SegmentTemplate = b.template(&plans[0], "$RepresentationID$")
	}
	if b.ll {
		// The Period's anchor as a producer reference: media time
		// presentationTimeOffset was received at availabilityStartTime +
		// Period@start. It gives ServiceDescription's Latency@referenceId
		// something to refer to; dash.js derives a zero offset from it.
		as.ProducerReferenceTimes = []*mpd.ProducerReferenceTimeType{{
			Id:               0,
			WallClockTime:    string(dateTime(b.ast.Add(p.start))),
			PresentationTime: plans[0].pto,
		}}
	}
	as.Representations = make([]*mpd.RepresentationType, 0, len(plans))
	for i := range plans {
		rp := &plans[i]
		rep := &mpd.RepresentationType{Id: rp.r.name, Bandwidth: max(rp.r.bandwidth, 1)}
		if c := rp.info.Codec; c != nil {
			rep.Codecs = c.RFC6381()
		}
		if kind == media.KindVideo {
			if rp.info.Width > 0 && rp.info.Height > 0 {
				rep.Width, rep.Height = uint32(rp.info.Width), uint32(rp.info.Height)
				rep.Sar = "1:1"
				as.MaxWidth = max(as.MaxWidth, rep.Width)
				as.MaxHeight = max(as.MaxHeight, rep.Height)
			}
			rep.FrameRate = mpd.FrameRateType(frameRate(rp.info.FrameRate))
		} else {
			if rp.info.SampleRate > 0 {
				rep.AudioSamplingRate = mpd.Ptr(mpd.UIntVectorType(strconv.Itoa(rp.info.SampleRate)))
			}
			if rp.info.Channels > 0 {
				rep.AudioChannelConfigurations = []*mpd.DescriptorType{{
					SchemeIdUri: mpd.AUDIO_CHANNEL_CONFIGURATION_MPEG_DASH,
					Value:       strconv.Itoa(rp.info.Channels),
				}}
			}
		}
		if !hoist {
			rep.SegmentTemplate = b.template(rp, pathName(rp.r.name))
		}
		as.Representations = append(as.Representations, rep)
	}
	return as
}

// plan1 gathers a rendition's listed segments in p and their timeline.
func (b *builder) plan1(r *rend, p *period) (repPlan, bool) {
	rp := repPlan{r: r}
	for i := range r.items {
		it := &r.items[i]
		if it.p == p && it.listed && !it.seg.Gap {
			rp.items = append(rp.items, it)
		}
	}
	if len(rp.items) == 0 {
		return rp, false
	}
	// One init per Representation: should a Period hold segments of two
	// inits (a boundary no longer known), keep those of the last one.
	last := rp.items[len(rp.items)-1]
	if rp.items[0].seg.InitName != last.seg.InitName {
		kept := rp.items[:0]
		for _, it := range rp.items {
			if it.seg.InitName == last.seg.InitName {
				kept = append(kept, it)
			}
		}
		rp.items = kept
	}
	rp.info, rp.init, rp.ts = last.info, last.seg.InitName, last.ts
	rp.pto = p.t.in(rp.ts)
	rp.start = rp.items[0].seg.MSN
	if rp.start > math.MaxUint32 {
		return rp, false
	}
	var end uint64
	for _, it := range rp.items {
		if n := len(rp.ss); n > 0 && it.t == end {
			if s := rp.ss[n-1]; s.D == it.d {
				s.R++
			} else {
				rp.ss = append(rp.ss, &mpd.S{D: it.d})
			}
		} else {
			rp.ss = append(rp.ss, &mpd.S{T: mpd.Ptr(it.t), D: it.d})
		}
		end = it.t + it.d
	}
	if b.ll {
		target, part := rp.info.SegmentTarget, rp.info.PartTarget
		if target <= 0 {
			target = b.segTgt
		}
		if part <= 0 || part >= target {
			part = b.partTgt
		}
		rp.ato = (target - part).Round(time.Millisecond)
	}
	return rp, true
}

// template makes a SegmentTemplate for rp, with name in its URLs.
func (b *builder) template(rp *repPlan, name string) *mpd.SegmentTemplateType {
	st := &mpd.SegmentTemplateType{
		Initialization: name + "/" + pathName(rp.init),
		Media:          name + "/seg$Number$.m4s",
	}
	st.Timescale = mpd.Ptr(rp.ts)
	if rp.pto > 0 {
		st.PresentationTimeOffset = mpd.Ptr(rp.pto)
	}
	st.StartNumber = mpd.Ptr(uint32(rp.start))
	st.SegmentTimeline = &mpd.SegmentTimelineType{S: rp.ss}
	if b.ll {
		if rp.ato > 0 {
			st.AvailabilityTimeOffset = mpd.FloatInf64(float64(rp.ato.Milliseconds()) / 1000)
		}
		st.AvailabilityTimeComplete = mpd.Ptr(false)
	}
	return st
}

// sameTemplate reports whether two Representations can share an
// AdaptationSet-level SegmentTemplate.
func sameTemplate(a, b *repPlan) bool {
	if a.init != b.init || a.ts != b.ts || a.pto != b.pto || a.start != b.start || a.ato != b.ato || len(a.ss) != len(b.ss) {
		return false
	}
	for i, s := range a.ss {
		t := b.ss[i]
		if s.D != t.D || s.R != t.R || (s.T == nil) != (t.T == nil) || s.T != nil && *s.T != *t.T {
			return false
		}
	}
	return true
}

// plainName reports whether a rendition name can be substituted for
// $RepresentationID$ in URLs as is.
func plainName(name string) bool {
	return name != "" && pathName(name) == name
}

// pathName escapes a name for a path segment of a SegmentTemplate URL, where
// '$' must be doubled.
func pathName(name string) string {
	s := url.PathEscape(name)
	if strings.IndexByte(s, '$') >= 0 {
		s = strings.ReplaceAll(s, "$", "$$")
	}
	return s
}

// presentation is the MPD time (since availabilityStartTime) of media time
// t in Period p.
func presentation(p *period, t mediaTime) time.Duration {
	return p.start + t.duration() - p.t.duration()
}

// frameRate formats a frame rate as DASH wants it: "30", "30000/1001", or
// thousandths.
func frameRate(f float64) string {
	if !(f > 0) || math.IsInf(f, 0) {
		return ""
	}
	if n := math.Round(f); math.Abs(f-n) < 0.01 {
		return strconv.FormatInt(int64(n), 10)
	}
	if n := math.Round(f * 1.001); math.Abs(f*1.001-n) < 0.01 {
		return strconv.FormatInt(int64(n)*1000, 10) + "/1001"
	}
	num, den := int64(math.Round(f*1000)), int64(1000)
	g := gcd(num, den)
	return strconv.FormatInt(num/g, 10) + "/" + strconv.FormatInt(den/g, 10)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func dateTime(t time.Time) mpd.DateTime {
	return mpd.DateTime(t.UTC().Format(mpd.RFC3339MS))
}

func dur(d time.Duration) *mpd.Duration {
	md := mpd.Duration(d)
	return &md
}

func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

package dash

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

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
		// Its UTCTiming child says how wallClockTime is written
		// (ISO/IEC 23009-1: without one, Shaka reads it as an NTP
		// timestamp and reports a latency 2,208,988,800 s too long).
		wall := dateTime(b.ast.Add(p.start))
		as.ProducerReferenceTimes = []*mpd.ProducerReferenceTimeType{{
			Id:               0,
			WallClockTime:    string(wall),
			PresentationTime: plans[0].pto,
			UTCTiming:        b.prftTiming(string(wall)),
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

// prftTiming is the UTCTiming of a ProducerReferenceTime whose
// wallClockTime is wall: the MPD's own clock (http-iso) when it names one,
// else the time itself (direct).
func (b *builder) prftTiming(wall string) *mpd.DescriptorType {
	if b.o.UTCTimingURL != "" {
		return &mpd.DescriptorType{SchemeIdUri: SchemeUTCHTTPISO, Value: b.o.UTCTimingURL}
	}
	return &mpd.DescriptorType{SchemeIdUri: SchemeUTCDirect, Value: wall}
}

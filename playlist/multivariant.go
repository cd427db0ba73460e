package playlist

import (
	"math"
	"strconv"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// audioGroup is the GROUP-ID of the audio renditions.
const audioGroup = "audio"

// Multivariant renders the stream's multivariant playlist from its
// renditions, in the order given (the ladder order, source first, which the
// caller controls; it is stable, unlike an order by measured bandwidth).
//
// Video renditions are variant streams (EXT-X-STREAM-INF) that use the audio
// renditions as the alternative renditions of group "audio" (EXT-X-MEDIA);
// their BANDWIDTH and AVERAGE-BANDWIDTH are the video's plus the largest
// audio rendition's (see Bandwidth), CODECS lists the video codec and every
// audio codec of the group. A stream without video lists its audio renditions
// as variant streams. Renditions without an init segment yet are left out; it
// returns nil when none is left.
func Multivariant(renditions []Rendition) []byte {
	return MultivariantOf(renditions, "index.m3u8")
}

// MultivariantOf is Multivariant with the renditions' media playlists
// named mediaName ("dvr.m3u8" for the DVR view) instead of index.m3u8.
func MultivariantOf(renditions []Rendition, mediaName string) []byte {
	type entry struct {
		r             Rendition
		info          store.RenditionInfo
		codec         string
		peak, average int
	}
	var videos, audios []entry
	for _, r := range renditions {
		if r.Snap == nil || len(r.Snap.Inits) == 0 {
			continue
		}
		e := entry{r: r, info: r.Snap.Info}
		if e.info.Codec != nil {
			e.codec = e.info.Codec.RFC6381()
		}
		e.peak, e.average = Bandwidth(r.Snap, DefaultWindow)
		kind := e.info.Kind
		if kind == 0 && e.info.Codec != nil {
			kind = e.info.Codec.Kind()
		}
		switch kind {
		case media.KindVideo:
			videos = append(videos, e)
		case media.KindAudio:
			audios = append(audios, e)
		}
	}
	if len(videos) == 0 && len(audios) == 0 {
		return nil
	}

	b := make([]byte, 0, 128+256*(len(videos)+len(audios)))
	b = append(b, "#EXTM3U\n#EXT-X-VERSION:"...)
	b = strconv.AppendInt(b, versionPlain, 10)
	b = append(b, "\n#EXT-X-INDEPENDENT-SEGMENTS\n"...)

	streamInf := func(b []byte, e entry, peak, average int, codecs []string, audio bool) []byte {
		b = append(b, "#EXT-X-STREAM-INF:BANDWIDTH="...)
		b = strconv.AppendInt(b, int64(peak), 10)
		b = append(b, ",AVERAGE-BANDWIDTH="...)
		b = strconv.AppendInt(b, int64(average), 10)
		if len(codecs) > 0 {
			b = append(b, ",CODECS=\""...)
			for i, c := range codecs {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, c...)
			}
			b = append(b, '"')
		}
		if e.info.Width > 0 && e.info.Height > 0 {
			b = append(b, ",RESOLUTION="...)
			b = strconv.AppendInt(b, int64(e.info.Width), 10)
			b = append(b, 'x')
			b = strconv.AppendInt(b, int64(e.info.Height), 10)
		}
		if e.info.FrameRate > 0 {
			b = append(b, ",FRAME-RATE="...)
			b = strconv.AppendFloat(b, e.info.FrameRate, 'f', 3, 64)
		}
		if audio {
			b = append(b, ",AUDIO=\""+audioGroup+"\""...)
		}
		b = append(b, '\n')
		b = append(b, e.r.Name...)
		b = append(b, '/')
		b = append(b, mediaName...)
		b = append(b, '\n')
		return b
	}

	if len(videos) == 0 {
		for _, a := range audios {
			var codecs []string
			if a.codec != "" {
				codecs = []string{a.codec}
			}
			b = streamInf(b, a, a.peak, a.average, codecs, false)
		}
		return b
	}

	var audioPeak, audioAverage int
	var audioCodecs []string
	for i, a := range audios {
		b = append(b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\""+audioGroup+"\",NAME=\""...)
		b = append(b, a.r.Name...)
		if i == 0 {
			b = append(b, "\",DEFAULT=YES,AUTOSELECT=YES"...)
		} else {
			b = append(b, "\",DEFAULT=NO,AUTOSELECT=YES"...)
		}
		if a.info.Channels > 0 {
			b = append(b, ",CHANNELS=\""...)
			b = strconv.AppendInt(b, int64(a.info.Channels), 10)
			b = append(b, '"')
		}
		b = append(b, ",URI=\""...)
		b = append(b, a.r.Name...)
		b = append(b, '/')
		b = append(b, mediaName...)
		b = append(b, "\"\n"...)
		audioPeak = max(audioPeak, a.peak)
		audioAverage = max(audioAverage, a.average)
		if a.codec != "" && !contains(audioCodecs, a.codec) {
			audioCodecs = append(audioCodecs, a.codec)
		}
	}
	for _, v := range videos {
		codecs := make([]string, 0, 1+len(audioCodecs))
		if v.codec != "" {
			codecs = append(codecs, v.codec)
		}
		codecs = append(codecs, audioCodecs...)
		b = streamInf(b, v, v.peak+audioPeak, v.average+audioAverage, codecs, len(audios) > 0)
	}
	return b
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Bandwidth measures a rendition's bit rate in bits per second from the last
// window complete segments (DefaultWindow when window <= 0): peak is the
// highest rate of one segment, average the total bits over the total
// duration. Gap segments are left out. Before any segment is complete, both
// are estimated from the parts of the open segment (an overestimate while the
// key frame dominates, which is the safe side for BANDWIDTH). Both are 0
// without media.
func Bandwidth(s *store.Snapshot, window int) (peak, average int) {
	if s == nil {
		return 0, 0
	}
	if window <= 0 {
		window = DefaultWindow
	}
	segs := s.Segments[max(len(s.Segments)-window, 0):]
	var bits, secs float64
	for _, seg := range segs {
		if seg.Gap || seg.Duration <= 0 {
			continue
		}
		b, d := float64(seg.Size)*8, seg.Duration.Seconds()
		peak = max(peak, ceilRate(b, d))
		bits += b
		secs += d
	}
	if secs > 0 {
		return peak, ceilRate(bits, secs)
	}
	if s.Open != nil {
		var d time.Duration
		for _, p := range s.Open.Parts {
			d += p.Duration
		}
		if d > 0 {
			r := ceilRate(float64(s.Open.Size)*8, d.Seconds())
			return r, r
		}
	}
	return 0, 0
}

func ceilRate(bits, secs float64) int {
	r := math.Ceil(bits / secs)
	if r > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(r)
}

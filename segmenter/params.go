package segmenter

import (
	"errors"
	"fmt"
	"math"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// params is what a track's codec configuration means for packaging.
type params struct {
	info       store.RenditionInfo
	data       []byte
	timescale  uint32
	frameDur   int64
	defaultDur int64
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
		p.info.Channels = c.Channels()
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

// opusDuration is an Opus packet's duration from its TOC, in ticks.
func opusDuration(pkt []byte, timescale uint32) int64 {
	return media.Rescale(opus.PacketDuration2(pkt), 48000, timescale)
}

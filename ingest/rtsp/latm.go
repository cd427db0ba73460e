package rtsp

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"
)

// MPEG-4 audio in LATM (RTP payload "MP4A-LATM", RFC 6416, formerly 3016),
// as many IP cameras send AAC. What is ingested is the shape cameras and
// ffmpeg (-rtpflags latm) use: the StreamMuxConfig in the SDP (cpresent=0,
// config=), one program of one layer of AAC (LC, or HE with explicit
// SBR/PS signalling) with frameLengthType 0 and no other data. Its
// AudioSpecificConfig makes the same media.AAC track as MPEG4-GENERIC's, so
// nothing downstream knows LATM was involved.
//
// The in-band StreamMuxConfig (cpresent=1) is refused: its audioMuxElements
// are not byte-aligned, the configuration (hence the track) is only known
// from the stream, may change in it, and gortsplib then gives 90 kHz
// timestamps that would have to be rescaled to the sample rate.

// errLATMInBand is the reason a cpresent=1 LATM format is refused.
var errLATMInBand = errors.New("LATM with in-band StreamMuxConfig is not supported (cpresent=1)")

// latmFormatConfig returns the AudioSpecificConfig of an MP4A-LATM format,
// or why it cannot be ingested.
func latmFormatConfig(f *format.MPEG4AudioLATM) (*mpeg4audio.AudioSpecificConfig, error) {
	if f.CPresent {
		return nil, errLATMInBand
	}
	return latmAudioConfig(f.StreamMuxConfig)
}

// latmAudioConfig maps a StreamMuxConfig to the AudioSpecificConfig of its
// single program and layer, refusing the shapes latmDecoder cannot split
// into AAC access units.
func latmAudioConfig(c *mpeg4audio.StreamMuxConfig) (*mpeg4audio.AudioSpecificConfig, error) {
	if c == nil {
		return nil, errors.New("LATM without StreamMuxConfig")
	}
	if len(c.Programs) != 1 || c.Programs[0] == nil || len(c.Programs[0].Layers) != 1 || c.Programs[0].Layers[0] == nil {
		layers := 0
		for _, p := range c.Programs {
			if p != nil {
				layers += len(p.Layers)
			}
		}
		return nil, fmt.Errorf("LATM with %d programs and %d layers is not supported (only one of each)", len(c.Programs), layers)
	}
	l := c.Programs[0].Layers[0]
	switch {
	case l.AudioSpecificConfig == nil:
		return nil, errors.New("LATM layer without AudioSpecificConfig")
	case l.FrameLengthType != 0:
		return nil, fmt.Errorf("LATM frameLengthType %d is not supported (only 0, variable-length AAC frames)", l.FrameLengthType)
	case c.OtherDataPresent:
		return nil, errors.New("LATM with other data is not supported")
	}
	asc := *l.AudioSpecificConfig
	switch asc.Type {
	case mpeg4audio.ObjectTypeAACLC, mpeg4audio.ObjectTypeSBR, mpeg4audio.ObjectTypePS:
	default:
		return nil, fmt.Errorf("LATM audio object type %d is not supported (only AAC-LC and HE-AAC)", asc.Type)
	}
	if asc.SampleRate <= 0 {
		return nil, fmt.Errorf("LATM sample rate %d", asc.SampleRate)
	}
	return &asc, nil
}

// latmDecoder depacketizes MP4A-LATM: gortsplib's decoder for the format
// (rtpfragmented) joins the fragments of a payload up to the marker bit,
// and the payload is split here into its audioMuxElements' AAC frames.
//
// With the StreamMuxConfig out of band and one layer with frameLengthType 0,
// an audioMuxElement is byte-aligned: for each of its numSubFrames+1
// subframes, a PayloadLengthInfo (bytes of 255 then one below 255, summed)
// and that many bytes of AAC frame. A payload may hold several complete
// elements (the marker bit of RFC 6416), their frames following each other
// in time as an MPEG4-GENERIC packet's access units do. mediacommon's
// AudioMuxElement.Unmarshal takes exactly one element and allocates the
// declared length before reading it (up to 255 times the payload's size),
// hence this parser: it returns sub-slices of the payload, frames up to
// mpeg4audio.MaxAccessUnitSize as rtpmpeg4audio's decoder does.
type latmDecoder struct {
	dec       *rtpfragmented.Decoder
	subFrames int // numSubFrames+1: AAC frames per audioMuxElement
}

func newLATMDecoder(f *format.MPEG4AudioLATM) (*latmDecoder, error) {
	dec, err := f.CreateDecoder()
	if err != nil {
		return nil, err
	}
	return &latmDecoder{dec: dec, subFrames: int(f.StreamMuxConfig.NumSubFrames) + 1}, nil
}

// Decode returns the AAC frames of a packet, or rtpfragmented's
// ErrMorePacketsNeeded for a fragment.
func (d *latmDecoder) Decode(pkt *rtp.Packet) ([][]byte, error) {
	payload, err := d.dec.Decode(pkt)
	if err != nil {
		return nil, err
	}
	return latmFrames(payload, d.subFrames)
}

// latmFrames splits audioMuxElements of subFrames AAC frames each.
func latmFrames(b []byte, subFrames int) ([][]byte, error) {
	var aus [][]byte
	for len(b) > 0 {
		for range subFrames {
			n := 0
			for {
				if len(b) == 0 {
					return nil, errors.New("LATM PayloadLengthInfo truncated")
				}
				v := b[0]
				b = b[1:]
				n += int(v)
				if v != 255 {
					break
				}
			}
			if n > len(b) {
				return nil, fmt.Errorf("LATM frame of %d bytes with %d left", n, len(b))
			}
			if n > mpeg4audio.MaxAccessUnitSize {
				return nil, fmt.Errorf("LATM frame of %d bytes, maximum is %d", n, mpeg4audio.MaxAccessUnitSize)
			}
			aus = append(aus, b[:n])
			b = b[n:]
		}
	}
	return aus, nil
}

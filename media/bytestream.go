package media

import (
	"encoding/binary"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// Delimiters says whether VideoNALUs keeps the access unit delimiters of a
// payload.
type Delimiters bool

// What VideoNALUs does with access unit delimiters.
const (
	// KeepDelimiters passes them on (an MPEG-TS muxer that adds its own
	// only when the first unit is not one).
	KeepDelimiters Delimiters = true
	// DropDelimiters leaves them out (RTP payload formats carry none).
	DropDelimiters Delimiters = false
)

// VideoNALUs returns the NAL units of an H.264 or H.265 frame for a
// packetizer that takes NAL units (RTP, MPEG-TS), without copying them: the
// payload split by SplitAVCC and, on a key frame that carries no SPS
// in-band, the track's parameter sets in front, so that a receiver starting
// there can decode. It returns nil for other codecs and when no unit is
// left.
func VideoNALUs(f *Frame, aud Delimiters) [][]byte {
	var isAUD, isSPS func(nalu []byte) bool
	var params [][]byte
	switch c := f.Track.Codec.(type) {
	case *H264:
		isAUD = func(n []byte) bool { return h264.NALUType(n[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter }
		isSPS = func(n []byte) bool { return h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS }
		params = [][]byte{c.SPS, c.PPS}
	case *H265:
		isAUD = func(n []byte) bool { return h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_AUD_NUT }
		isSPS = func(n []byte) bool { return h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT }
		params = [][]byte{c.VPS, c.SPS, c.PPS}
	default:
		return nil
	}
	if aud == KeepDelimiters {
		isAUD = nil
	}
	au := SplitAVCC(f.Payload, isAUD)
	if len(au) == 0 {
		return nil
	}
	if f.Key && !HasNALU(au, isSPS) {
		au = PrependParams(au, params...)
	}
	return au
}

// SplitAVCC splits an AVCC payload (NAL units behind 4-byte big-endian
// lengths) into its NAL units, which are sub-slices of p. Empty units are
// left out, and so are those skip matches (skip may be nil); a length that
// runs past the end of p ends the split, keeping the units before it.
func SplitAVCC(p []byte, skip func(nalu []byte) bool) [][]byte {
	var au [][]byte
	for len(p) >= 4 {
		l := uint64(binary.BigEndian.Uint32(p))
		if l > uint64(len(p)-4) {
			break
		}
		if n := p[4 : 4+l]; l > 0 && (skip == nil || !skip(n)) {
			au = append(au, n)
		}
		p = p[4+l:]
	}
	return au
}

// PrependParams returns a new access unit: the non-empty parameter sets
// params, then the NAL units of au.
func PrependParams(au [][]byte, params ...[]byte) [][]byte {
	out := make([][]byte, 0, len(params)+len(au))
	for _, p := range params {
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return append(out, au...)
}

// HasNALU tells whether a NAL unit of au matches.
func HasNALU(au [][]byte, match func(nalu []byte) bool) bool {
	for _, n := range au {
		if match(n) {
			return true
		}
	}
	return false
}

package rtmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// FLV codec ids (video_file_format_spec_v10, E.4.3.1 and E.4.2.1).
const (
	flvVideoAVC    = 7
	flvAudioAAC    = 10
	flvAudioExHdr  = 9 // enhanced RTMP v2 audio: a FourCC follows
	flvFrameKey    = 1
	flvFrameInfo   = 5 // video info/command frame, no picture
	avcSeqHeader   = 0
	avcNALU        = 1
	avcEndOfSeq    = 2
	aacSeqHeader   = 0
	aacRaw         = 1
	flvExHeaderBit = 0x80 // enhanced RTMP video: IsExHeader bit of the first byte
)

var flvVideoCodecNames = map[byte]string{
	1: "JPEG", 2: "Sorenson H.263", 3: "Screen video", 4: "On2 VP6",
	5: "On2 VP6 with alpha", 6: "Screen video v2", 7: "AVC",
	12: "HEVC (legacy, non-standard)", 13: "AV1 (legacy, non-standard)",
}

var flvAudioCodecNames = map[byte]string{
	0: "Linear PCM, platform endian", 1: "ADPCM", 2: "MP3", 3: "Linear PCM, little endian",
	4: "Nellymoser 16 kHz mono", 5: "Nellymoser 8 kHz mono", 6: "Nellymoser",
	7: "G.711 A-law", 8: "G.711 mu-law", 9: "enhanced RTMP (FourCC)", 10: "AAC", 11: "Speex",
	14: "MP3 8 kHz", 15: "device-specific",
}

func videoCodecName(id byte) string {
	if n, ok := flvVideoCodecNames[id]; ok {
		return n
	}
	return "unknown"
}

func audioCodecName(id byte) string {
	if n, ok := flvAudioCodecNames[id]; ok {
		return n
	}
	return "unknown"
}

// avcConfig is what Headwater needs of an AVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 5.3.3.1): the first SPS and PPS, and the NAL unit length size.
type avcConfig struct {
	sps, pps      []byte
	nalLengthSize int
}

func parseAVCConfig(b []byte) (avcConfig, error) {
	var c avcConfig
	if len(b) < 7 {
		return c, fmt.Errorf("AVCDecoderConfigurationRecord of %d bytes", len(b))
	}
	if b[0] != 1 {
		return c, fmt.Errorf("AVCDecoderConfigurationRecord version %d", b[0])
	}
	c.nalLengthSize = int(b[4]&3) + 1
	if c.nalLengthSize == 3 {
		return c, errors.New("AVCDecoderConfigurationRecord with 3-byte NAL unit lengths")
	}
	pos := 6 // past the header and numOfSequenceParameterSets
	readSets := func(count int) ([]byte, error) {
		var first []byte
		for i := 0; i < count; i++ {
			if len(b)-pos < 2 {
				return nil, errors.New("truncated AVCDecoderConfigurationRecord")
			}
			l := int(binary.BigEndian.Uint16(b[pos:]))
			pos += 2
			if len(b)-pos < l {
				return nil, errors.New("truncated AVCDecoderConfigurationRecord")
			}
			if first == nil && l > 0 {
				first = bytes.Clone(b[pos : pos+l])
			}
			pos += l
		}
		return first, nil
	}
	var err error
	if c.sps, err = readSets(int(b[5] & 0x1f)); err != nil {
		return c, err
	}
	if len(b)-pos < 1 {
		return c, errors.New("truncated AVCDecoderConfigurationRecord")
	}
	nPPS := int(b[pos])
	pos++
	if c.pps, err = readSets(nPPS); err != nil {
		return c, err
	}
	if c.sps == nil || c.pps == nil {
		return c, errors.New("AVCDecoderConfigurationRecord without SPS or PPS")
	}
	return c, nil
}

// checkAVCC reports whether b is a sequence of 4-byte big-endian
// length-prefixed NAL units that exactly fills it.
func checkAVCC(b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%d trailing bytes after the last NAL unit", len(b))
		}
		l := binary.BigEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return fmt.Errorf("NAL unit length %d exceeds the %d bytes left", l, len(b)-4)
		}
		b = b[4+l:]
	}
	return nil
}

// toAVCC4 converts NAL units with 1- or 2-byte length prefixes to 4-byte
// ones (a copy: only for encoders that announce a short length size).
func toAVCC4(b []byte, lengthSize int) ([]byte, error) {
	out := make([]byte, 0, len(b)+len(b)/8+16)
	for len(b) > 0 {
		if len(b) < lengthSize {
			return nil, fmt.Errorf("%d trailing bytes after the last NAL unit", len(b))
		}
		var l int
		if lengthSize == 1 {
			l = int(b[0])
		} else {
			l = int(binary.BigEndian.Uint16(b))
		}
		b = b[lengthSize:]
		if l > len(b) {
			return nil, fmt.Errorf("NAL unit length %d exceeds the %d bytes left", l, len(b))
		}
		out = binary.BigEndian.AppendUint32(out, uint32(l))
		out = append(out, b[:l]...)
		b = b[l:]
	}
	return out, nil
}

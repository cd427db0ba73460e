package rtmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Parsers for what enhanced RTMP carries: the HEVC and AV1 configuration
// records of SequenceStart and AV1 temporal units. All of them are bounded by
// the message (every loop consumes input) and copy only what they keep.

// HEVC NAL unit types (ITU-T H.265 Table 7-1).
const (
	hevcNALBLAWLP  = 16 // first IRAP type
	hevcNALRsvIRAP = 23 // last IRAP type (22 and 23 are reserved IRAP)
	hevcNALVPS     = 32
	hevcNALSPS     = 33
	hevcNALPPS     = 34
)

// hevcConfig is what Headwater needs of an HEVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 8.3.3.1): the first VPS, SPS and PPS and the NAL unit
// length size.
type hevcConfig struct {
	vps, sps, pps []byte
	nalLengthSize int
}

// hevcConfigHeader is the size of the record before its NAL unit arrays.
const hevcConfigHeader = 23

func parseHEVCConfig(b []byte) (hevcConfig, error) {
	var c hevcConfig
	if len(b) < hevcConfigHeader {
		return c, fmt.Errorf("HEVCDecoderConfigurationRecord of %d bytes", len(b))
	}
	// Version 1; some early encoders wrote 0 for the same layout.
	if b[0] > 1 {
		return c, fmt.Errorf("HEVCDecoderConfigurationRecord version %d", b[0])
	}
	c.nalLengthSize = int(b[21]&3) + 1
	if c.nalLengthSize == 3 {
		return c, errors.New("HEVCDecoderConfigurationRecord with 3-byte NAL unit lengths")
	}
	arrays := int(b[22])
	pos := hevcConfigHeader
	for i := 0; i < arrays; i++ {
		if len(b)-pos < 3 {
			return c, errors.New("truncated HEVCDecoderConfigurationRecord")
		}
		n := int(binary.BigEndian.Uint16(b[pos+1:])) // b[pos] is completeness and the array's NAL type
		pos += 3
		for j := 0; j < n; j++ {
			if len(b)-pos < 2 {
				return c, errors.New("truncated HEVCDecoderConfigurationRecord")
			}
			l := int(binary.BigEndian.Uint16(b[pos:]))
			pos += 2
			if len(b)-pos < l {
				return c, errors.New("truncated HEVCDecoderConfigurationRecord")
			}
			nal := b[pos : pos+l]
			pos += l
			if l < 2 {
				continue
			}
			// The NAL unit's own header says what it is.
			var dst *[]byte
			switch (nal[0] >> 1) & 0x3f {
			case hevcNALVPS:
				dst = &c.vps
			case hevcNALSPS:
				dst = &c.sps
			case hevcNALPPS:
				dst = &c.pps
			default:
				continue // SEI and others
			}
			if *dst == nil {
				*dst = bytes.Clone(nal)
			}
		}
	}
	if c.vps == nil || c.sps == nil || c.pps == nil {
		return c, errors.New("HEVCDecoderConfigurationRecord without VPS, SPS or PPS")
	}
	return c, nil
}

// hevcHasIRAP reports whether an access unit of 4-byte length-prefixed NAL
// units (already checked) holds an IRAP picture (BLA, IDR or CRA): a random
// access point.
func hevcHasIRAP(b []byte) bool {
	for len(b) >= 5 {
		l := int(binary.BigEndian.Uint32(b))
		if l > 0 {
			if t := (b[4] >> 1) & 0x3f; t >= hevcNALBLAWLP && t <= hevcNALRsvIRAP {
				return true
			}
		}
		b = b[min(len(b), 4+l):]
	}
	return false
}

// AV1 OBU types (AV1 bitstream specification 6.2.2).
const (
	obuSequenceHeader         = 1
	obuTemporalDelimiter      = 2
	obuFrameHeader            = 3
	obuFrame                  = 6
	obuHasSizeField      byte = 0x02
	obuExtensionFlag     byte = 0x04
)

// parseAV1Config parses an AV1CodecConfigurationRecord (AV1 ISOBMFF binding
// 2.3.3) and returns its sequence header OBU in canonical form, or nil when
// configOBUs holds none (it may: the sequence header then comes in band).
func parseAV1Config(b []byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("AV1CodecConfigurationRecord of %d bytes", len(b))
	}
	if b[0] != 0x81 { // marker 1, version 1
		return nil, fmt.Errorf("AV1CodecConfigurationRecord marker/version byte 0x%02x", b[0])
	}
	if len(b) == 4 {
		return nil, nil
	}
	tu, err := scanTemporalUnit(b[4:])
	if err != nil {
		return nil, fmt.Errorf("configOBUs: %w", err)
	}
	if tu.seqHdr == nil {
		return nil, nil
	}
	return tu.canonicalSeqHdr(), nil
}

// av1TU is what scanTemporalUnit learnt of a temporal unit.
type av1TU struct {
	data []byte
	// seqHdr is the first sequence header OBU as sent (header, size field
	// if any, payload); seqHdrPayload its payload.
	seqHdr, seqHdrPayload []byte
	// frameByte is the first payload byte of the first frame (header) OBU:
	// the start of uncompressed_header().
	frameByte byte
	hasFrame  bool
	// rewrite is set when the bytes are not an ISOBMFF sample as they are:
	// temporal delimiters to drop, or an OBU without obu_size.
	rewrite bool
	// obus counts the OBUs kept (all but temporal delimiters).
	obus int
}

// scanTemporalUnit walks the low-overhead OBUs of b (AV1 5.3) without
// copying. Only the last OBU may lack obu_size (it then runs to the end).
func scanTemporalUnit(b []byte) (av1TU, error) {
	tu := av1TU{data: b}
	for pos := 0; pos < len(b); {
		h := b[pos]
		if h&0x80 != 0 {
			return tu, errors.New("OBU forbidden bit set")
		}
		typ := (h >> 3) & 0x0f
		hdrLen := 1
		if h&obuExtensionFlag != 0 {
			hdrLen = 2
		}
		if len(b)-pos < hdrLen {
			return tu, errors.New("truncated OBU header")
		}
		start := pos
		pos += hdrLen
		size := len(b) - pos
		if h&obuHasSizeField != 0 {
			v, n, err := readLEB128(b[pos:])
			if err != nil {
				return tu, err
			}
			pos += n
			if v > uint64(len(b)-pos) {
				return tu, fmt.Errorf("OBU size %d exceeds the %d bytes left", v, len(b)-pos)
			}
			size = int(v)
		} else {
			tu.rewrite = true
		}
		payload := b[pos : pos+size]
		pos += size
		switch typ {
		case obuTemporalDelimiter:
			tu.rewrite = true
			continue
		case obuSequenceHeader:
			if tu.seqHdr == nil {
				tu.seqHdr, tu.seqHdrPayload = b[start:pos], payload
			}
		case obuFrameHeader, obuFrame:
			if !tu.hasFrame && size > 0 {
				tu.hasFrame, tu.frameByte = true, payload[0]
			}
		}
		tu.obus++
	}
	return tu, nil
}

// canonicalSeqHdr is the sequence header OBU without obu_size and without an
// extension header: the form media.AV1 keeps, comparable across sources.
func (tu *av1TU) canonicalSeqHdr() []byte {
	h := tu.seqHdr[0] &^ (obuHasSizeField | obuExtensionFlag)
	return append([]byte{h}, tu.seqHdrPayload...)
}

// isKey reports whether the temporal unit starts with a shown key frame
// (uncompressed_header: show_existing_frame 0, frame_type KEY_FRAME, show_frame
// 1), or any frame under a reduced still picture header.
func (tu *av1TU) isKey(reducedStillPicture bool) bool {
	if !tu.hasFrame {
		return false
	}
	if reducedStillPicture {
		return true
	}
	b := tu.frameByte
	return b&0x80 == 0 && (b>>5)&3 == 0 && b&0x10 != 0
}

// sample returns the temporal unit as an ISOBMFF AV1 sample: every OBU with
// obu_size, temporal delimiters dropped, and seqHdr (canonical form) in front
// when it is not nil. It is b itself when nothing has to change.
func (tu *av1TU) sample(seqHdr []byte) []byte {
	if !tu.rewrite && seqHdr == nil {
		return tu.data
	}
	out := make([]byte, 0, len(tu.data)+len(seqHdr)+8*tu.obus+8)
	if seqHdr != nil {
		out = appendOBU(out, seqHdr[:1], seqHdr[1:])
	}
	b := tu.data
	for pos := 0; pos < len(b); { // scanTemporalUnit has validated b
		h := b[pos]
		hdrLen := 1
		if h&obuExtensionFlag != 0 {
			hdrLen = 2
		}
		hdr := b[pos : pos+hdrLen]
		pos += hdrLen
		size := len(b) - pos
		if h&obuHasSizeField != 0 {
			v, n, _ := readLEB128(b[pos:])
			pos += n
			size = int(v)
		}
		if (h>>3)&0x0f != obuTemporalDelimiter {
			out = appendOBU(out, hdr, b[pos:pos+size])
		}
		pos += size
	}
	return out
}

// appendOBU appends an OBU with obu_size (hdr is its 1- or 2-byte header).
func appendOBU(out, hdr, payload []byte) []byte {
	out = append(out, hdr[0]|obuHasSizeField)
	out = append(out, hdr[1:]...)
	out = appendLEB128(out, uint64(len(payload)))
	return append(out, payload...)
}

// readLEB128 reads an unsigned LEB128 value of at most 8 bytes and 32 bits
// (AV1 4.10.5).
func readLEB128(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < 8; i++ {
		if i >= len(b) {
			return 0, 0, errors.New("truncated leb128")
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if v > math.MaxUint32 {
				return 0, 0, errors.New("leb128 value above 2^32-1")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("leb128 longer than 8 bytes")
}

func appendLEB128(out []byte, v uint64) []byte {
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

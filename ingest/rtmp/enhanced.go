package rtmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Enhanced RTMP video (veovera enhanced-rtmp v1 and v2): a video message
// whose first byte has the IsExHeader bit carries a FourCC instead of a
// CodecID. OBS 30+ sends H.265 as 'hvc1' and AV1 as 'av01' this way.

// VideoPacketType values of the ExVideoTagHeader.
const (
	exSequenceStart        = 0
	exCodedFrames          = 1
	exSequenceEnd          = 2
	exCodedFramesX         = 3 // CodedFrames with an implied composition time of 0
	exMetadata             = 4
	exMPEG2TSSequenceStart = 5
	exMultitrack           = 6
	exModEx                = 7
)

// AvMultitrackType values.
const (
	mtOneTrack             = 0
	mtManyTracks           = 1
	mtManyTracksManyCodecs = 2
)

// Video FourCCs.
const (
	fourCCAVC  = "avc1"
	fourCCHEVC = "hvc1"
	fourCCAV1  = "av01"
)

// exVideo is a parsed enhanced video message, reduced to the one track
// Headwater ingests: track 0 of a multitrack message.
type exVideo struct {
	frameType  byte // FrameType (1 key, 2 inter, 5 command), meaningless for Metadata
	packetType byte // after ModEx and Multitrack
	command    bool // a video command frame: no body
	found      bool // the message carries track 0
	others     int  // tracks other than 0 in the message
	fourCC     string
	cts        int32  // composition time of avc1/hvc1 CodedFrames, in ms
	body       []byte // what follows the header: record, NAL units, OBUs
}

var errExTruncated = errors.New("truncated ExVideoTagHeader")

// parseExVideo parses the ExVideoTagHeader of p (p[0] has the IsExHeader
// bit): ModEx prefixes (skipped: the nanosecond timestamp offset is below
// what the 90 kHz timeline needs), Multitrack, FourCC and composition time.
func parseExVideo(p []byte) (exVideo, error) {
	var v exVideo
	if len(p) == 0 {
		return v, errExTruncated
	}
	v.frameType = (p[0] >> 4) & 7
	pt := p[0] & 0x0f
	pos := 1
	for pt == exModEx {
		if len(p)-pos < 1 {
			return v, errExTruncated
		}
		size := int(p[pos]) + 1
		pos++
		if size == 256 {
			if len(p)-pos < 2 {
				return v, errExTruncated
			}
			size = int(binary.BigEndian.Uint16(p[pos:])) + 1
			pos += 2
		}
		if len(p)-pos < size+1 {
			return v, errExTruncated
		}
		pos += size        // modExData
		pt = p[pos] & 0x0f // high nibble: the modifier's type
		pos++
	}
	if v.frameType == flvFrameInfo && pt != exMetadata {
		v.command = true // a UI8 video command follows, no video data
		return v, nil
	}
	v.packetType = pt

	if pt != exMultitrack {
		if len(p)-pos < 4 {
			return v, errExTruncated
		}
		v.fourCC = string(p[pos : pos+4])
		v.body, v.found = p[pos+4:], true
		return v, v.readCTS()
	}

	if len(p)-pos < 1 {
		return v, errExTruncated
	}
	mt := p[pos] >> 4
	v.packetType = p[pos] & 0x0f
	pos++
	if v.packetType == exMultitrack || v.packetType == exModEx {
		return v, fmt.Errorf("multitrack packet type %d", v.packetType)
	}
	if mt > mtManyTracksManyCodecs {
		return v, fmt.Errorf("multitrack type %d", mt)
	}
	var shared string
	if mt != mtManyTracksManyCodecs {
		if len(p)-pos < 4 {
			return v, errExTruncated
		}
		shared = string(p[pos : pos+4])
		pos += 4
	}
	for pos < len(p) {
		fourCC := shared
		if mt == mtManyTracksManyCodecs {
			if len(p)-pos < 4 {
				return v, errExTruncated
			}
			fourCC = string(p[pos : pos+4])
			pos += 4
		}
		if len(p)-pos < 1 {
			return v, errExTruncated
		}
		id := p[pos]
		pos++
		body := p[pos:]
		if mt != mtOneTrack {
			if len(p)-pos < 3 {
				return v, errExTruncated
			}
			size := int(p[pos])<<16 | int(p[pos+1])<<8 | int(p[pos+2])
			pos += 3
			if len(p)-pos < size {
				return v, errExTruncated
			}
			body = p[pos : pos+size]
		}
		pos += len(body)
		if id != 0 || v.found {
			v.others++
		} else {
			v.fourCC, v.body, v.found = fourCC, body, true
		}
		if mt == mtOneTrack {
			break
		}
	}
	if v.found {
		return v, v.readCTS()
	}
	return v, nil
}

// readCTS takes the SI24 composition time off the body of avc1/hvc1
// CodedFrames (the only FourCCs and packet type that carry it).
func (v *exVideo) readCTS() error {
	if v.packetType != exCodedFrames || (v.fourCC != fourCCAVC && v.fourCC != fourCCHEVC) {
		return nil
	}
	if len(v.body) < 3 {
		return errExTruncated
	}
	b := v.body
	v.cts = int32(uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2])) << 8 >> 8
	v.body = b[3:]
	return nil
}

// printableFourCC quotes a FourCC for messages, escaping what is not ASCII.
func printableFourCC(s string) string { return fmt.Sprintf("%q", s) }

func (s *session) handleExVideo(ms int64, p []byte, received time.Time) error {
	v, err := parseExVideo(p)
	if err != nil {
		return ingest.ProtocolError("malformed enhanced RTMP video message: %v", err)
	}
	if v.command {
		return nil
	}
	if v.others > 0 {
		s.warnOnce("multitrack", "rtmp: enhanced RTMP multitrack video: only track 0 is ingested")
	}
	if !v.found {
		return nil
	}
	switch v.fourCC {
	case fourCCAVC, fourCCHEVC, fourCCAV1:
	default:
		return ingest.Fail(ingest.ReasonUnsupportedCodec,
			"unsupported video codec %s (enhanced RTMP): H.264, H.265 (hvc1) and AV1 (av01) are ingested",
			printableFourCC(v.fourCC))
	}
	if s.stream != nil && !s.announced[videoTrackID] {
		s.warnOnce("late-video", "rtmp: ignoring video that started after the stream was published without it")
		return nil
	}
	switch v.packetType {
	case exSequenceStart:
		switch v.fourCC {
		case fourCCAVC:
			return s.onAVCConfig(v.body)
		case fourCCHEVC:
			return s.onHEVCConfig(v.body)
		default:
			return s.onAV1Config(v.body)
		}
	case exCodedFrames, exCodedFramesX:
		switch v.fourCC {
		case fourCCAVC:
			return s.onVideoFrame(ms, v.cts, v.frameType == flvFrameKey, v.body, received)
		case fourCCHEVC:
			return s.onHEVCFrame(ms, v.cts, v.body, received)
		default:
			return s.onAV1Frame(ms, v.body, received)
		}
	case exMPEG2TSSequenceStart:
		// An AV1VideoDescriptor: no sequence header; it comes in band.
		s.log.Debug("rtmp: ignoring MPEG2TSSequenceStart", "fourcc", v.fourCC)
	case exSequenceEnd, exMetadata:
		// end of sequence; colorInfo metadata (HDR), not carried further
	default:
		s.warnOnce(fmt.Sprintf("ex-packet-%d", v.packetType), "rtmp: ignoring enhanced RTMP video packets of unknown type",
			"packet_type", v.packetType, "fourcc", v.fourCC)
	}
	return nil
}

// setVideoTrack makes codec the video track's codec (a new Track).
func (s *session) setVideoTrack(codec media.Codec, vi media.VideoInfo, source string) {
	changed := s.video != nil
	s.video = &media.Track{ID: videoTrackID, Codec: codec, ClockRate: 90000}
	if s.firstHeaderAt.IsZero() {
		s.firstHeaderAt = time.Now()
	}
	s.log.Info("rtmp: video track", "codec", codec.RFC6381(), "width", vi.Width, "height", vi.Height,
		"fps", vi.FrameRate, "changed", changed, "from", source)
}

func (s *session) onHEVCConfig(b []byte) error {
	cfg, err := parseHEVCConfig(b)
	if err != nil {
		return ingest.ProtocolError("invalid HEVC sequence header: %v", err)
	}
	var sps h265.SPS
	if err := sps.Unmarshal(cfg.sps); err != nil {
		return ingest.ProtocolError("invalid SPS in the HEVC sequence header: %v", err)
	}
	if cur, ok := s.codecH265(); ok && bytes.Equal(cur.VPS, cfg.vps) && bytes.Equal(cur.SPS, cfg.sps) &&
		bytes.Equal(cur.PPS, cfg.pps) && s.nalLengthSize == cfg.nalLengthSize {
		return nil // repeated sequence header
	}
	s.nalLengthSize = cfg.nalLengthSize
	s.setVideoTrack(&media.H265{VPS: cfg.vps, SPS: cfg.sps, PPS: cfg.pps},
		media.VideoInfo{Width: sps.Width(), Height: sps.Height(), FrameRate: sps.FPS()}, "sequence start")
	return nil
}

func (s *session) codecH265() (*media.H265, bool) {
	if s.video == nil {
		return nil, false
	}
	c, ok := s.video.Codec.(*media.H265)
	return c, ok
}

func (s *session) codecAV1() (*media.AV1, bool) {
	if s.video == nil {
		return nil, false
	}
	c, ok := s.video.Codec.(*media.AV1)
	return c, ok
}

// onHEVCFrame emits an access unit of length-prefixed NAL units, like AVC:
// no copy when the lengths are 4 bytes. A key frame is one with an IRAP
// picture, whatever FrameType says (gortmplib and MediaMTX send FrameType 0).
func (s *session) onHEVCFrame(ms int64, cts int32, data []byte, received time.Time) error {
	if _, ok := s.codecH265(); !ok {
		s.warnOnce("hevc-before-header", "rtmp: dropping HEVC video frames received before the HEVC sequence header")
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	if s.nalLengthSize == 4 {
		if err := checkAVCC(data); err != nil {
			return ingest.ProtocolError("malformed HEVC video frame: %v", err)
		}
	} else {
		var err error
		if data, err = toAVCC4(data, s.nalLengthSize); err != nil {
			return ingest.ProtocolError("malformed HEVC video frame: %v", err)
		}
	}
	return s.emitVideo(ms, cts, hevcHasIRAP(data), data, received)
}

// onAV1Config takes the sequence header of an AV1CodecConfigurationRecord.
// A record without one is allowed: the first key frame brings it in band.
func (s *session) onAV1Config(b []byte) error {
	seq, err := parseAV1Config(b)
	if err != nil {
		return ingest.ProtocolError("invalid AV1 sequence header: %v", err)
	}
	if seq == nil {
		s.log.Debug("rtmp: AV1 sequence start without a sequence header OBU; waiting for one in band")
		return nil
	}
	return s.setAV1SequenceHeader(seq, "sequence start", true)
}

// setAV1SequenceHeader makes seq (canonical form) the track's sequence header
// unless it already is. An invalid one is a protocol error when strict, and
// ignored otherwise (in band: the configured one stays).
func (s *session) setAV1SequenceHeader(seq []byte, source string, strict bool) error {
	if cur, ok := s.codecAV1(); ok && bytes.Equal(cur.SequenceHeader, seq) {
		return nil
	}
	codec := &media.AV1{SequenceHeader: seq}
	vi, err := media.ParseVideoInfo(codec)
	if err != nil {
		if strict {
			return ingest.ProtocolError("invalid AV1 sequence header: %v", err)
		}
		s.warnOnce("av1-bad-inband-seqhdr", "rtmp: ignoring an AV1 sequence header that does not parse", "err", err)
		return nil
	}
	s.setVideoTrack(codec, vi, source)
	return nil
}

// onAV1Frame emits a temporal unit as an ISOBMFF AV1 sample. It is the
// message's bytes unless temporal delimiters must go (gortmplib and ffmpeg
// send them), an OBU lacks obu_size, or a key frame lacks the sequence header
// that a sync sample must carry. A sequence header in band that differs from
// the configured one starts a new track: some publishers (gortmplib) send a
// placeholder record in SequenceStart.
func (s *session) onAV1Frame(ms int64, data []byte, received time.Time) error {
	if len(data) == 0 {
		return nil
	}
	tu, err := scanTemporalUnit(data)
	if err != nil {
		return ingest.ProtocolError("malformed AV1 temporal unit: %v", err)
	}
	if tu.seqHdr != nil {
		if err := s.setAV1SequenceHeader(tu.canonicalSeqHdr(), "in band", false); err != nil {
			return err
		}
	}
	cur, ok := s.codecAV1()
	if !ok {
		s.warnOnce("av1-before-header", "rtmp: dropping AV1 temporal units received before the AV1 sequence header")
		return nil
	}
	if tu.obus == 0 {
		return nil // temporal delimiters only
	}
	// seq_profile(3) still_picture(1) reduced_still_picture_header(1)
	reduced := len(cur.SequenceHeader) > 1 && cur.SequenceHeader[1]&0x08 != 0
	key := tu.isKey(reduced)
	var prepend []byte
	if key && tu.seqHdr == nil {
		prepend = cur.SequenceHeader
	}
	return s.emitVideo(ms, 0, key, tu.sample(prepend), received)
}

package media

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// Kind tells video tracks from audio tracks.
type Kind int

// Track kinds.
const (
	KindVideo Kind = iota + 1
	KindAudio
)

// String returns "video" or "audio".
func (k Kind) String() string {
	switch k {
	case KindVideo:
		return "video"
	case KindAudio:
		return "audio"
	}
	return "unknown"
}

// Codec is a track's codec together with the parameters a packager needs
// (parameter sets, AudioSpecificConfig). Implementations are immutable once
// a track is published: a change of parameters is a new Track.
type Codec interface {
	// Kind is the kind of track the codec carries.
	Kind() Kind
	// Name is a short lower-case name for logs and metrics ("h264", "aac").
	Name() string
	// RFC6381 is the codecs parameter used in HLS CODECS and DASH @codecs,
	// derived from the real parameters, e.g. "avc1.64001f" or "mp4a.40.2".
	RFC6381() string
}

// H264 is an H.264/AVC video codec. Frames carry access units as
// length-prefixed (AVCC, 4-byte) NAL units.
type H264 struct {
	SPS []byte
	PPS []byte
}

// Kind implements Codec.
func (*H264) Kind() Kind { return KindVideo }

// Name implements Codec.
func (*H264) Name() string { return "h264" }

// RFC6381 implements Codec: "avc1.PPCCLL" from profile_idc, constraint flags and level_idc.
func (c *H264) RFC6381() string {
	if len(c.SPS) < 4 {
		return "avc1"
	}
	return fmt.Sprintf("avc1.%02x%02x%02x", c.SPS[1], c.SPS[2], c.SPS[3])
}

// H265 is an H.265/HEVC video codec. Frames carry access units as
// length-prefixed (4-byte) NAL units.
type H265 struct {
	VPS []byte
	SPS []byte
	PPS []byte
}

// Kind implements Codec.
func (*H265) Kind() Kind { return KindVideo }

// Name implements Codec.
func (*H265) Name() string { return "h265" }

// RFC6381 implements Codec: "hvc1.<profile>.<compat>.<tier><level>.<constraints>"
// as ISO/IEC 14496-15 Annex E describes it.
func (c *H265) RFC6381() string {
	var sps h265.SPS
	if err := sps.Unmarshal(c.SPS); err != nil {
		return "hvc1"
	}
	ptl := sps.ProfileTierLevel
	var b strings.Builder
	b.WriteString("hvc1.")
	switch ptl.GeneralProfileSpace {
	case 1:
		b.WriteString("A")
	case 2:
		b.WriteString("B")
	case 3:
		b.WriteString("C")
	}
	fmt.Fprintf(&b, "%d.", ptl.GeneralProfileIdc)
	// compatibility flags, bit-reversed, in hex without leading zeros
	var compat uint32
	for i, f := range ptl.GeneralProfileCompatibilityFlag {
		if f {
			compat |= 1 << uint(i)
		}
	}
	fmt.Fprintf(&b, "%X.", compat)
	if ptl.GeneralTierFlag == 1 {
		b.WriteString("H")
	} else {
		b.WriteString("L")
	}
	fmt.Fprintf(&b, "%d", ptl.GeneralLevelIdc)
	// six constraint bytes starting with progressive_source_flag; trailing zero bytes omitted
	var cons [6]byte
	if ptl.GeneralProgressiveSourceFlag {
		cons[0] |= 0x80
	}
	if ptl.GeneralInterlacedSourceFlag {
		cons[0] |= 0x40
	}
	if ptl.GeneralNonPackedConstraintFlag {
		cons[0] |= 0x20
	}
	if ptl.GeneralFrameOnlyConstraintFlag {
		cons[0] |= 0x10
	}
	last := -1
	for i, v := range cons {
		if v != 0 {
			last = i
		}
	}
	for i := 0; i <= last; i++ {
		fmt.Fprintf(&b, ".%X", cons[i])
	}
	return b.String()
}

// AV1 is an AV1 video codec. Frames carry temporal units in the ISOBMFF
// sample format: low-overhead OBUs, each with obu_has_size_field set, without
// temporal delimiters.
type AV1 struct {
	// SequenceHeader is the sequence header OBU (obu_has_size_field clear).
	SequenceHeader []byte
}

// Kind implements Codec.
func (*AV1) Kind() Kind { return KindVideo }

// Name implements Codec.
func (*AV1) Name() string { return "av1" }

// RFC6381 implements Codec: "av01.P.LLT.DD" (profile, level and tier of
// operating point 0, bit depth) as the AV1 ISOBMFF binding describes it.
func (c *AV1) RFC6381() string {
	var sh av1.SequenceHeader
	if err := sh.Unmarshal(c.SequenceHeader); err != nil || len(sh.SeqLevelIdx) == 0 || len(sh.SeqTier) == 0 {
		return "av01"
	}
	tier := "M"
	if sh.SeqTier[0] {
		tier = "H"
	}
	depth := 8
	switch {
	case sh.ColorConfig.BitDepth > 0:
		depth = sh.ColorConfig.BitDepth
	case sh.ColorConfig.TwelveBit:
		depth = 12
	case sh.ColorConfig.HighBitDepth:
		depth = 10
	}
	return fmt.Sprintf("av01.%d.%02d%s.%02d", sh.SeqProfile, sh.SeqLevelIdx[0], tier, depth)
}

// AAC is an MPEG-4 audio (AAC) codec. Frames carry raw access units
// (no ADTS header).
type AAC struct {
	Config mpeg4audio.AudioSpecificConfig
}

// Kind implements Codec.
func (*AAC) Kind() Kind { return KindAudio }

// Name implements Codec.
func (*AAC) Name() string { return "aac" }

// RFC6381 implements Codec: "mp4a.40.<audio object type>".
func (c *AAC) RFC6381() string {
	return fmt.Sprintf("mp4a.40.%d", int(c.Config.Type))
}

// Channels is the channel count of the config's channel configuration
// (ISO/IEC 14496-3 1.6.3.5: 1–6 are that many channels, 7 is 7.1), or 0
// when the configuration is 0 (defined in the stream's PCE) or reserved.
func (c *AAC) Channels() int {
	switch n := int(c.Config.ChannelConfig); {
	case n >= 1 && n <= 6:
		return n
	case n == 7:
		return 8
	}
	return 0
}

// Opus is an Opus audio codec. Frames carry raw Opus packets.
type Opus struct {
	ChannelCount int
}

// Kind implements Codec.
func (*Opus) Kind() Kind { return KindAudio }

// Name implements Codec.
func (*Opus) Name() string { return "opus" }

// RFC6381 implements Codec.
func (*Opus) RFC6381() string { return "opus" }

// VideoInfo is what the parameter sets say about a video track.
type VideoInfo struct {
	Width     int
	Height    int
	FrameRate float64 // 0 when the SPS carries no timing information
}

// SameVideoParams reports whether a and b are the same H.264 or H.265 codec
// with the same parameter sets (VPS, SPS, PPS): a rendition can go on with
// the same init section. Other codecs are never the same here.
func SameVideoParams(a, b Codec) bool {
	switch a := a.(type) {
	case *H264:
		b, ok := b.(*H264)
		return ok && bytes.Equal(a.SPS, b.SPS) && bytes.Equal(a.PPS, b.PPS)
	case *H265:
		b, ok := b.(*H265)
		return ok && bytes.Equal(a.VPS, b.VPS) && bytes.Equal(a.SPS, b.SPS) && bytes.Equal(a.PPS, b.PPS)
	}
	return false
}

// ParseVideoInfo reads width, height and frame rate from an H.264 or H.265
// codec's SPS or an AV1 sequence header. It returns an error for audio codecs
// and unparsable parameters.
func ParseVideoInfo(c Codec) (VideoInfo, error) {
	switch c := c.(type) {
	case *H264:
		var sps h264.SPS
		if err := sps.Unmarshal(c.SPS); err != nil {
			return VideoInfo{}, fmt.Errorf("h264 sps: %w", err)
		}
		return VideoInfo{Width: sps.Width(), Height: sps.Height(), FrameRate: sps.FPS()}, nil
	case *H265:
		var sps h265.SPS
		if err := sps.Unmarshal(c.SPS); err != nil {
			return VideoInfo{}, fmt.Errorf("h265 sps: %w", err)
		}
		return VideoInfo{Width: sps.Width(), Height: sps.Height(), FrameRate: sps.FPS()}, nil
	case *AV1:
		var sh av1.SequenceHeader
		if err := sh.Unmarshal(c.SequenceHeader); err != nil {
			return VideoInfo{}, fmt.Errorf("av1 sequence header: %w", err)
		}
		vi := VideoInfo{Width: sh.Width(), Height: sh.Height()}
		// timing_info: time_scale / (num_units_in_display_tick * (num_ticks_per_picture_minus_1 + 1))
		if ti := sh.TimingInfo; ti != nil && ti.EqualPictureInterval && ti.NumUnitsInDisplayTick > 0 {
			vi.FrameRate = float64(ti.TimeScale) / (float64(ti.NumUnitsInDisplayTick) * (float64(ti.NumTicksPerPictureMinus1) + 1))
		}
		return vi, nil
	}
	return VideoInfo{}, fmt.Errorf("%s is not a video codec", c.Name())
}

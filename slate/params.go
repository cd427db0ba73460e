package slate

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/headwater-live/headwater/media"
)

// Params are what a slate must match so that a player switching between
// the stream and its slate sees a discontinuity and nothing more. Params is
// comparable: the Library keys its clips by it.
type Params struct {
	// Codec is the video codec, "h264" or "h265"; "" for an audio-only slate.
	Codec string
	// Profile is the video profile: "baseline", "main" or "high" for H.264,
	// "main" for H.265; "" leaves it to the encoder.
	Profile string
	// Level is the SPS level_idc (H.264: 31 is level 3.1); 0 leaves it to
	// the encoder. Only H.264 slates carry it over.
	Level int
	// Width and Height are the picture size in pixels (even numbers).
	Width, Height int
	// FrameDuration is the time between two frames, e.g. 33.333ms; the
	// encoded clip's frame duration is this rounded to the 90 kHz clock.
	FrameDuration time.Duration
	// AudioCodec is "aac" or "" (no audio).
	AudioCodec string
	// SampleRate (Hz) and Channels of the AAC-LC audio.
	SampleRate, Channels int
}

// defaultFrameDuration is the frame duration of a stream that says nothing
// of its rate: 30 fps.
const defaultFrameDuration = time.Second / 30

// ParamsOf derives Params from a stream's tracks (video nil: audio only;
// audio nil: video only) and its observed frame duration (0: the SPS VUI
// timing, else 30 fps). Codecs a slate cannot match (AV1, Opus...) return
// an error naming the codec.
func ParamsOf(video, audio *media.Track, frameDur time.Duration) (Params, error) {
	var p Params
	if video == nil && audio == nil {
		return p, errors.New("slate params: no video and no audio track")
	}
	if video != nil {
		var fps float64
		switch c := video.Codec.(type) {
		case *media.H264:
			var sps h264.SPS
			if err := sps.Unmarshal(c.SPS); err != nil {
				return Params{}, fmt.Errorf("slate params: h264 sps: %w", err)
			}
			p.Codec = "h264"
			p.Profile = h264Profile(sps.ProfileIdc)
			p.Level = int(sps.LevelIdc)
			p.Width, p.Height, fps = sps.Width(), sps.Height(), sps.FPS()
		case *media.H265:
			var sps h265.SPS
			if err := sps.Unmarshal(c.SPS); err != nil {
				return Params{}, fmt.Errorf("slate params: h265 sps: %w", err)
			}
			p.Codec = "h265"
			if sps.ProfileTierLevel.GeneralProfileIdc == 1 {
				p.Profile = "main"
			}
			p.Level = int(sps.ProfileTierLevel.GeneralLevelIdc)
			p.Width, p.Height, fps = sps.Width(), sps.Height(), sps.FPS()
		default:
			return Params{}, fmt.Errorf("slate params: unsupported video codec %q", video.Codec.Name())
		}
		p.FrameDuration = frameDur
		if p.FrameDuration <= 0 {
			p.FrameDuration = defaultFrameDuration
			if fps >= 1 && fps <= 300 {
				p.FrameDuration = time.Duration(math.Round(float64(time.Second) / fps))
			}
		}
	}
	if audio != nil {
		c, ok := audio.Codec.(*media.AAC)
		if !ok {
			return Params{}, fmt.Errorf("slate params: unsupported audio codec %q", audio.Codec.Name())
		}
		p.AudioCodec = "aac"
		p.SampleRate = c.Config.SampleRate
		if p.SampleRate <= 0 {
			p.SampleRate = int(audio.ClockRate)
		}
		p.Channels = c.Channels()
	}
	if err := p.validate(); err != nil {
		return Params{}, fmt.Errorf("slate params: %w", err)
	}
	return p, nil
}

// h264Profile names an H.264 profile_idc for x264: the 8-bit profiles a
// slate can match; "" (the encoder's choice, high) for the others.
func h264Profile(idc uint8) string {
	switch idc {
	case 66:
		return "baseline"
	case 77:
		return "main"
	case 100:
		return "high"
	}
	return ""
}

// aacSampleRates are the rates an AudioSpecificConfig can name by index.
var aacSampleRates = []int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// channelLayouts are ffmpeg's layouts for the AAC channel configurations.
var channelLayouts = map[int]string{1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 8: "7.1"}

// validate reports what a slate cannot be made of.
func (p Params) validate() error {
	switch p.Codec {
	case "":
		if p.AudioCodec == "" {
			return errors.New("no video codec and no audio codec")
		}
	case "h264", "h265":
		if p.Width < 16 || p.Height < 16 || p.Width > 8192 || p.Height > 8192 {
			return fmt.Errorf("picture size %dx%d out of range (16 to 8192)", p.Width, p.Height)
		}
		if p.Width%2 != 0 || p.Height%2 != 0 {
			return fmt.Errorf("picture size %dx%d is odd (4:2:0 needs even sizes)", p.Width, p.Height)
		}
		if t := frameTicks(p.FrameDuration); t < 90 || t > 90000 {
			return fmt.Errorf("frame duration %v out of range (1ms to 1s)", p.FrameDuration)
		}
		switch {
		case p.Codec == "h264" && (p.Profile == "" || p.Profile == "baseline" || p.Profile == "main" || p.Profile == "high"):
		case p.Codec == "h265" && (p.Profile == "" || p.Profile == "main"):
		default:
			return fmt.Errorf("unsupported %s profile %q", p.Codec, p.Profile)
		}
		if p.Level < 0 || p.Level > 255 {
			return fmt.Errorf("level %d out of range", p.Level)
		}
	default:
		return fmt.Errorf("unsupported video codec %q", p.Codec)
	}
	switch p.AudioCodec {
	case "":
	case "aac":
		ok := false
		for _, r := range aacSampleRates {
			ok = ok || r == p.SampleRate
		}
		if !ok {
			return fmt.Errorf("unsupported AAC sample rate %d", p.SampleRate)
		}
		if channelLayouts[p.Channels] == "" {
			return fmt.Errorf("unsupported AAC channel count %d", p.Channels)
		}
	default:
		return fmt.Errorf("unsupported audio codec %q", p.AudioCodec)
	}
	return nil
}

// String describes the parameters for logs and errors, e.g.
// "h264 high/3.1 1280x720 33.333ms + aac 48000Hz 2ch".
func (p Params) String() string {
	var parts []string
	if p.Codec != "" {
		v := p.Codec
		if p.Profile != "" {
			v += " " + p.Profile
			if p.Level > 0 {
				v += "/" + p.levelName()
			}
		}
		parts = append(parts, fmt.Sprintf("%s %dx%d %v", v, p.Width, p.Height, p.FrameDuration))
	}
	if p.AudioCodec != "" {
		parts = append(parts, fmt.Sprintf("%s %dHz %dch", p.AudioCodec, p.SampleRate, p.Channels))
	}
	return strings.Join(parts, " + ")
}

// frameTicks is a frame duration on the 90 kHz clock, to the nearest tick.
func frameTicks(d time.Duration) int64 {
	return (media.DurationToTicks(d*2, 90000) + 1) / 2
}

// levelName is the level as a decimal ("3.1"): level_idc/10 for H.264,
// general_level_idc/30 for H.265.
func (p Params) levelName() string {
	if p.Codec == "h265" {
		return fmt.Sprintf("%d.%d", p.Level/30, p.Level%30/3)
	}
	return fmt.Sprintf("%d.%d", p.Level/10, p.Level%10)
}

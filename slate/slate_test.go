package slate

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/media"
)

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	png, jpg, mp4, txt := write("a.png"), write("b.JPG"), write("c.mp4"), write("d.txt")
	for _, tc := range []struct {
		in      string
		builtin bool
		image   bool
		media   bool
		err     string
	}{
		{in: "builtin", builtin: true},
		{in: png, image: true},
		{in: jpg, image: true},
		{in: mp4, media: true},
		{in: "", err: `slate source is empty: want "builtin" or the path of an image (png, jpg) or media file (mp4, mov, mkv, ts, flv)`},
		{in: filepath.Join(dir, "missing.png"), err: `slate source "` + filepath.Join(dir, "missing.png") + `": no such file`},
		{in: dir, err: `slate source "` + dir + `" is a directory, not a file`},
		{in: txt, err: `slate source "` + txt + `": unsupported file type ".txt" (want png, jpg, mp4, m4v, mov, mkv, ts or flv)`},
	} {
		s, err := ParseSource(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseSource(%q) = %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSource(%q): %v", tc.in, err)
			continue
		}
		if s.IsBuiltin() != tc.builtin || s.IsImage() != tc.image || s.IsMedia() != tc.media || s.String() != tc.in {
			t.Errorf("ParseSource(%q) = %+v (%s)", tc.in, s, s)
		}
	}
	if (Source{}) != Builtin || Builtin.String() != "builtin" {
		t.Errorf("zero Source is %s, want builtin", Source{})
	}
}

func TestParamsOf(t *testing.T) {
	h264Main := videoTrack(t, "-c:v", "libx264", "-profile:v", "main", "-level:v", "3.0", "-f", "h264")
	h264Base := videoTrack(t, "-c:v", "libx264", "-profile:v", "baseline", "-level:v", "3.1", "-f", "h264")
	h265Main := videoTrack(t, "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc")
	var sps h265.SPS
	if err := sps.Unmarshal(h265Main.Codec.(*media.H265).SPS); err != nil {
		t.Fatal(err)
	}
	aacMono := aacTrack(t, 44100, 1)
	aacStereo := aacTrack(t, 48000, 2)
	av1 := &media.Track{Codec: &media.AV1{}, ClockRate: 90000}
	opus := &media.Track{Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
	for _, tc := range []struct {
		name         string
		video, audio *media.Track
		frameDur     time.Duration
		want         Params
		err          string
	}{
		{name: "h264 main + aac mono, rate from the VUI", video: h264Main, audio: aacMono,
			want: Params{Codec: "h264", Profile: "main", Level: 30, Width: 640, Height: 360, FrameDuration: 40 * time.Millisecond,
				AudioCodec: "aac", SampleRate: 44100, Channels: 1}},
		{name: "observed frame duration wins", video: h264Base, audio: aacStereo, frameDur: 33366667,
			want: Params{Codec: "h264", Profile: "baseline", Level: 31, Width: 640, Height: 360, FrameDuration: 33366667,
				AudioCodec: "aac", SampleRate: 48000, Channels: 2}},
		{name: "h265 video only", video: h265Main,
			want: Params{Codec: "h265", Profile: "main", Level: int(sps.ProfileTierLevel.GeneralLevelIdc), Width: 640, Height: 360, FrameDuration: 40 * time.Millisecond}},
		{name: "audio only", audio: aacMono, want: Params{AudioCodec: "aac", SampleRate: 44100, Channels: 1}},
		{name: "no timing: 30 fps", video: &media.Track{Codec: &media.H264{SPS: spsNoVUI()}, ClockRate: 90000},
			want: Params{Codec: "h264", Profile: "baseline", Level: 30, Width: 640, Height: 360, FrameDuration: time.Second / 30}},
		{name: "av1", video: av1, audio: aacMono, err: `slate params: unsupported video codec "av1"`},
		{name: "opus", video: h264Main, audio: opus, err: `slate params: unsupported audio codec "opus"`},
		{name: "nothing", err: "slate params: no video and no audio track"},
		{name: "bad sps", video: &media.Track{Codec: &media.H264{SPS: []byte{0x67}}, ClockRate: 90000}, err: "slate params: h264 sps: not enough bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParamsOf(tc.video, tc.audio, tc.frameDur)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p != tc.want {
				t.Fatalf("ParamsOf = %+v, want %+v", p, tc.want)
			}
		})
	}
}

// spsNoVUI is a hand-written H.264 SPS without VUI (no timing): baseline,
// level 3.0, 640x360 (40×23 macroblocks cropped by 8 lines).
func spsNoVUI() []byte {
	var bits []bool
	u := func(n int, v uint) {
		for i := n - 1; i >= 0; i-- {
			bits = append(bits, v&(1<<i) != 0)
		}
	}
	ue := func(v uint) {
		n := 0
		for (v+1)>>n > 1 {
			n++
		}
		u(n, 0)
		u(n+1, v+1)
	}
	u(8, 0x67)
	u(8, 66) // profile_idc
	u(8, 0)  // constraint flags
	u(8, 30) // level_idc
	ue(0)    // seq_parameter_set_id
	ue(0)    // log2_max_frame_num_minus4
	ue(2)    // pic_order_cnt_type
	ue(1)    // max_num_ref_frames
	u(1, 0)  // gaps_in_frame_num_value_allowed_flag
	ue(39)   // pic_width_in_mbs_minus1
	ue(22)   // pic_height_in_map_units_minus1
	u(1, 1)  // frame_mbs_only_flag
	u(1, 1)  // direct_8x8_inference_flag
	u(1, 1)  // frame_cropping_flag
	ue(0)
	ue(0)
	ue(0)
	ue(4)   // bottom: 4 × 2 lines
	u(1, 0) // vui_parameters_present_flag
	u(1, 1) // rbsp_stop_one_bit
	for len(bits)%8 != 0 {
		bits = append(bits, false)
	}
	out := make([]byte, len(bits)/8)
	for i, b := range bits {
		if b {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

// checkClip verifies a clip's structure against its params: parameter
// sets, frame grid, key frames, audio configuration.
func checkClip(t *testing.T, c *Clip, p Params, gop time.Duration, gops int) {
	t.Helper()
	if c.Params != p {
		t.Errorf("clip params %+v, want %+v", c.Params, p)
	}
	ft := frameTicks(p.FrameDuration)
	var loopTicks int64
	if p.Codec != "" {
		g := (media.DurationToTicks(gop, 90000) + ft/2) / ft
		loopTicks = g * ft * int64(gops)
		if c.Video == nil || c.Video.ClockRate != 90000 || c.Video.Codec.Name() != p.Codec {
			t.Fatalf("video track %+v, want %s at 90 kHz", c.Video, p.Codec)
		}
		var w, h int
		var fps float64
		switch codec := c.Video.Codec.(type) {
		case *media.H264:
			var sps h264.SPS
			if err := sps.Unmarshal(codec.SPS); err != nil {
				t.Fatal(err)
			}
			w, h, fps = sps.Width(), sps.Height(), sps.FPS()
			if want := map[string]uint8{"baseline": 66, "main": 77, "high": 100}[p.Profile]; want != 0 && sps.ProfileIdc != want {
				t.Errorf("profile_idc %d, want %d", sps.ProfileIdc, want)
			}
			if p.Level != 0 && int(sps.LevelIdc) != p.Level {
				t.Errorf("level_idc %d, want %d", sps.LevelIdc, p.Level)
			}
			if len(codec.PPS) == 0 {
				t.Error("no PPS")
			}
		case *media.H265:
			var sps h265.SPS
			if err := sps.Unmarshal(codec.SPS); err != nil {
				t.Fatal(err)
			}
			w, h, fps = sps.Width(), sps.Height(), sps.FPS()
			if sps.ProfileTierLevel.GeneralProfileIdc != 1 {
				t.Errorf("general_profile_idc %d, want 1 (main)", sps.ProfileTierLevel.GeneralProfileIdc)
			}
			if len(codec.VPS) == 0 || len(codec.PPS) == 0 {
				t.Error("no VPS or PPS")
			}
		}
		if w != p.Width || h != p.Height {
			t.Errorf("SPS size %dx%d, want %dx%d", w, h, p.Width, p.Height)
		}
		if want := 90000 / float64(ft); math.Abs(fps-want) > 1e-6 {
			t.Errorf("SPS frame rate %v, want %v", fps, want)
		}
		if len(c.video) != int(g)*gops {
			t.Fatalf("%d video frames, want %d", len(c.video), int(g)*gops)
		}
		for i, f := range c.video {
			if f.DTS != int64(i)*ft || f.PTS != f.DTS || f.Key != (i%int(g) == 0) || f.Track != c.Video {
				t.Fatalf("video frame %d: DTS %d PTS %d key %v, want DTS %d key %v", i, f.DTS, f.PTS, f.Key, int64(i)*ft, i%int(g) == 0)
			}
			if len(media.SplitAVCC(f.Payload, nil)) == 0 {
				t.Fatalf("video frame %d: payload is not AVCC", i)
			}
		}
		if c.GOP != media.TicksToDuration(g*ft, 90000) {
			t.Errorf("GOP %v, want %v", c.GOP, media.TicksToDuration(g*ft, 90000))
		}
	} else {
		loopTicks = media.DurationToTicks(gop, 90000) * int64(gops)
		if c.Video != nil {
			t.Error("audio-only clip has a video track")
		}
	}
	if c.Duration != media.TicksToDuration(loopTicks, 90000) {
		t.Errorf("duration %v, want %v", c.Duration, media.TicksToDuration(loopTicks, 90000))
	}
	if p.AudioCodec == "" {
		if c.Audio != nil || len(c.audio) != 0 {
			t.Error("clip without audio params has audio")
		}
	} else {
		aac, ok := c.Audio.Codec.(*media.AAC)
		if !ok || c.Audio.ClockRate != uint32(p.SampleRate) {
			t.Fatalf("audio track %+v", c.Audio)
		}
		if aac.Config.Type != mpeg4audio.ObjectTypeAACLC || aac.Config.SampleRate != p.SampleRate || aac.Channels() != p.Channels {
			t.Errorf("audio config %+v, want AAC-LC %d Hz %d channels", aac.Config, p.SampleRate, p.Channels)
		}
		den := int64(90000 * 1024)
		if want := (loopTicks*int64(p.SampleRate) + den - 1) / den; int64(len(c.audio)) != want {
			t.Errorf("%d audio frames, want %d", len(c.audio), want)
		}
		for i, f := range c.audio {
			if f.DTS != int64(i)*1024 || !f.Key || len(f.Payload) == 0 {
				t.Fatalf("audio frame %d: DTS %d key %v", i, f.DTS, f.Key)
			}
		}
	}
	if len(c.Frames) != len(c.video)+len(c.audio) {
		t.Fatalf("%d frames, want %d", len(c.Frames), len(c.video)+len(c.audio))
	}
	for i := 1; i < len(c.Frames); i++ {
		if c.Frames[i].DTSDuration() < c.Frames[i-1].DTSDuration() {
			t.Fatalf("frame %d out of order", i)
		}
	}
	if p.Codec != "" && (c.Frames[0].Track != c.Video || !c.Frames[0].Key) {
		t.Error("loop does not start with a video key frame")
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"720p30 high + aac 48k stereo", Params{Codec: "h264", Profile: "high", Level: 31, Width: 1280, Height: 720, FrameDuration: time.Second / 30,
			AudioCodec: "aac", SampleRate: 48000, Channels: 2}},
		{"360p25 main + aac 44.1k mono", Params{Codec: "h264", Profile: "main", Level: 30, Width: 640, Height: 360, FrameDuration: 40 * time.Millisecond,
			AudioCodec: "aac", SampleRate: 44100, Channels: 1}},
		{"480p29.97 video only", Params{Codec: "h264", Width: 854, Height: 480, FrameDuration: 33366667}},
		{"h265 360p30 + aac 48k stereo", Params{Codec: "h265", Profile: "main", Width: 640, Height: 360, FrameDuration: time.Second / 30,
			AudioCodec: "aac", SampleRate: 48000, Channels: 2}},
		{"audio only 44.1k stereo", Params{AudioCodec: "aac", SampleRate: 44100, Channels: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const gop = 2 * time.Second
			l := NewLibrary(Config{GOP: gop})
			c := mustClip(t, l, tc.p)
			checkClip(t, c, tc.p, gop, 1)

			// three loops from a cursor, in 100 ms steps
			cur := c.Cursor()
			now := time.Now()
			var frames []*media.Frame
			for until := time.Duration(0); until < 3*c.Duration; {
				until = min(until+100*time.Millisecond, 3*c.Duration)
				frames = append(frames, cur.Next(until, now)...)
			}
			if extra := cur.Next(3*c.Duration, now); extra != nil {
				t.Fatalf("Next returned %d frames again", len(extra))
			}
			var vn, an int64
			for i, f := range frames {
				if f.Received != now {
					t.Fatal("Received is not the time passed in")
				}
				if i > 0 && f.DTSDuration() < frames[i-1].DTSDuration() {
					t.Fatalf("frame %d out of time order", i)
				}
				if f.Track == c.Video {
					src := c.video[vn%int64(len(c.video))]
					if f.DTS != vn*frameTicks(tc.p.FrameDuration) || f.PTS != f.DTS || f.Key != src.Key || &f.Payload[0] != &src.Payload[0] {
						t.Fatalf("video frame %d: DTS %d key %v, want DTS %d key %v and the clip's payload", vn, f.DTS, f.Key, vn*frameTicks(tc.p.FrameDuration), src.Key)
					}
					vn++
				} else {
					if f.Track != c.Audio || f.DTS != an*1024 || f.PTS != f.DTS || !f.Key {
						t.Fatalf("audio frame %d: DTS %d, want %d", an, f.DTS, an*1024)
					}
					an++
				}
			}
			wantV := int64(3 * len(c.video))
			var wantA int64
			if c.Audio != nil {
				den := int64(90000 * 1024)
				wantA = (3*c.loopTicks*int64(tc.p.SampleRate) + den - 1) / den
			}
			if vn != wantV || an != wantA {
				t.Fatalf("%d video and %d audio frames over 3 loops, want %d and %d", vn, an, wantV, wantA)
			}

			// what players see: decodable, the right size, every frame, continuous timestamps
			ts := filepath.Join(t.TempDir(), "slate.ts")
			writeTS(t, ts, c, frames)
			if msg := decodeErrors(t, ts); msg != "" {
				t.Errorf("decoding the slate: %s", msg)
			}
			if c.Video != nil {
				// the built-in card: dark background, 75% grey first bar, blue last bar
				pic := firstPicture(t, ts, tc.p.Width, tc.p.Height)
				w, h := tc.p.Width, tc.p.Height
				if !near(pic, w, 4, 4, 18, 22, 30) || !near(pic, w, w/14, h*22/100, 191, 191, 191) || !near(pic, w, w*13/14, h*22/100, 0, 0, 191) {
					t.Error("the first picture is not the built-in card")
				}
			}
			probed := probeFrames(t, ts)
			pv, pa := probed["video"], probed["audio"]
			if int64(len(pv)) != wantV {
				t.Errorf("ffprobe: %d video frames, want %d", len(pv), wantV)
			}
			ft := frameTicks(tc.p.FrameDuration)
			g := int64(0)
			if ft > 0 {
				g = (media.DurationToTicks(gop, 90000) + ft/2) / ft
			}
			for i, f := range pv {
				if f.Width != tc.p.Width || f.Height != tc.p.Height {
					t.Fatalf("ffprobe: video frame %d is %dx%d", i, f.Width, f.Height)
				}
				if f.PTS != tsOffset+int64(i)*ft {
					t.Fatalf("ffprobe: video frame %d PTS %d, want %d", i, f.PTS, tsOffset+int64(i)*ft)
				}
				if (f.KeyFrame == 1) != (int64(i)%g == 0) {
					t.Fatalf("ffprobe: video frame %d key %d", i, f.KeyFrame)
				}
			}
			if int64(len(pa)) != wantA {
				t.Errorf("ffprobe: %d audio frames, want %d", len(pa), wantA)
			}
			step := 1024 * 90000 / float64(max(tc.p.SampleRate, 1))
			for i, f := range pa {
				want := tsOffset + float64(i)*step
				if math.Abs(float64(f.PTS)-want) > 1 || f.NbSamples != 1024 || f.Channels != tc.p.Channels {
					t.Fatalf("ffprobe: audio frame %d PTS %d (want %.1f) %d samples %d channels", i, f.PTS, want, f.NbSamples, f.Channels)
				}
			}
		})
	}
}

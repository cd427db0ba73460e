package slate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/media"
)

// ffmpeg runs ffmpeg with args and fails the test when it fails.
func ffmpeg(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("ffmpeg", append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// videoTrack encodes a few frames with ffmpeg (raw Annex-B) and makes a
// track of their parameter sets.
func videoTrack(t *testing.T, codecArgs ...string) *media.Track {
	t.Helper()
	out := filepath.Join(t.TempDir(), "v.es")
	ffmpeg(t, append(append([]string{"-f", "lavfi", "-i", "testsrc=size=640x360:rate=25", "-frames:v", "5", "-pix_fmt", "yuv420p"}, codecArgs...), out)...)
	es, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	h264c, h265c := &media.H264{}, &media.H265{}
	for _, n := range splitAnnexB(es) {
		switch n[0] & 0x1f {
		case 7:
			h264c.SPS = n
		case 8:
			h264c.PPS = n
		}
		switch (n[0] >> 1) & 0x3f {
		case 32:
			h265c.VPS = n
		case 33:
			h265c.SPS = n
		case 34:
			h265c.PPS = n
		}
	}
	if slices.Contains(codecArgs, "hevc") {
		return &media.Track{Codec: h265c, ClockRate: 90000}
	}
	return &media.Track{Codec: h264c, ClockRate: 90000}
}

// aacTrack encodes a second of AAC with ffmpeg (ADTS) and makes a track of
// its configuration.
func aacTrack(t *testing.T, rate, channels int) *media.Track {
	t.Helper()
	out := filepath.Join(t.TempDir(), "a.aac")
	ffmpeg(t, "-f", "lavfi", "-i", "sine=r="+strconv.Itoa(rate), "-t", "1", "-ac", strconv.Itoa(channels), "-c:a", "aac", "-f", "adts", out)
	es, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(es); err != nil {
		t.Fatal(err)
	}
	cfg := mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelConfig: pkts[0].ChannelConfig}
	return &media.Track{Codec: &media.AAC{Config: cfg}, ClockRate: uint32(rate)}
}

// tsOffset moves the MPEG-TS timestamps away from 0 (the PCR runs ahead of
// them).
const tsOffset = 90000

// writeTS muxes frames (from a cursor) into an MPEG-TS file.
func writeTS(t *testing.T, path string, clip *Clip, frames []*media.Frame) {
	t.Helper()
	var vt, at *mpegts.Track
	var tracks []*mpegts.Track
	if clip.Video != nil {
		var codec tscodecs.Codec = &tscodecs.H264{}
		if clip.Params.Codec == "h265" {
			codec = &tscodecs.H265{}
		}
		vt = &mpegts.Track{Codec: codec}
		tracks = append(tracks, vt)
	}
	if clip.Audio != nil {
		cfg := clip.Audio.Codec.(*media.AAC).Config
		cfg.ChannelCount = clip.Audio.Codec.(*media.AAC).Channels() //nolint:staticcheck // the ADTS marshaller reads the deprecated field too
		at = &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: cfg}}
		tracks = append(tracks, at)
	}
	var buf bytes.Buffer
	w := &mpegts.Writer{W: &buf, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		var err error
		switch {
		case f.Track == clip.Video && clip.Params.Codec == "h265":
			err = w.WriteH265(vt, f.PTS+tsOffset, f.DTS+tsOffset, media.VideoNALUs(f, media.DropDelimiters))
		case f.Track == clip.Video:
			err = w.WriteH264(vt, f.PTS+tsOffset, f.DTS+tsOffset, media.VideoNALUs(f, media.DropDelimiters))
		default:
			err = w.WriteMPEG4Audio(at, media.Rescale(f.DTS, f.Track.ClockRate, 90000)+tsOffset, [][]byte{f.Payload})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// probedFrame is a decoded frame as ffprobe reports it.
type probedFrame struct {
	MediaType  string `json:"media_type"`
	PTS        int64  `json:"pts"`
	KeyFrame   int    `json:"key_frame"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	NbSamples  int    `json:"nb_samples"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

// probeFrames decodes a file with ffprobe and returns its frames by media
// type ("video", "audio").
func probeFrames(t *testing.T, path string) map[string][]probedFrame {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries",
		"frame=media_type,pts,key_frame,width,height,nb_samples,sample_rate,channels", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var res struct {
		Frames []probedFrame `json:"frames"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	m := map[string][]probedFrame{}
	for _, f := range res.Frames {
		m[f.MediaType] = append(m[f.MediaType], f)
	}
	return m
}

// decodeErrors decodes a file with ffmpeg and returns what it says at
// level error (nothing for a clean stream).
func decodeErrors(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg decode %s: %v\n%s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// ffmpegChildren lists the ffmpeg processes this test process started that
// still exist.
func ffmpegChildren(t testing.TB) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < 0 || s[open+1:end] != "ffmpeg" {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(me) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFor polls cond every 10ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// mustClip is Library.Clip failing the test on error.
func mustClip(t testing.TB, l *Library, p Params) *Clip {
	t.Helper()
	c, err := l.Clip(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// firstPicture decodes the first video frame of a file as w×h RGB24.
func firstPicture(t *testing.T, path string, w, h int) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-").Output()
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	if len(out) != w*h*3 {
		t.Fatalf("decoded %d bytes, want %d", len(out), w*h*3)
	}
	return out
}

// near reports whether the pixel at x, y of an RGB24 picture of width w is
// within 30 of r, g, b on each component.
func near(pic []byte, w, x, y int, r, g, b int) bool {
	i := (y*w + x) * 3
	d := func(a byte, b int) bool { return int(a)-b <= 30 && b-int(a) <= 30 }
	return d(pic[i], r) && d(pic[i+1], g) && d(pic[i+2], b)
}

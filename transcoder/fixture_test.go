package transcoder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// fixture is a source stream decoded from an ffmpeg-generated MPEG-TS:
// video frames with the source PTS/DTS, AVCC payloads, relative to the
// first DTS.
type fixture struct {
	track  *media.Track
	frames []*media.Frame
}

var (
	fixtureMu    sync.Mutex
	fixtureCache = map[string]*fixture{}
	fixtureDir   string
)

// needFFmpeg fails t (never skips it) unless ffmpeg and ffprobe are
// installed.
func needFFmpeg(t testing.TB) {
	t.Helper()
	testpeer.RequireBinary(t, "apt-get install ffmpeg (ffprobe comes with it)", "ffmpeg", "ffprobe")
}

// ffmpegOutput runs ffmpeg with args and returns its standard output; an
// ffmpeg error fails t with ffmpeg's standard error (a missing encoder is
// a failure, not a skip).
func ffmpegOutput(t testing.TB, args ...string) []byte {
	t.Helper()
	needFFmpeg(t)
	var stderr bytes.Buffer
	cmd := exec.Command("ffmpeg", append([]string{"-nostdin", "-hide_banner", "-loglevel", "error"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// sourceFixture returns (generating once per test binary) a 1280x720 30 fps
// H.264 stream with a GOP of gop frames, seconds long, with B-frames
// (bframes) like OBS's default x264 settings.
func sourceFixture(t testing.TB, w, h, fps, gop, bframes int, seconds float64) *fixture {
	t.Helper()
	needFFmpeg(t)
	key := fmt.Sprintf("%dx%d@%d-g%d-b%d-%g", w, h, fps, gop, bframes, seconds)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if f := fixtureCache[key]; f != nil {
		return f
	}
	if fixtureDir == "" {
		d, err := os.MkdirTemp("", "transcoder-fixture-")
		if err != nil {
			t.Fatal(err)
		}
		fixtureDir = d
	}
	path := filepath.Join(fixtureDir, key+".ts")
	if _, err := os.Stat(path); err != nil {
		cmd := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
			"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=s=%dx%d:r=%d", w, h, fps),
			"-t", strconv.FormatFloat(seconds, 'f', -1, 64),
			"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
			"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0",
			"-bf", strconv.Itoa(bframes), "-b:v", "2500k",
			"-f", "mpegts", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("generating the fixture: %v\n%s", err, out)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fx, err := parseFixture(data)
	if err != nil {
		t.Fatal(err)
	}
	fixtureCache[key] = fx
	return fx
}

func parseFixture(data []byte) (*fixture, error) {
	rd := &mpegts.Reader{R: bytes.NewReader(data)}
	if err := rd.Initialize(); err != nil {
		return nil, err
	}
	if len(rd.Tracks()) != 1 {
		return nil, fmt.Errorf("%d tracks", len(rd.Tracks()))
	}
	fx := &fixture{}
	var sps, pps []byte
	var first int64
	have := false
	rd.OnDataH264(rd.Tracks()[0], func(pts, dts int64, au [][]byte) error {
		var keep [][]byte
		for _, n := range au {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				if sps == nil {
					sps = bytes.Clone(n)
				}
				continue
			case h264.NALUTypePPS:
				if pps == nil {
					pps = bytes.Clone(n)
				}
				continue
			}
			keep = append(keep, n)
		}
		if !have {
			have, first = true, dts
		}
		p, err := h264.AVCC(keep).Marshal()
		if err != nil {
			return err
		}
		fx.frames = append(fx.frames, &media.Frame{
			DTS: dts - first, PTS: pts - first, Key: h264.IsRandomAccess(au), Payload: p,
		})
		return nil
	})
	for {
		if err := rd.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	if sps == nil || pps == nil {
		return nil, errors.New("no parameter sets")
	}
	fx.track = &media.Track{ID: 1, Codec: &media.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	for _, f := range fx.frames {
		f.Track = fx.track
	}
	return fx, nil
}

// gops splits the fixture's frames into GOPs.
func (fx *fixture) gops() [][]*media.Frame {
	var out [][]*media.Frame
	for _, f := range fx.frames {
		if f.Key || len(out) == 0 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], f)
	}
	return out
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

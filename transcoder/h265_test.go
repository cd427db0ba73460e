package transcoder

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/headwater-live/headwater/media"
)

// TestH265Source transcodes an HEVC source into the (H.264) ladder.
func TestH265Source(t *testing.T) {
	out := ffmpegOutput(t, "-f", "lavfi", "-i", "testsrc2=s=320x180:r=30", "-t", "2",
		"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=30:min-keyint=30:scenecut=0:bframes=0:log-level=error",
		"-pix_fmt", "yuv420p", "-f", "mpegts", "pipe:1")
	rd := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := rd.Initialize(); err != nil {
		t.Fatal(err)
	}
	codec := &media.H265{}
	track := &media.Track{ID: 1, Codec: codec, ClockRate: 90000}
	var frames []*media.Frame
	rd.OnDataH265(rd.Tracks()[0], func(pts, dts int64, au [][]byte) error {
		var keep [][]byte
		key := false
		for _, n := range au {
			switch typ := h265.NALUType((n[0] >> 1) & 0x3f); typ {
			case h265.NALUType_VPS_NUT:
				codec.VPS = bytes.Clone(n)
			case h265.NALUType_SPS_NUT:
				codec.SPS = bytes.Clone(n)
			case h265.NALUType_PPS_NUT:
				codec.PPS = bytes.Clone(n)
			default:
				if typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT {
					key = true
				}
				keep = append(keep, n)
			}
		}
		p, err := h264.AVCC(keep).Marshal()
		if err != nil {
			return err
		}
		frames = append(frames, &media.Frame{Track: track, DTS: dts, PTS: pts, Key: key, Payload: p})
		return nil
	})
	for {
		if err := rd.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
	}
	base := frames[0].DTS
	for _, f := range frames {
		f.DTS -= base
		f.PTS -= base
	}
	lad := Ladder{{Name: "90p", Height: 90, Bitrate: "100k", Preset: "ultrafast"}}
	m := NewMetrics(nil)
	pool := startPool(t, PoolConfig{Size: 1, Warm: 1, MaxWait: 100, Prewarm: []Ladder{lad}}, m)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/hevc", frames, 0, rec), 60*time.Second)
	o := rec.get("live/hevc/90p")
	if o == nil || len(o.gops()) != 2 || len(o.frames) != len(frames) || len(o.gaps) != 0 {
		t.Fatalf("output %+v", o)
	}
	if _, ok := o.frames[0].Track.Codec.(*media.H264); !ok || o.frames[0].PTS != frames[0].PTS {
		t.Fatalf("first frame %T PTS %d", o.frames[0].Track.Codec, o.frames[0].PTS)
	}
}

package srt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// TestDemuxFiles runs TS files made by ffmpeg through the publisher
// pipeline (no SRT): codecs, key frames, timestamps, payload formats.
func TestDemuxFiles(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want expect
	}{
		{"h264-aac", append(append(testsrcArgs("3"), x264Args...), "-c:a", "aac"),
			expect{video: "h264", audio: "aac", seconds: 3, exact: true, gop: 60}},
		{"h264-bframes", append(append(testsrcArgs("3"), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "2"), "-c:a", "aac"),
			expect{video: "h264", audio: "aac", seconds: 3, exact: true, bframes: true, gop: 60}},
		{"h265-aac", append(testsrcArgs("3"), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none:keyint=60:bframes=0:scenecut=0", "-c:a", "aac"),
			expect{video: "h265", audio: "aac", seconds: 3, exact: true, gop: 60}},
		{"h264-opus", append(append(testsrcArgs("3"), x264Args...), "-c:a", "libopus"),
			expect{video: "h264", audio: "opus", seconds: 3, exact: true, gop: 60}},
		{"video-only", append(append(testsrcArgs("2"), x264Args...), "-an"),
			expect{video: "h264", seconds: 2, exact: true, gop: 60}},
		{"audio-only", append(testsrcArgs("2"), "-vn", "-c:a", "aac"),
			expect{audio: "aac", seconds: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := testTS(t, tc.name, tc.args...)
			e := newEnv(t, Config{})
			if err := e.publishBytes("live/"+tc.name, ts); !errors.Is(err, io.EOF) {
				t.Fatalf("session ended with %v", err)
			}
			c := e.waitPublished("live/"+tc.name, 1, time.Second)
			c.Wait(t, 5*time.Second)
			checkStream(t, c, tc.want)
			if got := e.metrics.Value("headwater_srt_demux_errors_total"); got != 0 {
				t.Errorf("demux errors = %v", got)
			}
			if _, live := e.reg.Get("live/" + tc.name); live {
				t.Error("stream still registered")
			}
		})
	}
}

// TestDemuxWrap publishes a stream whose timestamps wrap around 2^33 in the
// middle: the output goes on without a jump.
func TestDemuxWrap(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	// 2^33 ticks of 90 kHz are 95443.717688 s: start 1.5 s before the wrap.
	args := append(append(testsrcArgs("3"), x264Args...), "-c:a", "aac",
		"-output_ts_offset", strconv.FormatFloat(95443.717688-1.5, 'f', 6, 64))
	ts := testTS(t, "wrap", args...)
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/wrap", ts)
	c := e.waitPublished("live/wrap", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkStream(t, c, expect{video: "h264", audio: "aac", seconds: 3, exact: true, gop: 60})
	if strings := e.logs.String(); bytes.Contains([]byte(strings), []byte("discontinuity")) {
		t.Error("wrap-around taken for a discontinuity")
	}
}

// TestDemuxDiscontinuity publishes two encodes back to back, the second
// one's timestamps 1000 s later: the output stays continuous.
func TestDemuxDiscontinuity(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	a := testTS(t, "h264-aac-2s", append(append(testsrcArgs("2"), x264Args...), "-c:a", "aac")...)
	b := testTS(t, "h264-aac-2s-late", append(append(testsrcArgs("2"), x264Args...), "-c:a", "aac", "-output_ts_offset", "1000")...)
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/jump", append(append([]byte(nil), a...), b...))
	c := e.waitPublished("live/jump", 1, time.Second)
	c.Wait(t, 5*time.Second)
	testpeer.WaitLog(e.t, e.logs, "timestamp discontinuity", time.Second)

	var last [3]int64
	var seen [3]bool
	var maxStep [3]int64
	for _, f := range c.Frames() {
		id := f.Track.ID
		if seen[id] {
			step := f.DTS - last[id]
			if step <= 0 && id == videoTrackID {
				t.Fatalf("video DTS went from %d to %d", last[id], f.DTS)
			}
			maxStep[id] = max(maxStep[id], step)
		}
		seen[id], last[id] = true, f.DTS
	}
	// No gap of more than half a second on either track.
	if maxStep[videoTrackID] > 45000 || maxStep[audioTrackID] > 24000 {
		t.Errorf("largest steps: video %d/90000, audio %d/48000", maxStep[videoTrackID], maxStep[audioTrackID])
	}
	if n := len(c.Frames()); n < 120+2*2*46 {
		t.Errorf("%d frames", n)
	}
}

// stripPCR clears the PCR flag of every adaptation field: the stream has no
// clock reference left (the remaining bytes are stuffing).
func stripPCR(ts []byte) []byte {
	out := bytes.Clone(ts)
	for off := 0; off+188 <= len(out); off += 188 {
		p := out[off : off+188]
		if p[0] == 0x47 && p[3]&0x20 != 0 && p[4] > 0 {
			p[5] &^= 0x10
		}
	}
	return out
}

func TestDemuxWithoutPCR(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	ts := stripPCR(testTS(t, "h264-bframes", append(append(testsrcArgs("3"), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "2"), "-c:a", "aac")...))
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/nopcr", ts)
	c := e.waitPublished("live/nopcr", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkStream(t, c, expect{video: "h264", audio: "aac", seconds: 3, exact: true, bframes: true, gop: 60})
}

// TestDemuxCorrupt damages a TS file in the middle: the errors are counted
// and the stream goes on to the end.
func TestDemuxCorrupt(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	ts := corruptTS(testTS(t, "h264-aac-4s", append(append(testsrcArgs("4"), x264Args...), "-c:a", "aac")...))
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/corrupt", ts)
	c := e.waitPublished("live/corrupt", 1, time.Second)
	c.Wait(t, 5*time.Second)
	if got := e.metrics.Value("headwater_srt_demux_errors_total"); got == 0 {
		t.Error("no demux error counted")
	}
	checkCorruptStream(t, c)
}

// corruptTS damages the middle of a TS file: garbage bytes inserted (the
// packets lose their alignment), sync bytes and headers overwritten, PES
// payload bytes flipped.
func corruptTS(ts []byte) []byte {
	out := bytes.Clone(ts)
	mid := len(out) / 188 / 2 * 188
	for i := range 20 { // 20 packets: broken sync bytes and PIDs, flipped payload
		p := out[mid+i*188:]
		switch i % 4 {
		case 0:
			p[0] = 0x00
		case 1:
			p[1] ^= 0x1f
		case 2:
			for j := 20; j < 60; j++ {
				p[j] ^= 0xa5
			}
		case 3:
			p[3] ^= 0x0f // continuity counter
		}
	}
	garbage := bytes.Repeat([]byte{0x47, 0x13, 0x00, 0xff, 0x2a}, 31) // 155 bytes, not a multiple of 188
	at := mid + 40*188
	return append(append(append([]byte(nil), out[:at]...), garbage...), out[at:]...)
}

// checkCorruptStream checks a 4 s publish damaged in the middle: it went
// on to the end with monotonic timestamps.
func checkCorruptStream(t *testing.T, c *testpeer.Capture) {
	t.Helper()
	checkLossyStream(t, c, 4)
}

// checkLossyStream checks a publish of seconds of H.264 and AAC that may
// have lost data on the way (damage, or SRT drops on a loaded machine):
// well-formed frames, monotonic timestamps, going on to the end.
func checkLossyStream(t *testing.T, c *testpeer.Capture, seconds int) {
	t.Helper()
	var video, audio []*media.Frame
	for _, f := range c.Frames() {
		if f.Track.Kind() == media.KindVideo {
			video = append(video, f)
			testpeer.CheckAVCC(t, f.Payload)
		} else {
			audio = append(audio, f)
		}
	}
	if len(video) < 15*seconds || len(audio) < 23*seconds {
		t.Errorf("%d video and %d audio frames out of %d and %d", len(video), len(audio), 30*seconds, 47*seconds)
	}
	if len(video) == 0 || !video[0].Key {
		t.Fatal("no video, or not starting with a key frame")
	}
	if end := video[len(video)-1].DTS; end < int64(seconds-1)*90000 {
		t.Errorf("video stopped at %s", media.TicksToDuration(end, 90000))
	}
	for i := 1; i < len(video); i++ {
		if video[i].DTS <= video[i-1].DTS {
			t.Fatalf("video DTS not increasing at %d", i)
		}
	}
	for i := 1; i < len(audio); i++ {
		if audio[i].DTS <= audio[i-1].DTS {
			t.Fatalf("audio DTS not increasing at %d", i)
		}
	}
}

// TestDemuxUnsupported: a program without a supported track is refused as
// unsupported_codec, naming the codecs; one with a supported track left is
// published with it alone.
func TestDemuxUnsupported(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})

	ts := testTS(t, "mpeg2-mp2", append(testsrcArgs("1"), "-c:v", "mpeg2video", "-c:a", "mp2")...)
	err := e.publishBytes("live/mpeg2", ts)
	var se *ingest.SessionError
	if !errors.As(err, &se) || se.Reason != ingest.ReasonUnsupportedCodec {
		t.Fatalf("session ended with %v, want unsupported_codec", err)
	}
	testpeer.WaitLog(e.t, e.logs, "MPEG-1/2 video", time.Second)
	testpeer.WaitLog(e.t, e.logs, "MPEG-1/2 audio", time.Second)
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "unsupported_codec"); got != 1 {
		t.Errorf("unsupported_codec errors = %v", got)
	}

	ts = testTS(t, "mpeg2-aac", append(testsrcArgs("2"), "-c:v", "mpeg2video", "-c:a", "aac")...)
	_ = e.publishBytes("live/mpeg2aac", ts)
	c := e.waitPublished("live/mpeg2aac", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkStream(t, c, expect{audio: "aac", seconds: 2})
	testpeer.WaitLog(e.t, e.logs, "ignoring tracks", time.Second)
	if n := e.caps.Publishes("live/mpeg2"); n != 0 {
		t.Errorf("mpeg2 published %d times", n)
	}
}

// benchTS is the committed TS file of the benchmark and of the tests that
// run without ffmpeg (2 s of 640x360 H.264 and AAC, made with
// testdata/gen.sh).
func benchTS(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/h264_aac.ts")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestDemuxTestdata runs the committed file (no ffmpeg needed).
func TestDemuxTestdata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/testdata", benchTS(t))
	c := e.waitPublished("live/testdata", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkStream(t, c, expect{video: "h264", audio: "aac", seconds: 2, exact: true, gop: 60})
}

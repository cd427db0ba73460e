package rtmp

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

func TestMain(m *testing.M) {
	code := m.Run()
	flvFiles.RemoveAll()
	os.Exit(code)
}

// checkPublish checks the frames ffmpeg published with testsrcArgs for the
// given duration: H.264 640x360 + AAC 48 kHz, a key frame every 60 frames,
// monotonic DTS, audio DTS steps of exactly 1024, AVCC payloads.
func checkPublish(t *testing.T, c *testpeer.Capture, seconds int, bframes bool) {
	t.Helper()
	tracks := c.Stream.Tracks()
	if len(tracks) != 2 {
		t.Fatalf("%d tracks, want 2", len(tracks))
	}
	vt, at := tracks[0], tracks[1]
	h, ok := vt.Codec.(*media.H264)
	if !ok || vt.ID != 1 || vt.ClockRate != 90000 {
		t.Fatalf("video track: id %d codec %T clock %d", vt.ID, vt.Codec, vt.ClockRate)
	}
	info, err := media.ParseVideoInfo(h)
	if err != nil {
		t.Fatal(err)
	}
	if info.Width != 640 || info.Height != 360 {
		t.Errorf("video %dx%d, want 640x360", info.Width, info.Height)
	}
	aac, ok := at.Codec.(*media.AAC)
	if !ok || at.ID != 2 || at.ClockRate != 48000 || aac.Config.SampleRate != 48000 {
		t.Fatalf("audio track: id %d codec %T clock %d", at.ID, at.Codec, at.ClockRate)
	}

	var video, audio []*media.Frame
	for _, f := range c.Frames() {
		switch f.Track.ID {
		case 1:
			video = append(video, f)
		case 2:
			audio = append(audio, f)
		default:
			t.Fatalf("frame of track %d", f.Track.ID)
		}
	}
	if want := 30 * seconds; len(video) != want {
		t.Errorf("%d video frames, want %d", len(video), want)
	}
	if min := 48000 * seconds / 1024; len(audio) < min {
		t.Errorf("%d audio frames, want at least %d", len(audio), min)
	}

	var keys []int
	reordered := 0
	for i, f := range video {
		if f.Track != vt {
			t.Fatalf("video frame %d has another track", i)
		}
		testpeer.CheckAVCC(t, f.Payload)
		if f.Key {
			keys = append(keys, i)
			if !hasIDR(f.Payload) {
				t.Errorf("key frame %d has no IDR slice", i)
			}
		}
		if i > 0 && f.DTS <= video[i-1].DTS {
			t.Errorf("video DTS not increasing at %d: %s after %s", i, testpeer.FormatFrame(f), testpeer.FormatFrame(video[i-1]))
		}
		if f.PTS < f.DTS {
			t.Errorf("video frame %d: PTS < DTS: %s", i, testpeer.FormatFrame(f))
		}
		if f.PTS != f.DTS {
			reordered++
		}
		if f.Received.IsZero() {
			t.Errorf("video frame %d without reception time", i)
		}
	}
	for i, k := range keys {
		if k != 60*i {
			t.Errorf("key frames at %v, want every 60 frames from 0", keys)
			break
		}
	}
	if len(keys) != (len(video)+59)/60 {
		t.Errorf("key frames at %v for %d frames", keys, len(video))
	}
	if bframes && reordered == 0 {
		t.Error("no frame with PTS != DTS in a stream with B-frames")
	}
	if !bframes && reordered != 0 {
		t.Errorf("%d frames with PTS != DTS without B-frames", reordered)
	}

	for i, f := range audio {
		if !f.Key || f.PTS != f.DTS || len(f.Payload) == 0 {
			t.Errorf("audio frame %d: %s", i, testpeer.FormatFrame(f))
		}
		if i > 0 && f.DTS-audio[i-1].DTS != 1024 {
			t.Errorf("audio DTS step %d at frame %d, want 1024", f.DTS-audio[i-1].DTS, i)
		}
	}
	// Audio and video start together (within 100 ms).
	if d := media.TicksToDuration(video[0].DTS, 90000) - media.TicksToDuration(audio[0].DTS, 48000); d > 100*time.Millisecond || d < -100*time.Millisecond {
		t.Errorf("audio starts %s away from video", d)
	}
}

func TestPublishFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	args := append(testsrcArgs("3"), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
		"-g", "60", "-c:a", "aac", "-f", "flv", e.url("test"))
	if out, err := testpeer.FFmpeg(ctx, append([]string{"-re"}, args...)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	c := e.waitPublished("live/test", 1, time.Second)
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, 3, false)

	if _, live := e.reg.Get("live/test"); live {
		t.Error("stream still registered after the publisher left")
	}
	e.metrics.CheckEnded(90)
	if got := e.metrics.Value("headwater_ingest_connections_total"); got != 1 {
		t.Errorf("connections metric = %v, want 1", got)
	}
}

// TestPublishFFmpegBFrames publishes H.264 with B-frames and, while it is
// live, tries a second publisher on the same key: it is refused and the
// first one is not disturbed.
func TestPublishFFmpegBFrames(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		args := append(testsrcArgs("4"), "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2",
			"-g", "60", "-c:a", "aac", "-f", "flv", e.url("bframes"))
		out, err := testpeer.FFmpeg(ctx, append([]string{"-re"}, args...)...)
		if err != nil {
			t.Logf("ffmpeg output:\n%s", out)
		}
		first <- err
	}()
	c := e.waitPublished("live/bframes", 1, 5*time.Second)

	second := append(testsrcArgs("1"), "-c:v", "libx264", "-preset", "ultrafast",
		"-c:a", "aac", "-f", "flv", e.url("bframes"))
	if out, err := testpeer.FFmpeg(ctx, second...); err == nil {
		t.Errorf("second publisher on a live key succeeded\n%s", out)
	}
	e.metrics.WaitErrors(ingest.ReasonAlreadyPublishing, 1)
	if n := e.caps.Publishes("live/bframes"); n != 1 {
		t.Errorf("%d publishes of live/bframes", n)
	}
	select {
	case <-c.Done():
		t.Fatal("first publisher's stream ended when the second was refused")
	default:
	}
	before := c.Count()

	if err := <-first; err != nil {
		t.Fatalf("first publisher: %v", err)
	}
	c.Wait(t, 5*time.Second)
	if c.Count() <= before {
		t.Errorf("first publisher stopped at %d frames", before)
	}
	checkPublish(t, c, 4, true)
}

func TestUnsupportedCodecFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cases := []struct {
		key, log string
		codec    []string
	}{
		{"flv1", "unsupported video codec 2 (Sorenson H.263)", []string{"-c:v", "flv1", "-c:a", "aac"}},
		{"mp3", "unsupported audio codec 2 (MP3)", []string{"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libmp3lame", "-ar", "44100"}},
		{"speex", "unsupported audio codec 11 (Speex)", []string{"-vn", "-c:a", "libspeex", "-ar", "16000"}},
	}
	for i, tc := range cases {
		args := append(append(testsrcArgs("1"), tc.codec...), "-f", "flv", e.url(tc.key))
		out, _ := testpeer.FFmpeg(ctx, args...) // ffmpeg may or may not notice the drop
		e.metrics.WaitErrors(ingest.ReasonUnsupportedCodec, float64(i+1))
		testpeer.WaitLog(e.t, e.logs, tc.log, 2*time.Second)
		if n := e.caps.Publishes("live/" + tc.key); n != 0 {
			t.Errorf("%s: published %d times\n%s", tc.key, n, out)
		}
	}
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "internal"); got != 0 {
		t.Errorf("internal errors = %v", got)
	}
}

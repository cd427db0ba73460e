package transcoder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	mpegtscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/media"
)

// opusFixture encodes seconds of a tone to Opus packets (20 ms each) with
// their DTS at 48 kHz, starting at start.
func opusFixture(t *testing.T, seconds float64, start int64) []*media.Frame {
	t.Helper()
	needFFmpeg(t)
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
		"sine=frequency=440:sample_rate=48000", "-t", strconv.FormatFloat(seconds, 'f', -1, 64),
		"-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-f", "mpegts", "pipe:1").Output()
	if err != nil {
		t.Skipf("ffmpeg cannot make Opus: %v", err)
	}
	r := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	tr := &media.Track{ID: 2, Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
	var frames []*media.Frame
	dts := start
	for _, mt := range r.Tracks() {
		if _, ok := mt.Codec.(*mpegtscodecs.Opus); ok {
			r.OnDataOpus(mt, func(_ int64, packets [][]byte) error {
				for _, p := range packets {
					frames = append(frames, &media.Frame{Track: tr, DTS: dts, PTS: dts, Key: true, Payload: p})
					dts += int64(opus.PacketDuration2(p))
				}
				return nil
			})
		}
	}
	for {
		if err := r.Read(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	if len(frames) < 10 {
		t.Fatalf("only %d Opus frames", len(frames))
	}
	return frames
}

func TestRunAudio(t *testing.T) {
	src := opusFixture(t, 3, 96000)
	goroutines := runtime.NumGoroutine()
	in := make(chan *media.Frame)
	out := make(chan *media.Frame, 1024)
	errc := make(chan error, 1)
	go func() { errc <- RunAudio(context.Background(), AudioConfig{}, in, out) }()
	// A video frame first: ignored.
	in <- &media.Frame{Track: &media.Track{ID: 1, Codec: &media.H264{}, ClockRate: 90000}, Payload: []byte{1}}
	for _, f := range src {
		in <- f
	}
	close(in)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	close(out)
	var got []*media.Frame
	for f := range out {
		got = append(got, f)
	}
	// 3 s at 48 kHz: ~140 frames of 1024 samples, plus priming/padding.
	if len(got) < 138 || len(got) > 145 {
		t.Fatalf("%d AAC frames for 3 s", len(got))
	}
	c, ok := got[0].Track.Codec.(*media.AAC)
	if !ok || c.RFC6381() != "mp4a.40.2" || c.Config.SampleRate != 48000 || got[0].Track.ClockRate != 48000 {
		t.Fatalf("track %+v codec %+v", got[0].Track, got[0].Track.Codec)
	}
	if got[0].DTS != 96000-1024 {
		t.Fatalf("first DTS %d, want %d", got[0].DTS, 96000-1024)
	}
	for i, f := range got {
		if f.Track != got[0].Track || f.DTS != got[0].DTS+int64(i)*1024 || len(f.Payload) == 0 {
			t.Fatalf("frame %d: DTS %d track %p", i, f.DTS, f.Track)
		}
	}
	waitGoroutines(t, goroutines)
}

func TestRunAudioCancel(t *testing.T) {
	src := opusFixture(t, 1, 0)
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	in := make(chan *media.Frame)
	out := make(chan *media.Frame) // never read: the reader blocks
	errc := make(chan error, 1)
	go func() { errc <- RunAudio(ctx, AudioConfig{}, in, out) }()
	for _, f := range src[:20] {
		in <- f
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunAudio did not return after cancel")
	}
	waitGoroutines(t, goroutines)
	// No ffmpeg left: the process group is gone.
	if out, _ := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid()), "ffmpeg").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg left: %s", out)
	}
}

func TestRunAudioNothingToDo(t *testing.T) {
	in := make(chan *media.Frame, 1)
	in <- &media.Frame{Track: &media.Track{ID: 1, Codec: &media.AAC{}, ClockRate: 48000}, Payload: []byte{1}}
	close(in)
	if err := RunAudio(context.Background(), AudioConfig{}, in, make(chan *media.Frame)); err != nil {
		t.Fatal(err)
	}
}

func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left (had %d):\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

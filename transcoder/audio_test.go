package transcoder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	mpegtscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// opusFixture encodes seconds of a tone to Opus packets (20 ms each) with
// their DTS at 48 kHz, starting at start.
func opusFixture(t *testing.T, seconds float64, start int64) []*media.Frame {
	t.Helper()
	out := ffmpegOutput(t, "-f", "lavfi", "-i",
		"sine=frequency=440:sample_rate=48000", "-t", strconv.FormatFloat(seconds, 'f', -1, 64),
		"-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-f", "mpegts", "pipe:1")
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
	testpeer.WaitGoroutines(t, goroutines)
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
	testpeer.WaitFor(t, 10*time.Second, "ffmpeg to start", func() bool {
		out, _ := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid()), "ffmpeg").Output()
		return len(bytes.TrimSpace(out)) > 0
	})
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunAudio did not return after cancel")
	}
	testpeer.WaitGoroutines(t, goroutines)
	// No ffmpeg left: the process group is gone.
	noFFmpegLeft(t)
}

func TestRunAudioNothingToDo(t *testing.T) {
	in := make(chan *media.Frame, 1)
	in <- &media.Frame{Track: &media.Track{ID: 1, Codec: &media.AAC{}, ClockRate: 48000}, Payload: []byte{1}}
	close(in)
	if err := RunAudio(context.Background(), AudioConfig{}, in, make(chan *media.Frame)); err != nil {
		t.Fatal(err)
	}
}

// logRecords is a slog.Handler keeping the records logged.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }

func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// wait returns the first record of level whose message contains msg,
// failing t after 10 s.
func (h *logRecords) wait(t *testing.T, level slog.Level, msg string) slog.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		for _, r := range h.recs {
			if r.Level == level && strings.Contains(r.Message, msg) {
				h.mu.Unlock()
				return r
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %v record %q logged", level, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recordAttrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

// noFFmpegLeft fails t if an ffmpeg child of the test is left.
func noFFmpegLeft(t *testing.T) {
	t.Helper()
	if out, _ := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid()), "ffmpeg").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg left: %s", out)
	}
}

// TestRunAudioRestart kills the ffmpeg process mid-stream: a new one
// continues the audio on the source's timeline, after a hole.
func TestRunAudioRestart(t *testing.T) {
	src := opusFixture(t, 6, 96000)
	goroutines := runtime.NumGoroutine()
	m := NewMetrics(nil)
	logs := &logRecords{}
	pids := make(chan int, 10)
	cfg := AudioConfig{Metrics: m, Log: slog.New(logs), onStart: func(pid int) { pids <- pid }}
	in := make(chan *media.Frame)
	out := make(chan *media.Frame, 4096)
	errc := make(chan error, 1)
	go func() { errc <- RunAudio(context.Background(), cfg, in, out) }()

	const before = 100 // 2 s for the first process
	for _, f := range src[:before] {
		in <- f
	}
	var got []*media.Frame
	for len(got) < 20 {
		select {
		case f := <-out:
			got = append(got, f)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d AAC frames from the first process", len(got))
		}
	}
	pid := <-pids
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := logs.wait(t, slog.LevelWarn, "died mid-stream")
	if a := recordAttrs(r); !strings.Contains(a["error"], "killed") || a["restart_in"] != "100ms" {
		t.Fatalf("warning %q %v", r.Message, a)
	}
	// Past the 100 ms wait: the next frame starts the new process.
	time.Sleep(400 * time.Millisecond)
	restartDTS := src[before].DTS
	for _, f := range src[before:] {
		in <- f
	}
	close(in)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	close(out)
	for f := range out {
		got = append(got, f)
	}
	if n := len(pids); n != 1 {
		t.Fatalf("%d processes started after the kill, want 1", n)
	}
	if n := testutil.ToFloat64(m.audioRestarts); n != 1 {
		t.Fatalf("restarts counter %v, want 1", n)
	}

	// On the first process's 1024-sample grid, strictly forward, without
	// overlap; one hole, where the new process starts at the DTS of its
	// first frame (minus its priming frame).
	grid := int64(96000 - 1024)
	if got[0].DTS != grid {
		t.Fatalf("first DTS %d, want %d", got[0].DTS, grid)
	}
	hole := -1
	for i, f := range got {
		if f.Track != got[0].Track || len(f.Payload) == 0 || (f.DTS-grid)%1024 != 0 {
			t.Fatalf("frame %d: DTS %d track %p", i, f.DTS, f.Track)
		}
		if i == 0 {
			continue
		}
		switch d := f.DTS - got[i-1].DTS; {
		case d < 1024:
			t.Fatalf("frame %d: DTS %d after %d: overlap", i, f.DTS, got[i-1].DTS)
		case d > 1024:
			if hole >= 0 {
				t.Fatalf("second hole at frame %d (first at %d)", i, hole)
			}
			hole = i
		}
	}
	if hole < 0 {
		t.Fatal("no hole over the restart")
	}
	want := grid + roundToMultiple(restartDTS-1024-grid, 1024)
	if got[hole].DTS != want {
		t.Fatalf("new process starts at DTS %d, want %d (its first frame at %d)", got[hole].DTS, want, restartDTS)
	}
	// The new process transcoded the rest: its audio ends with the source's.
	last := src[len(src)-1]
	srcEnd := last.DTS + int64(opus.PacketDuration2(last.Payload))
	if end := got[len(got)-1].DTS + 1024; end < srcEnd-1024 || end > srcEnd+2048 {
		t.Fatalf("AAC ends at %d, the source at %d (%d frames after the hole)", end, srcEnd, len(got)-hole)
	}
	t.Logf("%d AAC frames, a hole of %d samples before frame %d, ending at %d for a source ending at %d",
		len(got), got[hole].DTS-got[hole-1].DTS-1024, hole, got[len(got)-1].DTS+1024, srcEnd)
	testpeer.WaitGoroutines(t, goroutines)
	noFFmpegLeft(t)
}

// TestRunAudioGiveUp: a process that dies at once is restarted up to 5
// times in a row, then RunAudio fails as before (dropping the rest of in).
func TestRunAudioGiveUp(t *testing.T) {
	script := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho boom >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	m := NewMetrics(nil)
	logs := &logRecords{}
	var mu sync.Mutex
	starts := 0
	cfg := AudioConfig{FFmpeg: script, Metrics: m, Log: slog.New(logs), onStart: func(int) {
		mu.Lock()
		starts++
		mu.Unlock()
	}}
	in := make(chan *media.Frame)
	errc := make(chan error, 1)
	go func() { errc <- RunAudio(context.Background(), cfg, in, make(chan *media.Frame)) }()
	// A live source: a 20 ms frame every 5 ms.
	stop, fed := make(chan struct{}), make(chan struct{})
	var sent atomic.Int64
	go func() {
		defer close(fed)
		defer close(in)
		tr := &media.Track{ID: 2, Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
		for dts := int64(0); ; dts += 960 {
			select {
			case in <- &media.Frame{Track: tr, DTS: dts, PTS: dts, Key: true, Payload: []byte{0xfc, 0xff, 0xfe}}:
				sent.Add(1)
			case <-stop:
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	logs.wait(t, slog.LevelError, "giving up")
	// RunAudio drops the rest of in until it is closed: it takes frames
	// without starting a process.
	n := sent.Load()
	testpeer.WaitFor(t, 10*time.Second, "frames taken after giving up", func() bool { return sent.Load() >= n+10 })
	close(stop)
	<-fed
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "5 times") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if starts != 5 {
		t.Fatalf("%d processes started, want 5", starts)
	}
	if n := testutil.ToFloat64(m.audioRestarts); n != 4 {
		t.Fatalf("restarts counter %v, want 4", n)
	}
	logs.mu.Lock()
	warnings := 0
	for _, r := range logs.recs {
		if r.Level == slog.LevelWarn && strings.Contains(r.Message, "died mid-stream") {
			warnings++
			if a := recordAttrs(r); a["stderr"] != "boom" {
				t.Errorf("warning %v", a)
			}
		}
	}
	logs.mu.Unlock()
	if warnings != 4 {
		t.Fatalf("%d warnings, want 4", warnings)
	}
	testpeer.WaitGoroutines(t, goroutines)
}

// TestRunAudioNoBinary: a first process that cannot start fails RunAudio at
// once, without restarts.
func TestRunAudioNoBinary(t *testing.T) {
	m := NewMetrics(nil)
	started := false
	cfg := AudioConfig{FFmpeg: filepath.Join(t.TempDir(), "nope"), Metrics: m, onStart: func(int) { started = true }}
	in := make(chan *media.Frame, 2)
	tr := &media.Track{ID: 2, Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
	in <- &media.Frame{Track: tr, Key: true, Payload: []byte{0xfc}}
	in <- &media.Frame{Track: tr, DTS: 960, PTS: 960, Key: true, Payload: []byte{0xfc}}
	close(in)
	err := RunAudio(context.Background(), cfg, in, make(chan *media.Frame))
	if err == nil || started || testutil.ToFloat64(m.audioRestarts) != 0 {
		t.Fatalf("error %v, started %v", err, started)
	}
}

package srt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

const testPassphrase = "correct-horse-battery"

// publishFFmpeg publishes with ffmpeg over SRT (-re) and returns ffmpeg's
// error and output.
func (e *testEnv) publishFFmpeg(ctx context.Context, streamid, passphrase string, args ...string) (string, error) {
	all := append([]string{"-re"}, args...)
	// linger: ffmpeg's SRT socket waits for the receiver to acknowledge
	// what it sent before closing (live mode's default is to drop it),
	// so that a publish arrives whole.
	all = append(all, "-f", "mpegts", e.url(streamid, passphrase)+"&linger=5")
	return testpeer.FFmpeg(ctx, all...)
}

func TestPublishFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	cases := []struct {
		name     string
		streamid string
		codecs   []string
		want     expect
	}{
		{"h264", "#!::r=live/h264,m=publish", append(append([]string{}, x264Args...), "-c:a", "aac"),
			expect{video: "h264", audio: "aac", seconds: 4, exact: true, gop: 60}},
		{"bframes", "publish:live/bframes", []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "2", "-c:a", "aac"},
			expect{video: "h264", audio: "aac", seconds: 4, exact: true, bframes: true, gop: 60}},
		{"h265", "live/h265", []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none:keyint=60:bframes=0", "-c:a", "aac"},
			expect{video: "h265", audio: "aac", seconds: 4, exact: true}},
		{"opus", "#!::m=publish,r=live/opus,u=alice,x-token=abc", append(append([]string{}, x264Args...), "-c:a", "libopus"),
			expect{video: "h264", audio: "opus", seconds: 4, exact: true, gop: 60}},
	}
	e := newEnv(t, Config{Passphrase: testPassphrase}).start()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append(testsrcArgs("4"), tc.codecs...)
			if out, err := e.publishFFmpeg(ctx, tc.streamid, testPassphrase, args...); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, out)
			}
			c := e.waitPublished("live/"+tc.name, 1, 5*time.Second)
			c.Wait(t, 10*time.Second)
			checkStream(t, c, tc.want)
			if c.Stream.Info().Protocol != Protocol || c.Stream.Info().SessionID == "" {
				t.Errorf("publish info %+v", c.Stream.Info())
			}
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		e.metrics.Wait(0, 5*time.Second, "headwater_ingest_sessions")
		if got := e.metrics.Value("headwater_ingest_frames_total", "kind", "video"); got != 4*120 {
			t.Errorf("video frames metric = %v, want 480", got)
		}
		if got := e.metrics.Value("headwater_ingest_bytes_total"); got < 100000 {
			t.Errorf("bytes metric = %v", got)
		}
		if got := e.metrics.Value("headwater_ingest_connections_total"); got != 4 {
			t.Errorf("connections metric = %v, want 4", got)
		}
		for _, r := range ingest.Reasons {
			if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
				t.Errorf("errors{reason=%s} = %v", r, got)
			}
		}
		if got := e.metrics.Value("headwater_srt_demux_errors_total"); got != 0 {
			t.Errorf("demux errors = %v", got)
		}
		// The per-stream series are gone with their streams.
		if _, ok := e.metrics.Lookup("headwater_srt_packets_lost_total", "stream", "live/h264"); ok {
			t.Error("headwater_srt_packets_lost_total{stream=live/h264} still exported")
		}
		if strings.Contains(e.logs.String(), "level=ERROR") {
			t.Error("errors logged")
		}
	})
}

// TestReadOutFFmpeg reads a live stream back with ffmpeg (m=request) while
// ffmpeg publishes it: ffmpeg decodes it without an error.
func TestReadOutFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	cases := []struct {
		name   string
		codecs []string
	}{
		{"h264", []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "2", "-c:a", "aac"}},
		{"h265", []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none:keyint=30", "-c:a", "libopus"}},
	}
	e := newEnv(t, Config{Passphrase: testPassphrase}).start()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			name := "live/readout-" + tc.name
			published := make(chan error, 1)
			go func() {
				out, err := e.publishFFmpeg(ctx, "publish:"+name, testPassphrase, append(testsrcArgs("8"), tc.codecs...)...)
				if err != nil {
					t.Logf("publisher: %s", out)
				}
				published <- err
			}()
			c := e.waitPublished(name, 1, 10*time.Second)

			// framemd5 decodes every frame and prints a line per frame.
			out, errs, err := ffmpegOut(ctx, "-i", e.url("#!::r="+name+",m=request", testPassphrase), "-t", "3", "-f", "framemd5", "-")
			if err != nil || strings.TrimSpace(errs) != "" {
				t.Errorf("reader: %v\n%s", err, errs)
			}
			var video, audio int
			for line := range strings.Lines(out) {
				switch {
				case strings.HasPrefix(line, "0,"):
					video++
				case strings.HasPrefix(line, "1,"):
					audio++
				}
			}
			if video < 80 || audio < 100 {
				t.Errorf("reader decoded %d video and %d audio frames in 3 s", video, audio)
			}
			if err := <-published; err != nil {
				t.Errorf("publisher: %v", err)
			}
			c.Wait(t, 5*time.Second)
		})
	}
	t.Cleanup(func() {
		e.metrics.Wait(0, 5*time.Second, "headwater_srt_readers")
		if strings.Contains(e.logs.String(), "srt: reader failed") {
			t.Error("a reader failed")
		}
	})
}

package thumbnail

import (
	"bytes"
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/transcoder"
)

// forkedStarter starts ffmpeg from a transcoder.ForkServer, as the server
// does, and sums the CPU time the fork server reports for each process
// (they are the fork server's children, not this process's).
type forkedStarter struct {
	fs  *transcoder.ForkServer
	cpu atomic.Int64
}

func (s *forkedStarter) StartFFmpeg(args []string, stdin, stdout, stderr *os.File) (Process, error) {
	p, err := s.fs.Start(args, stdin, stdout, stderr)
	if err != nil {
		return nil, err
	}
	return &forkedProcess{p: p, s: s}, nil
}

type forkedProcess struct {
	p *transcoder.ForkedProcess
	s *forkedStarter
}

func (f *forkedProcess) Wait() error {
	err := f.p.Wait()
	f.s.cpu.Add(int64(f.p.CPU()))
	return err
}

func (f *forkedProcess) Kill() { f.p.Kill() }

// childCPU is the user+system CPU time of this process's waited-for
// children so far.
func childCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPoster measures a poster of a segment of a 720p and a 1080p
// H.264 stream (2 s GOPs, B-frames) scaled to 640 pixels wide: the CPU
// time of its ffmpeg process (cpu-ms/poster), the elapsed time per poster
// (ms/poster: its latency one at a time) and the throughput (posters/s);
// "x2" runs two at a time, as the default PosterProcesses allows;
// "forked" starts ffmpeg from a transcoder.ForkServer, as the server does.
func BenchmarkPoster(b *testing.B) {
	testpeer.NeedFFmpeg(b)
	fx1080 := fixture{name: "h264-1080p", size: "1920x1080", seconds: 4, codec: fxH264.codec}
	for _, bc := range []struct {
		name     string
		fx       fixture
		parallel int
		forked   bool
	}{
		{"720p", fxH264, 1, false},
		{"1080p", fx1080, 1, false},
		{"720p-x2", fxH264, 2, false},
		{"720p-forked", fxH264, 1, true},
		{"720p-forked-x2", fxH264, 2, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{PosterProcesses: bc.parallel}
			var fs *forkedStarter
			if bc.forked {
				srv, err := transcoder.StartForkServer(context.Background(), "ffmpeg", b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(srv.Close)
				fs = &forkedStarter{fs: srv}
				cfg.Starter = fs
			}
			m := newMaker(b, cfg)
			init, frags := split(b, bc.fx.bytes(b))
			poster := func() {
				jpg, err := m.Poster(context.Background(), init, frags[1], 640)
				if err != nil {
					b.Error(err)
					return
				}
				if len(jpg) == 0 {
					b.Error("empty poster")
				}
			}
			cpu0 := childCPU(b)
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range bc.parallel {
				wg.Go(func() {
					for i := w; i < b.N; i += bc.parallel {
						poster()
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			el := time.Since(start)
			cpu := childCPU(b) - cpu0
			if fs != nil {
				cpu = time.Duration(fs.cpu.Load())
			}
			b.ReportMetric(float64(el.Microseconds())/1e3/float64(b.N), "ms/poster")
			b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/poster")
			b.ReportMetric(float64(b.N)/el.Seconds(), "posters/s")
		})
	}
}

// BenchmarkSprites measures sprites of a one-minute 720p H.264 recording
// (2 s GOPs, B-frames) at the default 10 s interval: the CPU time of
// ffmpeg per minute of media (cpu-s/media-min, ffmpeg's start included),
// decoding key frames only or every frame.
func BenchmarkSprites(b *testing.B) {
	testpeer.NeedFFmpeg(b)
	m := newMaker(b, Config{})
	fx := fixture{name: "h264-720p-60s", size: "1280x720", seconds: 60, codec: fxH264.codec}
	media := fx.bytes(b)
	for _, all := range []bool{false, true} {
		name := "key-frames"
		if all {
			name = "all-frames"
		}
		b.Run(name, func(b *testing.B) {
			o := SpriteOptions{Duration: time.Duration(fx.seconds) * time.Second, AllFrames: all}
			cpu0 := childCPU(b)
			for b.Loop() {
				set, err := m.Sprites(context.Background(), bytes.NewReader(media), o)
				if err != nil {
					b.Fatal(err)
				}
				if set.Tiles() != 6 || len(set.Sheets) != 1 {
					b.Fatalf("%d thumbnails on %d sheets, want 6 on 1", set.Tiles(), len(set.Sheets))
				}
			}
			cpu := childCPU(b) - cpu0
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(fx.seconds)/60), "cpu-s/media-min")
		})
	}
}

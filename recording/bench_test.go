package recording_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/spool"
	"github.com/headwater-live/headwater/store"
)

// benchRendition is a rendition of the benchmarked stream and the size of
// its 2 s segments.
type benchRendition struct {
	info store.RenditionInfo
	size int
}

// benchRenditions are three renditions of a stream: two video rungs at
// 2 Mb/s and 800 kb/s, and 128 kb/s audio, in 2 s segments of ten 200 ms
// parts (the defaults): 500 KB, 200 KB and 32 KB segments.
var benchRenditions = []benchRendition{
	{store.RenditionInfo{Name: "720p", Kind: media.KindVideo,
		Codec:     &media.H264{SPS: []byte{0x67, 0x64, 0x00, 0x1f}, PPS: []byte{0x68}},
		Timescale: 90000, Width: 1280, Height: 720, FrameRate: 30,
		SegmentTarget: 2 * time.Second, PartTarget: 200 * time.Millisecond}, 500_000},
	{store.RenditionInfo{Name: "360p", Kind: media.KindVideo,
		Codec:     &media.H264{SPS: []byte{0x67, 0x64, 0x00, 0x1e}, PPS: []byte{0x68}},
		Timescale: 90000, Width: 640, Height: 360, FrameRate: 30,
		SegmentTarget: 2 * time.Second, PartTarget: 200 * time.Millisecond}, 200_000},
	{store.RenditionInfo{Name: "audio", Kind: media.KindAudio,
		Codec:     &media.Opus{ChannelCount: 2},
		Timescale: 48000, SampleRate: 48000, Channels: 2,
		SegmentTarget: 2 * time.Second, PartTarget: 200 * time.Millisecond}, 32_000},
}

// signalWriter is the spool, telling the benchmark each media segment the
// recorder has handed to it.
type signalWriter struct {
	recording.Writer
	segments chan string
}

func (w *signalWriter) Add(key string, data []byte, contentType string) error {
	err := w.Writer.Add(key, data, contentType)
	if strings.HasPrefix(key, "media/") && strings.Contains(key, "/seg") {
		w.segments <- key
	}
	return err
}

// cpuTime is the process's user+system CPU time so far, and the system
// part of it.
func cpuTime(b *testing.B) (total, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkRecordSegment measures what recording costs per segment. One op
// is one 2 s segment of one of three renditions (720p, 360p, audio: 500,
// 200 and 32 KB, round robin, 244 KB on average) written to the store as
// ten parts and finished:
//
//   - store-only: nothing else (the baseline: what packaging does anyway);
//   - recorded: a Recorder follows the stream (DVR window 2 h) and the op
//     waits until it has handed the segment to a spool (write, fsync,
//     rename, directory fsync, in b.TempDir()) whose Run stores it in an
//     objstore/local backend (by rename) — its index chunk rewritten
//     every segment, its summary every 5 s. The timed region ends with a
//     Flush of everything, so every upload is counted.
//
// Besides ns/op (wall: one segment at a time, so the disk's fsync latency
// is in it) it reports cpu-ns/op, the process's CPU time (user+system, all
// goroutines) per op, the figure to compare with a segment's 2 s of media,
// and sys-ns/op, its part spent in the kernel (the spool's writes, fsyncs,
// renames).
// Allocations are the whole process's: recorded minus store-only is the
// recorder's and the spool's share. Run with -benchtime=600x or more so
// that the index chunks (256 entries) fill as in a long session.
func BenchmarkRecordSegment(b *testing.B) {
	b.Run("store-only", func(b *testing.B) { benchRecord(b, false) })
	b.Run("recorded", func(b *testing.B) { benchRecord(b, true) })
}

func benchRecord(b *testing.B, record bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := store.New(store.Config{})
	stream := st.Begin("live/bench")
	rends := make([]*store.Rendition, len(benchRenditions))
	parts := make([][]byte, len(benchRenditions))
	total := 0
	for i, br := range benchRenditions {
		rends[i] = stream.AddRendition(br.info)
		rends[i].SetInit(br.info, []byte("ftyp....moov-"+br.info.Name))
		parts[i] = make([]byte, br.size/10)
		for j := range parts[i] {
			parts[i][j] = byte(i + j)
		}
		total += br.size
	}
	var w *signalWriter
	var sp *spool.Spool
	if record {
		dir := b.TempDir()
		backend, err := local.New(filepath.Join(dir, "rec"))
		if err != nil {
			b.Fatal(err)
		}
		if err := backend.Check(ctx); err != nil {
			b.Fatal(err)
		}
		sp, err = spool.Open(spool.Config{Dir: filepath.Join(dir, "spool")}, backend, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		runDone := make(chan struct{})
		runCtx, stopRun := context.WithCancel(ctx)
		go func() {
			defer close(runDone)
			_ = sp.Run(runCtx)
		}()
		w = &signalWriter{Writer: sp, segments: make(chan string, 16)}
		rec, err := recording.New(recording.Config{Writer: w, Backend: backend,
			Rules: recording.Rules{Include: []string{""}}, DVRWindow: 2 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		recCtx, stopRec := context.WithCancel(ctx)
		defer func() {
			stopRec()
			// The session's last objects (its summary) go to the spool
			// while the recorder stops.
			go func() {
				for range w.segments {
				}
			}()
			rec.Wait()
			stopRun()
			<-runDone
			_ = sp.Close()
			close(w.segments)
		}()
		rec.Follow(recCtx, stream, stream.Epoch())
	}
	b.SetBytes(int64(total / len(benchRenditions)))
	b.ReportAllocs()
	cpu0, sys0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(rends)
		r := rends[k]
		// Stamped as received a segment's duration (and more) ago, as a
		// live segment is when it completes: the recorder, which sleeps
		// until a segment should be complete, looks for it at once.
		if _, err := r.StartSegment(time.Now().Add(-3*time.Second), r.NextBaseTime()); err != nil {
			b.Fatal(err)
		}
		for p := 0; p < 10; p++ {
			if _, err := r.AppendPart(parts[k], 200*time.Millisecond, p == 0); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.FinishSegment(2 * uint64(r.Snapshot().Info.Timescale)); err != nil {
			b.Fatal(err)
		}
		if record {
			select {
			case <-w.segments:
			case <-time.After(30 * time.Second):
				b.Fatal("the recorder did not spool the segment within 30 s")
			}
		}
	}
	if record {
		if err := sp.Flush(ctx, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu, sys := cpuTime(b)
	b.ReportMetric(float64(cpu-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(sys-sys0)/float64(b.N), "sys-ns/op")
}

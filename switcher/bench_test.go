package switcher

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/slate"
)

// camera is one paced "camera": frame k is captured at start + k/fps and
// sent by every publisher attached to it, its payload carrying k, so that
// the output tells which captured frame each output frame is.
type camera struct {
	mu   sync.Mutex
	pubs map[*publisher]int // publisher -> its GOP phase
}

func (c *camera) attach(p *publisher, phase int) {
	c.mu.Lock()
	c.pubs[p] = phase
	c.mu.Unlock()
}

func (c *camera) detach(p *publisher) {
	c.mu.Lock()
	delete(c.pubs, p)
	c.mu.Unlock()
}

func (c *camera) run(ctx context.Context, fps int) {
	t := time.NewTicker(time.Second / time.Duration(fps))
	defer t.Stop()
	for k := int64(0); ; k++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			for p, phase := range c.pubs {
				payload := binary.BigEndian.AppendUint64(nil, uint64(k))
				dts := k * 3000
				p.st.WriteFrame(&media.Frame{Track: p.video, DTS: dts, PTS: dts, Key: (k+int64(phase))%int64(fps) == 0, Received: now, Payload: payload})
			}
			c.mu.Unlock()
		}
	}
}

// BenchmarkFailoverGap measures, over b.N switches from a primary to a
// backup sending the same captured frames with GOPs (1 s) out of phase,
// the frames of the capture lost at the switch (a positive gap) or shown
// twice (the backup's kept GOP starting before the primary's last frame),
// when the primary disconnects and when it goes silent (failover_after
// 200ms). Run it with -benchtime=20x.
func BenchmarkFailoverGap(b *testing.B) {
	for _, mode := range []string{"disconnect", "stall"} {
		b.Run(mode, func(b *testing.B) {
			r := newRig(b, Policy{FailoverAfter: 200 * time.Millisecond, Failback: true}, nil)
			defer r.sw.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cam := &camera{pubs: map[*publisher]int{}}
			go cam.run(ctx, 30)
			name := "live/bench-" + mode
			var lost, repeated []float64
			back, err := r.tryPublish(name, true, 2)
			if err != nil {
				b.Fatal(err)
			}
			cam.attach(back, 15)
			for i := 0; i < b.N; i++ {
				prim, err := r.tryPublish(name, false, 1)
				if err != nil {
					b.Fatal(err)
				}
				cam.attach(prim, 0)
				// The primary on the air (failback after 200 ms, at its key
				// frame), then a random time before it fails.
				n := r.caps.Publishes(name)
				deadline := time.Now().Add(5 * time.Second)
				for {
					if st, _ := r.sw.Status(name); st.OnAir == SourcePrimary && r.caps.Publishes(name) > n-1 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("the primary did not go on the air")
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(time.Duration(300+rand.IntN(1000)) * time.Millisecond)
				onAir := r.caps.Publishes(name)
				cam.detach(prim)
				if mode == "disconnect" {
					prim.st.Close()
				}
				deadline = time.Now().Add(5 * time.Second)
				for r.caps.Publishes(name) == onAir {
					if time.Now().After(deadline) {
						b.Fatal("no failover")
					}
					time.Sleep(5 * time.Millisecond)
				}
				before := r.caps.WaitPublished(b, name, onAir, time.Second).Frames()
				after := r.caps.WaitPublished(b, name, onAir+1, time.Second)
				deadline = time.Now().Add(time.Second)
				for after.Count() == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				last := int64(binary.BigEndian.Uint64(before[len(before)-1].Payload))
				first := int64(binary.BigEndian.Uint64(after.Frames()[0].Payload))
				if gap := first - last - 1; gap >= 0 {
					lost = append(lost, float64(gap))
					repeated = append(repeated, 0)
				} else {
					lost = append(lost, 0)
					repeated = append(repeated, float64(-gap))
				}
				if mode == "stall" {
					prim.st.Close()
				}
			}
			b.StopTimer()
			slices.Sort(lost)
			slices.Sort(repeated)
			q := func(v []float64, p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
			b.ReportMetric(q(lost, 0.5), "lost-p50")
			b.ReportMetric(q(lost, 0.99), "lost-p99")
			b.ReportMetric(q(repeated, 0.5), "repeated-p50")
			b.ReportMetric(q(repeated, 0.99), "repeated-p99")
		})
	}
}

// BenchmarkSlate100Streams measures the CPU of 100 always-on streams on
// the built-in slate (1280x720 30 fps + AAC 48 kHz stereo, one clip
// shared): the feeds' timers, the cursors and the writes to the outputs
// (subscribed as the packaging would be, not packaged). Each iteration is
// one second of wall time; cpu-ms/s is the process's CPU time per second.
func BenchmarkSlate100Streams(b *testing.B) {
	testpeer.NeedFFmpeg(b)
	lib := slate.NewLibrary(slate.Config{GOP: time.Second})
	src := benchSlates{lib: lib}
	var drains sync.WaitGroup
	defer drains.Wait()
	reg := media.NewRegistry(media.RegistryConfig{OnPublish: func(st *media.Stream) {
		sub := st.Subscribe(1024)
		drains.Add(1)
		go func() { // what a pipeline's subscription costs, without the packaging
			defer drains.Done()
			for range sub.Frames() {
			}
		}()
	}})
	sw := New(Config{Publisher: reg, Slates: src, Buffer: 1024,
		Policy: func(string) Policy { return Policy{ReconnectWindow: time.Hour, Slate: true} }}, prometheus.NewRegistry())
	defer sw.Close()
	// The streams' own tracks: a real 1280x720 H.264 and AAC, taken from
	// a clip of the library (then their slate is that clip).
	stream, err := lib.Clip(context.Background(), slate.Params{Codec: "h264", Profile: "high", Width: 1280, Height: 720,
		FrameDuration: time.Second / 30, AudioCodec: "aac", SampleRate: 48000, Channels: 2})
	if err != nil {
		b.Fatal(err)
	}
	video, audio := stream.Video, stream.Audio
	for i := range 100 {
		name := "live/slate" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		st, err := sw.Publish(name, media.PublishInfo{Protocol: "bench"}, []*media.Track{video, audio})
		if err != nil {
			b.Fatal(err)
		}
		for k := range 31 {
			dts := int64(k) * 3000
			st.WriteFrame(&media.Frame{Track: video, DTS: dts, PTS: dts, Key: k == 0, Received: time.Now(), Payload: []byte{0, 0, 0, 1, 0x65}})
		}
		time.Sleep(10 * time.Millisecond)
		st.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for sw.count(SourceSlate) < 100 {
		if time.Now().After(deadline) {
			b.Fatalf("%d streams on slate after 60 s", sw.count(SourceSlate))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	c0, w0 := cpu(), time.Now()
	for range b.N {
		time.Sleep(time.Second)
	}
	used, wall := cpu()-c0, time.Since(w0)
	b.StopTimer()
	b.ReportMetric(float64(used.Milliseconds())/wall.Seconds(), "cpu-ms/s")
}

// benchSlates is a slate.Library as a SlateSource (as the server's).
type benchSlates struct{ lib *slate.Library }

func (s benchSlates) Slate(ctx context.Context, video, audio *media.Track, dur time.Duration) (Slate, error) {
	p, err := slate.ParamsOf(video, audio, dur)
	if err != nil {
		return nil, err
	}
	c, err := s.lib.Clip(ctx, p)
	if err != nil {
		return nil, err
	}
	return benchClip{c}, nil
}

type benchClip struct{ c *slate.Clip }

func (c benchClip) Cursor() SlateCursor { return benchCursor{c.c, c.c.Cursor()} }

type benchCursor struct {
	c   *slate.Clip
	cur *slate.Cursor
}

func (c benchCursor) Tracks() []*media.Track { return []*media.Track{c.c.Video, c.c.Audio} }
func (c benchCursor) Next(until time.Duration, now time.Time) []*media.Frame {
	return c.cur.Next(until, now)
}

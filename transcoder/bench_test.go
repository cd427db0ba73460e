package transcoder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/media"
)

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1)*p + 0.5)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func jobFor(g []*media.Frame, rs []Rendition) *Job {
	in, err := muxGOP(g, g[0].DTS)
	if err != nil {
		panic(err)
	}
	j := &Job{Stream: "bench", Renditions: rs, Input: in, Base: g[0].DTS, ClockRate: 90000,
		Duration: media.TicksToDuration(int64(len(g))*3000, 90000), Ctx: context.Background()}
	for _, f := range g {
		j.PTS = append(j.PTS, f.PTS)
		j.DTS = append(j.DTS, f.DTS)
	}
	return j
}

// BenchmarkJobStart measures the time from a worker taking a job to an
// ffmpeg blocked on that job's input: a pre-started (warm) process versus
// one started for the job (cold: forked from the fork server; cold-exec:
// executed). Run with -benchtime=Nx.
func BenchmarkJobStart(b *testing.B) {
	needFFmpeg(b)
	fx := sourceFixture(b, 320, 180, 30, 30, 0, 1)
	lad := DefaultLadder()
	if err := lad.Validate(); err != nil {
		b.Fatal(err)
	}
	rs := lad.For(720) // the real command line; the tiny input keeps the runs cheap
	g := fx.gops()[0]
	for _, mode := range []string{"warm", "cold", "cold-exec"} {
		b.Run(mode, func(b *testing.B) {
			warm, fork := 1, ForkServerOn
			switch mode {
			case "cold":
				warm = 0
			case "cold-exec": // a process executed for the job, no fork server
				warm, fork = 0, ForkServerOff
			}
			r := NewFFmpegRunner(FFmpegConfig{Warm: warm, Prewarm: []Ladder{rs}, ForkServer: fork}, nil, nil)
			if err := r.Start(); err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				if warm > 0 {
					deadline := time.Now().Add(30 * time.Second)
					for ready, _ := r.WarmCounts(); ready < 1; ready, _ = r.WarmCounts() {
						if time.Now().After(deadline) {
							b.Fatal("no warm process")
						}
						time.Sleep(time.Millisecond)
					}
				}
				_, st, err := r.Run(context.Background(), jobFor(g, rs))
				if err != nil {
					b.Fatal(err)
				}
				if st.Warm != (warm > 0) {
					b.Fatalf("warm=%v for mode %s", st.Warm, mode)
				}
				lat = append(lat, st.Start)
			}
			b.ReportMetric(ms(pct(lat, .5)), "p50-ms")
			b.ReportMetric(ms(pct(lat, .99)), "p99-ms")
			b.ReportMetric(ms(pct(lat, 1)), "max-ms")
			b.Logf("%s start: p50 %v p99 %v max %v (n=%d, load %s)", mode, pct(lat, .5), pct(lat, .99), pct(lat, 1), len(lat), loadAvg())
		})
	}
}

// BenchmarkCPUPerMediaSecond compares the CPU time (user+system of the
// ffmpeg processes) per second of source for the default ladder: one
// ffmpeg per GOP through the runner (its start-up included), its processes
// forked from the fork server (the default) and executed, versus one
// long-running ffmpeg with the same options over the same input (key frames
// every 60 frames instead of one forced per run). Passes alternate; each
// b.N iteration is one pass of each. 720p30 → 480p+360p (20 s) and
// 1080p30 → 720p+480p+360p (10 s). The fork server's own start (once per
// runner) is not counted.
func BenchmarkCPUPerMediaSecond(b *testing.B) {
	needFFmpeg(b)
	for _, src := range []struct {
		name    string
		w, h    int
		seconds float64
	}{{"720p", 1280, 720, 20}, {"1080p", 1920, 1080, 10}} {
		b.Run(src.name, func(b *testing.B) {
			fx := sourceFixture(b, src.w, src.h, 30, 60, 2, src.seconds)
			lad := DefaultLadder()
			if err := lad.Validate(); err != nil {
				b.Fatal(err)
			}
			rs := lad.For(src.h)
			gops := fx.gops()
			mediaSec := float64(len(fx.frames)) / 30
			whole, err := muxGOP(fx.frames, 0)
			if err != nil {
				b.Fatal(err)
			}
			long := longRunningArgs(buildTemplate(rs, "").Args, 60)
			runners := map[ForkServerMode]*FFmpegRunner{}
			for _, mode := range []ForkServerMode{ForkServerOn, ForkServerOff} {
				r := NewFFmpegRunner(FFmpegConfig{Warm: 1, Prewarm: []Ladder{rs}, ForkServer: mode}, nil, nil)
				if err := r.Start(); err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				runners[mode] = r
			}
			poolCPU := func(r *FFmpegRunner) time.Duration {
				var cpu time.Duration
				for _, g := range gops {
					_, st, err := r.Run(context.Background(), jobFor(g, rs))
					if err != nil {
						b.Fatal(err)
					}
					cpu += st.CPU
				}
				return cpu
			}
			var forkRatios, execRatios, forks, execs, longs []float64
			for i := 0; i < b.N; i++ {
				forkCPU := poolCPU(runners[ForkServerOn])
				execCPU := poolCPU(runners[ForkServerOff])
				cmd := exec.Command("ffmpeg", long...)
				cmd.Stdin = strings.NewReader(string(whole))
				if out, err := cmd.CombinedOutput(); err != nil && len(out) > 0 {
					b.Fatalf("%v: %s", err, out)
				}
				longCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				forks = append(forks, forkCPU.Seconds()/mediaSec)
				execs = append(execs, execCPU.Seconds()/mediaSec)
				longs = append(longs, longCPU.Seconds()/mediaSec)
				forkRatios = append(forkRatios, forkCPU.Seconds()/longCPU.Seconds())
				execRatios = append(execRatios, execCPU.Seconds()/longCPU.Seconds())
				b.Logf("pass %d: pool forked %.3f, pool executed %.3f, long-running %.3f CPU s per media s; ratio forked %.3f, executed %.3f (load %s)",
					i, forks[i], execs[i], longs[i], forkRatios[i], execRatios[i], loadAvg())
			}
			b.ReportMetric(median(forks), "pool-cpu-s/media-s")
			b.ReportMetric(median(execs), "exec-pool-cpu-s/media-s")
			b.ReportMetric(median(longs), "long-cpu-s/media-s")
			b.ReportMetric(median(forkRatios), "ratio")
			b.ReportMetric(median(execRatios), "exec-ratio")
		})
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// longRunningArgs turns a per-GOP command line into the long-running
// equivalent: a key frame every gop frames instead of one forced at the
// first frame of each run.
func longRunningArgs(args []string, gop int) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case strings.HasPrefix(args[i], "-force_key_frames"):
			i++
		case strings.HasPrefix(args[i], "-g:v:"):
			out = append(out, args[i], fmt.Sprint(gop))
			i++
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// BenchmarkLatency720p publishes a 720p30 source with 2 s GOPs in real time
// through a pool of runtime.NumCPU() workers and measures, per GOP, the
// time from the GOP's close (its next key frame arriving) to its last
// rendition frame written, and per frame the added latency of a rendition
// over the source (written − received at ingest).
func BenchmarkLatency720p(b *testing.B) {
	needFFmpeg(b)
	fx := sourceFixture(b, 1280, 720, 30, 60, 2, 20)
	m := NewMetrics(nil)
	lad := DefaultLadder()
	if th := os.Getenv("TRANSCODER_BENCH_THREADS"); th != "" { // compare encoder threads (-1: automatic)
		n, _ := strconv.Atoi(th)
		for i := range lad {
			lad[i].Threads = n
		}
	}
	if err := lad.Validate(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		pool := startPool(b, PoolConfig{Prewarm: []Ladder{lad.For(720)}}, m)
		tr, err := New(Config{Ladders: Ladders{"": lad}}, pool, m, nil)
		if err != nil {
			b.Fatal(err)
		}
		reg := media.NewRegistry(media.RegistryConfig{})
		rec := newRecorder()
		st, err := reg.Publish("live/lat", media.PublishInfo{}, []*media.Track{fx.track})
		if err != nil {
			b.Fatal(err)
		}
		sub := st.Subscribe(1024)
		errc := make(chan error, 1)
		go func() { errc <- tr.Run(context.Background(), "live/lat", sub, rec.factory) }()
		var sent []*media.Frame
		start := time.Now()
		for _, f := range fx.frames {
			time.Sleep(time.Until(start.Add(media.TicksToDuration(f.DTS, 90000))))
			c := *f
			c.Received = time.Now()
			sent = append(sent, &c)
			st.WriteFrame(&c)
		}
		time.Sleep(time.Until(start.Add(media.TicksToDuration(fx.frames[len(fx.frames)-1].DTS+3000, 90000))))
		closeAt := time.Now()
		st.Close()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		// GOP close times: the arrival of the next key frame.
		var closes []time.Time
		for _, f := range sent[1:] {
			if f.Key {
				closes = append(closes, f.Received)
			}
		}
		closes = append(closes, closeAt)
		recv := map[int64]time.Time{}
		for _, f := range sent {
			recv[f.PTS] = f.Received
		}
		for _, name := range []string{"480p", "360p"} {
			o := rec.get("live/lat/" + name)
			var gopLat, firstLat, frameLat []time.Duration
			k := -1
			for idx, f := range o.frames {
				if f.Key {
					k++
					firstLat = append(firstLat, o.times[idx].Sub(closes[k]))
				}
				frameLat = append(frameLat, o.times[idx].Sub(recv[f.PTS]))
				if idx == len(o.frames)-1 || o.frames[idx+1].Key {
					gopLat = append(gopLat, o.times[idx].Sub(closes[k]))
				}
			}
			b.Logf("%s: GOP closed -> first frame out p50 %v max %v", name,
				pct(firstLat, .5).Round(time.Millisecond), pct(firstLat, 1).Round(time.Millisecond))
			b.ReportMetric(ms(pct(firstLat, .5)), name+"-close-to-first-p50-ms")
			if len(o.gaps) > 0 {
				b.Logf("%s: %d gaps", name, len(o.gaps))
			}
			b.Logf("%s: GOP closed -> last frame out p50 %v max %v; added latency per frame p50 %v max %v (GOPs %d, load %s)",
				name, pct(gopLat, .5).Round(time.Millisecond), pct(gopLat, 1).Round(time.Millisecond),
				pct(frameLat, .5).Round(time.Millisecond), pct(frameLat, 1).Round(time.Millisecond), len(gopLat), loadAvg())
			b.ReportMetric(ms(pct(gopLat, .5)), name+"-close-to-out-p50-ms")
			b.ReportMetric(ms(pct(gopLat, 1)), name+"-close-to-out-max-ms")
			b.ReportMetric(ms(pct(frameLat, 1)), name+"-added-max-ms")
		}
		pool.Close()
	}
	b.Logf("jobs ok: 480p %v, warm starts p50 bucket count %d, cold starts %v", testutil.ToFloat64(m.jobs.WithLabelValues("480p", OutcomeOK)),
		testutil.CollectAndCount(m.startLatency), testutil.ToFloat64(m.coldStarts))
	_ = runtime.NumCPU
}

// BenchmarkOverload720p publishes six 720p30 streams in real time into a
// pool of one worker (on 2 cores it keeps up with about four): what is
// shed and what is produced.
func BenchmarkOverload720p(b *testing.B) {
	needFFmpeg(b)
	fx := sourceFixture(b, 1280, 720, 30, 60, 2, 20)
	lad := DefaultLadder()
	if err := lad.Validate(); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		m := NewMetrics(nil)
		pool := startPool(b, PoolConfig{Size: 1, Prewarm: []Ladder{lad.For(720)}}, m)
		tr, err := New(Config{}, pool, m, slogTo(os.Stderr))
		if err != nil {
			b.Fatal(err)
		}
		reg := media.NewRegistry(media.RegistryConfig{})
		rec := newRecorder()
		var errcs []<-chan error
		for _, s := range []string{"live/o1", "live/o2", "live/o3", "live/o4", "live/o5", "live/o6"} {
			errcs = append(errcs, publish(b, reg, tr, s, fx.frames, 1, rec))
		}
		for _, e := range errcs {
			waitRun(b, e, 5*time.Minute)
		}
		for _, name := range []string{"480p", "360p"} {
			b.Logf("%s: ok %v shed %v failed %v retried %v", name,
				testutil.ToFloat64(m.jobs.WithLabelValues(name, OutcomeOK)),
				testutil.ToFloat64(m.jobs.WithLabelValues(name, OutcomeShed)),
				testutil.ToFloat64(m.jobs.WithLabelValues(name, OutcomeFailed)),
				testutil.ToFloat64(m.jobs.WithLabelValues(name, OutcomeRetried)))
			b.ReportMetric(testutil.ToFloat64(m.jobs.WithLabelValues(name, OutcomeShed)), name+"-shed")
		}
		b.Logf("gaps: shed %v late %v timeout %v failed %v truncated %v; cold starts %v; load %s",
			testutil.ToFloat64(m.gaps.WithLabelValues("shed")), testutil.ToFloat64(m.gaps.WithLabelValues("late")),
			testutil.ToFloat64(m.gaps.WithLabelValues("timeout")), testutil.ToFloat64(m.gaps.WithLabelValues("failed")),
			testutil.ToFloat64(m.gaps.WithLabelValues("truncated")), testutil.ToFloat64(m.coldStarts), loadAvg())
		var waits []time.Duration
		for _, s := range []string{"live/o1", "live/o2", "live/o3", "live/o4", "live/o5", "live/o6"} {
			o := rec.get(s + "/360p")
			k := -1
			for idx, f := range o.frames {
				if f.Key {
					k++
				}
				if idx == len(o.frames)-1 || o.frames[idx+1].Key {
					// the GOP closed when its next key frame was due
					waits = append(waits, o.times[idx].Sub(o.frames[idx].Received))
				}
			}
		}
		b.Logf("360p: last frame of a GOP out after its arrival: p50 %v max %v", pct(waits, .5).Round(time.Millisecond), pct(waits, 1).Round(time.Millisecond))
		pool.Close()
	}
}

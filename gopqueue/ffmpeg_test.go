package gopqueue

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// gop is a one-GOP MPEG-TS made by ffmpeg with its frames' timestamps.
type gop struct {
	ts       []byte
	pts, dts []int64
}

var (
	gopMu    sync.Mutex
	gopCache = map[string]*gop{}
)

// bigGOP returns (made once per test binary) one GOP of 30 frames of a
// 640x360 noisy source: about 1.7 MB of MPEG-TS with its
// timestamps 1 s from 0, as the transcoder hands GOPs to ffmpeg.
func bigGOP(t testing.TB) *gop {
	t.Helper()
	testpeer.RequireBinary(t, "apt-get install ffmpeg", "ffmpeg")
	gopMu.Lock()
	defer gopMu.Unlock()
	const key = "640x360-noise"
	if g := gopCache[key]; g != nil {
		return g
	}
	var stderr bytes.Buffer
	cmd := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=s=640x360:r=30", "-frames:v", "30",
		"-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "31",
		"-g", "1000", "-bf", "0", "-pix_fmt", "yuv420p",
		"-muxdelay", "0", "-muxpreload", "0", "-output_ts_offset", "1", "-f", "mpegts", "pipe:1")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.Bytes())
	}
	g := &gop{ts: out}
	rd := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := rd.Initialize(); err != nil {
		t.Fatal(err)
	}
	rd.OnDataH264(rd.Tracks()[0], func(pts, dts int64, _ [][]byte) error {
		g.pts, g.dts = append(g.pts, pts), append(g.dts, dts)
		return nil
	})
	for {
		if err := rd.Read(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	if len(g.pts) != 30 {
		t.Fatalf("%d frames in the GOP, want 30", len(g.pts))
	}
	gopCache[key] = g
	return g
}

func smallLadder() transcoder.Ladder {
	return transcoder.Ladder{
		{Name: "240p", Height: 240, Bitrate: "400k", Priority: 1},
		{Name: "180p", Height: 180, Bitrate: "200k", Priority: 2},
	}
}

// gopJob is a job for g; Base is 90000 because ffmpeg's timestamps are
// already shifted by the transcoder's 1 s (tsOffset).
func gopJob(g *gop, stream string) *transcoder.Job {
	now := time.Now()
	return &transcoder.Job{ID: jobIDs.Add(1), Stream: stream, Renditions: smallLadder(), Input: g.ts,
		Base: 90000, ClockRate: 90000, PTS: g.pts, DTS: g.dts, Duration: time.Second,
		Closed: now, Deadline: now.Add(20 * time.Second)}
}

func ffmpegPool(t testing.TB) *transcoder.Pool {
	t.Helper()
	p := startPool(t, transcoder.PoolConfig{Size: 1, Warm: 1, Prewarm: []transcoder.Ladder{smallLadder()}})
	testpeer.WaitFor(t, 30*time.Second, "warm ffmpeg", p.Ready)
	return p
}

// TestFFmpegGOPOverTheQueue: a real GOP of more than 1.5 MB, submitted on
// the executor, is transcoded by ffmpeg on a worker's pool; each
// rendition's frames stream back in order, map exactly onto the source's
// PTS, and Done reports every rendition OK.
func TestFFmpegGOPOverTheQueue(t *testing.T) {
	leakCheck(t)
	g := bigGOP(t)
	if len(g.ts) < 1_500_000 {
		t.Fatalf("GOP of %d bytes, want at least 1.5 MB", len(g.ts))
	}
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	pool := ffmpegPool(t)
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, nil)

	rec := newRecord()
	j := rec.attach(gopJob(g, "live/ffmpeg"))
	e.Submit(j)
	res := rec.wait(t, 30*time.Second)
	frames := rec.check(t)
	src := slices.Clone(g.pts)
	slices.Sort(src)
	for i, rr := range res.Renditions {
		if rr.Outcome != transcoder.OutcomeOK || rr.Track == nil {
			t.Fatalf("rendition %s: %s %q (%v)", rr.Rendition.Name, rr.Outcome, rr.Reason, res.Err)
		}
		if rr.Rendition.Name != j.Renditions[i].Name {
			t.Fatalf("result %d is %s", i, rr.Rendition.Name)
		}
		got := frames[rr.Rendition.Name]
		if len(got) != len(g.pts) || len(rr.Track.Frames) != len(got) {
			t.Fatalf("rendition %s: %d frames streamed, %d in the result, want %d", rr.Rendition.Name, len(got), len(rr.Track.Frames), len(g.pts))
		}
		var pts []int64
		for _, f := range got {
			pts = append(pts, f.PTS)
		}
		slices.Sort(pts)
		if !slices.Equal(pts, src) {
			t.Errorf("rendition %s: PTS %v, want the source's %v", rr.Rendition.Name, pts, src)
		}
		if !got[0].Key {
			t.Errorf("rendition %s: first frame not a key frame", rr.Rendition.Name)
		}
	}
}

// BenchmarkFirstFrame measures, side by side in one run, the time from a
// 1.7 MB GOP closed to its first rendition frame at the owner: on the
// local pool (Submit on the pool) and through the queue (Executor →
// JetStream → Worker → the same pool, frames back over core NATS) on
// loopback, alternating. It reports the p50 and p99 of both and of the
// added latency.
//
//   - ffmpeg: the real run (one warm ffmpeg, two renditions). The added
//     latency is the difference of the two paths' percentiles: ffmpeg's
//     own run-to-run variation on a shared machine is in both.
//   - transport: a runner that answers the first frame of every rendition
//     as soon as it has the job, so that each remote sample minus the
//     local one is the queue's added latency itself (payload to the worker
//     and the frame back), its percentiles measured directly.
//
// Run with:
//
//	go test -run '^$' -bench FirstFrame -benchtime 30x ./gopqueue/
func BenchmarkFirstFrame(b *testing.B) {
	g := bigGOP(b)
	ways := []struct {
		name string
		cfg  ExecutorConfig
	}{
		{"direct", directCfg("")},
		{"nats", ExecutorConfig{}},
	}
	for _, w := range ways {
		b.Run("ffmpeg/"+w.name, func(b *testing.B) {
			benchFirstFrame(b, g, w.cfg, ffmpegPool(b), 150*time.Millisecond) // the replacement ffmpeg warms up
		})
	}
	for _, w := range ways {
		b.Run("transport/"+w.name, func(b *testing.B) {
			benchFirstFrame(b, g, w.cfg, startPool(b, transcoder.PoolConfig{Size: 1, Runner: &fakeRunner{frames: 1}}), 20*time.Millisecond)
		})
	}
}

// benchFirstFrame runs b.N GOPs on pool directly and b.N through the
// queue (an executor configured as cfg) to a worker on the same pool, in
// pairs (either first by turns), gap apart.
func benchFirstFrame(b *testing.B, g *gop, cfg ExecutorConfig, pool *transcoder.Pool, gap time.Duration) {
	url := natsServer(b)
	nc, js := connect(b, url)
	cfg.Node, cfg.PollInterval = "owner", -1
	e := newExecutorCfg(b, nc, js, cfg, nil)
	wnc, wjs := connect(b, url)
	runWorker(b, wnc, wjs, pool, WorkerConfig{}, nil)

	one := func(exec transcoder.Executor) time.Duration {
		first := make(chan time.Duration, 1)
		done := make(chan struct{})
		j := gopJob(g, "live/bench")
		var once sync.Once
		j.Progress = func(string, int, int, media.Codec, transcoder.OutFrame) {
			once.Do(func() { first <- time.Since(j.Closed) })
		}
		j.Done = func(res *transcoder.Result) {
			if res.Renditions[0].Outcome != transcoder.OutcomeOK {
				b.Errorf("job: %s %q %v", res.Renditions[0].Outcome, res.Renditions[0].Reason, res.Err)
			}
			close(done)
		}
		j.Closed = time.Now()
		exec.Submit(j)
		<-done
		time.Sleep(gap)
		select {
		case d := <-first:
			return d
		default:
			return 0
		}
	}
	one(pool) // warm both paths
	one(e)
	var local, remote, added []time.Duration
	b.ResetTimer()
	for i := range b.N {
		var l, r time.Duration
		if i%2 == 0 { // either first by turns: no order effect
			l, r = one(pool), one(e)
		} else {
			r, l = one(e), one(pool)
		}
		local, remote, added = append(local, l), append(remote, r), append(added, r-l)
	}
	b.StopTimer()
	pct := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(local, .5), "local-p50-ms")
	b.ReportMetric(pct(local, .99), "local-p99-ms")
	b.ReportMetric(pct(remote, .5), "remote-p50-ms")
	b.ReportMetric(pct(remote, .99), "remote-p99-ms")
	b.ReportMetric(pct(remote, .5)-pct(local, .5), "added-p50-ms")
	b.ReportMetric(pct(remote, .99)-pct(local, .99), "added-p99-ms")
	b.ReportMetric(pct(added, .5), "pairwise-p50-ms")
	b.ReportMetric(pct(added, .99), "pairwise-p99-ms")
	if len(local) <= 100 { // the samples, when they fit on a screen
		b.Logf("GOP %d bytes; local %v; remote %v", len(g.ts), local, remote)
	}
}

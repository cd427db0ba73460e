package transcoder

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// tinyLadder is cheap to encode: the fault tests are about the pool, not
// the pictures.
func tinyLadder() Ladder {
	return Ladder{
		{Name: "120p", Height: 120, Bitrate: "150k", Preset: "ultrafast"},
		{Name: "90p", Height: 90, Bitrate: "100k", Preset: "ultrafast"},
	}
}

func tinyFixture(t testing.TB) *fixture {
	return sourceFixture(t, 320, 180, 30, 30, 0, 6) // six 1 s GOPs
}

// childProcs lists this process's descendants (the fork server's children
// are its grandchildren).
func childProcs() []int { return testpeer.Descendants(os.Getpid()) }

func counter(t testing.TB, m *Metrics, rendition, outcome string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.jobs.WithLabelValues(rendition, outcome))
}

func TestKillWorkerMidJob(t *testing.T) {
	fx := tinyFixture(t)
	m := NewMetrics(nil)
	lad := tinyLadder()
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(PoolConfig{Size: 2, Warm: 2, MaxWait: 100, Prewarm: []Ladder{lad}}, m, testLogger(t))
	var once sync.Once
	killed := make(chan int, 1)
	pool.ff.onRun = func(j *Job, p *proc) {
		if j.Seq == 1 && j.Attempt == 0 {
			once.Do(func() {
				<-p.ready
				_ = syscall.Kill(p.pid, syscall.SIGKILL) // kill -9 mid-job
				killed <- p.pid
			})
		}
	}
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testpeer.WaitFor(t, 30*time.Second, "pool ready", pool.Ready)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/k", fx.frames, 0, rec), 60*time.Second)
	select {
	case pid := <-killed:
		t.Logf("killed ffmpeg %d during GOP 1", pid)
	default:
		t.Fatal("no worker was killed")
	}
	src := fx.gops()
	for _, name := range []string{"120p", "90p"} {
		o := rec.get("live/k/" + name)
		gs := o.gops()
		// GOP 1 is either retried (all GOPs there) or a gap; nothing else is lost.
		if len(gs)+len(o.gaps) != len(src) {
			t.Fatalf("%s: %d GOPs + %d gaps, want %d", name, len(gs), len(o.gaps), len(src))
		}
		for _, g := range o.gaps {
			if g.Seq != 1 {
				t.Errorf("%s: unexpected gap %+v", name, g)
			}
		}
	}
	if r := counter(t, m, "120p", OutcomeRetried); r != 1 {
		t.Errorf("retried = %v, want 1", r)
	}
	// The pool recovers its warm processes.
	testpeer.WaitFor(t, 30*time.Second, "warm processes back", func() bool {
		ready, _ := pool.ff.WarmCounts()
		return ready == 2
	})
}

func TestOverloadShedsLowPriorityAndLeaksNothing(t *testing.T) {
	fx := tinyFixture(t)
	goroutines := runtime.NumGoroutine()
	children := len(childProcs())

	m := NewMetrics(prometheus.NewRegistry())
	lad := tinyLadder()
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	// One worker, room for two rendition-GOPs: three streams published at
	// full speed (18 GOPs at once) cannot all be transcoded.
	pool := NewPool(PoolConfig{Size: 1, Warm: 1, QueueSize: 2, Prewarm: []Ladder{lad}}, m, testLogger(t))
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 30*time.Second, "pool ready", pool.Ready)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := media.NewRegistry(media.RegistryConfig{})
	rec := newRecorder()
	var errcs []<-chan error
	for _, s := range []string{"live/s1", "live/s2", "live/s3"} {
		errcs = append(errcs, publish(t, reg, tr, s, fx.frames, 0, rec))
	}
	for _, e := range errcs {
		waitRun(t, e, 90*time.Second)
	}
	shedHigh := counter(t, m, "120p", OutcomeShed)
	shedLow := counter(t, m, "90p", OutcomeShed)
	okHigh, okLow := counter(t, m, "120p", OutcomeOK), counter(t, m, "90p", OutcomeOK)
	t.Logf("120p ok %v shed %v; 90p ok %v shed %v", okHigh, shedHigh, okLow, shedLow)
	if shedHigh == 0 {
		t.Fatal("nothing shed")
	}
	// The lower-priority rendition (the most expensive one) goes first.
	if shedLow > shedHigh || okLow < okHigh {
		t.Errorf("90p (priority %d) shed %v, 120p (priority %d) shed %v", lad[1].Priority, shedLow, lad[0].Priority, shedHigh)
	}
	total := 0
	for _, s := range []string{"live/s1", "live/s2", "live/s3"} {
		for _, name := range []string{"120p", "90p"} {
			o := rec.get(s + "/" + name)
			n := len(o.gops()) + len(o.gaps)
			if n != 6 || !o.closed {
				t.Errorf("%s/%s: %d GOPs + %d gaps (want 6), closed %v", s, name, len(o.gops()), len(o.gaps), o.closed)
			}
			for _, g := range o.gaps {
				if g.Reason != "shed" && g.Reason != "late" {
					t.Errorf("%s/%s: gap %+v", s, name, g)
				}
			}
			total += len(o.gaps)
		}
	}
	if float64(total) != shedHigh+shedLow {
		t.Errorf("%d gaps reported, %v shed counted", total, shedHigh+shedLow)
	}
	pool.Close()
	testpeer.WaitFor(t, 10*time.Second, "child processes to exit", func() bool { return len(childProcs()) <= children })
	testpeer.WaitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

func TestMissingEncoderFailsJobsStreamGoesOn(t *testing.T) {
	fx := tinyFixture(t)
	m := NewMetrics(nil)
	bad := Ladder{{Name: "120p", Height: 120, Bitrate: "150k", Encoder: "libnope264"}}
	if err := bad.Validate(); err != nil {
		t.Fatal(err)
	}
	err := CheckEncoders(context.Background(), "", bad, tinyLadder())
	if err == nil || !strings.Contains(err.Error(), `"libnope264"`) || !strings.Contains(err.Error(), "120p") {
		t.Fatalf("CheckEncoders = %v", err)
	}
	var logs testpeer.LogBuffer
	pool := NewPool(PoolConfig{Size: 1, Warm: -1}, m, slogTo(&logs))
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tr, err := New(Config{Ladders: Ladders{"": bad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	frames := fx.frames[:90] // three GOPs
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/bad", frames, 0, rec), 60*time.Second)
	o := rec.get("live/bad/120p")
	if len(o.frames) != 0 || len(o.gaps) != 3 || !o.closed {
		t.Fatalf("%d frames, gaps %+v, closed %v", len(o.frames), o.gaps, o.closed)
	}
	for _, g := range o.gaps {
		if g.Reason != "failed" {
			t.Errorf("gap reason %q", g.Reason)
		}
	}
	if f := counter(t, m, "120p", OutcomeFailed); f != 3 {
		t.Errorf("failed = %v", f)
	}
	if !strings.Contains(logs.String(), "libnope264") {
		t.Errorf("the failure log does not carry ffmpeg's error:\n%s", logs.String())
	}
}

func TestOversizedGOPBecomesGap(t *testing.T) {
	fx := tinyFixture(t)
	m := NewMetrics(nil)
	lad := Ladder{{Name: "90p", Height: 90, Bitrate: "100k", Preset: "ultrafast"}}
	pool := startPool(t, PoolConfig{Size: 1, Warm: 1, Prewarm: []Ladder{lad}}, m)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30, MaxGOP: 2500 * time.Millisecond}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// GOP 0 normal, then 4 s without a key frame, then a normal GOP.
	var frames []*media.Frame
	for i, f := range fx.frames {
		if f.Key && i > 30 && i < 150 {
			c := *f
			c.Key = false
			f = &c
		}
		frames = append(frames, f)
	}
	rec := newRecorder()
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/long", frames, 0, rec), 60*time.Second)
	o := rec.get("live/long/90p")
	if len(o.gaps) != 1 || o.gaps[0].Reason != "oversized" || o.gaps[0].Seq != 1 ||
		o.gaps[0].DTS != fx.frames[30].DTS || o.gaps[0].Duration != fx.frames[150].DTS-fx.frames[30].DTS {
		t.Fatalf("gaps %+v", o.gaps)
	}
	gs := o.gops()
	if len(gs) != 2 || gs[0][0].PTS != fx.frames[0].PTS || gs[1][0].PTS != fx.frames[150].PTS {
		t.Fatalf("%d GOPs", len(gs))
	}
}

func TestHungWorkerKilledAtDeadline(t *testing.T) {
	fx := tinyFixture(t)
	m := NewMetrics(nil)
	lad := Ladder{{Name: "90p", Height: 90, Bitrate: "100k", Preset: "ultrafast"}}
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(PoolConfig{Size: 1, Warm: 1, Prewarm: []Ladder{lad}}, m, testLogger(t))
	stopped := make(chan int, 1)
	pool.ff.onRun = func(j *Job, p *proc) {
		if j.Seq == 0 {
			<-p.ready
			_ = syscall.Kill(p.pid, syscall.SIGSTOP) // hangs
			stopped <- p.pid
		}
	}
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	testpeer.WaitFor(t, 30*time.Second, "pool ready", pool.Ready)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 2}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	start := time.Now()
	// One GOP: its job can be killed no later than 2 s after it closed.
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/hang", fx.frames[:30], 0, rec), 30*time.Second)
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("took %v", el)
	}
	pid := <-stopped
	o := rec.get("live/hang/90p")
	if len(o.gaps) != 1 || o.gaps[0].Reason != "timeout" {
		t.Fatalf("gaps %+v, frames %d", o.gaps, len(o.frames))
	}
	testpeer.WaitFor(t, 5*time.Second, "hung process gone", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return err != nil
	})
}

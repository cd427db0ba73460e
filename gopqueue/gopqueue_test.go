package gopqueue

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// wantFakeFrames checks a job's last-attempt frames against the fake
// runner's, and that its result has every rendition OK with those frames.
func wantFakeFrames(t *testing.T, j *transcoder.Job, res *transcoder.Result, frames map[string][]transcoder.OutFrame, n int) {
	t.Helper()
	if len(res.Renditions) != len(j.Renditions) {
		t.Fatalf("%d rendition results for %d renditions", len(res.Renditions), len(j.Renditions))
	}
	for i, r := range j.Renditions {
		rr := res.Renditions[i]
		if rr.Rendition.Name != r.Name || rr.Outcome != transcoder.OutcomeOK || rr.Track == nil {
			t.Fatalf("rendition %d: %s %s %q (err %v), want %s ok", i, rr.Rendition.Name, rr.Outcome, rr.Reason, res.Err, r.Name)
		}
		if len(rr.Track.Frames) != n || len(frames[r.Name]) != n {
			t.Fatalf("rendition %s: %d frames in the result, %d streamed, want %d", r.Name, len(rr.Track.Frames), len(frames[r.Name]), n)
		}
		for k, f := range frames[r.Name] {
			want := fakeFrame(j, i, k)
			if f.PTS != want.PTS || f.DTS != want.DTS || f.Key != want.Key || !bytes.Equal(f.AU, want.AU) {
				t.Fatalf("rendition %s frame %d: %+v, want %+v", r.Name, k, f, want)
			}
		}
		if !media.SameVideoParams(rr.Track.Codec, fakeCodec) {
			t.Fatalf("rendition %s: codec %+v", r.Name, rr.Track.Codec)
		}
	}
}

// TestRemoteJobsStreamInOrder: jobs submitted on the executor are run by
// a worker on another connection; their frames reach Progress in order as
// they are produced (before Done) and Done is called once with every
// rendition OK.
func TestRemoteJobsStreamInOrder(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", reg)
	wnc, wjs := connect(t, url)
	run := &fakeRunner{frames: 5, delay: 20 * time.Millisecond}
	pool := startPool(t, transcoder.PoolConfig{Size: 2, Runner: run})
	stop := runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)

	var jobs []*transcoder.Job
	var recs []*record
	for i := range 4 {
		rec := newRecord()
		j := rec.attach(fakeJob(fmt.Sprintf("live/s%d", i), 10_000, 10*time.Second))
		jobs, recs = append(jobs, j), append(recs, rec)
		e.Submit(j)
	}
	for i, rec := range recs {
		res := rec.wait(t, 10*time.Second)
		wantFakeFrames(t, jobs[i], res, rec.check(t), 5)
	}
	if got := testpeer.MetricSum(t, reg, "headwater_gopqueue_jobs_total", "outcome", "ok"); got != 4 {
		t.Errorf("jobs_total{ok} = %v, want 4", got)
	}
	if got := run.peak.Load(); got > 2 {
		t.Errorf("%d jobs ran at once on a pool of 2", got)
	}
	stop()
	e.Close()
}

// TestLargeInputTravelsInChunks: an input above the connection's max
// payload travels as chunks and comes back whole; the owner purges the
// chunks once the job is done.
func TestLargeInputTravelsInChunks(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	wnc, wjs := connect(t, url)
	var got []byte
	run := &fakeRunner{frames: 2, hold: func(_ context.Context, j *transcoder.Job, k int) error {
		if k == 0 {
			got = j.Input
		}
		return nil
	}}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, nil)

	rec := newRecord()
	j := rec.attach(fakeJob("live/big", 1_600_000, 10*time.Second))
	if int64(len(j.Input)) <= nc.MaxPayload() {
		t.Fatalf("input of %d bytes fits in one message (max payload %d)", len(j.Input), nc.MaxPayload())
	}
	e.Submit(j)
	res := rec.wait(t, 10*time.Second)
	wantFakeFrames(t, j, res, rec.check(t), 2)
	if !bytes.Equal(got, j.Input) {
		t.Fatalf("worker got %d bytes, want the %d submitted", len(got), len(j.Input))
	}
	testpeer.WaitFor(t, 5*time.Second, "the chunks purged", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, StreamName)
		return err == nil && st.CachedInfo().State.Msgs == 0
	})
}

// TestWorkersShareTheQueue: two workers on the same consumer each take
// only as many jobs as they have slots, and both get work.
func TestWorkersShareTheQueue(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	runs := []*fakeRunner{{frames: 3, delay: 30 * time.Millisecond}, {frames: 3, delay: 30 * time.Millisecond}}
	for _, run := range runs {
		wnc, wjs := connect(t, url)
		pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
		runWorker(t, wnc, wjs, pool, WorkerConfig{}, nil)
	}
	var recs []*record
	var jobs []*transcoder.Job
	for i := range 8 {
		rec := newRecord()
		j := rec.attach(fakeJob(fmt.Sprintf("live/s%d", i), 1000, 20*time.Second))
		recs, jobs = append(recs, rec), append(jobs, j)
		e.Submit(j)
	}
	for i, rec := range recs {
		wantFakeFrames(t, jobs[i], rec.wait(t, 15*time.Second), rec.check(t), 3)
	}
	for i, run := range runs {
		if run.ran.Load() == 0 {
			t.Errorf("worker %d ran no job", i)
		}
		if run.peak.Load() > 1 {
			t.Errorf("worker %d ran %d jobs at once with one slot", i, run.peak.Load())
		}
	}
	if a, b := runs[0].ran.Load(), runs[1].ran.Load(); a+b != 8 {
		t.Errorf("workers ran %d+%d jobs, want 8 (one run each)", a, b)
	}
}

// TestKilledWorkerJobIsRedelivered: a worker whose connection dies in the
// middle of a job (a SIGKILL) never acknowledges it; JetStream redelivers
// it after the ack wait to the other worker, whose frames replace the
// dead one's from k = 0 under a new attempt; Done is called once.
func TestKilledWorkerJobIsRedelivered(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", reg)

	// Worker A: streams two frames, then hangs.
	anc, ajs := connect(t, url)
	started := make(chan struct{}, 1)
	runA := &fakeRunner{frames: 4, hold: func(ctx context.Context, _ *transcoder.Job, k int) error {
		if k == 2 {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	poolA := startPool(t, transcoder.PoolConfig{Size: 1, Runner: runA})
	stopA := runWorker(t, anc, ajs, poolA, WorkerConfig{}, nil)

	rec := newRecord()
	j := rec.attach(fakeJob("live/a", 1000, 15*time.Second))
	e.Submit(j)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A did not start the job")
	}
	// Worker B joins; then A dies without a word.
	bnc, bjs := connect(t, url)
	runB := &fakeRunner{frames: 4}
	poolB := startPool(t, transcoder.PoolConfig{Size: 1, Runner: runB})
	runWorker(t, bnc, bjs, poolB, WorkerConfig{}, reg)
	anc.Close()
	stopA()

	res := rec.wait(t, 10*time.Second)
	frames := rec.check(t)
	wantFakeFrames(t, j, res, frames, 4)
	if runB.ran.Load() != 1 {
		t.Errorf("worker B ran %d jobs, want 1", runB.ran.Load())
	}
	rec.mu.Lock()
	first, last := rec.progress[0], rec.progress[len(rec.progress)-1]
	rec.mu.Unlock()
	if first.attempt != 0 || last.attempt == 0 {
		t.Errorf("attempts %d … %d: want A's frames (0) then B's (a later attempt)", first.attempt, last.attempt)
	}
	if !res.Retried {
		t.Error("result not marked Retried")
	}
	if got := testpeer.MetricSum(t, reg, "headwater_gopqueue_jobs_redelivered_total"); got != 1 {
		t.Errorf("jobs_redelivered_total = %v, want 1", got)
	}
}

// TestPausedWorkerLateResultIsDiscarded: a worker stopped (its connection
// silent, as under SIGSTOP) past the ack wait loses its job to another
// worker; when it wakes up and sends the rest of its frames and its
// result, the owner discards them (counted) and the job is done once,
// from the new delivery.
func TestPausedWorkerLateResultIsDiscarded(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", reg)

	px := newProxy(t, url[len("nats://"):])
	anc, ajs := connect(t, px.url())
	gotFrame := make(chan struct{}, 1)
	wake := make(chan struct{})
	runA := &fakeRunner{frames: 4, hold: func(ctx context.Context, _ *transcoder.Job, k int) error {
		if k == 1 {
			gotFrame <- struct{}{}
			select {
			case <-wake:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	poolA := startPool(t, transcoder.PoolConfig{Size: 1, Runner: runA})
	runWorker(t, anc, ajs, poolA, WorkerConfig{}, nil)

	rec := newRecord()
	j := rec.attach(fakeJob("live/p", 1000, 15*time.Second))
	e.Submit(j)
	select {
	case <-gotFrame:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A did not start the job")
	}
	testpeer.WaitFor(t, 5*time.Second, "A's first frames at the owner", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.progress) == len(j.Renditions)
	})
	px.pause(true) // SIGSTOP

	bnc, bjs := connect(t, url)
	runB := &fakeRunner{frames: 4}
	poolB := startPool(t, transcoder.PoolConfig{Size: 1, Runner: runB})
	runWorker(t, bnc, bjs, poolB, WorkerConfig{}, nil)

	res := rec.wait(t, 10*time.Second)
	if runB.ran.Load() != 1 {
		t.Fatalf("worker B ran %d jobs, want 1", runB.ran.Load())
	}
	close(wake)     // A finishes its run…
	px.pause(false) // …and SIGCONT: its frames and result go out late.
	testpeer.WaitMetricCond(t, reg, 5*time.Second, func(v float64) bool { return v >= float64(3*len(j.Renditions)+1) },
		"A's late frames and result discarded", "headwater_gopqueue_late_results_discarded_total")
	frames := rec.check(t)
	wantFakeFrames(t, j, res, frames, 4)
	if got := testpeer.MetricSum(t, reg, "headwater_gopqueue_jobs_total"); got != 1 {
		t.Errorf("jobs_total = %v, want 1", got)
	}
}

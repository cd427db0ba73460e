package gopqueue

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/transcoder"
)

// TestJobPastDeadlineIsNotStarted: a worker that takes a job whose
// deadline has passed does not run it: it terminates the message (the
// queue is empty after), counts it and tells the owner every rendition
// was shed as late.
func TestJobPastDeadlineIsNotStarted(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	// A job published by an owner whose deadline passed while it queued.
	j := fakeJob("live/late", 100, -time.Second)
	reply := resultSubject("gone", "k1")
	sub, err := nc.SubscribeSync(reply)
	if err != nil {
		t.Fatal(err)
	}
	body, err := encodeJob(&jobMeta{V: wireVersion, Key: "k1", Node: "gone", Reply: reply, Job: *j, InputSize: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, jobSubject("gone", "k1"), body); err != nil {
		t.Fatal(err)
	}
	run := &fakeRunner{frames: 1}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)

	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Data[0] != kindResult {
		t.Fatalf("first message of kind %d, want a result (no start, no frame)", msg.Data[0])
	}
	_, res, err := decodeResult(msg.Data[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Renditions {
		if r.Outcome != transcoder.OutcomeShed || r.Reason != "late" {
			t.Errorf("rendition %s: %s %q, want shed late", r.Name, r.Outcome, r.Reason)
		}
	}
	if run.ran.Load() != 0 {
		t.Error("the late job ran")
	}
	testpeer.WaitMetric(t, reg, 1, 5*time.Second, "headwater_gopqueue_jobs_not_started_total", "reason", "late")
	testpeer.WaitFor(t, 5*time.Second, "the late job gone from the queue", func() bool {
		ci := consumerInfo(t, js)
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

// TestNoResultByDeadline: with no worker, the owner completes the job at
// its deadline (every rendition shed as late, the GOP a gap), counts it
// and removes the job from the queue, so a worker joining later never
// runs it.
func TestNoResultByDeadline(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", reg)
	rec := newRecord()
	j := rec.attach(fakeJob("live/x", 100, 300*time.Millisecond))
	e.Submit(j)
	res := rec.wait(t, 5*time.Second)
	rec.check(t)
	for _, rr := range res.Renditions {
		if rr.Outcome != transcoder.OutcomeShed || rr.Reason != "late" {
			t.Errorf("rendition %s: %s %q, want shed late", rr.Rendition.Name, rr.Outcome, rr.Reason)
		}
	}
	if got := testpeer.MetricSum(t, reg, "headwater_gopqueue_jobs_total", "outcome", "late"); got != 1 {
		t.Errorf("jobs_total{late} = %v, want 1", got)
	}
	testpeer.WaitFor(t, 5*time.Second, "the expired job purged", func() bool { return consumerInfo(t, js).NumPending == 0 })

	// A job whose deadline passed before Submit is not even published.
	rec2 := newRecord()
	e.Submit(rec2.attach(fakeJob("live/x", 100, -time.Millisecond)))
	if res := rec2.wait(t, time.Second); res.Renditions[0].Reason != "late" {
		t.Errorf("reason %q, want late", res.Renditions[0].Reason)
	}
}

// TestQueueMetricsComeFromConsumerState: the pending gauge is the
// consumer's NumPending, on the executor's node, with no worker running.
func TestQueueMetricsComeFromConsumerState(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", reg)
	var recs []*record
	for range 5 {
		rec := newRecord()
		e.Submit(rec.attach(fakeJob("live/q", 100, 30*time.Second)))
		recs = append(recs, rec)
	}
	testpeer.WaitFor(t, 5*time.Second, "5 jobs queued", func() bool { return consumerInfo(t, js).NumPending == 5 })
	testpeer.WaitMetric(t, reg, 5, 5*time.Second, "headwater_gopqueue_jobs_pending")
	testpeer.WaitMetric(t, reg, 0, 5*time.Second, "headwater_gopqueue_jobs_in_flight")

	// Taken by a worker holding them: in flight, no longer pending.
	block := make(chan struct{})
	run := &fakeRunner{frames: 1, hold: func(ctx context.Context, _ *transcoder.Job, _ int) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}}
	pool := startPool(t, transcoder.PoolConfig{Size: 2, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)
	testpeer.WaitMetric(t, reg, 3, 5*time.Second, "headwater_gopqueue_jobs_pending")
	testpeer.WaitMetric(t, reg, 2, 5*time.Second, "headwater_gopqueue_jobs_in_flight")
	if ci := consumerInfo(t, js); ci.NumPending != 3 || ci.NumAckPending != 2 {
		t.Errorf("consumer: %d pending, %d ack pending; want 3 and 2", ci.NumPending, ci.NumAckPending)
	}
	close(block)
	for _, rec := range recs {
		rec.wait(t, 10*time.Second)
		rec.check(t)
	}
	testpeer.WaitMetric(t, reg, 0, 5*time.Second, "headwater_gopqueue_jobs_pending")
	if got := histogramCount(t, reg, "headwater_gopqueue_job_wait_seconds"); got != 5 {
		t.Errorf("job_wait_seconds count = %v, want 5", got)
	}
}

// TestLateJobShedsTallestRungFirst: a worker taking a job that waited two
// GOP durations since its GOP closed drops its two lowest-priority
// renditions, the tallest first (the pool's MaxWait rule), and produces
// the rest.
func TestLateJobShedsTallestRungFirst(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	run := &fakeRunner{frames: 2}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, nil)

	rec := newRecord()
	j := rec.attach(fakeJob("live/slow", 100, 10*time.Second))
	j.Duration = time.Second
	j.Closed = time.Now().Add(-2100 * time.Millisecond)
	e.Submit(j)
	res := rec.wait(t, 10*time.Second)
	rec.check(t)
	want := map[string]string{"720p": transcoder.OutcomeShed, "480p": transcoder.OutcomeShed, "360p": transcoder.OutcomeOK}
	for i, rr := range res.Renditions {
		if rr.Rendition.Name != j.Renditions[i].Name {
			t.Errorf("result %d is %s, want %s (submission order)", i, rr.Rendition.Name, j.Renditions[i].Name)
		}
		if rr.Outcome != want[rr.Rendition.Name] {
			t.Errorf("rendition %s: %s %q, want %s", rr.Rendition.Name, rr.Outcome, rr.Reason, want[rr.Rendition.Name])
		}
	}
}

// TestCanceledJobIsDoneAndPurged: a job whose Ctx ends (its stream ended)
// is done at once as canceled and removed from the queue.
func TestCanceledJobIsDoneAndPurged(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecord()
	j := rec.attach(fakeJob("live/c", 100, 30*time.Second))
	j.Ctx = ctx
	e.Submit(j)
	testpeer.WaitFor(t, 5*time.Second, "the job queued", func() bool { return consumerInfo(t, js).NumPending == 1 })
	cancel()
	res := rec.wait(t, 5*time.Second)
	rec.check(t)
	if res.Renditions[0].Reason != "canceled" {
		t.Errorf("reason %q, want canceled", res.Renditions[0].Reason)
	}
	testpeer.WaitFor(t, 5*time.Second, "the canceled job purged", func() bool { return consumerInfo(t, js).NumPending == 0 })
}

// TestCloseCompletesPendingJobs: Close completes what is still pending as
// canceled, once, and later submissions at once.
func TestCloseCompletesPendingJobs(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutor(t, nc, js, "owner", nil)
	rec := newRecord()
	e.Submit(rec.attach(fakeJob("live/c", 100, 30*time.Second)))
	e.Close()
	if res := rec.wait(t, time.Second); res.Renditions[0].Reason != "canceled" {
		t.Errorf("reason %q, want canceled", res.Renditions[0].Reason)
	}
	rec.check(t)
	rec2 := newRecord()
	e.Submit(rec2.attach(fakeJob("live/c", 100, 30*time.Second)))
	rec2.wait(t, time.Second)
	if consumerInfo(t, js).NumPending != 0 {
		t.Error("Close left this node's jobs queued")
	}
}

// histogramCount is the sample count of an unlabelled histogram.
func histogramCount(t testing.TB, g prometheus.Gatherer, name string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}

// TestOversizedInputIsRefused: a job announcing an input larger than any
// GOP is not started (counted as invalid, the owner told every rendition
// failed) and nothing of that size is allocated.
func TestOversizedInputIsRefused(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	reply := resultSubject("owner", "k1")
	sub, err := nc.SubscribeSync(reply)
	if err != nil {
		t.Fatal(err)
	}
	j := fakeJob("live/huge", 0, 10*time.Second)
	body, err := encodeJob(&jobMeta{V: wireVersion, Key: "k1", Node: "owner", Reply: reply, Job: *j, InputSize: 1 << 40, Held: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, jobSubject("owner", "k1"), body); err != nil {
		t.Fatal(err)
	}
	run := &fakeRunner{frames: 1}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)

	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Data[0] != kindResult {
		t.Fatalf("first message of kind %d, want a result", msg.Data[0])
	}
	_, res, err := decodeResult(msg.Data[1:])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Renditions {
		if r.Outcome != transcoder.OutcomeFailed {
			t.Errorf("rendition %s: %s, want failed", r.Name, r.Outcome)
		}
	}
	testpeer.WaitMetric(t, reg, 1, 5*time.Second, "headwater_gopqueue_jobs_not_started_total", "reason", "invalid")
	if run.ran.Load() != 0 {
		t.Error("the job ran")
	}
}

package gopqueue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// TestLargeInputStaysWithOwner: an input above the inline limit (here
// above the connection's max payload too) is not published: the job
// message is the metadata only, and the worker gets the input from the
// owner, directly from its listener or, without one, over NATS in chunks,
// and runs it whole.
func TestLargeInputStaysWithOwner(t *testing.T) {
	for _, via := range []string{"direct", "nats"} {
		t.Run(via, func(t *testing.T) {
			leakCheck(t)
			url := natsServer(t)
			reg := prometheus.NewRegistry()
			nc, js := connect(t, url)
			cfg := ExecutorConfig{Node: "owner", ChunkSize: 300 << 10}
			if via == "direct" {
				cfg = directCfg("owner")
			}
			e := newExecutorCfg(t, nc, js, cfg, reg)
			wnc, wjs := connect(t, url)
			var got []byte
			var stored uint64
			run := &fakeRunner{frames: 2, hold: func(_ context.Context, j *transcoder.Job, k int) error {
				if k == 0 {
					got = bytes.Clone(j.Input)
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					if st, err := js.Stream(ctx, StreamName); err == nil {
						stored = st.CachedInfo().State.Bytes
					}
				}
				return nil
			}}
			pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
			runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)

			for i := range 2 { // the second reuses the first's buffer
				rec := newRecord()
				j := rec.attach(fakeJob("live/big", 1_600_000-i*1000, 10*time.Second))
				if int64(len(j.Input)) <= nc.MaxPayload() {
					t.Fatalf("input of %d bytes fits in one message (max payload %d)", len(j.Input), nc.MaxPayload())
				}
				e.Submit(j)
				res := rec.wait(t, 10*time.Second)
				wantFakeFrames(t, j, res, rec.check(t), 2)
				if !bytes.Equal(got, j.Input) {
					t.Fatalf("job %d: worker got %d bytes, want the %d submitted", i, len(got), len(j.Input))
				}
				if stored > 16<<10 {
					t.Errorf("job %d: the stream held %d bytes while the job ran: the input was stored", i, stored)
				}
			}
			for _, m := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"headwater_gopqueue_jobs_input_held_total", nil, 2},
				{"headwater_gopqueue_input_requests_total", []string{"via", via, "result", "served"}, 2},
				{"headwater_gopqueue_input_requests_total", nil, 2},
			} {
				if v := testpeer.MetricSum(t, reg, m.name, m.labels...); v != m.want {
					t.Errorf("%s%v = %v, want %v", m.name, m.labels, v, m.want)
				}
			}
			if n := histogramCount(t, reg, "headwater_gopqueue_input_fetch_seconds"); n != 2 {
				t.Errorf("input_fetch_seconds count = %d, want 2", n)
			}
		})
	}
}

// TestDirectInputFallsBackToNATS: a worker that cannot reach the owner's
// input listener gets the input over NATS, and does not try the listener
// again for the next job.
func TestDirectInputFallsBackToNATS(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	cfg := directCfg("owner")
	cfg.InputHost = "127.0.0.2" // the listener is on 127.0.0.1 only: refused
	e := newExecutorCfg(t, nc, js, cfg, reg)
	var got [][]byte
	run := &fakeRunner{frames: 1, hold: func(_ context.Context, j *transcoder.Job, _ int) error {
		got = append(got, bytes.Clone(j.Input))
		return nil
	}}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)
	for i := range 2 {
		rec := newRecord()
		j := rec.attach(fakeJob("live/fallback", 200_000+i, 10*time.Second))
		e.Submit(j)
		wantFakeFrames(t, j, rec.wait(t, 10*time.Second), rec.check(t), 1)
		if !bytes.Equal(got[i], j.Input) {
			t.Fatalf("job %d: worker got %d bytes, want the %d submitted", i, len(got[i]), len(j.Input))
		}
	}
	if v := testpeer.MetricSum(t, reg, "headwater_gopqueue_input_requests_total", "via", "nats", "result", "served"); v != 2 {
		t.Errorf("inputs served over NATS: %v, want 2", v)
	}
	if v := testpeer.MetricSum(t, reg, "headwater_gopqueue_input_requests_total", "via", "direct"); v != 0 {
		t.Errorf("inputs served directly: %v, want 0", v)
	}
}

// TestDirectInputNeedsToken: the owner's listener serves a pending job's
// input only with the job's token, answers 410 for a job it does not have
// and 404 elsewhere.
func TestDirectInputNeedsToken(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	nc, js := connect(t, url)
	e := newExecutorCfg(t, nc, js, directCfg("owner"), nil)
	rec := newRecord()
	j := rec.attach(fakeJob("live/token", 100_000, 30*time.Second))
	e.Submit(j)
	var key, token string
	testpeer.WaitFor(t, 5*time.Second, "the job pending", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for k, p := range e.jobs {
			key, token = k, p.token
		}
		return key != ""
	})
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(hdrToken, token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if len(token) != 32 {
		t.Fatalf("token %q, want 128 random bits in hex", token)
	}
	if code, b := get(e.inputBase+key, token); code != http.StatusOK || !bytes.Equal(b, j.Input) {
		t.Errorf("with the token: %d, %d bytes; want 200 and the input", code, len(b))
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{e.inputBase + key, "", http.StatusForbidden},
		{e.inputBase + key, token[:31] + "x", http.StatusForbidden},
		{e.inputBase + key + "0", token, http.StatusGone},
		{strings.TrimSuffix(e.inputBase, "/"), token, http.StatusNotFound},
	} {
		if code, _ := get(c.path, c.token); code != c.want {
			t.Errorf("GET %s with token %q: %d, want %d", c.path, c.token, code, c.want)
		}
	}
	e.Close()
	rec.wait(t, time.Second)
	rec.check(t)
}

// TestHeldInputOwnerGone: a worker taking a job whose input is held by an
// owner that no longer has the job (it finished it, or another
// incarnation of the node) or by no owner at all (it died) does not run
// it, whether it asks over NATS or the owner's listener: it terms the
// message and counts it as not started "owner_gone", with no result sent.
func TestHeldInputOwnerGone(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	reg := prometheus.NewRegistry()
	nc, js := connect(t, url)
	e := newExecutorCfg(t, nc, js, directCfg("owner"), nil) // alive, without these jobs
	results, err := nc.SubscribeSync(ResultSubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dead := "http://" + testpeer.FreeAddr(t) + inputPath // nothing listens
	for i, c := range []struct{ node, inputURL string }{
		{"owner", ""},
		{"dead", ""},
		{"owner", e.inputBase}, // 410 from the owner
		{"dead", dead},         // refused, then no responders on NATS
	} {
		key := "k" + strconv.Itoa(i)
		j := fakeJob("live/gone", 0, 10*time.Second)
		meta := &jobMeta{V: wireVersion, Key: key, Node: c.node, Reply: resultSubject(c.node, key), Job: *j,
			InputSize: 200_000, Held: true}
		if c.inputURL != "" {
			meta.InputURL, meta.Token = c.inputURL+key, "t"
		}
		body, err := encodeJob(meta, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, jobSubject(c.node, key), body); err != nil {
			t.Fatal(err)
		}
	}
	run := &fakeRunner{frames: 1}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{}, reg)

	testpeer.WaitMetric(t, reg, 4, 5*time.Second, "headwater_gopqueue_jobs_not_started_total", "reason", "owner_gone")
	testpeer.WaitFor(t, 5*time.Second, "the jobs gone from the queue", func() bool {
		ci := consumerInfo(t, js)
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
	if run.ran.Load() != 0 {
		t.Error("a job without its input ran")
	}
	for {
		m, err := results.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		if len(m.Data) > 0 && m.Data[0] != kindStart {
			t.Errorf("a result message of kind %d on %s for a job whose owner is gone", m.Data[0], m.Subject)
		}
	}
}

// TestHeldInputAskedAgain: an owner's listener that accepts and never
// answers (a connection that died silently) is given up after InputWait
// for NATS; an answer over NATS that loses a chunk (core NATS loses
// messages across a reconnect) is completed by asking again after
// InputWait; chunks received twice are taken once.
func TestHeldInputAskedAgain(t *testing.T) {
	leakCheck(t)
	url := natsServer(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		var open []net.Conn
		for {
			c, err := silent.Accept()
			if err != nil {
				for _, c := range open {
					_ = c.Close()
				}
				return
			}
			open = append(open, c)
		}
	}()
	t.Cleanup(func() { _ = silent.Close(); conns.Wait() })
	nc, js := connect(t, url)
	in := fakeJob("live/again", 200_000, 0).Input
	const chunk = 64 << 10
	var asked atomic.Int32
	// A hand-made owner: the first answer lacks its second chunk.
	owner, err := nc.Subscribe(inputSubject("fake", "k1"), func(m *nats.Msg) {
		n := asked.Add(1)
		for off := 0; off < len(in); off += chunk {
			if n == 1 && off == chunk {
				continue
			}
			_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: nats.Header{hdrOffset: []string{strconv.Itoa(off)}},
				Data: in[off:min(off+chunk, len(in))]})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = owner.Unsubscribe() })
	var got []byte
	run := &fakeRunner{frames: 1, hold: func(_ context.Context, j *transcoder.Job, _ int) error {
		got = j.Input
		return nil
	}}
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: run})
	wnc, wjs := connect(t, url)
	runWorker(t, wnc, wjs, pool, WorkerConfig{InputWait: 200 * time.Millisecond}, nil)

	reply, err := nc.SubscribeSync(resultSubject("fake", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	j := fakeJob("live/again", 0, 10*time.Second)
	body, err := encodeJob(&jobMeta{V: wireVersion, Key: "k1", Node: "fake", Reply: resultSubject("fake", "k1"), Job: *j,
		InputSize: len(in), Held: true, InputURL: "http://" + silent.Addr().String() + inputPath + "k1", Token: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, jobSubject("fake", "k1"), body); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := reply.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no final result: %v", err)
		}
		if m.Data[0] == kindResult {
			break
		}
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("the input was asked for %d times, want 2", n)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("the worker ran %d bytes, want the %d held", len(got), len(in))
	}
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
	e := newExecutorCfg(t, nc, js, directCfg("owner"), reg)

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

	// A held input, served directly: the second worker gets it from the
	// owner again.
	rec := newRecord()
	j := rec.attach(fakeJob("live/a", 200_000, 15*time.Second))
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

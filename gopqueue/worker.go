package gopqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// JobPool is what a Worker needs of the local ffmpeg pool: a
// transcoder.Pool, started by its owner. It calls a job's Done once it no
// longer reads the job's Input (a transcoder.Pool calls it after its
// runner returned, and its runner has then written the input to ffmpeg):
// the worker reuses the buffer of a held input for the next one.
type JobPool interface {
	transcoder.Executor
	// Size is the number of jobs the pool runs at once.
	Size() int
}

var _ JobPool = (*transcoder.Pool)(nil)

// Defaults of WorkerConfig.
const (
	// DefaultFetchWait is how long one pull request waits for jobs.
	DefaultFetchWait = 5 * time.Second
	// DefaultInputWait is how long a worker waits for the whole of a held
	// input after asking its owner for it, before asking again.
	DefaultInputWait = time.Second
	// inputTries is how many times a worker asks for a held input.
	inputTries = 3
	// maxInputSize bounds the input a job may announce (a GOP is a few
	// MB): a worker allocates it before the first byte arrives.
	maxInputSize = 256 << 20
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Slots is how many jobs the worker runs at once: the pool's Size by
	// default (a smaller value leaves pool slots to other feeders).
	Slots int
	// FetchWait is how long one pull request waits for jobs
	// (DefaultFetchWait).
	FetchWait time.Duration
	// InputWait is how long the worker waits for the whole of a held
	// input after asking the job's owner for it over NATS, before asking
	// again (DefaultInputWait; three requests at most, none past the
	// job's deadline), and for the answer of the owner's listener before
	// asking over NATS.
	InputWait time.Duration
	// PollInterval is how often the consumer's state is copied into the
	// metrics (DefaultPollInterval; negative: never).
	PollInterval time.Duration
}

// Worker takes GOP jobs from the HEADWATER_GOPS work queue and runs them
// on a local transcoder pool (pre-warmed ffmpeg, fork server, reserved
// workers, shedding): the `headwater worker` command, or local workers of
// a serve node. It never has more jobs than free slots: it fetches from
// the shared durable pull consumer only as many jobs as it has free
// slots, so several workers share the queue and a busy one leaves jobs to
// the others.
//
// For each job it takes, the worker
//   - discards it (Term, counted as not started "late", a final result
//     with every rendition shed as "late") when its deadline has passed;
//   - announces the delivery (a start message with JetStream's delivery
//     number) on the job's result subject, gets the input from the owner
//     when the owner held it (the job message a claim check), and submits
//     a transcoder.Job to the pool
//     whose Progress publishes each frame on the result subject as soon as
//     ffmpeg produced it and whose Done publishes the final result and
//     acknowledges the message;
//   - sends a progress heartbeat (InProgress) every third of the ack wait
//     while the job runs: a worker that dies or stops (SIGSTOP) stops
//     them, and JetStream redelivers the job to another worker after the
//     ack wait;
//   - terms the job, counted as not started "owner_gone", when its owner
//     answers that it no longer has the job or nobody serves the job's
//     input (the owner died, or lost NATS): its results could not reach
//     the owner either;
//   - gives the job back at once (Nak) when its run is canceled because
//     the worker stops or its pool closed.
//
// The pool's own rules apply to remote jobs as to local ones: a job that
// waited n × MaxWait GOP durations since its GOP closed (JetStream's queue
// included) loses its n lowest-priority renditions (the tallest rung
// first by default, keeping one), and a job that would not finish before
// its deadline at the speed of recent jobs is shed whole as "late".
type Worker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	pool JobPool
	cfg  WorkerConfig
	log  *slog.Logger
	m    *Metrics
}

// NewWorker returns a worker running jobs on pool (started by its owner);
// log and reg may be nil. Nothing runs until Run.
func NewWorker(nc *nats.Conn, js jetstream.JetStream, pool JobPool, cfg WorkerConfig, log *slog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if nc == nil || js == nil || pool == nil {
		return nil, errors.New("gopqueue: worker needs a NATS connection, JetStream and a pool")
	}
	if cfg.Slots <= 0 {
		cfg.Slots = pool.Size()
	}
	if cfg.Slots <= 0 {
		return nil, errors.New("gopqueue: worker needs at least one slot")
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = DefaultFetchWait
	}
	if cfg.InputWait <= 0 {
		cfg.InputWait = DefaultInputWait
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{nc: nc, js: js, pool: pool, cfg: cfg, log: log.With("component", "gopqueue-worker"), m: NewMetrics(reg)}, nil
}

// task is a job taken from the queue and not yet finished.
type task struct {
	msg      jetstream.Msg
	meta     *jobMeta
	delivery uint64
	buf      []byte // a held input's buffer, recycled when the task is done
}

// workerRun is the state of one Run.
type workerRun struct {
	*Worker
	cons    jetstream.Consumer
	ackWait time.Duration
	direct  *directClient
	bufs    sync.Pool // *[]byte: held inputs' buffers

	running atomic.Int64
	freed   chan struct{} // a slot was freed
	jobs    sync.WaitGroup
	mu      sync.Mutex
	tasks   map[*task]struct{}
}

// Run takes and runs jobs until ctx ends, then gives back the jobs still
// running (their runs are canceled and the messages Nak'ed) and returns
// nil once every job is finished. It fails at once when the stream or
// the consumer does not exist.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.js.Consumer(ctx, StreamName, ConsumerName)
	if err != nil {
		return fmt.Errorf("gopqueue: worker: consumer %s on %s: %w", ConsumerName, StreamName, err)
	}
	r := &workerRun{Worker: w, cons: cons, ackWait: cons.CachedInfo().Config.AckWait, direct: newDirectClient(w.cfg.Slots, w.cfg.InputWait),
		freed: make(chan struct{}, 1), tasks: map[*task]struct{}{}}
	if r.ackWait <= 0 {
		r.ackWait = 30 * time.Second
	}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); r.heartbeats(ctx) }()
	if w.cfg.PollInterval > 0 {
		bg.Add(1)
		p := &poller{js: w.js, m: w.m, log: w.log, interval: w.cfg.PollInterval}
		go func() { defer bg.Done(); p.run(ctx) }()
	}
	r.fetch(ctx)
	r.jobs.Wait()
	bg.Wait()
	r.direct.close()
	return nil
}

// fetch pulls jobs, never more than the free slots, until ctx ends.
func (r *workerRun) fetch(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		free := r.cfg.Slots - int(r.running.Load())
		if free <= 0 {
			select {
			case <-r.freed:
			case <-ctx.Done():
			}
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, r.cfg.FetchWait)
		batch, err := r.cons.Fetch(free, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				r.take(ctx, msg)
			}
			err = batch.Error()
		}
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, nats.ErrTimeout) {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() == nil {
			r.log.Warn("gopqueue: fetching jobs", "error", err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// take starts handling one delivered job.
func (r *workerRun) take(ctx context.Context, msg jetstream.Msg) {
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	t := &task{msg: msg}
	r.running.Add(1)
	r.m.running.Inc()
	r.jobs.Add(1)
	r.mu.Lock()
	r.tasks[t] = struct{}{}
	r.mu.Unlock()
	go r.start(ctx, t)
}

// release frees a task's slot.
func (r *workerRun) release(t *task) {
	r.mu.Lock()
	delete(r.tasks, t)
	r.mu.Unlock()
	r.running.Add(-1)
	r.m.running.Dec()
	select {
	case r.freed <- struct{}{}:
	default:
	}
	r.jobs.Done()
}

// notStarted ends a task that will not run: term (no redelivery), tell
// the owner (unless it is gone), count.
func (r *workerRun) notStarted(t *task, reason, outcome string, err error) {
	r.m.notStarted.WithLabelValues(reason).Inc()
	_ = t.msg.TermWithReason(reason)
	if t.meta != nil && reason != reasonOwnerGone {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		r.reply(t, shedResult(t.meta.Job.Renditions, outcome, reason, msg))
	}
	switch {
	case reason == reasonOwnerGone: // expected when an owner dies: counted
		r.log.Debug("gopqueue: job not started", "reason", reason, "error", err)
	case err != nil:
		r.log.Warn("gopqueue: job not started", "reason", reason, "error", err)
	}
	r.release(t)
}

func (r *workerRun) reply(t *task, res *wireResult) {
	b, err := encodeResult(t.delivery, res)
	if err == nil {
		err = r.nc.Publish(t.meta.Reply, b)
	}
	if err != nil {
		r.log.Warn("gopqueue: cannot send a result", "job", t.meta.Key, "error", err)
	}
}

// reasonOwnerGone is the reason a job is not started when its owner no
// longer has it.
const reasonOwnerGone = "owner_gone"

// start checks a job, gets its input and submits it to the pool (its own
// goroutine: getting a held input takes a round trip).
func (r *workerRun) start(ctx context.Context, t *task) {
	md, err := t.msg.Metadata()
	if err != nil {
		r.notStarted(t, "invalid", transcoder.OutcomeFailed, fmt.Errorf("message metadata: %w", err))
		return
	}
	t.delivery = md.NumDelivered
	r.m.wait.Observe(time.Since(md.Timestamp).Seconds())
	if md.NumDelivered > 1 {
		r.m.redelivered.Inc()
	}
	meta, inline, err := decodeJob(t.msg.Data())
	if err != nil {
		r.notStarted(t, "invalid", transcoder.OutcomeFailed, err)
		return
	}
	if checkToken("node", meta.Node) != nil || checkToken("job", meta.Key) != nil || meta.Reply != resultSubject(meta.Node, meta.Key) {
		r.notStarted(t, "invalid", transcoder.OutcomeFailed, fmt.Errorf("job %s: bad reply subject %q", meta.Key, meta.Reply))
		return
	}
	t.meta = meta
	if meta.InputSize < 0 || meta.InputSize > maxInputSize {
		r.notStarted(t, "invalid", transcoder.OutcomeFailed, fmt.Errorf("job %s: an input of %d bytes", meta.Key, meta.InputSize))
		return
	}
	j := &meta.Job
	if !time.Now().Before(j.Deadline) {
		r.notStarted(t, "late", transcoder.OutcomeShed, nil)
		return
	}
	for i := range j.Renditions {
		if err := j.Renditions[i].Validate(); err != nil {
			r.notStarted(t, "invalid", transcoder.OutcomeFailed, fmt.Errorf("job %s: %w", meta.Key, err))
			return
		}
	}
	if err := r.nc.Publish(meta.Reply, encodeStart(t.delivery)); err != nil {
		r.log.Warn("gopqueue: cannot announce a job", "job", meta.Key, "error", err)
	}
	input := inline
	if meta.Held {
		dctx, cancel := context.WithDeadline(ctx, j.Deadline)
		input, err = r.fetchInput(dctx, meta)
		cancel()
		t.buf = input
		switch {
		case err == nil:
		case ctx.Err() != nil:
			_ = t.msg.Nak()
			r.release(t)
			return
		case errors.Is(err, errOwnerGone):
			r.notStarted(t, reasonOwnerGone, transcoder.OutcomeShed, err)
			return
		default:
			r.notStarted(t, "input_missing", transcoder.OutcomeFailed, err)
			return
		}
	}
	if len(input) != meta.InputSize {
		r.notStarted(t, "invalid", transcoder.OutcomeFailed, fmt.Errorf("job %s: input of %d bytes, want %d", meta.Key, len(input), meta.InputSize))
		return
	}
	idx := make(map[string]int, len(j.Renditions))
	for i, rd := range j.Renditions {
		idx[rd.Name] = i
	}
	j.Input = input
	j.Ctx = ctx
	j.Progress = func(name string, attempt, k int, codec media.Codec, f transcoder.OutFrame) {
		i, ok := idx[name]
		if !ok {
			return
		}
		_ = r.nc.Publish(meta.Reply, encodeFrame(t.delivery, attempt, i, k, codec, f))
	}
	j.Done = func(res *transcoder.Result) { r.done(t, res) }
	r.pool.Submit(j)
}

// done sends a job's final result and acknowledges it, or gives it back
// when its run was canceled here (the worker or its pool stopping).
func (r *workerRun) done(t *task, res *transcoder.Result) {
	wr := &wireResult{Attempt: res.Job.Attempt, Retried: res.Retried, Wall: res.Wall, CPU: res.CPU}
	if res.Err != nil {
		wr.Err = res.Err.Error()
	}
	canceled := false
	for _, rr := range res.Renditions {
		n := 0
		if rr.Track != nil {
			n = len(rr.Track.Frames)
		}
		if rr.Reason == "canceled" {
			canceled = true
		}
		wr.Renditions = append(wr.Renditions, wireRendition{Name: rr.Rendition.Name, Outcome: rr.Outcome, Reason: rr.Reason, Frames: n})
	}
	if canceled {
		_ = t.msg.Nak()
	} else {
		r.reply(t, wr)
		_ = t.msg.Ack()
	}
	if t.buf != nil {
		r.recycle(t.buf)
	}
	r.release(t)
}

// inputBuf returns a buffer of n bytes for a held input: a recycled one
// when one is large enough (its old contents are all overwritten).
func (r *workerRun) inputBuf(n int) []byte {
	if b, ok := r.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// recycle keeps the buffer of an input no longer read for the next one:
// a GOP's 1–2 MB allocated and cleared per job cost about 0.4 ms on the
// critical path and GC work (BenchmarkFirstFrame).
func (r *workerRun) recycle(b []byte) { r.bufs.Put(&b) }

// heartbeats tells JetStream the running jobs are in progress every third
// of the ack wait, until ctx ends.
func (r *workerRun) heartbeats(ctx context.Context) {
	t := time.NewTicker(max(r.ackWait/3, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(r.tasks))
		for t := range r.tasks {
			msgs = append(msgs, t.msg)
		}
		r.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

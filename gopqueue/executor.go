package gopqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

var _ transcoder.Executor = (*Executor)(nil)

// Defaults of ExecutorConfig.
const (
	// DefaultChunkSize is the largest chunk of a held input in one
	// message to the worker.
	DefaultChunkSize = 512 << 10
	// DefaultInlineMax is the largest input that travels inline, in the
	// job message; a larger one is held by the owner.
	DefaultInlineMax = 64 << 10
	// DefaultBacklog is how many jobs may wait for their publish.
	DefaultBacklog = 1024
	// DefaultPollInterval is how often the consumer's state is read.
	DefaultPollInterval = time.Second
)

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	// Node is this node's id, a subject token: results come back on
	// headwater.results.<Node>.<job>. Required.
	Node string
	// ChunkSize is the largest chunk of a held input sent in one message
	// to a worker (DefaultChunkSize; at most the connection's and the
	// worker's max payload less 4 KiB).
	ChunkSize int
	// InlineMax is the largest input that travels inline in the job
	// message, stored in JetStream (DefaultInlineMax; negative: none). A
	// larger input, or one that with the metadata does not fit in the
	// connection's max payload less 4 KiB, is held by the executor and
	// served to the worker that takes the job (a claim check).
	InlineMax int
	// InputListen, when set, is the TCP address ("host:port"; port 0
	// picks one) on which the executor serves its held inputs over plain
	// HTTP directly to workers, the job message carrying the input's URL
	// and a per-job token; workers that cannot reach it ask over NATS. A
	// listener that cannot be opened is logged and inputs go over NATS.
	// "": over NATS only. DirectInputs derives it from the node's origin
	// URL.
	InputListen string
	// InputHost is the host workers reach InputListen at; by default the
	// listener's own, which must then not be unspecified (0.0.0.0, ::).
	InputHost string
	// Backlog bounds the jobs submitted and not yet published
	// (DefaultBacklog); past it a job is rejected (its GOP a gap).
	Backlog int
	// PollInterval is how often the consumer's state is copied into the
	// metrics (DefaultPollInterval; negative: never).
	PollInterval time.Duration
}

// Executor is the owning node's side of the GOP queue: a
// transcoder.Executor that publishes each job to the HEADWATER_GOPS work
// queue and turns the result messages that workers stream back into the
// job's Progress calls (in order, per rendition) and one Done.
//
// A job's input above InlineMax is not published: the job message is a
// claim check (the metadata only), and the executor serves the input from
// memory to the worker that takes the job, for as long as the job is
// pending: on its input listener (InputListen: plain HTTP with the job's
// token) and on the job's input subject (headwater.inputs.<node>.<job>,
// request/reply, in chunks under the max payload).
//
// A job's current delivery is the highest JetStream delivery number a
// worker announced for it (a start message precedes a delivery's frames):
// frames and results of an older delivery, and anything for a job already
// done, are discarded and counted (late_results_discarded_total), so a
// worker paused past the ack wait never writes its GOP a second time. A
// newer delivery restarts the renditions' frames from k = 0 under a new
// attempt number, which the transcoder merges like a local retry. Done is
// called exactly once: by the current delivery's final result, at the
// deadline (renditions shed as "late" when no delivery started, failed as
// "timeout" otherwise), when the job's Ctx ends ("canceled") or at Close.
type Executor struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	cfg  ExecutorConfig
	log  *slog.Logger
	m    *Metrics
	inst string // this executor's incarnation, part of every job key
	seq  atomic.Uint64

	sub   *nats.Subscription // results
	insub *nats.Subscription // input requests

	inputSrv  *http.Server // direct input transfer (InputListen), or nil
	inputBase string       // its URL prefix, "" without

	pubq   chan *pending
	ackq   chan pubAck
	cleanq chan string // keys of jobs whose message may still be queued
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	mu   sync.Mutex
	jobs map[string]*pending
}

// pending is a job submitted and not yet done.
type pending struct {
	key   string
	job   *transcoder.Job
	token string      // of the direct input transfer, "" without
	timer *time.Timer // set under Executor.mu
	stop  func() bool // ends the Ctx watch; set under Executor.mu

	mu       sync.Mutex // serializes Progress and Done
	done     bool
	started  bool
	delivery uint64 // current delivery (0: none yet)
	attempt  int    // worker-local attempt of the current delivery
	outAtt   int    // attempt number passed to Progress
	first    bool   // a frame reached Progress
	parts    []part // per rendition, of the current (delivery, attempt)
}

// part is what the current attempt streamed of one rendition.
type part struct {
	codec  media.Codec
	frames []transcoder.OutFrame
	broken bool // a frame was lost: the rendition fails
}

type pubAck struct {
	p *pending
	f jetstream.PubAckFuture
}

// NewExecutor returns an executor publishing jobs through js and reading
// results on nc; log and reg may be nil. It subscribes at once; Close
// ends it. The streams must exist (EnsureStreams).
func NewExecutor(nc *nats.Conn, js jetstream.JetStream, cfg ExecutorConfig, log *slog.Logger, reg prometheus.Registerer) (*Executor, error) {
	if err := checkToken("node", cfg.Node); err != nil {
		return nil, err
	}
	if nc == nil || js == nil {
		return nil, errors.New("gopqueue: executor needs a NATS connection and JetStream")
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if max := int(nc.MaxPayload()) - 4096; max > 0 && cfg.ChunkSize > max {
		cfg.ChunkSize = max
	}
	if cfg.InlineMax == 0 {
		cfg.InlineMax = DefaultInlineMax
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultBacklog
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Executor{nc: nc, js: js, cfg: cfg, log: log.With("component", "gopqueue"), m: NewMetrics(reg),
		inst: incarnation(), jobs: map[string]*pending{},
		pubq: make(chan *pending, cfg.Backlog), ackq: make(chan pubAck, cfg.Backlog),
		cleanq: make(chan string, cfg.Backlog)}
	sub, err := nc.Subscribe(ResultSubjectPrefix+"."+cfg.Node+".*", e.onResult)
	if err != nil {
		return nil, fmt.Errorf("gopqueue: subscribing to results: %w", err)
	}
	// Frames must not be dropped for a slow callback: no pending limits.
	_ = sub.SetPendingLimits(-1, -1)
	e.sub = sub
	if e.insub, err = nc.Subscribe(InputSubjectPrefix+"."+cfg.Node+".*", e.onInput); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("gopqueue: subscribing to input requests: %w", err)
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if cfg.InputListen != "" {
		// An optimization: without it, inputs go over NATS.
		if err := e.listenInputs(); err != nil {
			e.log.Warn("gopqueue: no direct input transfer; workers get held inputs over NATS", "error", err)
		}
	}
	e.wg.Add(3)
	go e.publisher()
	go e.acks()
	go e.cleaner()
	if cfg.PollInterval > 0 {
		e.wg.Add(1)
		p := &poller{js: js, m: e.m, log: e.log, interval: cfg.PollInterval}
		go func() { defer e.wg.Done(); p.run(e.ctx) }()
	}
	return e, nil
}

// Start ties the executor's life to ctx: ctx ending closes it. It makes
// Executor fit where a local pool is started.
func (e *Executor) Start(ctx context.Context) error {
	if e.closed.Load() {
		return transcoder.ErrClosed
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-ctx.Done():
			go e.Close() // Close waits for this goroutine
		case <-e.ctx.Done():
		}
	}()
	return nil
}

// Ready reports whether the NATS connection is up.
func (e *Executor) Ready() bool { return !e.closed.Load() && e.nc.IsConnected() }

// Close completes every pending job as canceled, stops the executor's
// goroutines, unsubscribes and removes this node's jobs still queued. It
// does not close the connection.
func (e *Executor) Close() {
	e.once.Do(func() {
		e.closed.Store(true)
		_ = e.sub.Unsubscribe()
		_ = e.insub.Unsubscribe()
		if e.inputSrv != nil {
			e.closeInputs()
		}
		e.cancel()
		e.wg.Wait()
		e.mu.Lock()
		all := make([]*pending, 0, len(e.jobs))
		for _, p := range e.jobs {
			all = append(all, p)
		}
		e.mu.Unlock()
		for _, p := range all {
			e.finish(p, e.shedAll(p, transcoder.OutcomeShed, "canceled", nil), outcomeCanceled)
		}
		e.purgeNode()
	})
}

// Submit implements transcoder.Executor: it never blocks; the job is
// published by the executor's publisher goroutine.
func (e *Executor) Submit(j *transcoder.Job) {
	if j.Ctx == nil {
		j.Ctx = context.Background()
	}
	p := &pending{key: e.inst + "-" + strconv.FormatUint(e.seq.Add(1), 10), job: j,
		parts: make([]part, len(j.Renditions))}
	if e.inputBase != "" && len(j.Input) > e.cfg.InlineMax {
		p.token = incarnation() + incarnation()
	}
	switch {
	case e.closed.Load():
		e.complete(p, e.shedAll(p, transcoder.OutcomeShed, "canceled", nil), outcomeCanceled)
		return
	case len(j.Renditions) == 0:
		if j.Done != nil {
			j.Done(&transcoder.Result{Job: j})
		}
		return
	case !time.Now().Before(j.Deadline):
		e.complete(p, e.shedAll(p, transcoder.OutcomeShed, "late", nil), outcomeLate)
		return
	}
	e.mu.Lock()
	e.jobs[p.key] = p
	p.timer = time.AfterFunc(time.Until(j.Deadline), func() { e.expire(p) })
	p.stop = context.AfterFunc(j.Ctx, func() {
		e.finish(p, e.shedAll(p, transcoder.OutcomeShed, "canceled", nil), outcomeCanceled)
		e.clean(p.key)
	})
	e.mu.Unlock()
	select {
	case e.pubq <- p:
	default:
		e.finish(p, e.shedAll(p, transcoder.OutcomeShed, "shed", errors.New("gopqueue: publish backlog full")), outcomeRejected)
	}
}

// publisher publishes the submitted jobs in order, asynchronously; acks
// checks the acknowledgements.
func (e *Executor) publisher() {
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case p := <-e.pubq:
			e.publish(p)
		}
	}
}

// publish publishes one job: its metadata and its input inline when the
// input is at most InlineMax and both fit in the max payload less 4 KiB,
// else its metadata only, the input held here (Held).
func (e *Executor) publish(p *pending) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done {
		return
	}
	j := p.job
	meta := &jobMeta{V: wireVersion, Key: p.key, Node: e.cfg.Node, Reply: resultSubject(e.cfg.Node, p.key),
		Job: *j, InputSize: len(j.Input)}
	meta.Job.Input = nil
	meta.Held = len(j.Input) > e.cfg.InlineMax
	var body []byte
	var err error
	if !meta.Held {
		body, err = encodeJob(meta, j.Input)
		if err == nil && len(body) > int(e.nc.MaxPayload())-4096 {
			meta.Held = true
		}
	}
	if meta.Held && err == nil {
		e.m.held.Inc()
		if p.token != "" {
			meta.InputURL, meta.Token = e.inputBase+p.key, p.token
		}
		body, err = encodeJob(meta, nil)
	}
	var f jetstream.PubAckFuture
	if err == nil {
		f, err = e.js.PublishMsgAsync(&nats.Msg{Subject: jobSubject(e.cfg.Node, p.key), Data: body})
	}
	if err != nil {
		e.rejected(p, err)
		return
	}
	e.queueAck(p, f)
}

// queueAck hands a publish acknowledgement to acks.
func (e *Executor) queueAck(p *pending, f jetstream.PubAckFuture) {
	select {
	case e.ackq <- pubAck{p: p, f: f}:
	case <-e.ctx.Done():
	}
}

// rejected completes a job that could not be published.
func (e *Executor) rejected(p *pending, err error) {
	e.m.pubErrors.Inc()
	e.log.Warn("gopqueue: cannot publish a job", "stream", p.job.Stream, "gop", p.job.Seq, "error", err)
	if e.finish(p, e.shedAll(p, transcoder.OutcomeFailed, "failed", fmt.Errorf("gopqueue: publishing the job: %w", err)), outcomeRejected) {
		e.clean(p.key)
	}
}

// acks waits for the publish acknowledgements, in publish order.
func (e *Executor) acks() {
	defer e.wg.Done()
	for {
		var a pubAck
		select {
		case <-e.ctx.Done():
			return
		case a = <-e.ackq:
		}
		select {
		case <-e.ctx.Done():
			return
		case <-a.f.Ok():
		case err := <-a.f.Err():
			e.rejected(a.p, err)
		}
	}
}

// clean queues the removal of a finished job's message from the stream,
// in case no worker took it; when the cleaner is behind, MaxAge removes
// it (a worker taking it meanwhile is told the job is gone).
func (e *Executor) clean(key string) {
	select {
	case e.cleanq <- key:
	default:
	}
}

func (e *Executor) cleaner() {
	defer e.wg.Done()
	var st jetstream.Stream
	for {
		var key string
		select {
		case <-e.ctx.Done():
			return
		case key = <-e.cleanq:
		}
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		var err error
		if st == nil {
			st, err = e.js.Stream(ctx, StreamName)
		}
		if err == nil {
			err = st.Purge(ctx, jetstream.WithPurgeSubject(jobSubject(e.cfg.Node, key)))
		}
		cancel()
		if err != nil && e.ctx.Err() == nil {
			e.log.Debug("gopqueue: cannot purge a finished job", "job", key, "error", err)
		}
	}
}

// purgeNode removes this node's jobs from the stream: its
// pending jobs are completed as canceled, nobody wants their results
// (there is one executor per node id).
func (e *Executor) purgeNode() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, StreamName)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject(JobSubjectPrefix+"."+e.cfg.Node+".*"))
	}
	if err != nil {
		e.log.Debug("gopqueue: cannot purge this node's jobs at close", "error", err)
	}
}

// expire completes a job at its deadline.
func (e *Executor) expire(p *pending) {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		e.finish(p, e.shedAll(p, transcoder.OutcomeFailed, "timeout", errors.New("gopqueue: no result before the deadline")), outcomeTimeout)
	} else {
		e.finish(p, e.shedAll(p, transcoder.OutcomeShed, "late", nil), outcomeLate)
	}
	if !started {
		e.clean(p.key)
	}
}

// shedAll is a result producing none of a job's renditions.
func (e *Executor) shedAll(p *pending, outcome, reason string, err error) *transcoder.Result {
	res := &transcoder.Result{Job: p.job, Err: err}
	for _, r := range p.job.Renditions {
		res.Renditions = append(res.Renditions, transcoder.RenditionResult{Rendition: r, Outcome: outcome, Reason: reason})
	}
	return res
}

// finish removes a pending job and completes it, unless it was already
// done; it reports whether it completed it.
func (e *Executor) finish(p *pending, res *transcoder.Result, outcome string) bool {
	e.mu.Lock()
	if e.jobs[p.key] == p {
		delete(e.jobs, p.key)
	}
	timer, stop := p.timer, p.stop
	e.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	if stop != nil {
		stop()
	}
	return e.complete(p, res, outcome)
}

// complete calls the job's Done once.
func (e *Executor) complete(p *pending, res *transcoder.Result, outcome string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.done = true
	p.parts = nil
	e.m.jobs.WithLabelValues(outcome).Inc()
	if p.job.Done != nil {
		p.job.Done(res)
	}
	return true
}

// held returns the input of a job pending here and its direct transfer
// token, or nil when the job is not pending (never modified after
// Submit, the input is read without a lock).
func (e *Executor) held(key string) ([]byte, string) {
	e.mu.Lock()
	p := e.jobs[key]
	e.mu.Unlock()
	if p == nil {
		return nil, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil, ""
	}
	return p.job.Input, p.token
}

// incarnation is a random token naming one Executor's life: job keys of
// a node restarted with the same id never collide with its old ones. Two
// make a direct input transfer's token.
func incarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package server

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/gopqueue"
	"github.com/headwater-live/headwater/metrics"
	"github.com/headwater-live/headwater/transcoder"
)

// clusterExec is the ABR's job executor in a cluster: GOP jobs go to the
// cluster's JetStream work queue (gopqueue.Executor) and come back from
// whichever worker ran them. With local workers (transcoder.local_workers
// > 0) a local ffmpeg pool serves the same queue from this process
// (gopqueue.Worker), and runs this node's jobs directly while the queue is
// unreachable (NATS down, not set up yet); without, such jobs are
// completed at once with every rendition shed as "unavailable" (a gap,
// counted by headwater_cluster_transcode_unavailable_total).
type clusterExec struct {
	cl    *clustering
	local *transcoder.Pool // nil without local workers
	slots int              // of local serving the queue
	reg   prometheus.Registerer
	log   *slog.Logger

	unavailable prometheus.Counter

	remote  atomic.Pointer[gopqueue.Executor] // set by Start
	queueOK atomic.Bool                       // the queue's stream and consumer exist
	cancel  context.CancelFunc
	wg      sync.WaitGroup // run
}

var _ jobExecutor = (*clusterExec)(nil)

// newClusterExecutor returns the newExecutor of a clustered node, with
// transcoder.local_workers pool slots serving the queue (none: no local
// pool at all).
func newClusterExecutor(cl *clustering, cfg *config.Config, reg prometheus.Registerer) newExecutor {
	return func(pc transcoder.PoolConfig, m *transcoder.Metrics, log *slog.Logger) jobExecutor {
		size := pc.Size
		if size <= 0 {
			size = runtime.NumCPU()
		}
		slots := localWorkers(cfg, size)
		x := &clusterExec{cl: cl, slots: slots, reg: reg, log: log,
			unavailable: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
				Name: "headwater_cluster_transcode_unavailable_total",
				Help: "GOP jobs of this node neither queued (the cluster's queue unreachable) nor run locally (no local workers): their renditions are gaps.",
			}))}
		if slots > 0 {
			x.local = transcoder.NewPool(pc, m, log)
		}
		return x
	}
}

// Start starts the local pool, the queue's executor and, in the
// background, the queue set-up and the local queue worker; ctx ends them.
// The node must be started.
func (x *clusterExec) Start(ctx context.Context) error {
	if x.local != nil {
		if err := x.local.Start(ctx); err != nil {
			return err
		}
	}
	n := x.cl.node
	// Held GOP inputs go to workers directly, on a port of the origin's host.
	listen, host := gopqueue.DirectInputs(x.cl.cfg.OriginURL)
	e, err := gopqueue.NewExecutor(n.Conn(), n.JetStream(), gopqueue.ExecutorConfig{Node: n.ID(), InputListen: listen, InputHost: host}, x.log, x.reg)
	if err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		e.Close()
		return err
	}
	x.remote.Store(e)
	ctx, x.cancel = context.WithCancel(ctx)
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		runQueue(ctx, n, x.cl.cfg.Replicas, x.local, x.slots, &x.queueOK, x.log, x.reg)
	}()
	return nil
}

// Submit implements transcoder.Executor: to the queue when it is
// reachable, else to the local pool, else shed.
func (x *clusterExec) Submit(j *transcoder.Job) {
	if e := x.remote.Load(); e != nil && x.queueOK.Load() && e.Ready() {
		if ok, _ := x.cl.health(); ok {
			e.Submit(j)
			return
		}
	}
	if x.local != nil {
		x.local.Submit(j)
		return
	}
	x.unavailable.Inc()
	res := &transcoder.Result{Job: j}
	for _, r := range j.Renditions {
		res.Renditions = append(res.Renditions, transcoder.RenditionResult{Rendition: r, Outcome: transcoder.OutcomeShed, Reason: "unavailable"})
	}
	if j.Done != nil {
		j.Done(res)
	}
}

// Ready reports whether the local pool's warm processes are waiting (the
// cluster's own health is reported apart, by /readyz).
func (x *clusterExec) Ready() bool { return x.local == nil || x.local.Ready() }

// Close stops the queue worker (its jobs given back), completes the
// queued jobs of this node as canceled and kills the local processes.
func (x *clusterExec) Close() {
	if x.cancel != nil {
		x.cancel()
	}
	x.wg.Wait()
	if e := x.remote.Load(); e != nil {
		e.Close()
	}
	if x.local != nil {
		x.local.Close()
	}
}

// runQueue waits for the node to be ready, creates the GOP queue's stream
// and consumer (retrying), sets ok, and then, until ctx ends, keeps them
// in existence (gopqueue.KeepStreams) and, when pool is not nil, runs a
// queue worker on slots of it (restarted when it fails).
func runQueue(ctx context.Context, n *cluster.Node, replicas int, pool *transcoder.Pool, slots int, ok *atomic.Bool, log *slog.Logger, reg prometheus.Registerer) {
	select {
	case <-n.Ready():
	case <-ctx.Done():
		return
	}
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := gopqueue.EnsureStreams(sctx, n.JetStream(), replicas)
		cancel()
		if err == nil {
			break
		}
		if attempt%20 == 0 && ctx.Err() == nil {
			log.Warn("cluster: GOP queue set-up failed, retrying", "error", err)
		}
		if !sleep(ctx, retryWait(attempt)) {
			return
		}
	}
	ok.Store(true)
	// The stream and consumer are created again when NATS loses them (a
	// server restarted with an empty store).
	var keep sync.WaitGroup
	defer keep.Wait()
	keep.Add(1)
	go func() {
		defer keep.Done()
		gopqueue.KeepStreams(ctx, n.JetStream(), replicas, 0, log)
	}()
	if pool == nil {
		<-ctx.Done()
		return
	}
	w, err := gopqueue.NewWorker(n.Conn(), n.JetStream(), pool, gopqueue.WorkerConfig{Slots: slots}, log, reg)
	if err != nil {
		log.Error("cluster: GOP queue worker", "error", err)
		<-ctx.Done()
		return
	}
	log.Info("cluster: GOP queue worker running", "slots", slots)
	for attempt := 0; ; attempt++ {
		err := w.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("cluster: GOP queue worker stopped, restarting", "error", err)
		if !sleep(ctx, retryWait(attempt)) {
			return
		}
	}
}

// retryWait is the wait before retry attempt: 100ms doubling to 5s.
func retryWait(attempt int) time.Duration {
	if attempt >= 6 {
		return 5 * time.Second
	}
	return 100 * time.Millisecond << attempt
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package gopqueue

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Outcomes of a job at its owner (label "outcome" of
// headwater_gopqueue_jobs_total).
const (
	outcomeOK       = "ok"       // every rendition produced
	outcomePartial  = "partial"  // some renditions shed or failed
	outcomeFailed   = "failed"   // none produced: the run failed
	outcomeTimeout  = "timeout"  // started, no result by the deadline
	outcomeLate     = "late"     // not started before the deadline
	outcomeCanceled = "canceled" // its stream ended, or the executor closed
	outcomeRejected = "rejected" // could not be queued (publish failed, local backlog full)
)

// Metrics are the GOP queue's Prometheus metrics. The queue's depth and
// in-flight count are JetStream's own consumer state, polled every second
// on every node that runs an Executor or a Worker.
type Metrics struct {
	pending      prometheus.Gauge
	inFlight     prometheus.Gauge
	redelivering prometheus.Gauge
	waiting      prometheus.Gauge

	wait        prometheus.Histogram
	redelivered prometheus.Counter
	notStarted  *prometheus.CounterVec
	running     prometheus.Gauge
	inputFetch  prometheus.Histogram

	jobs       *prometheus.CounterVec
	discarded  prometheus.Counter
	firstFrame prometheus.Histogram
	held       prometheus.Counter
	inputs     *prometheus.CounterVec
	pubErrors  prometheus.Counter
	pollErrors prometheus.Counter
}

// NewMetrics registers the metrics on reg (nil: unregistered). Executors
// and Workers built on the same registry share them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "headwater", "gopqueue"
	gauge := func(name, help string) prometheus.Gauge {
		return metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}))
	}
	counter := func(name, help string) prometheus.Counter {
		return metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}))
	}
	lat := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	return &Metrics{
		pending:      gauge("jobs_pending", "Jobs queued and not yet delivered to a worker (the JetStream consumer's NumPending)."),
		inFlight:     gauge("jobs_in_flight", "Jobs delivered to a worker and not yet acknowledged (the consumer's NumAckPending)."),
		redelivering: gauge("jobs_redelivering", "Jobs waiting to be delivered again after a worker lost them (the consumer's NumRedelivered)."),
		waiting:      gauge("pull_requests_waiting", "Worker fetch requests waiting for jobs: free worker capacity (the consumer's NumWaiting)."),
		wait: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "job_wait_seconds", Help: "Time from a job stored in JetStream to a worker taking it (observed by the worker).", Buckets: lat})),
		redelivered: counter("jobs_redelivered_total", "Jobs a worker took on a redelivery (a previous worker died, paused or gave it back)."),
		notStarted: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "jobs_not_started_total", Help: "Jobs a worker took and did not start, by reason (late: the deadline had passed; owner_gone: the owner no longer has the job or is unreachable; input_missing; invalid)."}, []string{"reason"})),
		running: gauge("worker_jobs_running", "Jobs this node's workers are running."),
		inputFetch: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "input_fetch_seconds", Help: "Time for a worker to get a held input from the job's owner (request to last chunk).", Buckets: lat})),
		jobs: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "jobs_total", Help: "Jobs submitted on this node, by outcome (ok, partial, failed, timeout, late, canceled, rejected)."}, []string{"outcome"})),
		discarded: counter("late_results_discarded_total", "Result messages (frames and final results) discarded by the owner: from a delivery older than the job's current one, or for a job already done."),
		firstFrame: metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "first_frame_seconds", Help: "Time from a GOP closed to its first rendition frame back at the owner.", Buckets: lat})),
		held: counter("jobs_input_held_total", "Jobs whose input stayed on this owner (above the inline limit): the job message carried the metadata only and the worker fetched the input from the owner."),
		inputs: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "input_requests_total", Help: "Workers' requests for a held input answered by this owner, by way (direct: HTTP on the owner's input listener; nats: request/reply) and result (served; gone: the job was no longer pending; refused: a wrong token)."}, []string{"via", "result"})),
		pubErrors:  counter("publish_errors_total", "Jobs that could not be published to JetStream."),
		pollErrors: counter("consumer_poll_errors_total", "Failed polls of the JetStream consumer's state."),
	}
}

// poller copies the consumer's state into the gauges every interval until
// ctx ends.
type poller struct {
	js       jetstream.JetStream
	m        *Metrics
	log      *slog.Logger
	interval time.Duration
	once     sync.Once // logs the first failure only
}

func (p *poller) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *poller) poll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	c, err := p.js.Consumer(ctx, StreamName, ConsumerName)
	if err != nil {
		if ctx.Err() == nil {
			p.m.pollErrors.Inc()
			p.once.Do(func() { p.log.Warn("gopqueue: cannot read the consumer's state", "error", err) })
		}
		return
	}
	ci := c.CachedInfo()
	p.m.pending.Set(float64(ci.NumPending))
	p.m.inFlight.Set(float64(ci.NumAckPending))
	p.m.redelivering.Set(float64(ci.NumRedelivered))
	p.m.waiting.Set(float64(ci.NumWaiting))
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JobsMaxDeliver is how many times a job is delivered before it is given up.
const JobsMaxDeliver = 5

// jobRetryDelay is how long a failed job waits before its next delivery.
const jobRetryDelay = 10 * time.Second

// RunJobs handles the events of kind as jobs that every node calling
// RunJobs with the same name shares: a durable pull consumer ("jobs-" +
// name) on the events stream, filtered to headwater.events.<kind>, with
// explicit acknowledgement. Each event is delivered to one node at a time;
// one not acknowledged within ackWait (its node died) is delivered again,
// one whose handler fails is delivered again after a pause, and an event is
// given up after JobsMaxDeliver deliveries. Only events published after the
// consumer was first created are jobs. While handle runs, the delivery is
// kept alive (InProgress), so ackWait bounds the detection of a dead node,
// not the length of a job. Handlers must be idempotent: a job may run
// twice (a node that died after the work, before its acknowledgement).
// RunJobs returns when ctx ends.
func (n *Node) RunJobs(ctx context.Context, name, kind string, ackWait time.Duration, handle func(context.Context, []byte) error) {
	if !validKind(kind) {
		n.log.Error("cluster: jobs: invalid event kind", "kind", kind)
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-n.ready:
	}
	backoff := 100 * time.Millisecond
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		var err error
		if cons == nil {
			cons, err = n.jobsConsumer(ctx, name, kind, ackWait)
		}
		if err == nil {
			err = n.fetchJob(ctx, cons, ackWait, handle)
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() == nil {
			n.log.Warn("cluster: jobs: fetching", "jobs", name, "error", err)
		}
		cons = nil
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) jobsConsumer(ctx context.Context, name, kind string, ackWait time.Duration) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := n.js.CreateOrUpdateConsumer(cctx, EventsStream, jetstream.ConsumerConfig{
		Durable:       "jobs-" + name,
		Description:   "Headwater jobs on " + kind + " events",
		FilterSubject: EventsSubjectPrefix + kind,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    JobsMaxDeliver,
		Replicas:      n.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: jobs %s: consumer: %w", name, err)
	}
	return cons, nil
}

// fetchJob waits up to 5 s for one job and handles it.
func (n *Node) fetchJob(ctx context.Context, cons jetstream.Consumer, ackWait time.Duration, handle func(context.Context, []byte) error) error {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return fmt.Errorf("cluster: jobs: fetch: %w", err)
	}
	for msg := range batch.Messages() {
		n.handleJob(ctx, msg, ackWait, handle)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && !errors.Is(err, nats.ErrTimeout) {
		return err
	}
	return nil
}

// handleJob runs one job, keeping its delivery alive, and acknowledges it.
func (n *Node) handleJob(ctx context.Context, msg jetstream.Msg, ackWait time.Duration, handle func(context.Context, []byte) error) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(ackWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	err := handle(ctx, msg.Data())
	close(done)
	switch {
	case err == nil:
		_ = msg.Ack()
	case ctx.Err() != nil:
		_ = msg.Nak() // shutting down: another node takes it
	default:
		n.log.Warn("cluster: job failed, to be retried", "subject", msg.Subject(), "error", err)
		_ = msg.NakWithDelay(jobRetryDelay)
	}
}

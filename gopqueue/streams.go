package gopqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the JetStream objects and subjects the GOP queue uses.
const (
	// StreamName is the work-queue stream holding the jobs.
	StreamName = "HEADWATER_GOPS"
	// ConsumerName is the durable pull consumer every worker fetches jobs
	// from.
	ConsumerName = "workers"
	// JobSubjectPrefix prefixes a job's subject:
	// headwater.gops.jobs.<node>.<job>.
	JobSubjectPrefix = "headwater.gops.jobs"
	// InputSubjectPrefix prefixes the subject on which a job's owner
	// serves its held input: headwater.inputs.<node>.<job> (core NATS
	// request/reply, not stored; outside the stream's subjects).
	InputSubjectPrefix = "headwater.inputs"
	// ResultSubjectPrefix prefixes a job's results:
	// headwater.results.<node>.<job> (core NATS, not stored).
	ResultSubjectPrefix = "headwater.results"
)

// Defaults of the stream and consumer (StreamOption).
const (
	// DefaultAckWait is how long a delivered job may go without an ack
	// or a progress heartbeat before JetStream redelivers it. Workers send
	// a heartbeat every third of it while a job runs, so only a dead or
	// paused worker lets it pass. It is chosen from the deadline: the
	// default deadline is 3 GOP durations (6 s for 2 s GOPs) and a job
	// lost this way is redelivered one GOP duration later, leaving time
	// for another worker to run it.
	DefaultAckWait = 2 * time.Second
	// DefaultMaxAge expires what nobody consumed or cleaned up (jobs of a
	// cluster without workers): a GOP is worthless long before.
	DefaultMaxAge = 2 * time.Minute
	// DefaultMaxBytes bounds the stream; past it publishing a job fails
	// (the GOP becomes a gap) rather than dropping queued ones. Held
	// inputs are not in the stream: a job is its metadata (a few KiB) or
	// a small inline input.
	DefaultMaxBytes = 1 << 30
	// DefaultMaxDeliver bounds the deliveries of one job (a job that
	// crashes every worker).
	DefaultMaxDeliver = 5
)

// StreamOption changes a setting of EnsureStreams.
type StreamOption func(*streamSettings)

type streamSettings struct {
	ackWait    time.Duration
	maxAge     time.Duration
	maxBytes   int64
	maxDeliver int
	storage    jetstream.StorageType
}

// WithAckWait sets the consumer's AckWait (DefaultAckWait).
func WithAckWait(d time.Duration) StreamOption {
	return func(s *streamSettings) { s.ackWait = d }
}

// WithMaxAge sets the stream's MaxAge (DefaultMaxAge).
func WithMaxAge(d time.Duration) StreamOption {
	return func(s *streamSettings) { s.maxAge = d }
}

// WithMaxBytes sets the stream's MaxBytes (DefaultMaxBytes).
func WithMaxBytes(n int64) StreamOption {
	return func(s *streamSettings) { s.maxBytes = n }
}

// WithMemoryStorage keeps the stream in memory instead of files: faster,
// lost when the NATS server restarts (jobs are seconds-lived anyway).
func WithMemoryStorage() StreamOption {
	return func(s *streamSettings) { s.storage = jetstream.MemoryStorage }
}

// EnsureStreams creates or updates, idempotently, the work-queue stream
// HEADWATER_GOPS (subjects headwater.gops.>, WorkQueue retention, file
// storage, replicas copies) and its durable pull consumer "workers"
// (explicit ack, filtered on the jobs).
// Every node may call it at start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int, opts ...StreamOption) error {
	s := streamSettings{ackWait: DefaultAckWait, maxAge: DefaultMaxAge, maxBytes: DefaultMaxBytes,
		maxDeliver: DefaultMaxDeliver, storage: jetstream.FileStorage}
	for _, o := range opts {
		o(&s)
	}
	if replicas < 1 {
		replicas = 1
	}
	if s.ackWait <= 0 || s.maxAge <= 0 || s.maxBytes <= 0 || s.maxDeliver < 1 {
		return errors.New("gopqueue: ack wait, max age, max bytes and max deliver must be positive")
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Headwater GOP transcoding jobs (work queue); large inputs stay on their owner",
		Subjects:    []string{"headwater.gops.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     s.storage,
		Replicas:    replicas,
		MaxAge:      s.maxAge,
		MaxBytes:    s.maxBytes,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return fmt.Errorf("gopqueue: creating stream %s: %w", StreamName, err)
	}
	_, err = js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "Headwater GOP workers: each fetches only as many jobs as it has free ffmpeg slots",
		FilterSubject: JobSubjectPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.ackWait,
		MaxDeliver:    s.maxDeliver,
		MaxAckPending: 100000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      replicas,
	})
	if err != nil {
		return fmt.Errorf("gopqueue: creating consumer %s: %w", ConsumerName, err)
	}
	return nil
}

// DefaultKeepInterval is how often KeepStreams checks that the queue's
// stream and consumer exist.
const DefaultKeepInterval = 2 * time.Second

// KeepStreams keeps the queue's stream and consumer in existence until ctx
// ends: every interval (DefaultKeepInterval when 0 or less) it reads the
// consumer and, when the stream or the consumer is missing, creates them
// again with EnsureStreams(replicas, opts). They go missing when the NATS
// server (or a one-node embedded one) restarted with an empty store, or
// an operator deleted them: without it executors would publish into no
// stream (every GOP a gap) and workers fetch from no consumer, forever.
// Every node running an Executor or a Worker may run it; re-creating is
// idempotent. Other errors (NATS unreachable) are retried at the next
// tick. It returns when ctx ends.
func KeepStreams(ctx context.Context, js jetstream.JetStream, replicas int, interval time.Duration, log *slog.Logger, opts ...StreamOption) {
	if interval <= 0 {
		interval = DefaultKeepInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		_, err := js.Consumer(cctx, StreamName, ConsumerName)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			log.Warn("gopqueue: the queue's stream or consumer is gone (NATS restarted with an empty store?); creating them again", "error", err)
			if err = EnsureStreams(cctx, js, replicas, opts...); err != nil && ctx.Err() == nil {
				log.Warn("gopqueue: re-creating the queue failed; retrying", "error", err)
			} else if err == nil {
				log.Info("gopqueue: the queue's stream and consumer created again")
			}
		}
		cancel()
	}
}

// checkToken reports whether s can be one token of a subject.
func checkToken(what, s string) error {
	if s == "" || strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("gopqueue: %s %q: want a non-empty NATS subject token (no '.', '*', '>' or spaces)", what, s)
	}
	return nil
}

func jobSubject(node, key string) string    { return JobSubjectPrefix + "." + node + "." + key }
func inputSubject(node, key string) string  { return InputSubjectPrefix + "." + node + "." + key }
func resultSubject(node, key string) string { return ResultSubjectPrefix + "." + node + "." + key }

package gopqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// errOwnerGone is a held input's owner answering that it no longer has
// the job, or nobody serving the job's input subject (the owner died, or
// its NATS connection is down): its result could not be delivered either.
var errOwnerGone = errors.New("the job's owner no longer has it")

// onInput serves a held input to the worker asking for it (the input
// subscription's goroutine): the input in chunks of at most the
// executor's ChunkSize and the worker's limit, each published as is, or
// inputGone when the job is no longer pending here.
func (e *Executor) onInput(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	key := msg.Subject[len(InputSubjectPrefix)+len(e.cfg.Node)+2:]
	limit, err := decodeInputRequest(msg.Data)
	if err != nil {
		e.log.Warn("gopqueue: bad input request", "job", key, "error", err)
		return
	}
	in, _ := e.held(key)
	if in == nil {
		e.m.inputs.WithLabelValues("nats", "gone").Inc()
		gone := &nats.Msg{Subject: msg.Reply, Header: nats.Header{hdrInput: []string{inputGone}}}
		if err := e.nc.PublishMsg(gone); err != nil {
			e.log.Debug("gopqueue: cannot answer an input request", "job", key, "error", err)
		}
		return
	}
	e.m.inputs.WithLabelValues("nats", "served").Inc()
	size := min(e.cfg.ChunkSize, limit)
	for off := 0; off < len(in); off += size {
		// The client copies the data into its write buffer: no copy here.
		m := &nats.Msg{Subject: msg.Reply, Header: nats.Header{hdrOffset: []string{strconv.Itoa(off)}},
			Data: in[off:min(off+size, len(in))]}
		if err := e.nc.PublishMsg(m); err != nil {
			e.log.Warn("gopqueue: cannot send an input", "job", key, "error", err)
			return
		}
	}
}

// fetchInput gets a held input from the job's owner: directly from the
// owner's listener when the job names one and it answers, else over
// NATS. errOwnerGone: the owner said so, or nobody answers on NATS.
func (r *workerRun) fetchInput(ctx context.Context, meta *jobMeta) ([]byte, error) {
	start := time.Now()
	input := r.inputBuf(meta.InputSize)
	err := errNotDirect
	if meta.InputURL != "" {
		err = r.direct.fetch(ctx, meta, input)
		if errors.Is(err, errNotDirect) && ctx.Err() == nil {
			r.log.Debug("gopqueue: direct input fetch failed, asking over NATS", "job", meta.Key, "error", err)
		}
	}
	if errors.Is(err, errNotDirect) && ctx.Err() == nil {
		err = r.fetchNATS(ctx, meta, input)
	}
	if err != nil {
		r.recycle(input)
		return nil, err
	}
	r.m.inputFetch.Observe(time.Since(start).Seconds())
	return input, nil
}

// fetchNATS gets a held input from the job's owner over NATS: a request
// on the job's input subject, answered by the input's chunks on this
// request's own inbox, each copied at its offset into one buffer as it
// arrives. A request not answered in full within InputWait is sent again
// (core NATS may lose a message on a reconnect), up to inputTries
// requests and until ctx ends. errOwnerGone: the owner said so or nobody
// answers. input has the input's size; every byte of it is written.
func (r *workerRun) fetchNATS(ctx context.Context, meta *jobMeta, input []byte) error {
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("job %s: subscribing for its input: %w", meta.Key, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The chunks of one input are bounded by its size: no drop for them.
	_ = sub.SetPendingLimits(-1, -1)
	seen := map[int]bool{} // offsets received (the owner cuts the same way every time)
	got := 0
	req := encodeInputRequest(int(r.nc.MaxPayload()) - 4096)
	subj := inputSubject(meta.Node, meta.Key)
	for try := 1; got < len(input); try++ {
		if err := r.nc.PublishRequest(subj, inbox, req); err != nil {
			return fmt.Errorf("job %s: asking for its input: %w", meta.Key, err)
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.InputWait)
		for got < len(input) {
			m, err := sub.NextMsgWithContext(wctx)
			if errors.Is(err, nats.ErrNoResponders) {
				cancel()
				return fmt.Errorf("job %s: nobody serves its input: %w", meta.Key, errOwnerGone)
			}
			if err != nil {
				break
			}
			if m.Header.Get(hdrInput) == inputGone {
				cancel()
				return fmt.Errorf("job %s: %w", meta.Key, errOwnerGone)
			}
			off, err := strconv.Atoi(m.Header.Get(hdrOffset))
			if err != nil || off < 0 || off+len(m.Data) > len(input) || len(m.Data) == 0 {
				cancel()
				return fmt.Errorf("job %s: a chunk of %d bytes at offset %q of an input of %d", meta.Key, len(m.Data), m.Header.Get(hdrOffset), len(input))
			}
			if !seen[off] {
				seen[off] = true
				got += copy(input[off:], m.Data)
			}
		}
		cancel()
		switch {
		case got == len(input):
		case ctx.Err() != nil:
			return fmt.Errorf("job %s: %d of %d input bytes: %w", meta.Key, got, len(input), ctx.Err())
		case try == inputTries:
			return fmt.Errorf("job %s: %d of %d input bytes after %d requests", meta.Key, got, len(input), try)
		}
	}
	return nil
}

package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// flight is one upstream request and its waiters.
type flight struct {
	key    string
	kind   Kind
	gzip   bool
	cancel context.CancelCauseFunc

	// ready is closed once the response headers are known (streaming) or
	// the whole object is (otherwise), or the request failed; the fields
	// below are set before and only read after.
	ready     chan struct{}
	err       error // the request failed before any response: 502
	streaming bool  // the body arrives over time (no Content-Length)
	hdr       header
	held      bool // a held playlist flight that lost its owner (ServePlaylist)
	timedOut  bool // held, and no owner answered in time

	mu      sync.Mutex
	data    []byte        // the body so far (streaming); waiters read data[:len]
	obj     *object       // the complete object
	bodyErr error         // the body broke off
	changed chan struct{} // closed and replaced when data, obj or bodyErr change

	// Guarded by Relay.mu.
	waiters  int
	finished bool // no longer in Relay.flights
}

// join adds a waiter to the flight for key, starting it when there is none
// (unless the cache got the object meanwhile: then it returns the object).
// It returns nils once the relay is closed.
func (rl *Relay) join(key, target string, kind Kind, gzip bool, reqID string) (*flight, *object) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if f := rl.flights[key]; f != nil {
		f.waiters++
		rl.m.collapsed[kind].Inc()
		return f, nil
	}
	// A flight caches its object before it leaves the map: checked under
	// the same lock, a request never misses both.
	if kind.immutable() {
		if obj, ok := rl.cache.get(key, time.Now()); ok {
			rl.m.hits.Inc()
			return nil, obj
		}
	}
	if rl.closed {
		return nil, nil
	}
	ctx, cancel := context.WithCancelCause(rl.ctx)
	f := &flight{key: key, kind: kind, gzip: gzip, cancel: cancel, waiters: 1,
		ready: make(chan struct{}), changed: make(chan struct{})}
	rl.flights[key] = f
	rl.m.upstream[kind].Inc()
	rl.wg.Add(1)
	go rl.fetch(ctx, f, target, reqID)
	return f, nil
}

// leave removes a waiter; the last one to leave a flight still in progress
// cancels it (a blocking request nobody waits for is not kept on the owner).
func (rl *Relay) leave(f *flight) {
	rl.mu.Lock()
	f.waiters--
	abandon := f.waiters == 0 && !f.finished
	if abandon {
		rl.removeLocked(f)
	}
	rl.mu.Unlock()
	if abandon {
		f.cancel(errNoWaiters)
	}
}

// remove takes f out of the flights map, so that later requests start
// their own.
func (rl *Relay) remove(f *flight) {
	rl.mu.Lock()
	rl.removeLocked(f)
	rl.mu.Unlock()
}

func (rl *Relay) removeLocked(f *flight) {
	f.finished = true
	if rl.flights[f.key] == f {
		delete(rl.flights, f.key)
	}
}

// complete waits for the whole object of f.
func (f *flight) complete(ctx context.Context) (*object, error) {
	for {
		f.mu.Lock()
		obj, err, ch := f.obj, f.bodyErr, f.changed
		f.mu.Unlock()
		switch {
		case obj != nil:
			return obj, nil
		case err != nil:
			return nil, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("relay: waiting for a streamed object: %w", ctx.Err())
		}
	}
}

// publish updates f's body state and wakes its waiters.
func (f *flight) publish(data []byte, obj *object, err error) {
	f.mu.Lock()
	f.data, f.obj, f.bodyErr = data, obj, err
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// fetch runs f's upstream request, owned by the relay (wg) and ended by
// the response, an error, the last waiter leaving or Close.
func (rl *Relay) fetch(ctx context.Context, f *flight, target, reqID string) {
	defer rl.wg.Done()
	defer f.cancel(nil)
	rl.attempt(ctx, f, target, reqID, false, false)
}

// attempt sends f's upstream request to target and completes f with its
// outcome, returning true; but with retry, a failure before any response
// (unreachable, an unexpected status) and, with retry404 too, the owner's
// 404, are counted and logged and leave f as it was: it returns false.
func (rl *Relay) attempt(ctx context.Context, f *flight, target, reqID string, retry, retry404 bool) bool {
	failFlight := func(ctx context.Context, f *flight, err error, reason string) bool {
		if retry && ctx.Err() == nil {
			if !retry404 {
				// The first failure of a held flight is counted; the
				// retries are not (the hold's outcome is).
				rl.logFailure(ctx, err, reason)
			}
			return false
		}
		rl.failFlight(ctx, f, err, reason)
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return failFlight(ctx, f, fmt.Errorf("relay: request for %s: %w", target, err), reasonConnect)
	}
	for k, v := range rl.cfg.Header {
		req.Header[k] = v
	}
	if f.gzip {
		req.Header["Accept-Encoding"] = hvGzip
	}
	if reqID != "" {
		req.Header["X-Request-Id"] = []string{reqID}
	}
	t0 := time.Now()
	resp, err := rl.client.Do(req)
	if err != nil {
		return failFlight(ctx, f, fmt.Errorf("relay: GET %s: %w", target, err), reasonConnect)
	}
	defer func() { _ = resp.Body.Close() }()
	rl.m.latency[f.kind].Observe(time.Since(t0).Seconds())

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		if retry404 && ctx.Err() == nil {
			// A new owner without the playlist yet: held on.
			return false
		}
		fallthrough
	case http.StatusBadRequest, http.StatusServiceUnavailable:
		// The owner's answer, passed on with its text.
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return failFlight(ctx, f, fmt.Errorf("relay: GET %s: %d body: %w", target, resp.StatusCode, err), reasonBody)
		}
		rl.finish(f, &object{status: resp.StatusCode, body: body})
		return true
	default:
		return failFlight(ctx, f, fmt.Errorf("relay: GET %s: owner answered %s", target, resp.Status), reasonStatus)
	}
	if resp.ContentLength > maxBody {
		return failFlight(ctx, f, fmt.Errorf("relay: GET %s: %d bytes, over %d", target, resp.ContentLength, maxBody), reasonTooLarge)
	}
	hdr := takeHeader(resp.Header, f.kind)
	// Every read must come within ResponseTimeout of the previous one.
	idle := time.AfterFunc(rl.cfg.ResponseTimeout, func() { f.cancel(errIdle) })
	defer idle.Stop()

	if resp.ContentLength >= 0 {
		body := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(bodyReader{resp.Body, idle, rl.cfg.ResponseTimeout}, body); err != nil {
			return failFlight(ctx, f, fmt.Errorf("relay: GET %s: body: %w", target, err), reasonBody)
		}
		hdr.clen = []string{strconv.Itoa(len(body))}
		rl.finish(f, &object{status: http.StatusOK, hdr: hdr, body: body})
		return true
	}

	// Being written on the owner: waiters stream it as it is read.
	f.hdr, f.streaming = hdr, true
	close(f.ready)
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, streamChunk)...)[:len(buf)]
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			idle.Reset(rl.cfg.ResponseTimeout)
			buf = buf[:len(buf)+n]
			if len(buf) > maxBody {
				rl.failBody(ctx, f, fmt.Errorf("relay: GET %s: streamed body over %d bytes", target, maxBody), reasonTooLarge, buf)
				return true
			}
			f.publish(buf, nil, nil)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rl.failBody(ctx, f, fmt.Errorf("relay: GET %s: streamed body: %w", target, err), reasonBody, buf)
			return true
		}
	}
	hdr.clen = []string{strconv.Itoa(len(buf))}
	obj := &object{status: http.StatusOK, hdr: hdr, body: buf}
	if f.kind.immutable() {
		rl.cache.add(f.key, obj, time.Now())
	}
	rl.remove(f)
	f.publish(buf, obj, nil)
	return true
}

// bodyReader reads a body, pushing the idle timer back after every read.
type bodyReader struct {
	r     io.Reader
	idle  *time.Timer
	limit time.Duration
}

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.idle.Reset(b.limit)
	}
	return n, err
}

// finish completes a non-streaming flight with obj: cached when it is an
// immutable object, out of the flights map, and handed to its waiters.
func (rl *Relay) finish(f *flight, obj *object) {
	if obj.status == http.StatusOK && f.kind.immutable() {
		rl.cache.add(f.key, obj, time.Now())
	}
	rl.remove(f)
	f.publish(nil, obj, nil)
	close(f.ready)
}

// failFlight ends a flight that has not answered: its waiters get 502.
func (rl *Relay) failFlight(ctx context.Context, f *flight, err error, reason string) {
	rl.remove(f)
	f.err = err
	close(f.ready)
	rl.logFailure(ctx, err, reason)
}

// failBody ends a streaming flight whose body broke off: its waiters
// abort their responses.
func (rl *Relay) failBody(ctx context.Context, f *flight, err error, reason string, data []byte) {
	rl.remove(f)
	f.publish(data, nil, err)
	rl.logFailure(ctx, err, reason)
}

// logFailure counts an upstream failure and logs it (at most one line a
// second, with the number of failures not logged since). A flight all of
// whose waiters left is no failure; one cut by Close is not counted.
func (rl *Relay) logFailure(ctx context.Context, err error, reason string) {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errNoWaiters):
		return
	case rl.ctx.Err() != nil:
		return
	case errors.Is(cause, errIdle):
		reason = reasonTimeout
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = reasonTimeout
		}
	}
	rl.m.errors.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := rl.lastLog.Load()
	if now-last < int64(logEvery) || !rl.lastLog.CompareAndSwap(last, now) {
		rl.mutedLogs.Add(1)
		return
	}
	rl.log.Warn("relay: upstream request failed", "reason", reason, "err", err.Error(),
		"failures_not_logged", rl.mutedLogs.Swap(0))
}

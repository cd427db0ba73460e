package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// holdPoll is how often a held playlist request looks its stream's owner
// up again (a local cache of the placement: cheap).
const holdPoll = 100 * time.Millisecond

// Outcomes of a held request, the values of the outcome label.
const (
	outcomeResumed = "resumed" // an owner answered within the hold
	outcomeTimeout = "timeout" // none did
)

// errHoldTimeout ends a held flight no owner answered in time.
var errHoldTimeout = errors.New("relay: no owner of the stream answered within the hold")

// Lookup returns the origin URL of the node owning a stream now, ok false
// when no other node owns it (the placement has no entry, or names this
// node).
type Lookup func() (ownerURL string, ok bool)

// ServePlaylist answers r, a playlist request (KindPlaylist, or KindMPD)
// for stream, like Serve, but rides out the loss of the stream's owner: a
// stream this node relayed in the last 2×hold whose owner cannot be reached,
// or that has no owner (owner ""), is held for up to hold (the origin's
// block_timeout, the bound of a blocking reload) while lookup is asked
// again every 100 ms, and relayed to the first owner that answers with the
// playlist (a new owner's 404 before it has one keeps the hold). Requests
// held for the same playlist share one hold and one upstream request. A
// hold that ends in vain answers 404 when the stream has no owner, else
// 502. It returns handled false, having written nothing, when owner is ""
// and stream was not relayed recently: the caller answers 404 at once.
func (rl *Relay) ServePlaylist(w http.ResponseWriter, r *http.Request, stream, owner string, lookup Lookup, hold time.Duration, kind Kind, gzip bool) (handled bool, err error) {
	if kind >= numKinds {
		kind = KindOther
	}
	now := time.Now()
	if owner != "" {
		rl.touch(stream, now, 2*hold)
	} else if !rl.recent(stream, now, 2*hold) {
		return false, nil
	}
	gzip = gzip && (kind == KindPlaylist || kind == KindMPD)
	// Keyed without the owner: requests held across an owner change, and
	// those arriving after it, share the flight.
	key := "held\x00" + upstreamURL("", r.URL, kind)
	if gzip {
		key += "\x00gzip"
	}
	h := &holdSpec{stream: stream, owner: owner, lookup: lookup, timeout: hold}
	f := rl.joinHeld(key, upstreamURL("", r.URL, kind), kind, gzip, w.Header().Get("X-Request-Id"), h)
	if f == nil {
		fail(w, http.StatusServiceUnavailable, "relay shutting down\n")
		return true, nil
	}
	return true, rl.wait(w, r, f, kind)
}

// holdSpec is what a held flight needs to find its owner.
type holdSpec struct {
	stream  string
	owner   string // at the start; "" when the placement had none
	lookup  Lookup
	timeout time.Duration
}

// joinHeld is join for a held playlist flight.
func (rl *Relay) joinHeld(key, path string, kind Kind, gzip bool, reqID string, h *holdSpec) *flight {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if f := rl.flights[key]; f != nil {
		f.waiters++
		rl.m.collapsed[kind].Inc()
		return f
	}
	if rl.closed {
		return nil
	}
	ctx, cancel := context.WithCancelCause(rl.ctx)
	f := &flight{key: key, kind: kind, gzip: gzip, cancel: cancel, waiters: 1,
		ready: make(chan struct{}), changed: make(chan struct{})}
	rl.flights[key] = f
	rl.wg.Add(1)
	go rl.fetchHeld(ctx, f, path, reqID, h)
	return f
}

// fetchHeld runs a held flight: the upstream request to the owner, and, if
// there is none or it fails before answering, the hold, asking lookup
// again every holdPoll until an owner answers or the hold times out.
func (rl *Relay) fetchHeld(ctx context.Context, f *flight, path, reqID string, h *holdSpec) {
	defer rl.wg.Done()
	defer f.cancel(nil)
	owner := h.owner
	held := owner == ""
	deadline := time.Now().Add(h.timeout)
	tick := time.NewTicker(holdPoll)
	defer tick.Stop()
	for {
		if owner != "" {
			rl.m.upstream[f.kind].Inc()
			f.held = held
			if rl.attempt(ctx, f, owner+path, reqID, true, held) {
				if held {
					rl.touch(h.stream, time.Now(), 2*h.timeout)
				}
				return
			}
			held = true
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		owner, _ = h.lookup()
	}
	f.held, f.timedOut = true, true
	if owner == "" && ctx.Err() == nil {
		rl.finish(f, &object{status: http.StatusNotFound, body: []byte("stream not found\n")})
		return
	}
	// Each failed attempt was counted and logged: the hold is not.
	rl.remove(f)
	f.err = fmt.Errorf("relay: %s: %w", h.stream, errHoldTimeout)
	close(f.ready)
}

// touch records that stream was relayed at now, and forgets the streams
// not relayed for window (at most once a window: memory stays bounded by
// the streams relayed in the last two windows).
func (rl *Relay) touch(stream string, now time.Time, window time.Duration) {
	rl.rmu.Lock()
	defer rl.rmu.Unlock()
	if rl.relayed == nil {
		rl.relayed = make(map[string]time.Time)
	}
	rl.relayed[stream] = now
	if now.Sub(rl.swept) < window {
		return
	}
	rl.swept = now
	for s, t := range rl.relayed {
		if now.Sub(t) >= window {
			delete(rl.relayed, s)
		}
	}
}

// recent reports whether stream was relayed within window before now.
func (rl *Relay) recent(stream string, now time.Time, window time.Duration) bool {
	rl.rmu.Lock()
	defer rl.rmu.Unlock()
	t, ok := rl.relayed[stream]
	if ok && now.Sub(t) >= window {
		delete(rl.relayed, stream)
		return false
	}
	return ok
}

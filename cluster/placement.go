package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/headwater-live/headwater/media"
)

// ErrOwnedElsewhere is returned (wrapped) by [Placement.Claim] when the
// stream name is live on another node.
var ErrOwnedElsewhere = errors.New("cluster: stream is live on another node")

// ErrNameNested is returned (wrapped) by [Placement.Claim] when the stream
// name extends, or is extended by, the name of a stream live in the
// cluster, at a '/' boundary ([media.Nested]: "live/a" and "live/a/x"):
// their URLs would collide, as on one node ([media.ErrNameCollision]).
var ErrNameNested = errors.New("cluster: stream name nests with a live stream's")

// Owner is a placement entry: the node that owns a live stream. It is the
// JSON value stored under the stream's key in [PlacementBucket].
type Owner struct {
	// Node is the owning node's id.
	Node string `json:"node"`
	// OriginURL is the owning node's origin base URL, reachable by other
	// nodes ("http://10.0.0.5:8080").
	OriginURL string `json:"origin_url"`
	// Stream is the stream name ("live/a").
	Stream string `json:"stream"`
	// Started is when the publish was accepted.
	Started time.Time `json:"started"`
	// Protocol is the ingest protocol (rtmp, srt, rtsp), if known.
	Protocol string `json:"protocol,omitempty"`
}

// Placement maps live stream names to their owning nodes through the KV
// bucket [PlacementBucket]. A node writes an entry when it accepts a publish
// ([Placement.Claim]) and refreshes it every TTL/3 until
// [Placement.Release]; an entry not refreshed for the TTL expires, and the
// name can be claimed by another node. Lookups are served from a local
// cache kept by a watch on the bucket.
type Placement struct {
	n   *Node
	kv  atomicKV
	ttl time.Duration

	opMu sync.Mutex       // serializes writes (Claim, Release, heartbeat)
	mine map[string]claim // this node's claims by key, under opMu

	mu    sync.RWMutex
	cache map[string]cached // by key

	lostMu sync.Mutex
	onLost func(Owner, error) // set by OnLost
}

// claim is one of this node's placement entries.
type claim struct {
	owner Owner
	value []byte
	rev   uint64
}

// cached is one entry of the local cache.
type cached struct {
	owner Owner
	rev   uint64
	seen  time.Time // when it was written, as seen here
}

func newPlacement(n *Node) *Placement {
	return &Placement{
		n:     n,
		ttl:   n.cfg.PlacementTTL,
		mine:  map[string]claim{},
		cache: map[string]cached{},
	}
}

// key is the KV key of a stream name: the name with '.' written '=' (KV
// keys may not start or end with '.' nor hold "..", which stream names may;
// stream names never hold '=').
func key(stream string) (string, error) {
	if stream == "" || strings.Contains(stream, "=") {
		return "", fmt.Errorf("cluster: placement: invalid stream name %q", stream)
	}
	k := strings.ReplaceAll(stream, ".", "=")
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '/' || c == '=') {
			return "", fmt.Errorf("cluster: placement: invalid stream name %q", stream)
		}
	}
	return k, nil
}

// bucket returns the KV bucket, or ErrUnavailable before setup.
func (p *Placement) bucket() (jetstream.KeyValue, error) {
	kv := p.kv.Load()
	if kv == nil {
		return nil, ErrUnavailable
	}
	return *kv, nil
}

// Claim records o as the owner of o.Stream. o.Node is always this node's
// id; an empty o.OriginURL is Config.OriginURL and a zero o.Started now.
// The write is atomic (a KV create, or an update at the revision read): it
// fails with [ErrOwnedElsewhere] while another node's entry is live, and
// succeeds when the entry is this node's (a re-claim) or has expired. From
// then on the node refreshes the entry until [Placement.Release] or Close.
// It fails with [ErrNameNested] when the name nests with a live stream's
// in the local cache (checked first, from the cache: two nodes claiming
// nesting names within the watch's delay may both succeed), and with
// [ErrUnavailable] when JetStream is not reachable.
func (p *Placement) Claim(ctx context.Context, o Owner) error {
	k, err := key(o.Stream)
	if err != nil {
		return err
	}
	if other, ok := p.Nested(o.Stream); ok {
		p.n.metrics.claims.WithLabelValues(claimRefused).Inc()
		return fmt.Errorf("cluster: placement %s: %w: %s live on node %s", o.Stream, ErrNameNested, other.Stream, other.Node)
	}
	o.Node = p.n.cfg.NodeID
	if o.OriginURL == "" {
		o.OriginURL = p.n.cfg.OriginURL
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	o.Started = o.Started.UTC()
	value, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("cluster: placement %s: %w", o.Stream, err)
	}
	kv, err := p.bucket()
	if err == nil && !p.n.nc.IsConnected() {
		err = fmt.Errorf("%w: nats not connected", ErrUnavailable) // fail fast, not after the API timeout
	}
	if err != nil {
		p.n.metrics.claims.WithLabelValues(claimFailed).Inc()
		return fmt.Errorf("cluster: placement %s: %w", o.Stream, err)
	}

	p.opMu.Lock()
	defer p.opMu.Unlock()
	rev, err := p.write(ctx, kv, k, value)
	if err != nil {
		if errors.Is(err, ErrOwnedElsewhere) {
			p.n.metrics.claims.WithLabelValues(claimRefused).Inc()
		} else {
			p.n.metrics.claims.WithLabelValues(claimFailed).Inc()
		}
		return fmt.Errorf("cluster: placement %s: %w", o.Stream, err)
	}
	p.n.metrics.claims.WithLabelValues(claimOK).Inc()
	p.mine[k] = claim{owner: o, value: value, rev: rev}
	p.store(k, o, rev, time.Now())
	return nil
}

// write creates the entry k, or updates it when it is this node's or has
// expired; it returns ErrOwnedElsewhere (with the owner) otherwise. opMu is
// held.
func (p *Placement) write(ctx context.Context, kv jetstream.KeyValue, k string, value []byte) (uint64, error) {
	for range 3 {
		rev, err := kv.Create(ctx, k, value)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, unavailable(err)
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // deleted or expired since: create again
		}
		if err != nil {
			return 0, unavailable(err)
		}
		var cur Owner
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			p.n.log.Warn("placement: replacing an undecodable entry", "key", k, "error", err)
		} else if cur.Node != p.n.cfg.NodeID && time.Since(e.Created()) < p.ttl {
			return 0, fmt.Errorf("%w: %s on node %s (%s) since %s", ErrOwnedElsewhere, cur.Stream, cur.Node, cur.OriginURL, cur.Started.Format(time.RFC3339))
		}
		rev, err = kv.Update(ctx, k, value, e.Revision())
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, unavailable(err)
		}
		// Written by someone else meanwhile: look again.
	}
	return 0, errors.New("entry changing too fast, try again")
}

// unavailable marks connection-level errors with ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || strings.Contains(err.Error(), "no responders") ||
		strings.Contains(err.Error(), "connection closed") || strings.Contains(err.Error(), "timeout") {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Release deletes this node's entry for stream (only if it is still this
// node's: an entry another node took over is left alone) and stops its
// heartbeat. Releasing a stream this node does not own does nothing.
func (p *Placement) Release(ctx context.Context, stream string) error {
	k, err := key(stream)
	if err != nil {
		return err
	}
	p.opMu.Lock()
	defer p.opMu.Unlock()
	c, ok := p.mine[k]
	if !ok {
		return nil
	}
	delete(p.mine, k)
	p.drop(k, c.rev)
	kv, err := p.bucket()
	if err != nil {
		return fmt.Errorf("cluster: placement %s: release: %w", stream, err)
	}
	if err := kv.Delete(ctx, k, jetstream.LastRevision(c.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("cluster: placement %s: release: %w", stream, unavailable(err))
	}
	return nil
}

// releaseAll releases every claim of this node, within timeout in all.
func (p *Placement) releaseAll(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(p.n.ctx, timeout)
	defer cancel()
	p.opMu.Lock()
	streams := make([]string, 0, len(p.mine))
	for _, c := range p.mine {
		streams = append(streams, c.owner.Stream)
	}
	p.opMu.Unlock()
	for _, s := range streams {
		if err := p.Release(ctx, s); err != nil {
			p.n.log.Warn("placement: release at close", "stream", s, "error", err)
		}
	}
}

// OnLost sets fn to be called when a claim of this node is lost: at a
// heartbeat, its entry is found written by another node that took the
// name over (this node's entry expired: a partition or pause longer than
// the TTL). fn gets this node's claim and the error naming the new owner
// (wrapping [ErrOwnedElsewhere]); the entry is no longer this node's nor
// refreshed. The stream's publisher here should stop, or the name would be
// live on two nodes. fn runs on the heartbeat goroutine with no lock of
// the placement held, and must not block for long; nil removes it.
func (p *Placement) OnLost(fn func(mine Owner, err error)) {
	p.lostMu.Lock()
	p.onLost = fn
	p.lostMu.Unlock()
}

// lost reports a lost claim to the OnLost function.
func (p *Placement) lost(o Owner, err error) {
	p.lostMu.Lock()
	fn := p.onLost
	p.lostMu.Unlock()
	if fn != nil {
		fn(o, err)
	}
}

// Lookup returns the live owner of stream from the local cache (no network
// call). An entry is live until it is released, or until the TTL has
// passed since it was last written as seen by this node.
func (p *Placement) Lookup(stream string) (Owner, bool) {
	k, err := key(stream)
	if err != nil {
		return Owner{}, false
	}
	p.mu.RLock()
	c, ok := p.cache[k]
	p.mu.RUnlock()
	if !ok || time.Since(c.seen) >= p.ttl {
		return Owner{}, false
	}
	return c.owner, true
}

// Nested returns a live owner, from the local cache, whose stream name
// extends stream or is extended by it at a '/' boundary ([media.Nested]),
// if there is one.
func (p *Placement) Nested(stream string) (Owner, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, c := range p.cache {
		if time.Since(c.seen) < p.ttl && media.Nested(stream, c.owner.Stream) {
			return c.owner, true
		}
	}
	return Owner{}, false
}

// List returns every live owner of the cluster from the local cache, sorted
// by stream name.
func (p *Placement) List() []Owner {
	p.mu.RLock()
	out := make([]Owner, 0, len(p.cache))
	for _, c := range p.cache {
		if time.Since(c.seen) < p.ttl {
			out = append(out, c.owner)
		}
	}
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b Owner) int { return strings.Compare(a.Stream, b.Stream) })
	return out
}

// store puts an entry in the cache unless a later revision is there.
func (p *Placement) store(k string, o Owner, rev uint64, seen time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.cache[k]; ok && c.rev > rev {
		return
	}
	p.cache[k] = cached{owner: o, rev: rev, seen: seen}
}

// drop removes an entry from the cache unless a later revision is there.
func (p *Placement) drop(k string, rev uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.cache[k]; ok && c.rev > rev {
		return
	}
	delete(p.cache, k)
}

// watch keeps the cache from a watch on the bucket until the node closes.
// The watch (an ordered consumer) resumes by itself after reconnects.
func (p *Placement) watch() {
	defer p.n.wg.Done()
	kv, err := p.bucket()
	if err != nil {
		return
	}
	for attempt := 0; ; attempt++ {
		w, err := kv.WatchAll(p.n.ctx)
		if err == nil {
			p.consume(w)
			_ = w.Stop()
			attempt = -1 // the next watch at once
		} else if p.n.ctx.Err() == nil {
			p.n.log.Warn("placement: watch failed, retrying", "error", err)
		}
		wait := time.Duration(0)
		if attempt >= 0 {
			wait = backoff(attempt)
		}
		select {
		case <-p.n.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// consume applies a watcher's updates to the cache until it ends, or
// until it has been silent for a TTL. Live entries are rewritten every
// TTL/3, so a silent watch is either on an empty bucket (restarting it
// costs one consumer) or stale: its ordered consumer lived on a server that
// went away, which the client notices only after missed heartbeats.
func (p *Placement) consume(w jetstream.KeyWatcher) {
	initial := true
	idle := time.NewTimer(p.ttl)
	defer idle.Stop()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-p.n.ctx.Done():
			return
		case <-idle.C:
			return
		case e, ok = <-w.Updates():
		}
		if !ok {
			return
		}
		idle.Reset(p.ttl)
		if e == nil { // every initial value received
			if initial {
				initial = false
				if !isClosed(p.n.ready) {
					close(p.n.ready)
				}
			}
			continue
		}
		if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
			p.drop(e.Key(), e.Revision())
			continue
		}
		var o Owner
		if err := json.Unmarshal(e.Value(), &o); err != nil {
			p.n.log.Warn("placement: undecodable entry", "key", e.Key(), "error", err)
			continue
		}
		seen := time.Now()
		if initial && e.Created().Before(seen) {
			seen = e.Created() // written before this watch: trust the server's time
		}
		p.store(e.Key(), o, e.Revision(), seen)
	}
}

// loop refreshes this node's entries and probes JetStream every TTL/3
// until the node closes.
func (p *Placement) loop() {
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	p.n.probeJetStream()
	for {
		select {
		case <-p.n.ctx.Done():
			return
		case <-p.n.probe: // reconnected: the server may have lost the assets
			if !p.n.nc.IsConnected() {
				continue
			}
			if err := p.n.setup(); err != nil && p.n.ctx.Err() == nil {
				p.n.log.Warn("cluster setup after reconnect failed", "error", err)
			}
			p.n.probeJetStream()
			p.heartbeat()
		case <-t.C:
			p.n.probeJetStream()
			p.heartbeat()
		}
	}
}

// heartbeat rewrites each of this node's entries at its revision; an entry
// that expired meanwhile (a lost connection) is created again, one another
// node took over is given up.
func (p *Placement) heartbeat() {
	kv, err := p.bucket()
	if err != nil {
		return
	}
	p.opMu.Lock()
	keys := slices.Collect(maps.Keys(p.mine))
	p.opMu.Unlock()
	for _, k := range keys {
		if o, err := p.refresh(kv, k); err != nil {
			p.lost(o, err)
		}
	}
}

// refresh rewrites one entry of this node. When the entry is found owned
// by another node it returns this node's lost claim and why.
func (p *Placement) refresh(kv jetstream.KeyValue, k string) (Owner, error) {
	ctx, cancel := context.WithTimeout(p.n.ctx, p.ttl/3)
	defer cancel()
	p.opMu.Lock()
	defer p.opMu.Unlock()
	c, ok := p.mine[k]
	if !ok {
		return Owner{}, nil
	}
	rev, err := kv.Update(ctx, k, c.value, c.rev)
	if err != nil && (errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound)) {
		rev, err = p.write(ctx, kv, k, c.value)
		if errors.Is(err, ErrOwnedElsewhere) {
			delete(p.mine, k)
			p.n.metrics.lost.Inc()
			p.n.log.Warn("placement: entry lost to another node", "stream", c.owner.Stream, "error", err)
			return c.owner, fmt.Errorf("cluster: placement %s: lost: %w", c.owner.Stream, err)
		}
	}
	if err != nil {
		if p.n.ctx.Err() == nil {
			p.n.log.Debug("placement: heartbeat failed", "stream", c.owner.Stream, "error", err)
		}
		return Owner{}, nil
	}
	c.rev = rev
	p.mine[k] = c
	p.store(k, c.owner, rev, time.Now())
	return Owner{}, nil
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/metrics"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/transcoder"
)

// This file is the node's part in a cluster (docs/cluster.md): the
// cluster.Node (started in Start, closed last in Shutdown), the placement
// of the streams this node ingests, their lifecycle events, the relay's
// lookup and the trust of relayed requests. With cluster.nats_url and
// cluster.embedded both unset, Server.cl is nil and none of it runs.

// claimTimeout bounds a placement claim or release made while a publish
// waits.
const claimTimeout = 3 * time.Second

// clustering is the node's membership of the cluster.
type clustering struct {
	cfg    cluster.Config
	role   string
	secret string // the cluster secret (cluster.secret_file), "" for none
	log    *slog.Logger
	reg    prometheus.Registerer

	node *cluster.Node // set by start, before any listener serves

	refusals prometheus.Counter
	kicks    prometheus.Counter // publishers kicked: their name is live on another node

	mu    sync.Mutex               // serializes claim + publish and release
	owned map[string]*media.Stream // this node's live streams by name
	seeds map[string]store.Seed    // continuity of claimed names, until their pipeline begins

	// store is the node's store (nil on a worker), whose streams' continuity
	// is saved (cluster.Continuity); segDur is segmenter.segment_duration.
	store  *store.Store
	segDur time.Duration

	ctx    context.Context // ends the claim retries; cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // claim retries
}

// newClustering builds the node's cluster part from the configuration,
// nil when the cluster is off. Nothing connects until start.
func newClustering(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*clustering, error) {
	if !cfg.Cluster.Enabled() {
		return nil, nil
	}
	secret, err := readClusterSecret(cfg.Cluster.SecretFile)
	if err != nil {
		return nil, err
	}
	cc := clusterConfig(cfg.Cluster) // cluster.Start makes an id when cluster.node_id is ""
	cc.Role = "serve"
	if cfg.Cluster.Role == config.RoleOrigin {
		cc.Role = "origin"
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &clustering{
		cfg: cc, role: cfg.Cluster.Role, secret: secret, log: log.With("component", "cluster"), reg: reg,
		refusals: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_cluster_publish_refused_total",
			Help: "Publishes refused because of a stream live on another node of the cluster: the same name (already_publishing) or a name nesting with it (invalid_name).",
		})),
		kicks: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headwater_cluster_publishers_kicked_total",
			Help: "Publishers of this node stopped because another node took their stream name over (a claim lost after a partition longer than cluster.placement_ttl, or taken while NATS was unreachable).",
		})),
		owned: map[string]*media.Stream{}, seeds: map[string]store.Seed{}, ctx: ctx, cancel: cancel,
	}, nil
}

// readClusterSecret reads the cluster secret: the first line of the file
// (auth.ReadSecretFile), at least minSharedSecret bytes.
func readClusterSecret(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	lines, err := readSecretLines(file)
	if err != nil {
		return "", fmt.Errorf("cluster.secret_file: %w", err)
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("cluster.secret_file: %s holds no secret", file)
	}
	return lines[0], nil
}

// start starts the cluster node: the embedded NATS server when configured
// and the connection (retried in the background when NATS is unreachable).
func (c *clustering) start(ctx context.Context) error {
	if c == nil {
		return nil
	}
	n, err := cluster.Start(ctx, c.cfg, c.log, c.reg)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.node = n
	n.Placement().OnLost(c.lostClaim)
	c.wg.Add(1)
	go c.saveContinuity()
	c.log.Info("cluster: node started", "node", n.ID(), "role", c.role, "embedded", c.cfg.Embedded, "origin_url", c.cfg.OriginURL)
	return nil
}

// close stops the claim retries and closes the node (its placement entries
// are released, a node_left event is published). Call it once the streams
// have ended.
func (c *clustering) close() error {
	if c == nil {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	if c.node == nil {
		return nil
	}
	if err := c.node.Close(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// ClusterClientURL returns the client URL of the embedded NATS server of
// this node ("nats://127.0.0.1:4222", with the port picked when
// cluster.listen has port 0), "" without one (or before Start).
func (s *Server) ClusterClientURL() string {
	if s.cl == nil || s.cl.node == nil {
		return ""
	}
	return s.cl.node.ClientURL()
}

// health is the node's cluster health for /readyz: ok, or why it is
// degraded.
func (c *clustering) health() (bool, string) {
	if c == nil {
		return true, ""
	}
	if c.node == nil {
		return false, "cluster: not started"
	}
	ok, reason := c.node.Health()
	if !ok {
		return false, "cluster: " + reason
	}
	return true, ""
}

// ingests reports whether this node runs ingest listeners (role all, or no
// cluster).
func (c *clustering) ingests() bool { return c == nil || c.role != config.RoleOrigin }

// publish claims name in the placement bucket, then publishes it in reg.
// A name live on another node is refused as a name live here is
// (media.ErrAlreadyPublishing); a placement that cannot be written (NATS
// unreachable) does not stop ingest: the publish goes on and the claim is
// retried in the background.
func (c *clustering) publish(reg *media.Registry, name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, live := reg.Get(name); live || c.node == nil {
		return reg.Publish(name, info, tracks) // refused here as on one node
	}
	claimed, err := c.claim(name, info, time.Now())
	switch {
	case errors.Is(err, cluster.ErrOwnedElsewhere):
		c.refused(name, info, "already_publishing", err)
		return nil, fmt.Errorf("publish %s: %w (cluster: %v)", name, media.ErrAlreadyPublishing, err)
	case errors.Is(err, cluster.ErrNameNested):
		c.refused(name, info, "invalid_name", err)
		return nil, fmt.Errorf("publish %s: %w (cluster: %v)", name, media.ErrNameCollision, err)
	}
	if claimed {
		c.loadSeed(name)
	}
	st, perr := reg.Publish(name, info, tracks)
	if perr != nil {
		delete(c.seeds, name)
		if claimed {
			c.release(name)
		}
		return nil, perr
	}
	c.owned[name] = st
	if !claimed {
		c.log.Warn("cluster: placement unavailable; publish accepted, claim retried in the background", "stream", name, "error", err)
		c.wg.Add(1)
		go c.retryClaim(st)
	}
	_ = c.node.Events().Publish(c.ctx, cluster.KindStreamStarted, cluster.StreamStarted{
		Stream: name, Node: c.node.ID(), OriginURL: c.cfg.OriginURL, Protocol: info.Protocol, Remote: info.RemoteAddr,
		Tracks: trackNames(tracks), Time: time.Now().UTC()})
	return st, nil
}

// claim claims name; claimed false with a nil error never happens.
func (c *clustering) claim(name string, info media.PublishInfo, started time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(c.ctx, claimTimeout)
	defer cancel()
	err := c.node.Placement().Claim(ctx, cluster.Owner{Stream: name, OriginURL: c.cfg.OriginURL, Started: started, Protocol: info.Protocol})
	return err == nil, err
}

// retryClaim claims st's name every second until it succeeds, the stream
// ends or the node closes.
func (c *clustering) retryClaim(st *media.Stream) {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-st.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		if c.owned[st.Name()] != st {
			c.mu.Unlock()
			return
		}
		claimed, err := c.claim(st.Name(), st.Info(), time.Now())
		c.mu.Unlock()
		switch {
		case claimed:
			c.log.Info("cluster: placement claimed", "stream", st.Name())
			return
		case errors.Is(err, cluster.ErrOwnedElsewhere):
			c.log.Error("cluster: the stream accepted while NATS was unreachable is live on another node too; kicking this publisher", "stream", st.Name(), "error", err)
			c.kicks.Inc()
			st.Kick()
			return
		}
	}
}

// lostClaim is the placement's OnLost: another node took over the name of
// a stream live here (this node's entry expired during a partition longer
// than the TTL, and the publisher reconnected there). The publisher here
// is kicked, so that the name is never live on two nodes; its stream ends
// as kicked (unpublished releases nothing: the entry is the other node's).
func (c *clustering) lostClaim(mine cluster.Owner, err error) {
	c.mu.Lock()
	st := c.owned[mine.Stream]
	c.mu.Unlock()
	if st == nil {
		return
	}
	c.kicks.Inc()
	owner, _ := c.node.Placement().Lookup(mine.Stream)
	c.log.Error("cluster: the placement of a stream live here was taken over by another node; kicking this publisher",
		"stream", mine.Stream, "owner", owner.Node, "owner_origin", owner.OriginURL, "error", err)
	st.Kick()
}

// refused logs, counts and announces a publish refused because of a
// stream live on another node: the name itself (reason
// already_publishing) or a name nesting with it (invalid_name).
func (c *clustering) refused(name string, info media.PublishInfo, reason string, err error) {
	c.refusals.Inc()
	owner, ok := c.node.Placement().Lookup(name)
	if !ok {
		owner, _ = c.node.Placement().Nested(name)
	}
	c.log.Warn("cluster: publish refused: the stream, or one nesting with it, is live on another node", "stream", name,
		"reason", reason, "owner", owner.Node, "owner_stream", owner.Stream, "owner_origin", owner.OriginURL,
		"protocol", info.Protocol, "remote", info.RemoteAddr, "error", err)
	_ = c.node.Events().Publish(c.ctx, cluster.KindPublishRefused, cluster.PublishRefused{
		Stream: name, Node: c.node.ID(), Protocol: info.Protocol, Remote: info.RemoteAddr,
		Reason: reason, Owner: owner.Node, Time: time.Now().UTC()})
}

// checkName refuses, from the placement cache, a name that nests with a
// stream live on another node (media.ErrNameCollision), as the registry
// refuses one nesting with a stream live here (RTMP checks names before
// the tracks are known; every protocol's Publish checks again). The
// refusal is counted and announced.
func (c *clustering) checkName(name string) error {
	if c == nil || c.node == nil {
		return nil
	}
	if o, ok := c.node.Placement().Nested(name); ok && o.Node != c.node.ID() {
		err := fmt.Errorf("publish %s: %w: it nests with %s, live on node %s", name, media.ErrNameCollision, o.Stream, o.Node)
		c.refused(name, media.PublishInfo{}, "invalid_name", err)
		return err
	}
	return nil
}

// unpublished releases the placement of a stream of this node that ended
// (unless a republish here took the name over meanwhile).
func (c *clustering) unpublished(st *media.Stream) {
	if c == nil || c.node == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owned[st.Name()] != st {
		return
	}
	delete(c.owned, st.Name())
	c.save(st.Name(), true)
	c.release(st.Name())
	reason := "publisher_closed"
	if st.Context().Err() != nil {
		reason = "kicked"
	}
	_ = c.node.Events().Publish(c.ctx, cluster.KindStreamEnded, cluster.StreamEnded{
		Stream: st.Name(), Node: c.node.ID(), Started: st.Started().UTC(), Time: time.Now().UTC(), Reason: reason})
}

// release deletes this node's placement of name; c.mu is held.
func (c *clustering) release(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	if err := c.node.Placement().Release(ctx, name); err != nil {
		c.log.Warn("cluster: placement release failed; the entry expires after cluster.placement_ttl", "stream", name, "error", err)
	}
}

// owner is the relay's lookup: the origin URL of the node owning stream
// when it is another node.
func (c *clustering) owner(stream string) (string, bool) {
	if c.node == nil {
		return "", false
	}
	o, ok := c.node.Placement().Lookup(stream)
	if !ok || o.Node == c.node.ID() || o.OriginURL == "" {
		return "", false
	}
	return o.OriginURL, true
}

// relayHeader is what the relay adds to its upstream requests: the cluster
// secret, when there is one.
func (c *clustering) relayHeader() http.Header {
	if c.secret == "" {
		return nil
	}
	return http.Header{config.ClusterSecretHeader: {c.secret}}
}

// trustRelayed lets requests carrying the cluster secret (relayed by
// another node, which ran the token and CDN checks) past this node's
// checks: they go to direct, the origin handler, marked as vouched for
// (playback.ViaCDN: AES-128 keys are served). A wrong secret gets 403.
// Requests without the header go to checked. Without a secret it returns
// checked.
func (c *clustering) trustRelayed(direct, checked http.Handler, pm *playback.Metrics) http.Handler {
	if c == nil || c.secret == "" {
		return checked
	}
	trusted := playback.RequireHeaderSecrets(config.ClusterSecretHeader, []string{c.secret}, pm)(direct)
	name := http.CanonicalHeaderKey(config.ClusterSecretHeader)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header[name]; ok {
			trusted.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// clusterStreams lists the cluster's live streams for the status API.
func (c *clustering) clusterStreams() (string, []api.Owner) {
	if c == nil || c.node == nil {
		return "", nil
	}
	owners := c.node.Placement().List()
	out := make([]api.Owner, 0, len(owners))
	for _, o := range owners {
		out = append(out, api.Owner{Stream: o.Stream, Node: o.Node, OriginURL: o.OriginURL, Started: o.Started, Protocol: o.Protocol})
	}
	return c.node.ID(), out
}

// trackNames describes tracks for the stream_started event.
func trackNames(tracks []*media.Track) []string {
	out := make([]string, 0, len(tracks))
	for _, t := range tracks {
		out = append(out, t.Codec.Name())
	}
	return out
}

// transcodeGap announces a rendition gap of a stream of this node.
func (c *clustering) transcodeGap(stream, rendition string, g transcoder.Gap) {
	if c.node == nil || g.ClockRate == 0 {
		return
	}
	_ = c.node.Events().Publish(c.ctx, cluster.KindTranscodeGap, cluster.TranscodeGap{
		Stream: stream, Node: c.node.ID(), Rendition: rendition, Sequence: g.Seq,
		Start: float64(g.DTS) / float64(g.ClockRate), Duration: float64(g.Duration) / float64(g.ClockRate),
		Reason: g.Reason, Time: time.Now().UTC()})
}

// continuityTimeout bounds a continuity record's load (while a publish
// waits) or save.
const continuityTimeout = time.Second

// placementTTL is the cluster's placement TTL.
func (c *clustering) placementTTL() time.Duration {
	if c.cfg.PlacementTTL > 0 {
		return c.cfg.PlacementTTL
	}
	return cluster.DefaultPlacementTTL
}

// loadSeed loads the continuity record of name, just claimed, and keeps
// the seed its pipeline begins the stream with (beginStream): a publish
// taking over a name whose owner died, or republished after this node
// restarted, continues the stream's numbering and timeline. c.mu is held.
func (c *clustering) loadSeed(name string) {
	delete(c.seeds, name)
	ctx, cancel := context.WithTimeout(c.ctx, continuityTimeout)
	defer cancel()
	rec, ok, err := c.node.Continuity().Load(ctx, name)
	if err != nil {
		c.log.Warn("cluster: continuity record not loaded; the stream starts new numbers", "stream", name, "error", err)
	}
	if !ok {
		return
	}
	seed := seedOf(rec, c.placementTTL(), c.segDur)
	c.seeds[name] = seed
	c.log.Info("cluster: continuing the stream of an earlier publish", "stream", name, "previous_node", rec.Node,
		"updated", rec.Updated, "ended", rec.Ended, "renditions", len(seed.Renditions))
}

// seedOf is where a publish continues the stream of rec: past anything
// the writer of rec may have made after writing it (it writes every TTL/3
// and may have run for up to a TTL more before its entry expired), each
// rendition skips ceil(ttl / segment duration) + 1 sequence numbers and the
// timeline as many segment durations.
func seedOf(rec cluster.ContinuityRecord, ttl, segDur time.Duration) store.Seed {
	d := rec.SegmentDuration
	if d <= 0 {
		d = segDur
	}
	if d <= 0 {
		d = time.Second
	}
	skip := uint64((ttl+d-1)/d) + 1
	seed := store.Seed{End: rec.End, EndTimescale: rec.EndTimescale}
	if rec.EndTimescale > 0 {
		seed.End += store.DurationToTicks(time.Duration(skip)*d, rec.EndTimescale)
	}
	for _, r := range rec.Renditions {
		seed.Renditions = append(seed.Renditions, store.SeedRendition{
			Name: r.Name, NextMSN: r.NextMSN + skip, DiscontinuitySequence: r.DiscontinuitySequence})
	}
	return seed
}

// beginStream is the pipelines' begin: the stream of a publish whose claim
// loaded a continuity record is seeded with it.
func (c *clustering) beginStream(st *store.Store, name string) *store.Stream {
	c.mu.Lock()
	seed, ok := c.seeds[name]
	delete(c.seeds, name)
	c.mu.Unlock()
	if !ok {
		return st.Begin(name)
	}
	return st.BeginSeeded(name, seed)
}

// saveContinuity saves the continuity record of every stream this node
// owns every placement TTL/3 until the node closes.
func (c *clustering) saveContinuity() {
	defer c.wg.Done()
	t := time.NewTicker(c.placementTTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		names := slices.Collect(maps.Keys(c.owned))
		c.mu.Unlock()
		for _, name := range names {
			c.save(name, false)
		}
	}
}

// save writes the continuity record of name from the store, when this
// node owns it.
func (c *clustering) save(name string, ended bool) {
	if c.store == nil || c.node == nil {
		return
	}
	if o, ok := c.node.Placement().Lookup(name); ok && o.Node != c.node.ID() {
		return // taken over by another node
	}
	st, ok := c.store.Stream(name)
	if !ok {
		return
	}
	seed := st.Continuity()
	rec := cluster.ContinuityRecord{Stream: name, Ended: ended, SegmentDuration: st.MaxSegmentDuration(),
		End: seed.End, EndTimescale: seed.EndTimescale}
	for _, r := range seed.Renditions {
		rec.Renditions = append(rec.Renditions, cluster.RenditionContinuity{
			Name: r.Name, NextMSN: r.NextMSN, DiscontinuitySequence: r.DiscontinuitySequence})
	}
	if len(rec.Renditions) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, continuityTimeout)
	defer cancel()
	if err := c.node.Continuity().Save(ctx, rec); err != nil && c.ctx.Err() == nil {
		c.log.Debug("cluster: continuity record not saved", "stream", name, "error", err)
	}
}

// publishEvent publishes a lifecycle event of another component (the
// recording's) on the cluster's event stream.
func (c *clustering) publishEvent(kind string, v any) {
	if c.node == nil {
		return
	}
	_ = c.node.Events().Publish(c.ctx, kind, v)
}

// Package cluster is Headwater's cluster membership on NATS JetStream: the
// connection to NATS (or an embedded JetStream server started in-process),
// stream placement (a KV bucket mapping a stream name to the node that owns
// it) and lifecycle events (JetStream subjects headwater.events.<kind>).
//
// A [Node] is started with [Start] from a [Config] that mirrors the YAML
// section cluster.* of package config. With neither Config.NATSURL nor
// Config.Embedded set the cluster is not enabled, and Headwater runs on one
// box with no NATS at all.
//
// Start does not wait for NATS: the connection is retried forever with
// backoff, and the KV bucket and the events stream are created (or updated)
// as soon as JetStream answers; [Node.Ready] is closed then. Until then
// [Node.Health] says why the node is degraded and [Placement.Claim] fails
// with [ErrUnavailable].
//
// Names in NATS (all exported as constants): the placement bucket
// [PlacementBucket] (file storage, one value per key, bucket TTL =
// Config.PlacementTTL), the continuity bucket [StreamsBucket] (one value
// per key, kept [StreamsMaxAge]), the events stream [EventsStream] on subjects
// [EventsSubjectPrefix]<kind> (file storage, kept [EventsMaxAge]).
package cluster

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults filled in by [Start] for zero Config fields.
const (
	// DefaultPlacementTTL is the default lifetime of a placement entry that
	// is not refreshed; its owner refreshes it every TTL/3.
	DefaultPlacementTTL = 10 * time.Second
	// DefaultReplicas is the default JetStream replica count of Headwater's
	// streams and buckets.
	DefaultReplicas = 1
	// EmbeddedMaxPayload is the max_payload of the embedded server: 8 MiB
	// instead of NATS's default 1 MiB, so that a GOP fits in one message.
	// Users of the cluster split larger payloads anyway and must not depend
	// on it: an external NATS may keep the default.
	EmbeddedMaxPayload = 8 << 20
)

// Names of Headwater's JetStream assets.
const (
	// PlacementBucket is the KV bucket mapping stream names to [Owner]s.
	PlacementBucket = "HEADWATER_PLACEMENT"
	// EventsStream is the JetStream stream holding lifecycle events.
	EventsStream = "HEADWATER_EVENTS"
	// EventsSubjectPrefix starts every event subject:
	// headwater.events.<kind>.
	EventsSubjectPrefix = "headwater.events."
	// EventsMaxAge is how long the events stream keeps an event.
	EventsMaxAge = 72 * time.Hour
)

// ErrUnavailable is returned (wrapped) by operations that need JetStream
// while the node is not connected or its bucket and stream are not set up
// yet.
var ErrUnavailable = errors.New("cluster: jetstream unavailable")

// Config configures a [Node]. It mirrors the YAML section cluster.* (package
// config validates user input; Start only fills defaults).
type Config struct {
	// NATSURL joins an existing NATS: one or more comma-separated URLs
	// ("nats://a:4222,nats://b:4222"). Empty with Embedded false means the
	// cluster is not enabled.
	NATSURL string
	// CredsFile is a NATS user credentials file (JWT and nkey seed).
	CredsFile string
	// NKeyFile is an nkey seed file (NATS nkey authentication).
	NKeyFile string
	// TLSCA is a PEM file of the CAs that verify the NATS server.
	TLSCA string
	// TLSCert and TLSKey are the client certificate and key presented to
	// the NATS server (mutual TLS).
	TLSCert, TLSKey string

	// Embedded starts an in-process JetStream server; the node connects to
	// it in-process (no socket).
	Embedded bool
	// StoreDir is the embedded JetStream store directory; "" uses a new
	// temporary directory removed by Close (nothing survives a restart).
	StoreDir string
	// Listen is the embedded server's client listen address for other
	// nodes and workers ("0.0.0.0:4222"); "" listens on no port (in-process
	// only), or, with RouteListen set (routing needs a client listener), on
	// a random loopback port. Port 0 picks a free port.
	Listen string
	// ClusterName is the embedded NATS cluster (routes) name, the same on
	// every node.
	ClusterName string
	// RouteListen is the embedded route listen address ("0.0.0.0:6222");
	// "" forms no cluster. Port 0 picks a free port.
	RouteListen string
	// Routes are the route URLs of the cluster's nodes
	// ("nats-route://10.0.0.6:6222"); this node's own may be listed too, so
	// every node can share one list.
	Routes []string

	// Replicas is the JetStream replica count of Headwater's streams and
	// buckets: 1, or 3 in a three-node cluster. 0 means [DefaultReplicas].
	Replicas int
	// NodeID is this node's id, a NATS subject token; "" means the hostname
	// (other characters than [A-Za-z0-9_-] as '-') and a random suffix.
	NodeID string
	// OriginURL is this node's origin base URL as other nodes reach it
	// ("http://10.0.0.5:8080"); it is the default [Owner.OriginURL].
	OriginURL string
	// PlacementTTL is how long a placement entry lives without heartbeat;
	// the owner refreshes its entries every PlacementTTL/3. 0 means
	// [DefaultPlacementTTL].
	PlacementTTL time.Duration
	// Role is what the node runs, announced in its [NodeJoined] event:
	// "serve", "origin" or "worker" ("" for none).
	Role string
}

// Enabled reports whether the cluster is enabled: NATSURL is set or
// Embedded is true.
func (c Config) Enabled() bool { return c.NATSURL != "" || c.Embedded }

// withDefaults returns c with its zero fields filled.
func (c Config) withDefaults() Config {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.PlacementTTL == 0 {
		c.PlacementTTL = DefaultPlacementTTL
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	return c
}

// defaultNodeID is the hostname and a random suffix.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "headwater"
	}
	host = strings.Map(func(r rune) rune { // a NATS subject token
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	var b [3]byte
	_, _ = crand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Node is this process's membership of the cluster: its NATS connection,
// the embedded server when there is one, the placement cache and the
// events publisher. Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	metrics *nodeMetrics

	embedded *server.Server
	tempDir  string // StoreDir made by Start, removed by Close

	nc     *nats.Conn
	js     jetstream.JetStream
	closed chan struct{} // closed by the connection's ClosedHandler

	ctx    context.Context // the node's life, cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the node's goroutines
	probe  chan struct{}  // wakes the health probe (on reconnect)

	ready      chan struct{} // closed once the bucket and stream exist and the cache is loaded
	placement  *Placement
	continuity *Continuity
	events     *Events

	mu           sync.Mutex
	disconnected time.Time // zero while connected
	connErr      error     // why the connection was lost
	setupErr     error     // last failure to set up the bucket and stream
	jsErr        error     // last failure of the JetStream probe

	closeOnce sync.Once
	closeErr  error
}

// Start starts a node: the embedded JetStream server when cfg.Embedded, a
// NATS connection that reconnects forever with backoff (a NATS that is
// unreachable at start is retried, not an error), and, in the background as
// soon as JetStream answers, the placement bucket and the events stream
// (created, or updated to cfg). ctx bounds the start only (the embedded
// server's start); the node lives until [Node.Close]. reg may be nil.
// Start publishes a [NodeJoined] event.
func Start(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Node, error) {
	if !cfg.Enabled() {
		return nil, errors.New("cluster: not enabled (set cluster.nats_url or cluster.embedded)")
	}
	if cfg.NATSURL != "" && cfg.Embedded {
		return nil, errors.New("cluster: set either nats_url or embedded, not both")
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("cluster: replicas %d not in 1..5 (0 = 1)", cfg.Replicas)
	}
	if cfg.PlacementTTL < 0 {
		return nil, fmt.Errorf("cluster: placement TTL %s is negative", cfg.PlacementTTL)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cluster", "node", cfg.NodeID)
	n := &Node{
		cfg:     cfg,
		log:     log,
		metrics: newNodeMetrics(reg),
		closed:  make(chan struct{}),
		probe:   make(chan struct{}, 1),
		ready:   make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	if cfg.Embedded {
		if err := n.startEmbedded(ctx); err != nil {
			n.cancel()
			_ = n.removeTemp()
			return nil, err
		}
	}
	if err := n.connect(); err != nil {
		n.cancel()
		n.shutdownEmbedded()
		_ = n.removeTemp()
		return nil, err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		n.cancel()
		n.nc.Close()
		n.shutdownEmbedded()
		_ = n.removeTemp()
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	n.js = js
	n.placement = newPlacement(n)
	n.continuity = &Continuity{n: n}
	n.events = newEvents(n)

	n.wg.Add(2)
	go n.run()
	go n.events.run()
	_ = n.events.Publish(ctx, KindNodeJoined, NodeJoined{Node: cfg.NodeID, OriginURL: cfg.OriginURL, Role: cfg.Role, Time: time.Now().UTC()})
	return n, nil
}

// backoff is the wait before retry attempt (0-based): 100ms doubling to 2s,
// with ±20% jitter.
func backoff(attempt int) time.Duration {
	d := 2 * time.Second
	if attempt < 5 {
		d = 100 * time.Millisecond << attempt
	}
	return d - d/5 + rand.N(2*d/5+1)
}

// connect opens the NATS connection (to the embedded server in-process, or
// to cfg.NATSURL), retrying in the background if it fails.
func (n *Node) connect() error {
	opts := []nats.Option{
		nats.Name("headwater " + n.cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(func(attempts int) time.Duration { return backoff(attempts - 1) }),
		nats.ConnectHandler(func(nc *nats.Conn) { n.connected(nc, false) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { n.connected(nc, true) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.disconnect(err) }),
		nats.ClosedHandler(func(*nats.Conn) { close(n.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			n.log.Warn("nats error", "subject", subject, "error", err)
		}),
	}
	url := n.cfg.NATSURL
	if n.embedded != nil {
		url = ""
		opts = append(opts, nats.InProcessServer(n.embedded))
	}
	if n.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.cfg.CredsFile))
	}
	if n.cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(n.cfg.NKeyFile)
		if err != nil {
			return fmt.Errorf("cluster: nkey %s: %w", n.cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if n.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.cfg.TLSCA))
	}
	if n.cfg.TLSCert != "" || n.cfg.TLSKey != "" {
		opts = append(opts, nats.ClientCert(n.cfg.TLSCert, n.cfg.TLSKey))
	}
	n.mu.Lock()
	n.disconnected = time.Now()
	n.connErr = errors.New("not connected yet")
	n.mu.Unlock()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("cluster: connect %s: %w", redactURL(url), err)
	}
	n.nc = nc
	if nc.IsConnected() {
		n.connected(nc, false)
	}
	return nil
}

// redactURL hides passwords in NATS URLs for error messages.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "xxxxx" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// connected records a (re)connection of nc.
func (n *Node) connected(nc *nats.Conn, reconnect bool) {
	n.mu.Lock()
	was := n.disconnected
	n.disconnected, n.connErr = time.Time{}, nil
	n.mu.Unlock()
	n.metrics.connected.Set(1)
	if reconnect {
		n.metrics.reconnects.Inc()
	}
	if !was.IsZero() {
		n.log.Info("nats connected", "url", redactURL(nc.ConnectedUrlRedacted()), "down", time.Since(was).Round(time.Millisecond))
	}
	select {
	case n.probe <- struct{}{}:
	default:
	}
}

// disconnect records a lost connection.
func (n *Node) disconnect(err error) {
	if err == nil {
		err = errors.New("connection closed")
	}
	n.mu.Lock()
	if n.disconnected.IsZero() {
		n.disconnected = time.Now()
	}
	n.connErr = err
	n.mu.Unlock()
	n.metrics.connected.Set(0)
	if n.ctx.Err() == nil {
		n.log.Warn("nats disconnected", "error", err)
	}
}

// run sets up the bucket and stream (retrying with backoff), then keeps the
// placement cache, the heartbeats and the JetStream probe going until Close.
func (n *Node) run() {
	defer n.wg.Done()
	for attempt := 0; ; attempt++ {
		err := n.setup()
		n.mu.Lock()
		n.setupErr = err
		n.mu.Unlock()
		if err == nil {
			break
		}
		if attempt == 0 || attempt%20 == 0 {
			n.log.Warn("cluster setup failed, retrying", "attempt", attempt+1, "error", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff(attempt)):
		}
	}
	n.log.Info("cluster ready", "replicas", n.cfg.Replicas, "placement_ttl", n.cfg.PlacementTTL)
	n.wg.Add(1)
	go n.placement.watch()
	n.placement.loop()
}

// setup creates or updates the placement bucket and the events stream.
func (n *Node) setup() error {
	ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second) // short: no meta leader yet means no answer at all
	defer cancel()
	if _, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "Headwater lifecycle events (docs/events.md)",
		Subjects:    []string{EventsSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      EventsMaxAge,
		Replicas:    n.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("cluster: stream %s: %w", EventsStream, err)
	}
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         PlacementBucket,
		Description:    "Headwater stream placement: stream name -> owning node",
		History:        1,
		TTL:            n.cfg.PlacementTTL,
		LimitMarkerTTL: max(n.cfg.PlacementTTL, time.Second),
		Storage:        jetstream.FileStorage,
		Replicas:       n.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", PlacementBucket, err)
	}
	n.placement.kv.Store(&kv)
	streams, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StreamsBucket,
		Description: "Headwater stream continuity: where a stream's numbering and timeline stood",
		History:     1,
		TTL:         StreamsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", StreamsBucket, err)
	}
	n.continuity.kv.Store(&streams)
	return nil
}

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// ClientURL returns the client URL of the embedded server
// ("nats://127.0.0.1:4222", the port picked when Config.Listen has port
// 0), which other nodes and workers join with Config.NATSURL; "" without
// an embedded server or when it listens on no port.
func (n *Node) ClientURL() string {
	if n.embedded == nil || n.embedded.Addr() == nil {
		return ""
	}
	return n.embedded.ClientURL()
}

// Conn returns the NATS connection (shared: do not close it).
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream returns the JetStream context of the connection.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Ready is closed once the placement bucket and the events stream exist
// and the placement cache holds the bucket's entries.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Placement returns the stream placement.
func (n *Node) Placement() *Placement { return n.placement }

// Events returns the lifecycle events publisher.
func (n *Node) Events() *Events { return n.events }

// Health reports whether the node is connected and JetStream answers; when
// not, reason says why ("nats disconnected since …: …", "jetstream not set
// up: …", "jetstream unavailable: …"), for /readyz.
func (n *Node) Health() (ok bool, reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case !n.disconnected.IsZero():
		return false, fmt.Sprintf("nats disconnected since %s: %v", n.disconnected.UTC().Format(time.RFC3339), n.connErr)
	case n.setupErr != nil:
		return false, fmt.Sprintf("jetstream not set up: %v", n.setupErr)
	case !isClosed(n.ready):
		return false, "jetstream not set up yet"
	case n.jsErr != nil:
		return false, fmt.Sprintf("jetstream unavailable: %v", n.jsErr)
	}
	return true, ""
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// probeJetStream asks JetStream for the account info and records the
// outcome for Health.
func (n *Node) probeJetStream() {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	_, err := n.js.AccountInfo(ctx)
	if n.ctx.Err() != nil {
		return
	}
	n.mu.Lock()
	was := n.jsErr
	n.jsErr = err
	n.mu.Unlock()
	switch {
	case err != nil && was == nil:
		n.log.Warn("jetstream unavailable", "error", err)
	case err == nil && was != nil:
		n.log.Info("jetstream available again")
	}
}

// Close publishes a [NodeLeft] event, releases this node's placement
// entries, stops the heartbeats and the watch, drains the connection and
// shuts the embedded server down. It waits for every goroutine of the
// node; later calls return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	_ = n.events.Publish(n.ctx, KindNodeLeft, NodeLeft{Node: n.cfg.NodeID, Time: time.Now().UTC(), Reason: "shutdown"})
	n.events.flush(2 * time.Second)
	n.placement.releaseAll(2 * time.Second)
	n.cancel()
	n.wg.Wait()

	var errs []error
	if err := n.nc.Drain(); err != nil {
		n.nc.Close()
	}
	select {
	case <-n.closed:
	case <-time.After(5 * time.Second):
		n.nc.Close()
		<-n.closed
	}
	n.metrics.connected.Set(0)
	n.shutdownEmbedded()
	if err := n.removeTemp(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nodeMetrics are the node's Prometheus collectors.
type nodeMetrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	claims     *prometheus.CounterVec
	lost       prometheus.Counter
	published  *prometheus.CounterVec
	dropped    *prometheus.CounterVec
}

// Claim results counted by headwater_cluster_placement_claims_total.
const (
	claimOK      = "claimed"
	claimRefused = "refused"
	claimFailed  = "failed"
)

// atomicKV holds the placement bucket once set up.
type atomicKV = atomic.Pointer[jetstream.KeyValue]

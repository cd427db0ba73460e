package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testLog logs warnings and errors of the nodes to the test output.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNode starts a node and closes it at the end of the test.
func startNode(t *testing.T, cfg Config, reg prometheus.Registerer) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg, testLog(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// waitReady waits for n's bucket and stream.
func waitReady(t *testing.T, n *Node, timeout time.Duration) {
	t.Helper()
	select {
	case <-n.Ready():
	case <-time.After(timeout):
		ok, reason := n.Health()
		t.Fatalf("node %s not ready within %s (health %v %q)", n.ID(), timeout, ok, reason)
	}
}

func embeddedConfig(t *testing.T, id string) Config {
	return Config{Embedded: true, StoreDir: t.TempDir(), NodeID: id, OriginURL: "http://" + id + ".test:8080", PlacementTTL: 2 * time.Second}
}

func TestStartCloseNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	reg := prometheus.NewRegistry()
	n, err := Start(context.Background(), Config{Embedded: true, NodeID: "a", PlacementTTL: time.Second}, testLog(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, n, 10*time.Second)
	if ok, reason := n.Health(); !ok {
		t.Fatalf("Health = false, %q", reason)
	}
	if got := testutil.ToFloat64(n.metrics.connected); got != 1 {
		t.Errorf("headwater_cluster_nats_connected = %v, want 1", got)
	}
	if err := n.Placement().Claim(context.Background(), Owner{Stream: "live/a"}); err != nil {
		t.Fatal(err)
	}
	dir := n.tempDir
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary store %s left behind: %v", dir, err)
	}
	if got := testutil.ToFloat64(n.metrics.connected); got != 0 {
		t.Errorf("headwater_cluster_nats_connected = %v after Close, want 0", got)
	}
	testpeer.WaitGoroutines(t, before)
}

func TestClaimLookupRelease(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNode(t, embeddedConfig(t, "a"), reg)
	waitReady(t, n, 10*time.Second)
	p := n.Placement()
	ctx := context.Background()

	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := p.Claim(ctx, Owner{Stream: "live/a..b.", Started: started, Protocol: "rtmp"}); err != nil {
		t.Fatal(err)
	}
	want := Owner{Node: "a", OriginURL: "http://a.test:8080", Stream: "live/a..b.", Started: started, Protocol: "rtmp"}
	if o, ok := p.Lookup("live/a..b."); !ok || o != want {
		t.Fatalf("Lookup = %+v, %v; want %+v", o, ok, want)
	}
	if err := p.Claim(ctx, Owner{Stream: "live/a..b.", Started: started, Protocol: "srt"}); err != nil {
		t.Fatalf("re-claim by the same node: %v", err)
	}
	if err := p.Claim(ctx, Owner{Stream: "live/b"}); err != nil {
		t.Fatal(err)
	}
	if got := p.List(); len(got) != 2 || got[0].Stream != "live/a..b." || got[1].Stream != "live/b" {
		t.Fatalf("List = %+v", got)
	}
	// The entry as other nodes read it.
	kv, err := n.JetStream().KeyValue(ctx, PlacementBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "live/a==b=")
	if err != nil {
		t.Fatal(err)
	}
	var o Owner
	if err := json.Unmarshal(e.Value(), &o); err != nil || o.Protocol != "srt" || o.Node != "a" {
		t.Fatalf("entry %s = %+v, %v", e.Value(), o, err)
	}

	if err := p.Release(ctx, "live/a..b."); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Lookup("live/a..b."); ok {
		t.Fatal("Lookup after Release found the entry")
	}
	if _, err := kv.Get(ctx, "live/a==b="); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Get after Release: %v", err)
	}
	if err := p.Release(ctx, "live/never"); err != nil {
		t.Fatalf("Release of an unclaimed stream: %v", err)
	}
	if err := p.Claim(ctx, Owner{Stream: "bad name"}); err == nil {
		t.Fatal("Claim of an invalid name succeeded")
	}
	if got := testutil.ToFloat64(n.metrics.claims.WithLabelValues(claimOK)); got != 3 {
		t.Errorf("claims claimed = %v, want 3", got)
	}
	if !strings.Contains(dumpMetrics(t, reg), "headwater_cluster_placement_claims_total") {
		t.Error("claims metric not registered")
	}
}

// dumpMetrics returns the names of reg's metric families.
func dumpMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.GetName() + "\n")
	}
	return b.String()
}

// clientURL is the client URL of n's embedded server.
func clientURL(t *testing.T, n *Node) string {
	t.Helper()
	u := n.ClientURL()
	if u == "" {
		t.Fatal("no embedded server listening")
	}
	return u
}

func TestOwnedElsewhereAndExpiry(t *testing.T) {
	ctx := context.Background()
	cfgA := embeddedConfig(t, "a")
	cfgA.Listen = "127.0.0.1:0"
	cfgA.PlacementTTL = time.Second
	a := startNode(t, cfgA, prometheus.NewRegistry())
	waitReady(t, a, 10*time.Second)
	b := startNode(t, Config{NATSURL: clientURL(t, a), NodeID: "b", OriginURL: "http://b.test:8080", PlacementTTL: time.Second}, prometheus.NewRegistry())
	waitReady(t, b, 10*time.Second)

	if err := b.Placement().Claim(ctx, Owner{Stream: "live/x", Protocol: "srt"}); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 5*time.Second, "a to see b's entry", func() bool {
		o, ok := a.Placement().Lookup("live/x")
		return ok && o.Node == "b" && o.OriginURL == "http://b.test:8080"
	})
	// b's heartbeats keep the entry past its TTL: wait for 4 refreshes
	// (4 x TTL/3 > TTL) as a sees them.
	first := a.Placement().cacheRev(t, "live/x")
	testpeer.WaitFor(t, 5*time.Second, "4 heartbeats", func() bool { return a.Placement().cacheRev(t, "live/x") >= first+4 })
	err := a.Placement().Claim(ctx, Owner{Stream: "live/x"})
	if !errors.Is(err, ErrOwnedElsewhere) || !strings.Contains(err.Error(), "node b") {
		t.Fatalf("a's claim of b's live stream: %v, want ErrOwnedElsewhere naming b", err)
	}
	if got := testutil.ToFloat64(a.metrics.claims.WithLabelValues(claimRefused)); got != 1 {
		t.Errorf("refused claims = %v, want 1", got)
	}

	// b stops heartbeating (its connection dies, as when it is killed).
	b.nc.Close()
	stopped := time.Now()
	testpeer.WaitFor(t, 5*time.Second, "b's entry to expire", func() bool {
		_, ok := a.Placement().Lookup("live/x")
		return !ok
	})
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("entry expired %s after the last heartbeat, TTL 1s", d)
	}
	if err := a.Placement().Claim(ctx, Owner{Stream: "live/x"}); err != nil {
		t.Fatalf("a's claim of an expired entry: %v", err)
	}
	if o, ok := a.Placement().Lookup("live/x"); !ok || o.Node != "a" {
		t.Fatalf("Lookup after takeover = %+v, %v", o, ok)
	}
	if ok, reason := b.Health(); ok || !strings.Contains(reason, "nats disconnected since") {
		t.Errorf("b.Health = %v, %q", ok, reason)
	}
}

// cacheRev returns the revision of stream's entry in p's cache.
func (p *Placement) cacheRev(t *testing.T, stream string) uint64 {
	t.Helper()
	k, err := key(stream)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cache[k].rev
}

func TestEventsReadable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := embeddedConfig(t, "a")
	cfg.Role = "serve"
	n := startNode(t, cfg, prometheus.NewRegistry())
	waitReady(t, n, 10*time.Second)
	if u := n.ClientURL(); u != "" {
		t.Errorf("ClientURL of an embedded server listening on no port = %q, want \"\"", u)
	}
	c, err := n.JetStream().OrderedConsumer(ctx, EventsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{EventsSubjectPrefix + ">"}})
	if err != nil {
		t.Fatal(err)
	}
	started := StreamStarted{Stream: "live/a", Node: n.ID(), Protocol: "rtmp", Tracks: []string{"h264 1280x720"}, Time: time.Now().UTC().Truncate(time.Millisecond)}
	if err := n.Events().Publish(ctx, KindStreamStarted, started); err != nil {
		t.Fatal(err)
	}
	if err := n.Events().Publish(ctx, "Bad.Kind", started); err == nil {
		t.Fatal("Publish accepted kind Bad.Kind")
	}
	next := func() jetstream.Msg {
		t.Helper()
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := next()
	var joined NodeJoined
	if m.Subject() != "headwater.events.node_joined" || json.Unmarshal(m.Data(), &joined) != nil || joined.Node != "a" || joined.OriginURL != "http://a.test:8080" || joined.Role != "serve" {
		t.Fatalf("first event %s %s", m.Subject(), m.Data())
	}
	m = next()
	var got StreamStarted
	if m.Subject() != "headwater.events.stream_started" || json.Unmarshal(m.Data(), &got) != nil || got.Stream != started.Stream || !got.Time.Equal(started.Time) || got.Tracks[0] != "h264 1280x720" {
		t.Fatalf("second event %s %s", m.Subject(), m.Data())
	}
	testpeer.WaitFor(t, 5*time.Second, "published metric", func() bool {
		return testutil.ToFloat64(n.metrics.published.WithLabelValues(KindStreamStarted)) == 1
	})
}

// runServer starts a standalone JetStream server (port -1: random) and
// shuts it down at the end of the test.
func runServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func TestHealthDisconnectReconnect(t *testing.T) {
	dir := t.TempDir()
	ns := runServer(t, -1, dir)
	port := ns.Addr().(*net.TCPAddr).Port
	reg := prometheus.NewRegistry()
	n := startNode(t, Config{NATSURL: ns.ClientURL(), NodeID: "a", PlacementTTL: time.Second}, reg)
	waitReady(t, n, 10*time.Second)
	if ok, reason := n.Health(); !ok {
		t.Fatalf("Health = false, %q", reason)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	testpeer.WaitFor(t, 5*time.Second, "health to report the disconnect", func() bool {
		ok, reason := n.Health()
		return !ok && strings.HasPrefix(reason, "nats disconnected since ")
	})
	if got := testutil.ToFloat64(n.metrics.connected); got != 0 {
		t.Errorf("connected gauge = %v while disconnected", got)
	}
	if err := n.Placement().Claim(context.Background(), Owner{Stream: "live/a"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Claim while disconnected: %v, want ErrUnavailable", err)
	}

	runServer(t, port, dir) // the same server back
	testpeer.WaitFor(t, 15*time.Second, "health to recover", func() bool {
		ok, _ := n.Health()
		return ok
	})
	if got := testutil.ToFloat64(n.metrics.reconnects); got < 1 {
		t.Errorf("reconnects = %v, want >= 1", got)
	}
	testpeer.WaitFor(t, 10*time.Second, "a claim after the reconnect", func() bool {
		return n.Placement().Claim(context.Background(), Owner{Stream: "live/a"}) == nil
	})
	if _, ok := n.Placement().Lookup("live/a"); !ok {
		t.Error("Lookup after the reconnect found nothing")
	}
	if err := n.Close(); err != nil { // before the server's cleanup
		t.Fatal(err)
	}
}

// freePorts returns n free loopback TCP ports (listened on together, then
// closed: another process could take one meanwhile, which the test would
// report as a start failure).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func TestThreeNodeCluster(t *testing.T) {
	ports := freePorts(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
	}
	var nodes []*Node
	for i, p := range ports {
		id := string(rune('a' + i))
		cfg := embeddedConfig(t, id)
		cfg.ClusterName = "hw-test"
		cfg.RouteListen = "127.0.0.1:" + strconv.Itoa(p)
		cfg.Routes = routes
		cfg.Replicas = 3
		nodes = append(nodes, startNode(t, cfg, prometheus.NewRegistry()))
	}
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	claim := func(n *Node, stream string) {
		t.Helper()
		var err error
		testpeer.WaitFor(t, 15*time.Second, n.ID()+" to claim "+stream, func() bool {
			err = n.Placement().Claim(ctx, Owner{Stream: stream})
			return !errors.Is(err, ErrUnavailable)
		})
		if err != nil {
			t.Fatalf("%s claims %s: %v", n.ID(), stream, err)
		}
	}
	seen := func(n *Node, stream, owner string) {
		t.Helper()
		testpeer.WaitFor(t, 10*time.Second, n.ID()+" to see "+stream+" on "+owner, func() bool {
			o, ok := n.Placement().Lookup(stream)
			return ok && o.Node == owner
		})
	}
	claim(c, "live/c")
	seen(a, "live/c", "c")
	seen(b, "live/c", "c")
	if err := a.Placement().Claim(ctx, Owner{Stream: "live/c"}); !errors.Is(err, ErrOwnedElsewhere) {
		t.Fatalf("a claims c's stream: %v", err)
	}

	// a, which the others' routes were seeded with, goes away; the R3
	// bucket keeps a quorum on b and c.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	claim(b, "live/b")
	seen(c, "live/b", "b")
	if err := c.Placement().Claim(ctx, Owner{Stream: "live/b"}); !errors.Is(err, ErrOwnedElsewhere) {
		t.Fatalf("c claims b's stream after a left: %v", err)
	}
	seen(b, "live/c", "c") // c's heartbeats still land
	if err := c.Placement().Release(ctx, "live/c"); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 10*time.Second, "b to see live/c released", func() bool {
		_, ok := b.Placement().Lookup("live/c")
		return !ok
	})
	claim(b, "live/c")
	if got := b.Placement().List(); len(got) != 2 {
		t.Fatalf("b's List = %+v", got)
	}
	// Events still land in the R3 stream.
	if err := b.Events().Publish(ctx, KindStreamStarted, StreamStarted{Stream: "live/b", Node: "b"}); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 15*time.Second, "the event to be stored", func() bool {
		return testutil.ToFloat64(b.metrics.published.WithLabelValues(KindStreamStarted)) == 1
	})
}

func TestLostClaimReported(t *testing.T) {
	ctx := context.Background()
	cfgA := embeddedConfig(t, "a")
	cfgA.Listen = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	a := startNode(t, cfgA, reg)
	waitReady(t, a, 10*time.Second)
	lost := make(chan error, 4)
	var lostOwner Owner
	a.Placement().OnLost(func(o Owner, err error) {
		lostOwner = o
		lost <- err
	})
	if err := a.Placement().Claim(ctx, Owner{Stream: "live/x", Protocol: "rtmp"}); err != nil {
		t.Fatal(err)
	}

	// Node b writes the entry as its own, as after a takeover of an entry
	// expired during a partition of a longer than the TTL.
	b := startNode(t, Config{NATSURL: clientURL(t, a), NodeID: "b", PlacementTTL: cfgA.PlacementTTL}, prometheus.NewRegistry())
	waitReady(t, b, 10*time.Second)
	kv, err := b.JetStream().KeyValue(ctx, PlacementBucket)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(Owner{Node: "b", OriginURL: "http://b.test:8080", Stream: "live/x", Started: time.Now().UTC()})
	if _, err := kv.Put(ctx, "live/x", v); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, ErrOwnedElsewhere) || !strings.Contains(err.Error(), "node b") || lostOwner.Stream != "live/x" || lostOwner.Node != "a" {
			t.Fatalf("OnLost(%+v, %v), want a's claim of live/x and ErrOwnedElsewhere naming b", lostOwner, err)
		}
	case <-time.After(3 * cfgA.PlacementTTL):
		t.Fatal("the lost claim was not reported within 3 TTLs")
	}
	if got := testutil.ToFloat64(a.metrics.lost); got != 1 {
		t.Errorf("headwater_cluster_placement_lost_total = %v, want 1", got)
	}
	// Reported once: the claim is no longer a's, nor refreshed.
	testpeer.WaitFor(t, 5*time.Second, "a's cache to show b as the owner", func() bool {
		o, ok := a.Placement().Lookup("live/x")
		return ok && o.Node == "b"
	})
	select {
	case err := <-lost:
		t.Fatalf("the lost claim reported again: %v", err)
	case <-time.After(cfgA.PlacementTTL):
	}
	// Releasing the lost claim (its stream ending) leaves b's entry alone.
	if _, err := kv.Put(ctx, "live/x", v); err != nil {
		t.Fatal(err)
	}
	if err := a.Placement().Release(ctx, "live/x"); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "live/x"); err != nil || !strings.Contains(string(e.Value()), `"node":"b"`) {
		t.Errorf("a's release of its lost claim removed b's entry: %v", err)
	}
}

func TestClaimRefusesNestedNames(t *testing.T) {
	ctx := context.Background()
	cfgA := embeddedConfig(t, "a")
	cfgA.Listen = "127.0.0.1:0"
	a := startNode(t, cfgA, prometheus.NewRegistry())
	waitReady(t, a, 10*time.Second)
	b := startNode(t, Config{NATSURL: clientURL(t, a), NodeID: "b", PlacementTTL: cfgA.PlacementTTL}, prometheus.NewRegistry())
	waitReady(t, b, 10*time.Second)
	if err := b.Placement().Claim(ctx, Owner{Stream: "live/a"}); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 5*time.Second, "a to see b's live/a", func() bool {
		_, ok := a.Placement().Lookup("live/a")
		return ok
	})
	for _, name := range []string{"live/a/x", "live/a/x/y", "live"} {
		err := a.Placement().Claim(ctx, Owner{Stream: name})
		if !errors.Is(err, ErrNameNested) || !strings.Contains(err.Error(), "live/a live on node b") {
			t.Errorf("a's claim of %s under b's live/a: %v, want ErrNameNested", name, err)
		}
		if _, ok := a.Placement().Lookup(name); ok {
			t.Errorf("the refused %s is in a's cache", name)
		}
	}
	if got := testutil.ToFloat64(a.metrics.claims.WithLabelValues(claimRefused)); got != 3 {
		t.Errorf("refused claims = %v, want 3", got)
	}
	if err := a.Placement().Claim(ctx, Owner{Stream: "live/ab"}); err != nil { // no '/' boundary
		t.Errorf("a's claim of live/ab: %v", err)
	}
	if err := b.Placement().Release(ctx, "live/a"); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 5*time.Second, "a's claim of live/a/x once live/a ended", func() bool {
		return a.Placement().Claim(ctx, Owner{Stream: "live/a/x"}) == nil
	})
}

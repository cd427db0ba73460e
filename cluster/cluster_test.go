package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
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

package server_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
)

// clusterLadder is a small ladder below a 640x360 source, cheap on two
// cores.
var clusterLadder = []string{"240p=240:300k", "180p=180:200k"}

// clusterNode mutates a test configuration into a cluster node's: NATS at
// natsURL (or the embedded server listening at listen when natsURL is
// ""), the cluster secret, id.
func clusterNode(id, natsURL, listen, secretFile string) func(*config.Config) {
	return func(c *config.Config) {
		c.Cluster.NodeID = id
		c.Cluster.SecretFile = secretFile
		if natsURL == "" {
			c.Cluster.Embedded, c.Cluster.Listen = true, listen
		} else {
			c.Cluster.NATSURL = natsURL
		}
		c.Cluster.PlacementTTL = config.Duration(5 * time.Second)
		c.Transcoder.Ladder = clusterLadder
		c.Transcoder.PoolSize = 1
	}
}

// startWorker starts an in-process `headwater worker` (server.Worker, what
// the command runs) joined to natsURL.
func startWorker(t *testing.T, id, natsURL, secretFile string) *server.Worker {
	t.Helper()
	cfg := config.Default()
	clusterNode(id, natsURL, "", secretFile)(cfg)
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Log.Level = "debug"
	logs := &testpeer.LogBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	w, err := server.NewWorker(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	testpeer.Serve(t, w, logs)
	return w
}

// TestClusterEndToEnd runs a cluster on loopback: node A (ingest, origin,
// embedded NATS, no local workers), node B (origin only, joined to A's
// NATS), workers C and D, and node A2 (ingest, joined). ffmpeg publishes
// RTMP to A with the transcoder on; the ladder's multivariant playlist is
// read from B and a rendition decoded from B; the metrics show the
// renditions were made by C and D and not by A; a second publisher of the
// name on A2 is refused; B's status API lists the stream with owner A.
func TestClusterEndToEnd(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	if err := os.WriteFile(secret, []byte("cluster-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := testpeer.FreeAddr(t)
	natsURL := "nats://" + natsAddr
	originA := testpeer.FreeAddr(t)

	a := startServer(t, func(c *config.Config) {
		clusterNode("node-a", "", natsAddr, secret)(c)
		c.Origin.Address = originA
		c.Cluster.OriginURL = "http://" + originA
		c.Transcoder.Enabled = true
		c.Transcoder.LocalWorkers = 0
	})
	b := startServer(t, func(c *config.Config) {
		clusterNode("node-b", natsURL, "", secret)(c)
		c.Cluster.Role = config.RoleOrigin
	})
	if b.RTMPAddr() != nil {
		t.Fatalf("node B (role origin) listens for RTMP at %s", b.RTMPAddr())
	}
	c := startWorker(t, "worker-c", natsURL, secret)
	d := startWorker(t, "worker-d", natsURL, secret)
	for _, w := range []*server.Worker{c, d} {
		url := "http://" + w.AdminAddr().String() + "/readyz"
		testpeer.WaitFor(t, 20*time.Second, "worker /readyz", func() bool { return get(t, url).status == http.StatusOK })
	}
	testpeer.WaitFor(t, 20*time.Second, "A's /readyz not degraded", func() bool {
		r := get(t, a.adminURL("/readyz"))
		return r.status == http.StatusOK && string(r.body) == "ready\n"
	})

	pub := testpeer.PublishPattern(t, a.rtmpURL("c1"), "testsrc=size=640x360:rate=30", "600k", 14*time.Second, 60)

	// The ladder, read from B.
	mvURL := b.originURL("/live/c1/index.m3u8")
	testpeer.WaitFor(t, 25*time.Second, "B serves a multivariant playlist with 3 variants", func() bool {
		r := get(t, mvURL)
		if r.status != http.StatusOK {
			return false
		}
		pl, err := playlist.Unmarshal(r.body)
		if err != nil {
			t.Fatalf("multivariant from B: %v\n%s", err, r.body)
		}
		mv, _ := pl.(*playlist.Multivariant)
		return mv != nil && len(mv.Variants) == 3
	})
	// A rendition plays from B: frames decoded.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "info", "-i", b.originURL("/live/c1/240p/index.m3u8"),
		"-frames:v", "30", "-vf", "showinfo", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg reading 240p from B: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), " n:"); n < 30 || !strings.Contains(string(out), "s:426x240") {
		t.Errorf("decoded %d frames of 240p from B:\n%s", n, out)
	}

	// The renditions were made by C and D, none by A.
	testpeer.WaitMetricCond(t, c.Metrics(), 10*time.Second, func(v float64) bool {
		return v+testpeer.MetricSum(t, d.Metrics(), "headwater_transcoder_jobs_total", "outcome", "ok") > 0
	}, "rendition-GOPs made by the workers", "headwater_transcoder_jobs_total", "outcome", "ok")
	cJobs := testpeer.MetricSum(t, c.Metrics(), "headwater_transcoder_jobs_total", "outcome", "ok")
	dJobs := testpeer.MetricSum(t, d.Metrics(), "headwater_transcoder_jobs_total", "outcome", "ok")
	t.Logf("rendition-GOPs made: worker C %v, worker D %v", cJobs, dJobs)
	if n := testpeer.MetricSum(t, a.Metrics(), "headwater_transcoder_jobs_total"); n != 0 {
		t.Errorf("node A's pool ran %v rendition-GOPs, want 0 (local_workers 0)", n)
	}
	if n := testpeer.MetricSum(t, a.Metrics(), "headwater_gopqueue_jobs_total", "outcome", "ok"); n == 0 {
		t.Error("node A has no GOP job done through the queue")
	}

	// A second publisher of the name on another ingest node is refused.
	a2 := startServer(t, func(c *config.Config) {
		clusterNode("node-a2", natsURL, "", secret)(c)
		c.Cluster.OriginURL = "http://127.0.0.1:1" // never relayed to in this test
	})
	testpeer.WaitFor(t, 10*time.Second, "A2 sees A's placement", func() bool {
		r := get(t, a2.adminURL("/api/v1/streams"))
		return strings.Contains(string(r.body), `"node": "node-a"`)
	})
	dup := testpeer.PublishPattern(t, a2.rtmpURL("c1"), "testsrc=size=320x180:rate=30", "200k", 3*time.Second, 30)
	if err := dup.Wait(t, 15*time.Second); err == nil {
		t.Error("the second publisher of live/c1 (on A2) was not refused")
	}
	if n := testpeer.MetricSum(t, a2.Metrics(), "headwater_cluster_publish_refused_total"); n != 1 {
		t.Errorf("A2 refused %v publishes as owned elsewhere, want 1", n)
	}
	if n := testpeer.MetricSum(t, a2.Metrics(), "headwater_ingest_errors_total", "reason", "already_publishing"); n != 1 {
		t.Errorf("A2 counted %v already_publishing errors, want 1", n)
	}

	// B's status API lists the stream with owner A.
	if st, ok := listedStream(t, b, "live/c1"); !ok || !st.Live || st.Owner == nil ||
		st.Owner.Node != "node-a" || st.Owner.OriginURL != "http://"+originA {
		t.Errorf("B's status API lists live/c1 as %+v (listed %v), want it live, owned by node-a at http://%s", st, ok, originA)
	}

	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
}

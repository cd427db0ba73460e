package server_test

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// standaloneNATS is a standalone JetStream server on loopback, the existing
// NATS of cluster.nats_url, that a test starts, stops and starts again on
// the same address and store (as a NATS restart).
type standaloneNATS struct {
	t    *testing.T
	addr string // host:port, fixed across restarts
	dir  string // the JetStream store, kept across restarts
	ns   *natsserver.Server
}

// startableNATS returns a NATS server at a free loopback address, not started.
func startableNATS(t *testing.T) *standaloneNATS {
	n := &standaloneNATS{t: t, addr: testpeer.FreeAddr(t), dir: t.TempDir()}
	t.Cleanup(n.stop)
	return n
}

// url is the server's client URL, for cluster.nats_url.
func (n *standaloneNATS) url() string { return "nats://" + n.addr }

// start starts the server (again).
func (n *standaloneNATS) start() {
	n.t.Helper()
	host, p, err := net.SplitHostPort(n.addr)
	if err != nil {
		n.t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: host, Port: port, JetStream: true, StoreDir: n.dir,
		MaxPayload: 8 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		n.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		n.t.Fatalf("nats server at %s not ready", n.addr)
	}
	n.ns = ns
}

// stop shuts the server down, if running, and waits for it.
func (n *standaloneNATS) stop() {
	if n.ns == nil {
		return
	}
	n.ns.Shutdown()
	n.ns.WaitForShutdown()
	n.ns = nil
}

// readyzOf returns the status and body of s's /readyz.
func readyzOf(t *testing.T, s *testServer) (int, string) {
	t.Helper()
	r := get(t, s.adminURL("/readyz"))
	return r.status, string(r.body)
}

// waitReadyzDegraded waits for s's /readyz to answer 200 degraded with a reason
// containing reason.
func waitReadyzDegraded(t *testing.T, s *testServer, name, reason string, timeout time.Duration) {
	t.Helper()
	testpeer.WaitFor(t, timeout, name+"'s /readyz degraded: "+reason, func() bool {
		code, body := readyzOf(t, s)
		return code == http.StatusOK && strings.HasPrefix(body, "ready, degraded: cluster: ") && strings.Contains(body, reason)
	})
}

// waitReadyzReady waits for s's /readyz to answer 200 "ready" (not degraded).
func waitReadyzReady(t *testing.T, s *testServer, name string, timeout time.Duration) {
	t.Helper()
	testpeer.WaitFor(t, timeout, name+"'s /readyz ready, not degraded", func() bool {
		code, body := readyzOf(t, s)
		return code == http.StatusOK && body == "ready\n"
	})
}

// playlistLastMSN returns the media sequence number of the last segment of the
// media playlist at url, false when it is not served or has no segment.
func playlistLastMSN(t *testing.T, url string) (int, *playlist.Media, bool) {
	t.Helper()
	r := get(t, url)
	if r.status != http.StatusOK {
		return 0, nil, false
	}
	pl, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, r.body)
	}
	m, ok := pl.(*playlist.Media)
	if !ok || len(m.Segments) == 0 {
		return 0, m, false
	}
	return m.MediaSequence + len(m.Segments) - 1, m, true
}

// waitPlaylistPast waits for the media playlist at url to have a segment past
// msn and returns the last one.
func waitPlaylistPast(t *testing.T, url string, msn int, timeout time.Duration) int {
	t.Helper()
	last := -1
	testpeer.WaitFor(t, timeout, fmt.Sprintf("%s past MSN %d", url, msn), func() bool {
		n, _, ok := playlistLastMSN(t, url)
		if ok {
			last = n
		}
		return ok && n > msn
	})
	return last
}

// ownerLadder is one cheap rung: two streams are transcoded on one slot
// each on a two-core runner.
var ownerLadder = []string{"144p=144:150k"}

// natsNode mutates a test configuration into a serve node joined to the
// NATS at natsURL, transcoding ownerLadder with localWorkers slots of a
// one-slot pool serving the queue.
func natsNode(t *testing.T, id, natsURL string, localWorkers int) func(*config.Config) {
	origin := testpeer.FreeAddr(t)
	return func(c *config.Config) {
		c.Cluster.NodeID = id
		c.Origin.Address = origin
		c.Cluster.OriginURL = "http://" + origin
		c.Cluster.NATSURL = natsURL
		c.Cluster.PlacementTTL = config.Duration(2 * time.Second)
		c.Transcoder.Enabled = true
		c.Transcoder.Ladder = ownerLadder
		c.Transcoder.PoolSize = 1
		c.Transcoder.LocalWorkers = localWorkers
	}
}

// TestClusterNATSUnreachable: NATS unreachable at start, then lost
// mid-stream. Node A (no local workers) and node L (one local worker
// slot, which also serves the queue) are started with cluster.nats_url
// pointing at a NATS not running yet: both start, /readyz says degraded
// with the reason, ingest and the source rendition go on, A's rendition
// GOPs are gaps counted by headwater_cluster_transcode_unavailable_total
// and L's are made locally. NATS starts: /readyz recovers, the publishes
// accepted meanwhile are claimed, and A's GOP jobs go through the queue
// (run by L's queue worker). NATS stops mid-stream: the source goes on, A
// counts gaps again, L transcodes locally; NATS restarts with the same
// store: jobs flow again, neither node restarted.
func TestClusterNATSUnreachable(t *testing.T) {
	nats := startableNATS(t)
	a := startServer(t, natsNode(t, "node-a", nats.url(), 0))
	l := startServer(t, natsNode(t, "node-l", nats.url(), 1))
	for name, s := range map[string]*testServer{"A": a, "L": l} {
		waitReadyzDegraded(t, s, name, "nats disconnected since", 15*time.Second)
	}

	// Ingest and the source rendition go on without NATS.
	testpeer.PublishPattern(t, a.rtmpURL("n1"), "testsrc=size=320x240:rate=30", "300k", 80*time.Second, 30)
	testpeer.PublishPattern(t, l.rtmpURL("n2"), "testsrc=size=320x240:rate=30", "300k", 80*time.Second, 30)
	srcA := a.originURL("/live/n1/video/index.m3u8")
	msn := waitPlaylistPast(t, srcA, 0, 20*time.Second)
	testpeer.WaitMetricCond(t, a.Metrics(), 10*time.Second, func(v float64) bool { return v > 0 },
		"A's GOPs without queue nor local worker counted", "headwater_cluster_transcode_unavailable_total")
	testpeer.WaitMetricCond(t, a.Metrics(), 10*time.Second, func(v float64) bool { return v > 0 },
		"A's rendition gaps counted as unavailable", "headwater_transcoder_gaps_total", "reason", "unavailable")
	testpeer.WaitMetricCond(t, l.Metrics(), 15*time.Second, func(v float64) bool { return v > 0 },
		"L's renditions made by its local pool", "headwater_transcoder_jobs_total", "outcome", "ok")
	if n := testpeer.MetricSum(t, l.Metrics(), "headwater_cluster_transcode_unavailable_total"); n != 0 {
		t.Errorf("L (local workers) counted %v GOPs as unavailable, want 0", n)
	}
	if code, body := readyzOf(t, a); code != http.StatusOK || !strings.Contains(body, "nats disconnected since") {
		t.Errorf("A's /readyz while NATS is down = %d %q", code, body)
	}

	// NATS comes up: /readyz recovers and jobs flow, with no restart.
	nats.start()
	waitReadyzReady(t, a, "A", 20*time.Second)
	waitReadyzReady(t, l, "L", 20*time.Second)
	testpeer.WaitMetricCond(t, a.Metrics(), 20*time.Second, func(v float64) bool { return v > 0 },
		"A's GOP jobs done through the queue", "headwater_gopqueue_jobs_total", "outcome", "ok")
	testpeer.WaitFor(t, 10*time.Second, "the publishes accepted while NATS was down claimed", func() bool {
		body := string(get(t, a.adminURL("/api/v1/streams")).body)
		return strings.Contains(body, `"node": "node-a"`) && strings.Contains(body, `"node": "node-l"`)
	})

	// NATS lost mid-stream.
	msn = waitPlaylistPast(t, srcA, msn, 10*time.Second)
	nats.stop()
	waitReadyzDegraded(t, a, "A", "nats disconnected since", 10*time.Second)
	waitReadyzDegraded(t, l, "L", "nats disconnected since", 10*time.Second)
	unavail := testpeer.MetricSum(t, a.Metrics(), "headwater_cluster_transcode_unavailable_total")
	localOK := testpeer.MetricSum(t, l.Metrics(), "headwater_transcoder_jobs_total", "outcome", "ok")
	testpeer.WaitMetricCond(t, a.Metrics(), 10*time.Second, func(v float64) bool { return v > unavail },
		"A's GOPs counted as unavailable again", "headwater_cluster_transcode_unavailable_total")
	testpeer.WaitMetricCond(t, l.Metrics(), 10*time.Second, func(v float64) bool { return v > localOK+1 },
		"L's renditions made locally with NATS down", "headwater_transcoder_jobs_total", "outcome", "ok")
	msn = waitPlaylistPast(t, srcA, msn+1, 10*time.Second) // the source goes on
	if n := testpeer.MetricSum(t, l.Metrics(), "headwater_cluster_transcode_unavailable_total"); n != 0 {
		t.Errorf("L (local workers) counted %v GOPs as unavailable, want 0", n)
	}

	// NATS back with the same store: jobs flow again.
	nats.start()
	waitReadyzReady(t, a, "A", 20*time.Second)
	queued := testpeer.MetricSum(t, a.Metrics(), "headwater_gopqueue_jobs_total", "outcome", "ok")
	testpeer.WaitMetricCond(t, a.Metrics(), 20*time.Second, func(v float64) bool { return v > queued },
		"A's GOP jobs through the queue after NATS restarted", "headwater_gopqueue_jobs_total", "outcome", "ok")
	waitPlaylistPast(t, srcA, msn, 10*time.Second)
	for name, s := range map[string]*testServer{"A": a, "L": l} {
		if n := testpeer.MetricSum(t, s.Metrics(), "headwater_cluster_nats_reconnects_total"); n < 1 {
			t.Errorf("%s reconnected %v times, want >= 1", name, n)
		}
	}
}

package server_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// The fault tests of issue 13 for GOP workers, end to end: node A runs in
// this process (ingest, origin, embedded NATS, no local workers) and the
// workers are real `headwater worker` processes of the binary built here,
// so that they can be killed (SIGKILL) and paused (SIGSTOP).
//
// Timing, with 2 s GOPs (the publisher's -g 60 at 30 fps): the consumer's
// ack wait is gopqueue.DefaultAckWait (2 s); a job lost by a worker is
// redelivered at most 2 s after the worker stopped heartbeating, and runs
// in well under a second on the surviving worker. faultDeadline (4 GOP
// durations, 8 s after the GOP closed) therefore leaves time for the
// redelivered run, and faultMaxWait (3 GOP durations, 6 s) keeps the
// surviving worker's pool from shedding the tallest rung of a job that
// waited for its redelivery: the renditions must have no gap at all.
const (
	faultDeadline = 4
	faultMaxWait  = 3
	faultGOP      = 60 // frames at 30 fps: 2 s
)

// buildHeadwater builds the headwater binary (go build, as the CLI's
// lifecycle test does) into a temporary directory.
func buildHeadwater(t *testing.T) string {
	t.Helper()
	testpeer.RequireLinux(t, "process groups, SIGSTOP")
	bin := filepath.Join(t.TempDir(), "headwater")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/headwater-live/headwater").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a headwater process in its own process group.
type proc struct {
	name  string
	cmd   *exec.Cmd
	logs  *testpeer.LogBuffer
	admin string // admin listener, host:port
	done  chan error
}

// startProc runs bin with args and a configuration file holding yaml, in
// its own process group; the group is killed when the test ends.
func startProc(t *testing.T, bin, name, yaml string, args ...string) *proc {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, logs: &testpeer.LogBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append(args, "--config", cfgFile)...)
	p.cmd.Stderr = p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
		p.kill()
		err := <-p.done
		if t.Failed() {
			t.Logf("%s ended: %v; its log:\n%s", name, err, p.logs.String())
		}
	})
	return p
}

// startWorkerProc starts `headwater worker` (one pool slot, the cluster
// ladder) joined to natsURL.
func startWorkerProc(t *testing.T, bin, id, natsURL, secret string) *proc {
	t.Helper()
	admin := testpeer.FreeAddr(t)
	yaml := fmt.Sprintf(`cluster:
  nats_url: %q
  node_id: %q
  secret_file: %q
transcoder:
  pool_size: 1
  max_wait: %d
  ladder: [%q, %q]
admin:
  address: %q
log:
  level: debug
`, natsURL, id, secret, faultMaxWait, clusterLadder[0], clusterLadder[1], admin)
	p := startProc(t, bin, id, yaml, "worker")
	p.admin = admin
	return p
}

// kill SIGKILLs the process's group and every process descended from it
// (ffmpeg children and the fork server, which have process groups of
// their own).
func (p *proc) kill() {
	pids := testpeer.Descendants(p.cmd.Process.Pid)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// metric sums the samples of the metric name whose label set contains
// each of labels ("outcome=\"ok\""), scraped from the process's /metrics;
// -1 when it cannot be scraped.
func (p *proc) metric(name string, labels ...string) float64 {
	return scrapeMetric("http://"+p.admin+"/metrics", name, labels...)
}

func scrapeMetric(url, name string, labels ...string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// waitReadyz waits for the process's /readyz to answer 200.
func (p *proc) waitReadyz(t *testing.T, timeout time.Duration) {
	t.Helper()
	c := http.Client{Timeout: time.Second}
	testpeer.WaitFor(t, timeout, p.name+" /readyz", func() bool {
		resp, err := c.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// faultCluster is node A and two worker processes, ready, with ffmpeg
// publishing name to A.
type faultCluster struct {
	a       *testServer
	workers []*proc
	pub     *testpeer.Process
	stream  string
}

func startFaultCluster(t *testing.T, key string, publish time.Duration) *faultCluster {
	t.Helper()
	bin := buildHeadwater(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	if err := os.WriteFile(secret, []byte("cluster-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := testpeer.FreeAddr(t)
	originA := testpeer.FreeAddr(t)
	a := startServer(t, func(c *config.Config) {
		clusterNode("node-a", "", natsAddr, secret)(c)
		c.Origin.Address = originA
		c.Cluster.OriginURL = "http://" + originA
		c.Transcoder.Enabled = true
		c.Transcoder.LocalWorkers = 0
		c.Transcoder.Deadline = faultDeadline
	})
	fc := &faultCluster{a: a, stream: "live/" + key}
	for _, id := range []string{"worker-c", "worker-d"} {
		fc.workers = append(fc.workers, startWorkerProc(t, bin, id, "nats://"+natsAddr, secret))
	}
	for _, w := range fc.workers {
		w.waitReadyz(t, 30*time.Second)
	}
	testpeer.WaitFor(t, 20*time.Second, "A's /readyz not degraded", func() bool {
		r := get(t, a.adminURL("/readyz"))
		return r.status == http.StatusOK && string(r.body) == "ready\n"
	})
	fc.pub = testpeer.PublishPattern(t, a.rtmpURL(key), "testsrc=size=640x360:rate=30", "600k", publish, faultGOP)
	return fc
}

// busyWorker waits for a worker running a job (its
// headwater_gopqueue_worker_jobs_running above 0) and returns its index.
func (fc *faultCluster) busyWorker(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, w := range fc.workers {
			if w.metric("headwater_gopqueue_worker_jobs_running") > 0 {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no worker ran a job within %s", timeout)
	return -1
}

// checkRenditions waits for the publish to end and every rendition to
// end, then checks: the source has no gap; every rendition has the
// source's segments (same MSNs, each once, increasing by one: each GOP's
// Done happened once) and maxGaps gaps at most; the served playlists
// agree; with maxGaps 0, no GOP job of A ended otherwise than done.
func (fc *faultCluster) checkRenditions(t *testing.T, maxGaps int) {
	t.Helper()
	if err := fc.pub.Wait(t, 40*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, fc.pub.Stderr.String())
	}
	st, ok := fc.a.Store().Stream(fc.stream)
	if !ok {
		t.Fatal("no stream in A's store")
	}
	names := []string{"video", "240p", "180p"}
	snaps := endedSnapshots(t, st, names...)
	src := snaps["video"]
	if len(src.Segments) < 5 {
		t.Fatalf("source has %d segments", len(src.Segments))
	}
	for i, seg := range src.Segments {
		if seg.Gap {
			t.Errorf("source segment %d is a gap", seg.MSN)
		}
		if i > 0 && seg.MSN != src.Segments[i-1].MSN+1 {
			t.Errorf("source: msn %d after %d", seg.MSN, src.Segments[i-1].MSN)
		}
	}
	for _, n := range names[1:] {
		segs := snaps[n].Segments
		if len(segs) == 0 {
			t.Errorf("%s: no segment", n)
			continue
		}
		gaps := 0
		for i, seg := range segs {
			if seg.Gap {
				gaps++
			}
			if i > 0 && seg.MSN != segs[i-1].MSN+1 {
				t.Errorf("%s: msn %d after %d (a GOP written twice or lost)", n, seg.MSN, segs[i-1].MSN)
			}
		}
		if len(segs) != len(src.Segments) || segs[0].MSN != src.Segments[0].MSN {
			t.Errorf("%s: %d segments from msn %d; the source %d from %d", n, len(segs), segs[0].MSN, len(src.Segments), src.Segments[0].MSN)
		}
		if gaps > maxGaps {
			t.Errorf("%s: %d gaps, want at most %d", n, gaps, maxGaps)
		}
		body := string(get(t, fc.a.originURL("/"+fc.stream+"/"+n+"/index.m3u8")).body)
		if c := strings.Count(body, "#EXT-X-GAP"); c != gaps {
			t.Errorf("%s: the served playlist has %d EXT-X-GAP, the store %d gaps:\n%s", n, c, gaps, body)
		}
		t.Logf("%s: %d segments (msn %d..%d), %d gaps", n, len(segs), segs[0].MSN, segs[len(segs)-1].MSN, gaps)
	}
	if maxGaps > 0 {
		return
	}
	for _, outcome := range []string{"timeout", "late", "failed", "rejected", "partial"} {
		if v := testpeer.MetricSum(t, fc.a.Metrics(), "headwater_gopqueue_jobs_total", "outcome", outcome); v != 0 {
			t.Errorf("A: %v GOP jobs ended %s", v, outcome)
		}
	}
}

// TestClusterWorkerKilled kills a `headwater worker` process (SIGKILL, its
// process group and its ffmpeg children) while it runs a GOP job: the
// job is redelivered to the other worker, which runs it (its
// jobs_redelivered_total); the renditions have every GOP exactly once and
// no gap (the deadline leaves time for the redelivery: see faultDeadline);
// the source has no gap.
func TestClusterWorkerKilled(t *testing.T) {
	fc := startFaultCluster(t, "kill", 16*time.Second)
	// A GOP or two through the workers first.
	testpeer.WaitMetricCond(t, fc.a.Metrics(), 20*time.Second, func(v float64) bool { return v >= 2 },
		"2 GOP jobs done through the queue", "headwater_gopqueue_jobs_total", "outcome", "ok")
	i := fc.busyWorker(t, 10*time.Second)
	victim, survivor := fc.workers[i], fc.workers[1-i]
	victim.kill()
	killed := time.Now()
	if err := victim.wait(t, 5*time.Second); err == nil {
		t.Fatalf("%s exited cleanly after SIGKILL", victim.name)
	}
	t.Logf("killed %s while it ran a job", victim.name)
	testpeer.WaitFor(t, 15*time.Second, survivor.name+" takes the lost job again", func() bool {
		return survivor.metric("headwater_gopqueue_jobs_redelivered_total") >= 1
	})
	t.Logf("%s took the redelivered job %s after the kill", survivor.name, time.Since(killed).Round(time.Millisecond))
	fc.checkRenditions(t, 0)
	t.Logf("A discarded %v result messages", testpeer.MetricSum(t, fc.a.Metrics(), "headwater_gopqueue_late_results_discarded_total"))
}

// wait returns the process's exit error once it ended, or fails t.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %s", p.name, timeout)
		return nil
	}
}

// TestClusterWorkerPaused pauses a `headwater worker` process (SIGSTOP)
// while it runs a GOP job, until the other worker took the job again
// (past the ack wait) and A completed a job since, then resumes it
// (SIGCONT): its late result is discarded by A
// (late_results_discarded_total) and every rendition has each GOP exactly
// once, no gap.
func TestClusterWorkerPaused(t *testing.T) {
	fc := startFaultCluster(t, "pause", 16*time.Second)
	testpeer.WaitMetricCond(t, fc.a.Metrics(), 20*time.Second, func(v float64) bool { return v >= 2 },
		"2 GOP jobs done through the queue", "headwater_gopqueue_jobs_total", "outcome", "ok")
	i := fc.busyWorker(t, 10*time.Second)
	paused, other := fc.workers[i], fc.workers[1-i]
	if err := syscall.Kill(paused.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	testpeer.WaitFor(t, 15*time.Second, other.name+" takes the paused worker's job", func() bool {
		return other.metric("headwater_gopqueue_jobs_redelivered_total") >= 1
	})
	t.Logf("%s took the job of paused %s after %s", other.name, paused.name, time.Since(stopped).Round(time.Millisecond))
	okBefore := testpeer.MetricSum(t, fc.a.Metrics(), "headwater_gopqueue_jobs_total", "outcome", "ok")
	testpeer.WaitMetricCond(t, fc.a.Metrics(), 10*time.Second, func(v float64) bool { return v > okBefore },
		"a job done after the redelivery", "headwater_gopqueue_jobs_total", "outcome", "ok")
	if err := syscall.Kill(paused.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitMetricCond(t, fc.a.Metrics(), 10*time.Second, func(v float64) bool { return v >= 1 },
		"A discards the paused worker's late result", "headwater_gopqueue_late_results_discarded_total")
	t.Logf("A discarded %v result messages", testpeer.MetricSum(t, fc.a.Metrics(), "headwater_gopqueue_late_results_discarded_total"))
	fc.checkRenditions(t, 0)
	// The resumed worker is still a working member.
	paused.waitReadyz(t, 5*time.Second)
}

// TestClusterThreeNodesLoseOne runs three serve nodes whose embedded NATS
// servers form one NATS cluster (routes among themselves, every stream
// and bucket with three replicas): node 1 ingests (no local workers),
// node 2 runs a local worker on the queue, node 3 — a process of the
// binary — does neither. ffmpeg publishes to node 1; once jobs flow node 3
// is killed (SIGKILL): the queue keeps a quorum on nodes 1 and 2 (its
// leaders, when node 3 held them, are elected again) and GOP jobs keep
// being done through it: node 1's jobs ok keeps rising and the renditions
// get new segments made after the loss.
func TestClusterThreeNodesLoseOne(t *testing.T) {
	bin := buildHeadwater(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	if err := os.WriteFile(secret, []byte("cluster-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var listen, routeListen, origin, routes []string
	for range 3 {
		listen, routeListen, origin = append(listen, testpeer.FreeAddr(t)), append(routeListen, testpeer.FreeAddr(t)), append(origin, testpeer.FreeAddr(t))
		routes = append(routes, "nats-route://"+routeListen[len(routeListen)-1])
	}
	node := func(i int) func(*config.Config) {
		return func(c *config.Config) {
			clusterNode(fmt.Sprintf("node-%d", i+1), "", listen[i], secret)(c)
			c.Cluster.RouteListen, c.Cluster.Routes, c.Cluster.Replicas = routeListen[i], routes, 3
			c.Cluster.StoreDir = t.TempDir()
			c.Origin.Address = origin[i]
			c.Cluster.OriginURL = "http://" + origin[i]
			c.Transcoder.Enabled = true
		}
	}
	// Node 3 first: the others' routes find it up.
	yaml := fmt.Sprintf(`rtmp:
  address: %q
srt:
  address: ""
rtsp:
  address: ""
origin:
  address: %q
admin:
  address: %q
cluster:
  embedded: true
  listen: %q
  route_listen: %q
  routes: [%q, %q, %q]
  replicas: 3
  node_id: node-3
  origin_url: %q
  secret_file: %q
  store_dir: %q
  placement_ttl: 5s
log:
  level: debug
`, testpeer.FreeAddr(t), origin[2], testpeer.FreeAddr(t), listen[2], routeListen[2], routes[0], routes[1], routes[2],
		"http://"+origin[2], secret, t.TempDir())
	n3 := startProc(t, bin, "node-3", yaml, "serve")
	n1 := startServer(t, func(c *config.Config) {
		node(0)(c)
		c.Transcoder.LocalWorkers = 0
	})
	n2 := startServer(t, func(c *config.Config) {
		node(1)(c)
		c.Transcoder.LocalWorkers = 1
	})
	testpeer.WaitLog(t, n2.logs, "cluster: GOP queue worker running", 60*time.Second)
	testpeer.WaitMetricCond(t, n1.Metrics(), 20*time.Second, func(v float64) bool { return v >= 1 },
		"node 2's worker waiting for jobs, seen from node 1", "headwater_gopqueue_pull_requests_waiting")

	testpeer.PublishPattern(t, n1.rtmpURL("r3"), "testsrc=size=640x360:rate=30", "600k", 40*time.Second, faultGOP)
	testpeer.WaitMetricCond(t, n1.Metrics(), 30*time.Second, func(v float64) bool { return v >= 2 },
		"2 GOP jobs done through the queue", "headwater_gopqueue_jobs_total", "outcome", "ok")

	n3.kill()
	if err := n3.wait(t, 5*time.Second); err == nil {
		t.Fatal("node 3 exited cleanly after SIGKILL")
	}
	killed := time.Now()
	okAtKill := testpeer.MetricSum(t, n1.Metrics(), "headwater_gopqueue_jobs_total", "outcome", "ok")
	st, ok := n1.Store().Stream("live/r3")
	if !ok {
		t.Fatal("no stream on node 1")
	}
	lastMSN := func(name string) (uint64, bool) {
		r, ok := st.Rendition(name)
		if !ok {
			return 0, false
		}
		segs := r.Snapshot().Segments
		if len(segs) == 0 {
			return 0, false
		}
		return segs[len(segs)-1].MSN, true
	}
	srcAtKill, _ := lastMSN("video")
	t.Logf("node 3 killed after %v GOP jobs done, source at msn %d", okAtKill, srcAtKill)

	// Jobs keep being done through the queue: 3 more GOPs.
	testpeer.WaitMetricCond(t, n1.Metrics(), 40*time.Second, func(v float64) bool { return v >= okAtKill+3 },
		"3 more GOP jobs done after node 3 was lost", "headwater_gopqueue_jobs_total", "outcome", "ok")
	t.Logf("3 more GOP jobs done %s after the loss", time.Since(killed).Round(time.Millisecond))
	// The renditions have segments made after the loss (not gaps).
	for _, n := range clusterRenditions() {
		testpeer.WaitFor(t, 15*time.Second, n+" segments made after the loss", func() bool {
			r, ok := st.Rendition(n)
			if !ok {
				return false
			}
			made := 0
			for _, seg := range r.Snapshot().Segments {
				if seg.MSN > srcAtKill+1 && !seg.Gap {
					made++
				}
			}
			return made >= 2
		})
	}
	if n := testpeer.MetricSum(t, n1.Metrics(), "headwater_transcoder_jobs_total"); n != 0 {
		t.Errorf("node 1's pool ran %v rendition-GOPs, want 0 (local_workers 0): the jobs must have gone through the queue", n)
	}
	if n := testpeer.MetricSum(t, n2.Metrics(), "headwater_transcoder_jobs_total", "outcome", "ok"); n == 0 {
		t.Error("node 2's local worker made no rendition-GOP")
	}
	for _, n := range clusterRenditions() {
		r, _ := st.Rendition(n)
		var gaps []uint64
		for _, seg := range r.Snapshot().Segments {
			if seg.Gap {
				gaps = append(gaps, seg.MSN)
			}
		}
		t.Logf("%s: gaps at msn %v (the loss at msn %d)", n, gaps, srcAtKill)
	}
	for _, o := range []string{"ok", "partial", "failed", "timeout", "late", "rejected"} {
		if v := testpeer.MetricSum(t, n1.Metrics(), "headwater_gopqueue_jobs_total", "outcome", o); v > 0 {
			t.Logf("node 1: %v GOP jobs %s", v, o)
		}
	}
}

// clusterRenditions are the names of clusterLadder's renditions.
func clusterRenditions() []string {
	var out []string
	for _, r := range clusterLadder {
		out = append(out, r[:strings.IndexByte(r, '=')])
	}
	return out
}

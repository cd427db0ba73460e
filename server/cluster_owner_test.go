package server_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/hlsenc"
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

// getHeader is get with request headers.
func getHeader(t *testing.T, url string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// segLine is a segment's line in a media playlist.
var segLine = regexp.MustCompile(`(?m)^seg(\d+)\.m4s$`)

// cutAfter returns what follows the first sep in s, "" without one.
func cutAfter(s, sep string) string {
	_, rest, _ := strings.Cut(s, sep)
	return rest
}

// TestClusterTokensKeysOnEdge: playback tokens (required), the CDN secret
// and HLS AES-128 on both nodes of a cluster with the same secrets. The
// stream is published to A; on B (origin only) a token signed with the
// shared key, with the CDN header, gets the multivariant and media
// playlists, a segment and its key, relayed from A; the segment decrypts
// with that key to A's clear bytes. Without a token, or without the CDN
// header, B answers 403 (for the key too).
func TestClusterTokensKeysOnEdge(t *testing.T) {
	clusterSecret := writeSecret(t, "cluster.secret", "CLUSTERSECRET-5e1a9d3c7f2b6e0a4d8c")
	keyFile := writeSecret(t, "k1.secret", tokenSecret)
	cdnFile := writeSecret(t, "cdn.secret", cdnSecret)
	protect := func(c *config.Config) {
		noOtherListeners(c)
		c.Cluster.SecretFile = clusterSecret
		c.Cluster.PlacementTTL = config.Duration(2 * time.Second)
		c.Playback.Tokens.Keys = []string{"k1=" + keyFile}
		c.Playback.Tokens.Required = true
		c.Playback.CDN.SecretFile = cdnFile
		c.HLS.Encryption.Enabled = true
		c.HLS.Encryption.RotateSegments = 2
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	}
	originA := testpeer.FreeAddr(t)
	a := startServer(t, func(c *config.Config) {
		protect(c)
		c.Cluster.NodeID = "node-a"
		c.Cluster.Embedded, c.Cluster.Listen = true, "127.0.0.1:0"
		c.Origin.Address = originA
		c.Cluster.OriginURL = "http://" + originA
	})
	natsURL := a.ClusterClientURL()
	if !strings.HasPrefix(natsURL, "nats://127.0.0.1:") {
		t.Fatalf("A's embedded NATS client URL = %q", natsURL)
	}
	b := startServer(t, func(c *config.Config) {
		protect(c)
		c.Cluster.NodeID = "node-b"
		c.Cluster.NATSURL = natsURL
		c.Cluster.Role = config.RoleOrigin
	})
	kr, err := playback.LoadKeyring([]playback.KeySettings{{ID: "k1", SecretFile: keyFile}}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	const name = "live/tok1"
	testpeer.PublishRTMP(t, a.rtmpURL("tok1"), 30*time.Second, 30)
	cdn := map[string]string{"X-Headwater-CDN-Secret": cdnSecret}
	bBase := b.originURL("")
	mvURL, err := kr.IssueURL(bBase, name, 5*time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	tokenPrefix := strings.TrimSuffix(mvURL, "/"+name+"/index.m3u8")
	plURL := tokenPrefix + "/" + name + "/video/index.m3u8"
	var text string
	testpeer.WaitFor(t, 20*time.Second, "B serves the media playlist with two keys and a segment under the first", func() bool {
		if r := getHeader(t, mvURL, cdn); r.status != http.StatusOK {
			return false
		}
		r := getHeader(t, plURL, cdn)
		text = string(r.body)
		tags := encKeyTag.FindAllStringSubmatch(text, -1)
		return r.status == http.StatusOK && len(tags) >= 2 && segLine.MatchString(cutAfter(text, tags[0][1]))
	})
	if r := get(t, mvURL); r.status != http.StatusForbidden {
		t.Errorf("B: the multivariant playlist with a token but without the CDN secret: %d, want 403", r.status)
	}
	if r := getHeader(t, bBase+"/"+name+"/index.m3u8", cdn); r.status != http.StatusForbidden || r.header.Get("X-Headwater-Token") != string(playback.ReasonMissingToken) {
		t.Errorf("B: the multivariant playlist without a token: %d %v, want 403 missing", r.status, r.header)
	}

	// The first key and the first segment under it, from B.
	m := encKeyTag.FindStringSubmatch(text)
	plBase, _ := url.Parse(plURL)
	ref, _ := url.Parse(m[1])
	keyURL := plBase.ResolveReference(ref)
	kr2 := getHeader(t, keyURL.String(), cdn)
	if kr2.status != http.StatusOK || len(kr2.body) != hlsenc.KeySize || kr2.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("B: GET %s: %d, %d bytes, %v", keyURL, kr2.status, len(kr2.body), kr2.header)
	}
	keyPath := "/keys/" + cutAfter(keyURL.Path, "/keys/")
	if r := getHeader(t, bBase+keyPath, cdn); r.status != http.StatusForbidden || bytes.Contains(r.body, kr2.body) {
		t.Errorf("B: the key without a token: %d, want 403", r.status)
	}
	if r := get(t, keyURL.String()); r.status != http.StatusForbidden || bytes.Contains(r.body, kr2.body) {
		t.Errorf("B: the key without the CDN secret: %d, want 403", r.status)
	}
	seg := segLine.FindStringSubmatch(cutAfter(text, m[1]))
	msn, _ := strconv.ParseUint(seg[1], 10, 64)
	segRef, _ := url.Parse(seg[0])
	sr := getHeader(t, plBase.ResolveReference(segRef).String(), cdn)
	if sr.status != http.StatusOK {
		t.Fatalf("B: GET %s: %d", seg[0], sr.status)
	}
	if r := getHeader(t, bBase+"/"+name+"/video/"+seg[0], cdn); r.status != http.StatusForbidden {
		t.Errorf("B: a segment without a token: %d, want 403", r.status)
	}

	// Decrypted with the relayed key, it is A's clear segment.
	st, ok := a.Store().Stream(name)
	if !ok {
		t.Fatal("the stream is not in A's store")
	}
	rn, _ := st.Rendition("video")
	clearSeg, ok := rn.Snapshot().Segment(msn)
	if !ok {
		t.Fatalf("seg%d gone from A's store", msn)
	}
	var k, iv [hlsenc.KeySize]byte
	copy(k[:], kr2.body)
	ivb, _ := hex.DecodeString(m[2])
	copy(iv[:], ivb)
	key, err := hlsenc.KeyFromBytes("k", k, iv, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := hlsenc.DecryptSegment(key, key.IV(msn), sr.body)
	if err != nil || !bytes.Equal(got, clearSeg.Data) {
		t.Errorf("seg%d from B does not decrypt with B's key to A's clear bytes: %v", msn, err)
	}
	if bytes.Equal(sr.body[:32], clearSeg.Data[:32]) {
		t.Errorf("seg%d served in the clear by B", msn)
	}
	for _, kind := range []string{"playlist", "key", "segment"} {
		if n := testpeer.MetricSum(t, b.Metrics(), "headwater_relay_upstream_requests_total", "kind", kind); n == 0 {
			t.Errorf("B relayed no %s from A", kind)
		}
	}
}

// tcpProxy forwards a loopback address to a target: a network path the
// test cuts (the listener and every connection closed) and restores on the
// same address, as a partition.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newTCPProxy returns a proxy to target, up.
func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, addr: testpeer.FreeAddr(t), target: target, conns: map[net.Conn]struct{}{}}
	p.up()
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
	})
	return p
}

// up listens (again) and forwards.
func (p *tcpProxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, u) {
				return
			}
			for _, pair := range [][2]net.Conn{{c, u}, {u, c}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					_, _ = io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
}

// track records a forwarded pair; false (both closed) once the proxy is
// down.
func (p *tcpProxy) track(c, u net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		u.Close()
		return false
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	return true
}

// down closes the listener and every forwarded connection.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// streamOwner returns the owner node of stream in s's status API, "" when
// it is not listed live.
func streamOwner(t *testing.T, s *testServer, stream string) string {
	t.Helper()
	st, ok := listedStream(t, s, stream)
	switch {
	case !ok || !st.Live:
		return ""
	case st.Owner == nil:
		return "(no owner)"
	}
	return st.Owner.Node
}

// TestClusterLostClaimKicks: node A is cut off from NATS (a TCP proxy
// closed) while its publisher of live/p1 goes on; its placement entry
// expires within the TTL as node A2 sees it, and a publisher of live/p1 on
// A2 is accepted. When A's path to NATS comes back, A's heartbeat finds
// the name owned by A2: A kicks its own publisher (logged once, counted
// by headwater_cluster_publishers_kicked_total), so that the name is live
// on A2 only.
func TestClusterLostClaimKicks(t *testing.T) {
	nats := startableNATS(t)
	nats.start()
	proxy := newTCPProxy(t, nats.addr)
	a := startServer(t, func(c *config.Config) {
		natsNode(t, "node-a", "nats://"+proxy.addr, 0)(c)
		c.Transcoder.Enabled = false
	})
	a2 := startServer(t, func(c *config.Config) {
		natsNode(t, "node-a2", nats.url(), 0)(c)
		c.Transcoder.Enabled = false
	})
	waitReadyzReady(t, a, "A", 15*time.Second)
	waitReadyzReady(t, a2, "A2", 15*time.Second)

	pubA := testpeer.PublishRTMP(t, a.rtmpURL("p1"), 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "A2 to see live/p1 owned by A", func() bool { return streamOwner(t, a2, "live/p1") == "node-a" })

	proxy.down()
	cut := time.Now()
	waitReadyzDegraded(t, a, "A", "nats disconnected since", 10*time.Second)
	testpeer.WaitFor(t, 10*time.Second, "A's entry to expire as A2 sees it", func() bool { return streamOwner(t, a2, "live/p1") == "" })
	if d := time.Since(cut); d > 2*time.Second+time.Second {
		t.Errorf("A's entry expired %s after A was cut off, placement TTL 2s", d.Round(time.Millisecond))
	}
	if _, ok := a.Registry().Get("live/p1"); !ok {
		t.Fatal("A's publisher stopped while A was only cut off from NATS")
	}
	testpeer.PublishRTMP(t, a2.rtmpURL("p1"), 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "A2 to accept live/p1", func() bool { return streamOwner(t, a2, "live/p1") == "node-a2" })

	proxy.up()
	testpeer.WaitMetric(t, a.Metrics(), 1, 20*time.Second, "headwater_cluster_publishers_kicked_total")
	if err := pubA.Wait(t, 10*time.Second); err == nil {
		t.Error("A's publisher ended without an error after it was kicked")
	}
	testpeer.WaitFor(t, 5*time.Second, "live/p1 gone from A's registry", func() bool {
		_, ok := a.Registry().Get("live/p1")
		return !ok
	})
	waitReadyzReady(t, a, "A", 15*time.Second)
	if o := streamOwner(t, a, "live/p1"); o != "node-a2" {
		t.Errorf("A lists live/p1 owned by %q, want node-a2", o)
	}
	if _, ok := a2.Registry().Get("live/p1"); !ok {
		t.Error("A2's publisher of live/p1 is gone")
	}
	if n := strings.Count(a.logs.String(), "taken over by another node; kicking this publisher"); n != 1 {
		t.Errorf("A logged the kick %d times, want once", n)
	}
	if n := testpeer.MetricSum(t, a.Metrics(), "headwater_cluster_placement_lost_total"); n != 1 {
		t.Errorf("headwater_cluster_placement_lost_total on A = %v, want 1", n)
	}
}

// TestClusterNestedNamesRefused: live/n is live on node A; on node A2 a
// publisher of live/n/x (which extends it) and, once live/n2/x is live
// on A, one of live/n2 (which it extends) are refused as on one node
// (invalid_name), counted as cluster refusals; live/nx (no '/' boundary)
// is accepted.
func TestClusterNestedNamesRefused(t *testing.T) {
	nats := startableNATS(t)
	nats.start()
	plain := func(id string) func(*config.Config) {
		return func(c *config.Config) {
			natsNode(t, id, nats.url(), 0)(c)
			c.Transcoder.Enabled = false
		}
	}
	a := startServer(t, plain("node-a"))
	a2 := startServer(t, plain("node-a2"))
	waitReadyzReady(t, a, "A", 15*time.Second)
	waitReadyzReady(t, a2, "A2", 15*time.Second)
	testpeer.PublishRTMP(t, a.rtmpURL("n"), 40*time.Second, 30)
	testpeer.PublishRTMP(t, a.rtmpURL("n2/x"), 40*time.Second, 30, "-rtmp_app", "live", "-rtmp_playpath", "n2/x")
	testpeer.WaitFor(t, 15*time.Second, "A2 to see live/n and live/n2/x owned by A", func() bool {
		return streamOwner(t, a2, "live/n") == "node-a" && streamOwner(t, a2, "live/n2/x") == "node-a"
	})

	for _, p := range []*testpeer.Process{
		testpeer.PublishRTMP(t, a2.rtmpURL("n/x"), 3*time.Second, 30, "-rtmp_app", "live", "-rtmp_playpath", "n/x"),
		testpeer.PublishRTMP(t, a2.rtmpURL("n2"), 3*time.Second, 30),
	} {
		if err := p.Wait(t, 15*time.Second); err == nil {
			t.Errorf("%v: a publisher of a name nesting with one live on A was accepted by A2", p.Cmd.Args[len(p.Cmd.Args)-1])
		}
	}
	if n := testpeer.MetricSum(t, a2.Metrics(), "headwater_ingest_errors_total", "reason", "invalid_name"); n != 2 {
		t.Errorf("A2 counted %v invalid_name errors, want 2", n)
	}
	if n := testpeer.MetricSum(t, a2.Metrics(), "headwater_cluster_publish_refused_total"); n != 2 {
		t.Errorf("A2 counted %v cluster refusals, want 2", n)
	}
	for _, name := range []string{"live/n/x", "live/n2"} {
		if _, ok := a2.Registry().Get(name); ok {
			t.Errorf("%s is live on A2", name)
		}
	}
	testpeer.PublishRTMP(t, a2.rtmpURL("nx"), 30*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "A2 to accept live/nx", func() bool { return streamOwner(t, a, "live/nx") == "node-a2" })
}

// edgePlayerPage is a test page playing the HLS URL in its query (?src=)
// with hls.js from preview/assets, recording hls.js's errors.
const edgePlayerPage = `<!doctype html>
<html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
window.hlsErrors = [];
const video = document.getElementById('v');
const hls = new Hls({lowLatencyMode: true});
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, d) => window.hlsErrors.push({type: d.type, details: d.details, fatal: d.fatal}));
hls.loadSource(new URLSearchParams(location.search).get('src'));
hls.attachMedia(video);
video.play().catch(() => {});
</script>
</body></html>`

// TestClusterHLSJSOnEdge: hls.js in headless Chromium plays the ladder of
// a stream published to node A (embedded NATS, local workers) from node
// B (origin only), on a page of another origin (CORS): both variants are
// listed, the video's currentTime advances by 3 s with no fatal hls.js
// error, and B fetched what it served from A through its relay.
func TestClusterHLSJSOnEdge(t *testing.T) {
	requireChromium(t)
	originA := testpeer.FreeAddr(t)
	a := startServer(t, func(c *config.Config) {
		c.Cluster.NodeID = "node-a"
		c.Cluster.Embedded, c.Cluster.Listen = true, "127.0.0.1:0"
		c.Cluster.PlacementTTL = config.Duration(2 * time.Second)
		c.Origin.Address = originA
		c.Cluster.OriginURL = "http://" + originA
		c.Transcoder.Enabled = true
		c.Transcoder.Ladder = ownerLadder
		c.Transcoder.PoolSize = 1
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	b := startServer(t, func(c *config.Config) {
		c.Cluster.NodeID = "node-b"
		c.Cluster.NATSURL = a.ClusterClientURL()
		c.Cluster.Role = config.RoleOrigin
	})
	testpeer.PublishPattern(t, a.rtmpURL("edge"), "testsrc=size=320x240:rate=30", "300k", 60*time.Second, 30)
	br := startBrowser(t)
	mvURL := b.originURL("/live/edge/index.m3u8")
	testpeer.WaitFor(t, 20*time.Second, "B serves the ladder (2 variants) and the 144p rendition", func() bool {
		r := get(t, mvURL)
		if r.status != http.StatusOK {
			return false
		}
		pl, err := playlist.Unmarshal(r.body)
		mv, _ := pl.(*playlist.Multivariant)
		_, _, ok := playlistLastMSN(t, b.originURL("/live/edge/144p/index.m3u8"))
		return err == nil && mv != nil && len(mv.Variants) == 2 && ok
	})

	page := playerPage(t, edgePlayerPage)
	pageURL := page.URL + "/?src=" + url.QueryEscape(mvURL)
	br.do(t, "open "+pageURL+" and start playing from B", 20*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 0`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	start := evalJS[float64](t, br, `document.getElementById('v').currentTime`)
	br.do(t, "currentTime to advance by 3 s", 10*time.Second,
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('v').currentTime >= %f`, start+3),
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if n := evalJS[int](t, br, `window.hls.levels.length`); n != 2 {
		t.Errorf("hls.js lists %d levels from B's multivariant playlist, want 2", n)
	}
	for _, e := range evalJS[[]pageError](t, br, `window.hlsErrors`) {
		if e.Fatal {
			t.Errorf("hls.js fatal error: %+v", e)
		} else {
			t.Logf("hls.js non-fatal error: %+v", e)
		}
	}
	relayed := func(kind string) float64 {
		return testpeer.MetricSum(t, b.Metrics(), "headwater_relay_upstream_requests_total", "kind", kind)
	}
	if relayed("playlist") == 0 || relayed("init") == 0 || relayed("part")+relayed("segment") == 0 {
		t.Errorf("B relayed %v playlists, %v init sections, %v parts and %v segments from A: hls.js was not served through the relay",
			relayed("playlist"), relayed("init"), relayed("part"), relayed("segment"))
	}
}

// TestClusterOwnerKilled: node A, a real `headwater serve` process joined
// to a standalone NATS, owns live/own (ffmpeg publishing to it) and node B
// (origin only) serves it by relay. A is SIGKILLed: a publisher of
// live/own on node A2 right away is refused (A's entry is still live);
// A's entry expires within the TTL (2 s, as B sees it); the publisher
// reconnecting to A2 is accepted, and B serves live/own again from A2
// under the same URLs, continuing A's stream (A's continuity record,
// docs/cluster.md): in B's video and audio playlists the first segment
// from A2 is numbered past every number seen from A, is preceded by
// EXT-X-DISCONTINUITY and is one discontinuity further on; an ffmpeg
// player reading B since before the kill keeps decoding frames after the
// takeover, never restarted.
func TestClusterOwnerKilled(t *testing.T) {
	bin := buildHeadwater(t)
	nats := startableNATS(t)
	nats.start()
	rtmpA, originA, adminA := testpeer.FreeAddr(t), testpeer.FreeAddr(t), testpeer.FreeAddr(t)
	a := startProc(t, bin, "node-a", fmt.Sprintf(`rtmp:
  address: %q
srt:
  address: ""
rtsp:
  address: ""
origin:
  address: %q
admin:
  address: %q
segmenter:
  segment_duration: 1s
cluster:
  nats_url: %q
  node_id: node-a
  origin_url: %q
  placement_ttl: 2s
log:
  level: debug
`, rtmpA, originA, adminA, nats.url(), "http://"+originA), "serve")
	a.admin = adminA
	a2 := startServer(t, func(c *config.Config) {
		natsNode(t, "node-a2", nats.url(), 0)(c)
		c.Transcoder.Enabled = false
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	b := startServer(t, func(c *config.Config) {
		c.Cluster.NodeID = "node-b"
		c.Cluster.NATSURL = nats.url()
		c.Cluster.Role = config.RoleOrigin
		c.Cluster.PlacementTTL = config.Duration(2 * time.Second)
	})
	a.waitReadyz(t, 20*time.Second)

	testpeer.PublishRTMP(t, "rtmp://"+rtmpA+"/live/own", 60*time.Second, 30)
	plB := b.originURL("/live/own/video/index.m3u8")
	audioB := b.originURL("/live/own/audio/index.m3u8")
	testpeer.WaitFor(t, 20*time.Second, "B to list live/own owned by A", func() bool { return streamOwner(t, b, "live/own") == "node-a" })
	waitPlaylistPast(t, plB, 1, 20*time.Second)
	waitPlaylistPast(t, audioB, 1, 20*time.Second)

	// A player reads B's video playlist from before the kill to the end.
	player := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "warning", "-nostats",
		"-i", plB, "-progress", "pipe:1", "-f", "null", "-")
	progress, playerErr := &testpeer.LogBuffer{}, &testpeer.LogBuffer{}
	player.Stdout, player.Stderr = progress, playerErr
	if err := player.Start(); err != nil {
		t.Fatal(err)
	}
	playerDone := make(chan error, 1)
	go func() { playerDone <- player.Wait() }()
	t.Cleanup(func() {
		_ = player.Process.Kill()
		err := <-playerDone
		if t.Failed() {
			t.Logf("player ended: %v; stderr:\n%s", err, playerErr.String())
		}
	})
	testpeer.WaitFor(t, 15*time.Second, "the player on B to decode frames", func() bool { return progressFrames(progress.String()) > 30 })
	// The last numbers A's playlists had when A was killed.
	fromA := map[string]segmentAt{"video": lastSegment(t, plB), "audio": lastSegment(t, audioB)}

	a.kill()
	killed := time.Now()
	refused := testpeer.PublishRTMP(t, a2.rtmpURL("own"), 3*time.Second, 30)
	if err := refused.Wait(t, 15*time.Second); err == nil {
		t.Error("A2 accepted live/own while A's placement entry was live")
	}
	testpeer.WaitFor(t, 10*time.Second, "A's entry to expire as B sees it", func() bool { return streamOwner(t, b, "live/own") == "" })
	if d := time.Since(killed); d > 3*time.Second {
		t.Errorf("A's entry expired %s after A was killed, placement TTL 2s", d.Round(time.Millisecond))
	}
	if n := testpeer.MetricSum(t, a2.Metrics(), "headwater_cluster_publish_refused_total"); n != 1 {
		t.Errorf("A2 refused %v publishes of A's live name, want 1", n)
	}

	// The publisher reconnects to A2: accepted, and B serves it again,
	// continuing A's numbering past a discontinuity.
	testpeer.PublishRTMP(t, a2.rtmpURL("own"), 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "B to list live/own owned by A2", func() bool { return streamOwner(t, b, "live/own") == "node-a2" })
	framesAtTakeover := progressFrames(progress.String())
	for name, url := range map[string]string{"video": plB, "audio": audioB} {
		before := fromA[name]
		after := waitPlaylistPast(t, url, before.msn, 15*time.Second)
		_, m, _ := playlistLastMSN(t, url)
		if m.MediaSequence <= before.msn {
			t.Errorf("%s: B's playlist from A2 starts at MSN %d, not past A's last %d", name, m.MediaSequence, before.msn)
		}
		if !m.Segments[0].Discontinuity {
			t.Errorf("%s: B's playlist from A2 has no EXT-X-DISCONTINUITY before its first segment:\n%s", name, get(t, url).body)
		}
		first := segmentDiscontinuities(m)[0]
		if first <= before.disc {
			t.Errorf("%s: A2's first segment is discontinuity %d, A's last was %d", name, first, before.disc)
		}
		t.Logf("%s: B's playlist: last MSN %d (discontinuity %d) from A, then %d.. %d (discontinuity %d) from A2",
			name, before.msn, before.disc, m.MediaSequence, after, first)
	}
	// A blocking reload for the segment after A's last, as a player waits
	// for it across the takeover, is answered at once (it is behind A2's
	// live edge), not held nor refused as too far ahead.
	start := time.Now()
	if r := get(t, fmt.Sprintf("%s?_HLS_msn=%d", plB, fromA["video"].msn+1)); r.status != http.StatusOK {
		t.Errorf("B's video playlist, _HLS_msn=%d after the takeover: status %d\n%s", fromA["video"].msn+1, r.status, r.body)
	} else if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("B's video playlist, _HLS_msn=%d after the takeover: answered in %s, not at once", fromA["video"].msn+1, d)
	}

	// The player reading B since before the kill keeps decoding across the
	// takeover without a restart: B holds its playlist reloads while A is
	// unreachable and then has no owner, and relays them to A2 once it
	// answers (relay.ServePlaylist, docs/cluster.md).
	ended := false
	testpeer.WaitFor(t, 20*time.Second, "the player on B to decode frames from A2, or to end", func() bool {
		select {
		case err := <-playerDone:
			playerDone <- err
			ended = true
		default:
		}
		return ended || progressFrames(progress.String()) > framesAtTakeover+30
	})
	total := progressFrames(progress.String())
	t.Logf("the player on B decoded %d frames until the takeover, %d in all; ended: %v",
		framesAtTakeover, total, ended)
	if ended || total <= framesAtTakeover {
		t.Errorf("the player on B started before the kill stopped at the takeover (ended %v, %d frames, %d at the takeover); stderr:\n%s",
			ended, total, framesAtTakeover, playerErr.String())
	}
}

// segmentAt is a media segment's sequence number and discontinuity
// sequence number.
type segmentAt struct{ msn, disc int }

// lastSegment returns the last segment of the media playlist at url.
func lastSegment(t *testing.T, url string) segmentAt {
	t.Helper()
	msn, m, ok := playlistLastMSN(t, url)
	if !ok {
		t.Fatalf("%s: no segment", url)
	}
	d := segmentDiscontinuities(m)
	return segmentAt{msn: msn, disc: d[len(d)-1]}
}

// segmentDiscontinuities returns the discontinuity sequence number of each
// segment of m.
func segmentDiscontinuities(m *playlist.Media) []int {
	n := 0
	if m.DiscontinuitySequence != nil {
		n = *m.DiscontinuitySequence
	}
	out := make([]int, len(m.Segments))
	for i, s := range m.Segments {
		if s.Discontinuity {
			n++
		}
		out[i] = n
	}
	return out
}

// progressFrames reads the last frame= of ffmpeg's -progress output.
func progressFrames(progress string) int {
	i := strings.LastIndex(progress, "\nframe=")
	if i < 0 {
		return 0
	}
	line := progress[i+len("\nframe="):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line))
	return n
}

package server_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/store"
)

// alwaysOnPlayerPage plays ?src= with hls.js in low-latency mode
// (?player=hls) or dash.js (?player=dash), recording fatal errors and
// every stall: the time from a "waiting" event to the next "playing".
const alwaysOnPlayerPage = `<!doctype html>
<html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script src="/dash.all.min.js"></script>
<script>
window.errors = [];
window.stalls = [];
const q = new URLSearchParams(location.search);
const video = document.getElementById('v');
let waitingSince = 0;
video.addEventListener('waiting', () => { if (video.currentTime > 0 && !waitingSince) waitingSince = performance.now(); });
video.addEventListener('playing', () => { if (waitingSince) { window.stalls.push((performance.now() - waitingSince) / 1000); waitingSince = 0; } });
window.stalledNow = () => waitingSince ? (performance.now() - waitingSince) / 1000 : 0;
if (q.get('player') === 'dash') {
  const p = dashjs.MediaPlayer().create();
  p.on(dashjs.MediaPlayer.events.ERROR, e => window.errors.push(JSON.stringify(e.error || e)));
  p.initialize(video, q.get('src'), true);
} else {
  const hls = new Hls({lowLatencyMode: true});
  hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.errors.push(d.type + ' ' + d.details); });
  hls.loadSource(q.get('src'));
  hls.attachMedia(video);
}
video.play().catch(() => {});
</script>
</body></html>`

// playing opens the always-on player page on src and waits for playback.
func playing(t *testing.T, page, player, src string) *browser {
	t.Helper()
	br := startBrowser(t)
	br.do(t, player+" plays "+src, 30*time.Second,
		chromedp.Navigate(page+"/?player="+player+"&src="+url.QueryEscape(src)),
		chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 1`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	return br
}

// playingPreview opens the admin preview page on stream in format
// ("dash" or "hls") and waits for playback; it records stalls and fatal
// errors as alwaysOnPlayerPage does.
func playingPreview(t *testing.T, s *testServer, stream, format string) *browser {
	t.Helper()
	br := startBrowser(t)
	br.do(t, format+" preview plays "+stream, 30*time.Second,
		chromedp.Navigate(s.adminURL("/?stream="+stream+"&format="+format)),
		chromedp.Poll[chromedp.Void](`document.querySelector('video') !== null && document.querySelector('video').currentTime > 1`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)),
		chromedp.Evaluate[chromedp.Void](`(() => {
  const video = document.querySelector('video');
  video.id = 'v';
  window.stalls = [];
  let waitingSince = 0;
  video.addEventListener('waiting', () => { if (!waitingSince) waitingSince = performance.now(); });
  video.addEventListener('playing', () => { if (waitingSince) { window.stalls.push((performance.now() - waitingSince) / 1000); waitingSince = 0; } });
  Object.defineProperty(window, 'errors', {get: () => window.__headwaterErrors.filter(e => e.fatal).map(e => JSON.stringify(e))});
})()`))
	return br
}

func currentTime(t *testing.T, br *browser) float64 {
	t.Helper()
	return evalJS[float64](t, br, `document.getElementById('v').currentTime`)
}

// checkPlayedThrough fails t unless the player's clock went from since
// past since+want with no fatal error, at most maxStalls stalls (of 100 ms
// or more) and none longer than maxStall seconds.
func checkPlayedThrough(t *testing.T, br *browser, player string, since, want float64, maxStalls int, maxStall float64) {
	t.Helper()
	br.do(t, fmt.Sprintf("%s plays %.0f s on", player, want), 30*time.Second,
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('v').currentTime > %f`, since+want),
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if errs := evalJS[[]string](t, br, `window.errors`); len(errs) > 0 {
		t.Errorf("%s errors: %v", player, errs)
	}
	// A "waiting" shorter than 100 ms (a seek over a hole of a few
	// milliseconds) is not a stall anyone sees.
	all := evalJS[[]float64](t, br, `window.stalls`)
	var stalls []float64
	long := 0
	for _, s := range all {
		if s >= 0.1 {
			stalls = append(stalls, s)
		}
		if s > maxStall {
			long++
		}
	}
	t.Logf("%s waits (s): %v", player, all)
	if len(stalls) > maxStalls || long > 0 {
		t.Errorf("%s stalled %d times (%v s), want at most %d of at most %.1f s", player, len(stalls), stalls, maxStalls, maxStall)
	}
}

// backupConnected reports whether the status API shows the server's one
// stream with its backup publisher connected.
func backupConnected(t *testing.T, s *testServer) bool {
	var st struct {
		Streams []struct {
			Name     string
			AlwaysOn *struct{ Backup bool } `json:"always_on"`
		}
	}
	decodeJSON(t, get(t, s.adminURL("/api/v1/streams")).body, &st)
	return len(st.Streams) == 1 && st.Streams[0].AlwaysOn != nil && st.Streams[0].AlwaysOn.Backup
}

// videoSnapshot is the stream's video rendition as the store holds it.
func videoSnapshot(t *testing.T, s *testServer, name string) *store.Snapshot {
	t.Helper()
	st, ok := s.Store().Stream(name)
	if !ok {
		return nil
	}
	r, ok := st.Rendition("video")
	if !ok {
		return nil
	}
	return r.Snapshot()
}

// hasEpoch reports whether the stream's video has a part of epoch e.
func hasEpoch(t *testing.T, s *testServer, name string, e int) bool {
	snap := videoSnapshot(t, s, name)
	if snap == nil {
		return false
	}
	if snap.Open != nil && snap.Open.Epoch >= e && len(snap.Open.Parts) > 0 {
		return true
	}
	for _, seg := range snap.Segments {
		if seg.Epoch >= e {
			return true
		}
	}
	return false
}

// TestFailoverToBackupPublisher: an ffmpeg primary and an ffmpeg backup
// (role=backup, another test picture)
// publish one name with streams.failover_after 500ms; hls.js (low latency)
// plays it. SIGKILL of the primary: the backup's parts follow within
// failover_after + one GOP, the player's clock keeps advancing with at
// most one stall of at most 1 s and no error; the status API and the
// metrics tell. The primary comes back: it takes over again at a key frame
// (failback). A second backup and a backup without the publish key are
// refused.
func TestFailoverToBackupPublisher(t *testing.T) {
	requireChromium(t)
	const key = "fo-secret"
	sink, hookSecret := newEventSink(t)
	s := startServer(t, func(c *config.Config) {
		c.Events.Webhook, c.Events.WebhookSecretFile = sink.srv.URL, hookSecret
		c.Streams.FailoverAfter = config.Duration(500 * time.Millisecond)
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		c.Auth.Publish.StaticKeys = []string{"live/fo=" + auth.HashKey(key)}
	})
	primary := testpeer.PublishRTMP(t, s.rtmpURL("fo?key="+key), 120*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "the primary on the air", func() bool { return hasEpoch(t, s, "live/fo", 0) })
	testpeer.PublishPattern(t, s.rtmpURL("fo?key="+key+"&role=backup"), "testsrc=size=640x360:rate=30", "800k", 120*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "the backup connected", func() bool { return backupConnected(t, s) })
	// Refused: a second backup, a backup without the key.
	for _, u := range []string{s.rtmpURL("fo?key=" + key + "&role=backup"), s.rtmpURL("fo?role=backup")} {
		p := testpeer.PublishRTMP(t, u, 5*time.Second, 30)
		if err := p.Wait(t, 10*time.Second); err == nil {
			t.Errorf("%s was not refused", u)
		}
	}
	page := playerPage(t, alwaysOnPlayerPage)
	br := playing(t, page.URL, "hls", s.originURL("/live/fo/index.m3u8"))
	br.do(t, "reset the stalls", time.Second, chromedp.Evaluate[chromedp.Void](`window.stalls = []`))
	killedAt := time.Now()
	before := currentTime(t, br)
	if err := primary.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 5*time.Second, "the backup's first part", func() bool { return hasEpoch(t, s, "live/fo", 1) })
	gap := time.Since(killedAt)
	t.Logf("the backup's first part %v after the SIGKILL of the primary", gap.Round(time.Millisecond))
	if gap > 500*time.Millisecond+time.Second+300*time.Millisecond {
		t.Errorf("the backup's first part came %v after the primary died, want within failover_after + one GOP (1.5 s, +0.3 s of packaging)", gap)
	}
	checkPlayedThrough(t, br, "hls.js", before, 6, 1, 1.0)
	if v := testpeer.MetricSum(t, s.Metrics(), "headwater_stream_failovers_total", "reason", "disconnect"); v != 1 {
		t.Errorf("disconnect failovers = %v, want 1", v)
	}
	if r := get(t, s.originURL("/live/fo/video/index.m3u8")); !strings.Contains(string(r.body), "#EXT-X-DISCONTINUITY") {
		t.Errorf("after the switch the playlist has no discontinuity:\n%s", r.body)
	}

	// The switch reached events.webhook (recording is off: the hook runs anyway).
	testpeer.WaitFor(t, 5*time.Second, "the stream_switched event", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, e := range sink.events {
			if d, ok := e.Data.(map[string]any); ok && e.Event == "stream_switched" && d["stream"] == "live/fo" &&
				d["from"] == "primary" && d["to"] == "backup" && d["reason"] == "disconnect" {
				return true
			}
		}
		return false
	})

	// The primary returns: failback at one of its key frames.
	br.do(t, "reset the stalls", time.Second, chromedp.Evaluate[chromedp.Void](`window.stalls = []`))
	testpeer.PublishRTMP(t, s.rtmpURL("fo?key="+key), 120*time.Second, 30)
	testpeer.WaitMetric(t, s.Metrics(), 1, 10*time.Second, "headwater_stream_failovers_total", "reason", "failback")
	testpeer.WaitFor(t, 5*time.Second, "the primary's parts again", func() bool { return hasEpoch(t, s, "live/fo", 2) })
	snap := videoSnapshot(t, s, "live/fo")
	if snap.Open == nil || snap.Open.Epoch != 2 || !snap.Open.Parts[0].Independent {
		t.Errorf("the primary's first segment after the failback does not start at a key frame: %+v", snap.Open)
	}
	// The failback plays on without an error; its stalls are logged, not
	// bounded (the issue bounds the failover's; one run under load stalled
	// 5.6 s here, see docs/always-on.md).
	checkPlayedThrough(t, br, "hls.js", currentTime(t, br), 4, 100, 30)
}

// TestReconnectWindowWithSlate: streams.reconnect_window 8s with the
// built-in slate. The only publisher dies; for 5 s the slate is on the
// air at the stream's size (ffprobe decodes a slate segment at 640x360),
// and hls.js (low latency) and dash.js (the preview page's) play it; a
// publisher at another size (320x240) comes back within the window:
// discontinuity, a new init, a new DASH Period, and both players go on
// without an error. It dies too: the playlists stay live for the window,
// then get ENDLIST.
func TestReconnectWindowWithSlate(t *testing.T) {
	requireChromium(t)
	s := startServer(t, func(c *config.Config) {
		c.Streams.ReconnectWindow = config.Duration(8 * time.Second)
		c.Streams.Slate = config.SlateBuiltin
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	first := testpeer.PublishRTMP(t, s.rtmpURL("rw"), 120*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "three segments", func() bool {
		snap := videoSnapshot(t, s, "live/rw")
		return snap != nil && len(snap.Segments) >= 3
	})
	page := playerPage(t, alwaysOnPlayerPage)
	hls := playing(t, page.URL, "hls", s.originURL("/live/rw/index.m3u8"))
	dash := playingPreview(t, s, "live/rw", "dash")
	hlsAt, dashAt := currentTime(t, hls), currentTime(t, dash)

	if err := first.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 5*time.Second, "the slate on the air", func() bool { return hasEpoch(t, s, "live/rw", 1) })
	time.Sleep(5 * time.Second)
	if v, _ := testpeer.Metric(t, s.Metrics(), "headwater_streams_on_slate"); v != 1 {
		t.Errorf("headwater_streams_on_slate = %v, want 1", v)
	}
	// A whole slate segment decodes at the stream's size.
	var slateSeg *store.Segment
	snap := videoSnapshot(t, s, "live/rw")
	for _, seg := range snap.Segments {
		if seg.Epoch == 1 {
			slateSeg = seg
		}
	}
	if slateSeg == nil {
		t.Fatalf("no complete slate segment after 5 s: %+v", snap.Segments)
	}
	init := get(t, s.originURL("/live/rw/video/"+slateSeg.InitName))
	media := get(t, s.originURL(fmt.Sprintf("/live/rw/video/seg%d.m4s", slateSeg.MSN)))
	file := filepath.Join(t.TempDir(), "slate.mp4")
	if err := os.WriteFile(file, append(init.body, media.body...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "640,360,") {
		t.Fatalf("ffprobe of the slate segment %d (%s): %v: %s", slateSeg.MSN, slateSeg.InitName, err, out)
	}
	t.Logf("slate segment %d: %s", slateSeg.MSN, strings.TrimSpace(string(out)))

	// Back within the window, at another size.
	second := testpeer.PublishPattern(t, s.rtmpURL("rw"), "testsrc=size=320x240:rate=30", "300k", 120*time.Second, 30)
	testpeer.WaitFor(t, 10*time.Second, "the publisher back", func() bool { return hasEpoch(t, s, "live/rw", 2) })
	testpeer.WaitFor(t, 10*time.Second, "a segment of the publisher back", func() bool {
		snap := videoSnapshot(t, s, "live/rw")
		return len(snap.Segments) > 0 && snap.Segments[len(snap.Segments)-1].Epoch == 2
	})
	pl := string(get(t, s.originURL("/live/rw/video/index.m3u8")).body)
	if strings.Count(pl, "#EXT-X-DISCONTINUITY\n") < 1 || !strings.Contains(pl, "init-2.mp4") {
		t.Errorf("after the republish at 320x240 the playlist has no discontinuity or no third init:\n%s", pl)
	}
	if mpd := string(get(t, s.originURL("/live/rw/manifest.mpd")).body); !strings.Contains(mpd, `<Period id="p1"`) || !strings.Contains(mpd, `<Period id="p2"`) {
		t.Errorf("the MPD does not list the slate's Period and the republish's:\n%s", mpd)
	}
	// Through two switches, each a new init (the slate's, then 320x240):
	// playing on, at most a stall at each.
	checkPlayedThrough(t, hls, "hls.js", hlsAt, 12, 2, 2.0)
	checkPlayedThrough(t, dash, "dash.js", dashAt, 12, 2, 2.0)

	// Gone for good: live through the window (the slate again), then ENDLIST.
	if err := second.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	goneAt := time.Now()
	time.Sleep(4 * time.Second)
	if r := get(t, s.originURL("/live/rw/video/index.m3u8")); r.status != http.StatusOK || strings.Contains(string(r.body), "#EXT-X-ENDLIST") {
		t.Fatalf("ended inside the window: %d\n%s", r.status, r.body)
	}
	testpeer.WaitFor(t, 10*time.Second, "ENDLIST after the window", func() bool {
		return strings.Contains(string(get(t, s.originURL("/live/rw/video/index.m3u8")).body), "#EXT-X-ENDLIST")
	})
	if ended := time.Since(goneAt); ended < 8*time.Second {
		t.Errorf("ENDLIST %v after the publisher left, before the 8 s window", ended)
	}
}

// TestFailoverEncryptedLadder: failovers with AES-128 and the ABR ladder
// on. Only the backup publishes at first: a backup of a name that is not
// live goes on the air. The primary arrives: failback at its key frame.
// The primary dies: the backup again. The backup leaves too (no reconnect
// window): ENDLIST. The 180p rendition's segments switch at the same
// sequence numbers as the source's, and ffmpeg plays the whole encrypted
// multivariant playlist, both switches and the key rotations included,
// without an error. (ffmpeg's HLS reader does not follow a change of
// EXT-X-MAP to another resolution within a variant; players do, see
// TestReconnectWindowWithSlate: so both publishers have the same size.)
func TestFailoverEncryptedLadder(t *testing.T) {
	s, kr := tokenServer(t, func(c *config.Config) {
		c.Streams.FailoverAfter = config.Duration(500 * time.Millisecond)
		c.HLS.Encryption.Enabled = true
		c.HLS.Encryption.RotateSegments = 2
		c.Segmenter.Window = 30
		c.Transcoder.Enabled = true
		c.Transcoder.Ladder = []string{"180p=180:200k"}
	})
	const name = "live/fe"
	backup := testpeer.PublishPattern(t, s.rtmpURL("fe?role=backup"), "testsrc=size=640x360:rate=30", "800k", 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "the backup on the air", func() bool { return hasEpoch(t, s, name, 0) })
	primary := testpeer.PublishRTMP(t, s.rtmpURL("fe"), 60*time.Second, 30)
	testpeer.WaitMetric(t, s.Metrics(), 1, 10*time.Second, "headwater_stream_failovers_total", "reason", "failback")
	testpeer.WaitFor(t, 10*time.Second, "two segments of the primary", func() bool {
		snap := videoSnapshot(t, s, name)
		n := 0
		for _, seg := range snap.Segments {
			if seg.Epoch == 1 {
				n++
			}
		}
		return n >= 2
	})
	if err := primary.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 10*time.Second, "three segments of the backup again", func() bool {
		snap := videoSnapshot(t, s, name)
		n := 0
		for _, seg := range snap.Segments {
			if seg.Epoch == 2 {
				n++
			}
		}
		return n >= 3
	})
	if err := backup.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, 10*time.Second, "ENDLIST", func() bool {
		st, ok := s.Store().Stream(name)
		return ok && !st.Live()
	})

	// The ladder switched at the source's sequence numbers.
	st, _ := s.Store().Stream(name)
	firstOf := func(rend string) map[int]uint64 {
		r, ok := st.Rendition(rend)
		if !ok {
			t.Fatalf("no rendition %s", rend)
		}
		out := map[int]uint64{}
		for _, seg := range r.Snapshot().Segments {
			if _, seen := out[seg.Epoch]; !seen && !seg.Gap {
				out[seg.Epoch] = seg.MSN
			}
		}
		return out
	}
	src, ladder := firstOf("video"), firstOf("180p")
	for e := 1; e <= 2; e++ {
		if src[e] == 0 || ladder[e] != src[e] {
			t.Errorf("epoch %d starts at segment %d in the source and %d in 180p", e, src[e], ladder[e])
		}
	}

	// ffmpeg plays it all, decrypting across the switches.
	mvURL, err := kr.IssueURL(s.originURL(""), name, 5*time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-live_start_index", "0",
		"-i", mvURL, "-map", "0:v", "-map", "0:a", "-f", "framecrc", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg on %s: %v\n%.2000s", mvURL, err, out)
	}
	video := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "0,") {
			video++
		}
		if strings.Contains(line, "rror") {
			t.Errorf("ffmpeg: %s", line)
		}
	}
	if video < 5*30 {
		t.Errorf("ffmpeg decoded %d frames of the first video variant, want at least 5 s", video)
	}
	t.Logf("ffmpeg decoded %d frames of the first video variant across the switches; sequence numbers: source %v, 180p %v", video, src, ladder)
}

// TestBackupWithOtherParameters: a backup at another size than the
// primary's (other codec parameters) is allowed: at the failover the
// video gets a new init section after a discontinuity, and the backup's
// segments decode at its own size.
func TestBackupWithOtherParameters(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Streams.FailoverAfter = config.Duration(500 * time.Millisecond)
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	primary := testpeer.PublishRTMP(t, s.rtmpURL("bp"), 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "the primary on the air", func() bool { return hasEpoch(t, s, "live/bp", 0) })
	testpeer.PublishPattern(t, s.rtmpURL("bp?role=backup"), "testsrc=size=480x270:rate=30", "500k", 60*time.Second, 30)
	testpeer.WaitFor(t, 10*time.Second, "the backup connected", func() bool { return backupConnected(t, s) })
	if err := primary.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var seg *store.Segment
	testpeer.WaitFor(t, 10*time.Second, "a complete segment of the backup", func() bool {
		for _, sg := range videoSnapshot(t, s, "live/bp").Segments {
			if sg.Epoch == 1 {
				seg = sg
				return true
			}
		}
		return false
	})
	if !seg.Discontinuity || seg.InitName != "init-1.mp4" {
		t.Fatalf("the backup's first segment: discontinuity %v, init %s", seg.Discontinuity, seg.InitName)
	}
	init := get(t, s.originURL("/live/bp/video/"+seg.InitName))
	media := get(t, s.originURL(fmt.Sprintf("/live/bp/video/seg%d.m4s", seg.MSN)))
	file := filepath.Join(t.TempDir(), "backup.mp4")
	if err := os.WriteFile(file, append(init.body, media.body...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "480,270" {
		t.Fatalf("ffprobe of the backup's segment %d: %v: %s", seg.MSN, err, out)
	}
}

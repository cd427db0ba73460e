package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/recording"
)

// dvrPlayerPage plays ?src= with hls.js (?player=hls) or dash.js
// (?player=dash), recording fatal errors.
const dvrPlayerPage = `<!doctype html>
<html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script src="/dash.all.min.js"></script>
<script>
window.errors = [];
const q = new URLSearchParams(location.search);
const video = document.getElementById('v');
if (q.get('player') === 'dash') {
  const p = dashjs.MediaPlayer().create();
  window.player = p;
  p.updateSettings({streaming: {delay: {liveDelay: 4}}});
  p.on(dashjs.MediaPlayer.events.ERROR, e => window.errors.push(JSON.stringify(e.error || e)));
  p.initialize(video, q.get('src'), true);
} else {
  const hls = new Hls({lowLatencyMode: false});
  window.player = hls;
  hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.errors.push(d.type + ' ' + d.details); });
  hls.loadSource(q.get('src'));
  hls.attachMedia(video);
}
video.play().catch(() => {});
</script>
</body></html>`

// TestRecordingDVR rewinds a recorded live stream (dvr.window 5m, 1 s
// segments, a publisher sending 4x faster than real time so that minutes
// of media exist after seconds): the DVR media playlist lists the whole
// window from segment 0, far past the live playlist's six; segment 0,
// gone from memory, is served from the recording with the live media
// headers and the recorded bytes; the MPD's timeShiftBufferDepth covers
// the window. hls.js on dvr.m3u8 and dash.js on the MPD each seek 60 s
// behind the live edge and play on from there, fetching segments that
// only the recording holds, with no fatal error.
func TestRecordingDVR(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	requireChromium(t)
	dir := t.TempDir()
	s := startServer(t, func(c *config.Config) {
		c.Record.Enabled, c.Record.Dir = true, dir
		c.Record.PosterInterval = 0
		c.DVR.Window = config.Duration(5 * time.Minute)
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	testpeer.StartProcess(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-readrate", "4",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "400", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-b:v", "300k", "-c:a", "aac", "-b:a", "64k",
		"-f", "flv", s.rtmpURL("dvr"))

	liveFirst := func() uint64 {
		m, _ := mediaPlaylist(t, s.originURL("/live/dvr/video/index.m3u8"))
		return uint64(m.MediaSequence)
	}
	testpeer.WaitFor(t, 60*time.Second, "80 s of media", func() bool {
		r := get(t, s.originURL("/live/dvr/video/index.m3u8"))
		return r.status == http.StatusOK && liveFirst() >= 75
	})
	dvr, r := mediaPlaylist(t, s.originURL("/live/dvr/video/dvr.m3u8"))
	if dvr.MediaSequence != 0 || len(dvr.Segments) < 80 || dvr.Endlist || len(dvr.Parts) != 0 {
		t.Fatalf("DVR playlist from %d, %d segments, endlist %v, %d parts:\n%s", dvr.MediaSequence, len(dvr.Segments), dvr.Endlist, len(dvr.Parts), r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=1" {
		t.Errorf("DVR playlist Cache-Control %q", cc)
	}
	mv := get(t, s.originURL("/live/dvr/dvr.m3u8"))
	if pl, err := playlist.Unmarshal(mv.body); err != nil || len(pl.(*playlist.Multivariant).Variants) != 1 ||
		pl.(*playlist.Multivariant).Variants[0].URI != "video/dvr.m3u8" {
		t.Fatalf("DVR multivariant: %v\n%s", err, mv.body)
	}

	// Segment 0 left memory long ago: it comes from the recording.
	var list struct{ Recordings []recording.Payload }
	decodeJSON(t, get(t, s.adminURL("/api/v1/recordings?stream=live/dvr")).body, &list)
	if len(list.Recordings) != 1 || list.Recordings[0].State != recording.StateRecording {
		t.Fatalf("recordings %+v", list)
	}
	seg0 := get(t, s.originURL("/live/dvr/video/seg0.m4s"))
	want, err := os.ReadFile(filepath.Join(dir, recording.MediaKey("live/dvr", list.Recordings[0].Session, "video", "seg0.m4s")))
	if err != nil {
		t.Fatal(err)
	}
	if seg0.status != http.StatusOK || string(seg0.body) != string(want) || seg0.header.Get("Content-Type") != "video/mp4" ||
		seg0.header.Get("Cache-Control") != "public, max-age=86400, immutable" {
		t.Fatalf("seg0 from the recording: %d, %d bytes (recorded %d), %v", seg0.status, len(seg0.body), len(want), seg0.header)
	}
	mpd := get(t, s.originURL("/live/dvr/manifest.mpd"))
	m := regexp.MustCompile(`timeShiftBufferDepth="PT(?:(\d+)M)?(\d+)(?:\.\d+)?S"`).FindSubmatch(mpd.body)
	if m == nil {
		t.Fatalf("MPD %d without timeShiftBufferDepth:\n%.3000s", mpd.status, mpd.body)
	}
	mins, _ := strconv.Atoi(string(m[1]))
	if secs, _ := strconv.Atoi(string(m[2])); 60*mins+secs < 75 {
		t.Errorf("timeShiftBufferDepth %dm%ds, want the DVR window's 75 s or more", mins, secs)
	}

	page := playerPage(t, dvrPlayerPage)
	segNum := regexp.MustCompile(`/live/dvr/video/seg(\d+)\.m4s$`)
	for _, tc := range []struct {
		player, src, seekBack string
	}{
		{"hls", "/live/dvr/dvr.m3u8", `v.currentTime = v.seekable.end(0) - 60`},
		{"dash", "/live/dvr/manifest.mpd", `window.player.seek(window.player.getDvrWindow().size - 60)`},
	} {
		br := startBrowser(t)
		br.do(t, tc.player+" plays the live stream", 30*time.Second,
			chromedp.Navigate(page.URL+"/?player="+tc.player+"&src="+url.QueryEscape(s.originURL(tc.src))),
			chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 0`,
				chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
		inMemory := liveFirst()
		br.do(t, tc.player+" seeks 60 s back", 5*time.Second,
			chromedp.Evaluate[chromedp.Void](`const v = document.getElementById('v'); `+tc.seekBack))
		target := evalJS[float64](t, br, `document.getElementById('v').currentTime`)
		br.do(t, tc.player+" plays 2 s from 60 s back", 30*time.Second,
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('v').currentTime > %f && document.getElementById('v').currentTime < %f`, target+2, target+20),
				chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
		old := 0
		br.mu.Lock()
		for _, u := range br.requests {
			if m := segNum.FindStringSubmatch(u); m != nil {
				if n, _ := strconv.ParseUint(m[1], 10, 64); n < inMemory {
					old++
				}
			}
		}
		br.mu.Unlock()
		if old == 0 {
			t.Errorf("%s fetched no segment older than the store's window (from %d): the seek did not reach the recording", tc.player, inMemory)
		}
		if errs := evalJS[[]string](t, br, `window.errors`); len(errs) > 0 {
			t.Errorf("%s errors: %v", tc.player, errs)
		}
	}
}

// decodeJSON decodes an API body into v.
func decodeJSON(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

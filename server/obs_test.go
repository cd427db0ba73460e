package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
)

// obsHeadwater is a Headwater on fixed addresses, so that another one can
// take its place, with publish auth on: live/obs publishes with studioKey.
type obsHeadwater struct {
	*testServer
	once sync.Once
}

func startOBSHeadwater(t *testing.T, rtmpAddr, originAddr string) *obsHeadwater {
	t.Helper()
	cfg := config.Default()
	cfg.RTMP.Address, cfg.Origin.Address, cfg.Admin.Address = rtmpAddr, originAddr, "127.0.0.1:0"
	cfg.SRT.Address, cfg.RTSP.Address = "", ""
	cfg.Log.Level = "debug"
	cfg.Shutdown.Drain = 0
	cfg.Auth.Publish.StaticKeys = []string{"live/obs=" + auth.HashKey(studioKey)}
	logs := &testpeer.LogBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	h := &obsHeadwater{testServer: &testServer{Server: srv, logs: logs}}
	t.Cleanup(func() {
		h.stop(t)
		if t.Failed() {
			t.Logf("server log (%s):\n%s", rtmpAddr, logs.String())
		}
	})
	return h
}

// stop shuts the server down (once).
func (h *obsHeadwater) stop(t *testing.T) {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// obsVariant waits for the multivariant playlist of live/obs to list its
// video with the audio (a multivariant fetched right after the publish
// may list the video alone: the audio rendition is left out until its
// init section exists) and returns its one variant.
func obsVariant(t *testing.T, h *obsHeadwater) *playlist.MultivariantVariant {
	t.Helper()
	var (
		mv        *playlist.Multivariant
		videoOnly int
	)
	testpeer.WaitFor(t, 15*time.Second, "the multivariant playlist of live/obs with video and audio", func() bool {
		r := get(t, h.originURL("/live/obs/index.m3u8"))
		if r.status != http.StatusOK {
			return false
		}
		pl, err := playlist.Unmarshal(r.body)
		if err != nil {
			t.Fatalf("multivariant playlist: %v\n%s", err, r.body)
		}
		mv, _ = pl.(*playlist.Multivariant)
		if mv == nil || len(mv.Variants) != 1 {
			t.Fatalf("not a multivariant playlist of one variant:\n%s", r.body)
		}
		if len(mv.Variants[0].Codecs) < 2 {
			videoOnly++
			return false
		}
		return true
	})
	if videoOnly > 0 {
		t.Logf("%d multivariant playlists listed the video alone before the audio was in", videoOnly)
	}
	return mv.Variants[0]
}

// TestOBSPublishesPlaysAndReconnects runs OBS Studio itself (Debian's
// obs-studio under xvfb-run, testpeer.StartOBS: docs/obs.md's settings,
// 1280x720 at 30 fps, x264 CBR 2500 kb/s with 2 s key frames, AAC) against
// Headwater with publish auth on, the static key in the stream key's query.
// For 20 s of streaming: the multivariant lists H.264 and AAC-LC at
// 1280x720; segments last the keyframe interval; hls.js in headless
// Chromium plays it (currentTime keeps up with the clock, at most 4 s of
// stalls, no fatal error);
// OBS logs its x264 settings, no handshake warning and no disconnection.
// Then Headwater shuts down: OBS logs that it is reconnecting, first after
// the Retry Delay (2 s), and its attempt fails; a new Headwater on the same
// ports takes over and OBS reconnects by itself, within its retry window:
// live/obs is live again there, its playlists growing.
func TestOBSPublishesPlaysAndReconnects(t *testing.T) {
	testpeer.NeedOBS(t)
	requireChromium(t)
	requireFFmpeg(t)
	begin := time.Now()
	rtmpAddr, originAddr := testpeer.FreeAddr(t), testpeer.FreeAddr(t)
	first := startOBSHeadwater(t, rtmpAddr, originAddr)
	rtmpURL := "rtmp://" + rtmpAddr + "/live"
	obs := testpeer.StartOBS(t, rtmpURL, "obs?key="+studioKey)
	br := startBrowser(t) // while OBS starts
	testpeer.WaitLog(t, obs, "==== Streaming Start", 30*time.Second)
	streaming := time.Now()
	t.Logf("OBS streaming %.1fs after its start", streaming.Sub(begin).Seconds())

	v := obsVariant(t, first)
	if len(v.Codecs) != 2 || !strings.HasPrefix(v.Codecs[0], "avc1.") || v.Codecs[1] != "mp4a.40.2" {
		t.Errorf("CODECS = %q, want avc1.* and mp4a.40.2", v.Codecs)
	}
	if want := fmt.Sprintf("%dx%d", testpeer.OBSWidth, testpeer.OBSHeight); v.Resolution != want {
		t.Errorf("RESOLUTION = %q, want %s", v.Resolution, want)
	}

	page := playerPage(t, edgePlayerPage)
	pageURL := page.URL + "/?src=" + url.QueryEscape(first.originURL("/live/obs/index.m3u8"))
	br.do(t, "open "+pageURL+" and start playing", 20*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 0`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	playFrom, playAt := evalJS[float64](t, br, `document.getElementById('v').currentTime`), time.Now()

	// OBS streams for 20 s in all.
	time.Sleep(time.Until(streaming.Add(20 * time.Second)))
	played, wall := evalJS[float64](t, br, `document.getElementById('v').currentTime`)-playFrom, time.Since(playAt).Seconds()
	t.Logf("hls.js played %.1fs of video in %.1fs", played, wall)
	if played < wall-4 {
		t.Errorf("hls.js played %.1fs of video in %.1fs: it stalled", played, wall)
	}
	for _, e := range evalJS[[]pageError](t, br, `window.hlsErrors`) {
		if e.Fatal {
			t.Errorf("hls.js fatal error: %+v", e)
		} else {
			t.Logf("hls.js non-fatal error: %+v", e)
		}
	}
	video, _ := mediaPlaylist(t, first.originURL("/live/obs/video/index.m3u8"))
	if len(video.Segments) < 5 {
		t.Errorf("%d segments after 20 s of streaming, want at least 5", len(video.Segments))
	}
	for i, seg := range video.Segments {
		if d := seg.Duration.Seconds(); d < testpeer.OBSKeyframeInterval-0.05 || d > testpeer.OBSKeyframeInterval+0.05 {
			t.Errorf("segment %d lasts %.3fs, want the keyframe interval (%ds)", video.MediaSequence+i, d, testpeer.OBSKeyframeInterval)
		}
	}

	log := obs.Log()
	for _, want := range []string{`tune: zerolatency`, `rate_control: CBR`, `bitrate:\s+2500\b`, `keyint:\s+60\b`, `scenecut = 0`,
		`Connection to ` + regexp.QuoteMeta(rtmpURL) + ` successful`} {
		if !regexp.MustCompile(want).MatchString(log) {
			t.Errorf("OBS's log has no %q", want)
		}
	}
	if strings.Contains(log, "HandShake:") {
		t.Errorf("OBS logged handshake warnings:\n%s", grepLines(log, "HandShake:"))
	}
	if strings.Contains(strings.ToLower(log), "disconnected") {
		t.Errorf("OBS logged a disconnection while Headwater was up:\n%s", grepLines(strings.ToLower(log), "disconnected"))
	}

	// Headwater goes away: OBS retries after 2 s, fails, and waits longer.
	first.stop(t)
	stopped := time.Now()
	testpeer.WaitLog(t, obs, fmt.Sprintf("Reconnecting in %d.00 seconds", testpeer.OBSRetryDelay), 10*time.Second)
	testpeer.WaitFor(t, 15*time.Second, "OBS's first reconnect attempt to fail", func() bool {
		return strings.Count(obs.Log(), "Reconnecting in") >= 2
	})
	second := startOBSHeadwater(t, rtmpAddr, originAddr)
	successes := func() int { return strings.Count(obs.Log(), "Connection to "+rtmpURL+" successful") }
	testpeer.WaitFor(t, 30*time.Second, "OBS to reconnect by itself", func() bool { return successes() == 2 })
	t.Logf("OBS reconnected %.1fs after Headwater stopped:\n%s", time.Since(stopped).Seconds(),
		grepLines(obs.Log(), "Reconnecting in", "Disconnected", "offline", "Connection to"))

	if v2 := obsVariant(t, second); !slices.Equal(v2.Codecs, v.Codecs) || v2.Resolution != v.Resolution {
		t.Errorf("after the reconnect: CODECS = %q, RESOLUTION = %s; before: %q, %s", v2.Codecs, v2.Resolution, v.Codecs, v.Resolution)
	}
	videoURL := second.originURL("/live/obs/video/index.m3u8")
	var firstSeen int
	testpeer.WaitFor(t, 15*time.Second, "live/obs's video playlist on the new Headwater", func() bool {
		if get(t, videoURL).status != http.StatusOK {
			return false
		}
		m, _ := mediaPlaylist(t, videoURL)
		firstSeen = m.MediaSequence + len(m.Segments)
		return len(m.Segments) > 0
	})
	testpeer.WaitFor(t, 3*testpeer.OBSKeyframeInterval*time.Second, "a new segment from the reconnected OBS", func() bool {
		m, _ := mediaPlaylist(t, videoURL)
		return m.MediaSequence+len(m.Segments) > firstSeen && !m.Endlist
	})
	log = obs.Log()
	if strings.Contains(log, "HandShake:") {
		t.Errorf("OBS logged handshake warnings:\n%s", grepLines(log, "HandShake:"))
	}
	if n := strings.Count(log, "Disconnected from "+rtmpURL); n != 1 {
		t.Errorf("OBS logged %d disconnections, want 1 (Headwater's shutdown):\n%s", n, grepLines(log, "Disconnected"))
	}
	obs.Stop(t)
	t.Logf("OBS test: %.1fs", time.Since(begin).Seconds())
}

// grepLines returns the lines of log that contain any of substrs.
func grepLines(log string, substrs ...string) string {
	var out []string
	for line := range strings.SplitSeq(log, "\n") {
		for _, s := range substrs {
			if strings.Contains(line, s) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

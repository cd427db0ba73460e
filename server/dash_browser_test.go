package server_test

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

type dashPageStats struct {
	pageStats
	Format       *string  `json:"format"`
	LowLatency   *bool    `json:"lowLatency"`
	PlaybackRate *float64 `json:"playbackRate"`
}

// TestDASHPreviewPlaysInChromium opens the preview page with
// ?stream=...&format=dash in headless Chromium for a live RTMP publish
// (1s segments, 200ms parts): dash.js plays the low-latency MPD from the
// origin (segments at the live edge arrive chunk by chunk), the video
// advances by ten seconds of media with no error, and the live latency
// dash.js reports is logged. The HLS/DASH switch then moves the same page
// to hls.js.
func TestDASHPreviewPlaysInChromium(t *testing.T) {
	requireChromium(t)
	s := startServer(t, func(c *config.Config) {
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		c.SRT.Address, c.RTSP.Address = "", "" // RTMP only: no fixed ports
	})
	testpeer.PublishRTMP(t, s.rtmpURL("dashpreview"), 40*time.Second, 30)
	b := startBrowser(t) // starts while the first segments are cut

	// Join a stream that has been running for a few segments, as viewers
	// do: dash.js caps its target latency at the MPD's
	// timeShiftBufferDepth (the window of complete segments) when it
	// starts, so a player starting on the first segment would aim below
	// the ServiceDescription's target for good.
	testpeer.WaitFor(t, 15*time.Second, "the MPD with three complete segments", func() bool {
		st, ok := s.Store().Stream("live/dashpreview")
		if !ok {
			return false
		}
		for _, r := range st.Renditions() {
			if len(r.Snapshot().Segments) < 3 {
				return false
			}
		}
		return get(t, s.originURL("/live/dashpreview/manifest.mpd")).status == http.StatusOK
	})
	pageURL := s.adminURL("/?stream=live/dashpreview&format=dash")
	b.do(t, "open "+pageURL+" and see the stream listed", 10*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(`#streams tr[data-stream="live/dashpreview"]`),
	)
	b.do(t, "playback to start", 15*time.Second,
		chromedp.Poll[chromedp.Void](`document.querySelector('video').currentTime > 0`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	start := evalJS[float64](t, b, `document.querySelector('video').currentTime`)
	wallStart := time.Now()

	// Sample dash.js's latency while ten seconds of media play.
	var latencies []float64
	deadline := time.Now().Add(16 * time.Second)
	for {
		cur := evalJS[float64](t, b, `document.querySelector('video').currentTime`)
		st := evalJS[dashPageStats](t, b, `window.__headwaterStats`)
		if st.Latency != nil && *st.Latency > 0 {
			latencies = append(latencies, *st.Latency)
		}
		if cur >= start+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("currentTime advanced %.2fs in %s\n%s", cur-start, time.Since(wallStart).Round(time.Millisecond), b.state())
		}
		time.Sleep(500 * time.Millisecond)
	}
	wall := time.Since(wallStart)
	stats := evalJS[dashPageStats](t, b, `window.__headwaterStats`)
	if stats.Format == nil || *stats.Format != "dash" || stats.Engine != "dash.js v5.2.1" && stats.Engine != "dash.js 5.2.1" ||
		stats.LowLatency == nil || !*stats.LowLatency || stats.Level == nil || !strings.HasPrefix(*stats.Level, "360p") {
		t.Errorf("page stats: %+v format %v low latency %v", stats.pageStats, deref(stats.Format), stats.LowLatency)
	}
	if len(latencies) == 0 {
		t.Fatalf("dash.js reported no live latency\n%s", b.state())
	}
	sorted := append([]float64(nil), latencies...)
	sort.Float64s(sorted)
	last := latencies[len(latencies)-1]
	target := 0.0
	if stats.TargetLatency != nil {
		target = *stats.TargetLatency
	}
	rate := 1.0
	if stats.PlaybackRate != nil {
		rate = *stats.PlaybackRate
	}
	t.Logf("dash.js low-latency playback: 10s of media in %s; live latency median %.2fs, min %.2fs, max %.2fs, last %.2fs (target %.2fs, %d samples); playback rate %.2f, buffer %.2fs, level %s",
		wall.Round(time.Millisecond), sorted[len(sorted)/2], sorted[0], sorted[len(sorted)-1], last, target, len(sorted), rate, stats.Buffer, deref(stats.Level))
	// The MPD's target is 1.5s (three 200ms parts, floored); a loaded
	// machine decoding in software may lag behind it for a while.
	if target <= 0 || target > 2 {
		t.Errorf("dash.js target latency %.2fs, want the MPD's (at most 2s)", target)
	}
	if median := sorted[len(sorted)/2]; median > 4 {
		t.Errorf("median live latency %.2fs: not low latency", median)
	}
	if !evalJS[bool](t, b, `document.getElementById('format-dash').checked`) {
		t.Error("the DASH switch is not on")
	}
	checkPageErrors(t, b)

	// Only the admin listener and the origin were asked for anything; the
	// origin served the MPD, the clock and segments.
	allowed := map[string]bool{s.AdminAddr().String(): true, s.OriginAddr().String(): true}
	b.mu.Lock()
	requests := append([]string(nil), b.requests...)
	b.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range requests {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "data" && u.Scheme != "blob" && !allowed[u.Host]) {
			t.Errorf("the page requested %s, outside the admin listener and the origin", r)
			continue
		}
		switch p := u.Path; {
		case strings.HasSuffix(p, "/manifest.mpd"):
			seen["mpd"] = true
		case strings.HasSuffix(p, "/time"):
			seen["time"] = true
		case strings.HasSuffix(p, ".m4s"):
			seen["segment"] = true
		case strings.HasSuffix(p, "/dash.all.min.js"):
			seen["dash.js"] = true
		}
	}
	for _, want := range []string{"mpd", "time", "segment", "dash.js"} {
		if !seen[want] {
			t.Errorf("no %s request among %d", want, len(requests))
		}
	}

	// The switch: the same stream over HLS, the address following.
	b.do(t, "switch to HLS and play", 15*time.Second,
		chromedp.Click(`label[for="format-hls"]`),
		chromedp.Poll[chromedp.Void](`window.__headwaterStats.engine && window.__headwaterStats.engine.startsWith('hls.js ') &&
			window.__headwaterStats.format === 'hls' && document.querySelector('video').currentTime > 0 && !document.querySelector('video').paused`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if loc := evalJS[string](t, b, `location.search`); strings.Contains(loc, "format=") || !strings.Contains(loc, "stream=live/dashpreview") {
		t.Errorf("location after switching to HLS: %q", loc)
	}
	if u := evalJS[string](t, b, `document.getElementById('stream-url').textContent`); !strings.HasSuffix(u, "/live/dashpreview/index.m3u8") {
		t.Errorf("source after switching to HLS: %q", u)
	}
	checkPageErrors(t, b)
	t.Logf("screenshot: %s", takeScreenshot(t, b))
}

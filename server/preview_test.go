package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// requireChromium fails t unless Chromium (or Chrome) is in PATH or set
// with $CHROMIUM: the preview tests play the page in it.
func requireChromium(t *testing.T) {
	t.Helper()
	testpeer.Chromium(t)
}

// browser is a headless Chromium tab with what the page did recorded.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	requests []string // every URL the page requested
	console  []string // console errors, warnings and uncaught exceptions
}

// startBrowser launches headless Chromium with a fresh profile. It is
// stopped (and waited for) before the test's temporary directories go.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	profile := t.TempDir()
	var output testpeer.LogBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(testpeer.Chromium(t)),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Containers often have a small /dev/shm; a hidden tab must not be throttled.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&output),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills Chromium and waits for it
		if t.Failed() {
			t.Logf("chromium output:\n%s", output.String())
		}
	})
	b := &browser{ctx: ctx}
	// The first Run starts the browser: no timeout on it (that would bound
	// the browser's whole life), so a watchdog fails a hung start instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v\n%s", err, output.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("chromium did not start within 20s\n%s", output.String())
	}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			b.console = append(b.console, fmt.Sprintf("exception: %s (%s:%d)", text, d.URL, d.LineNumber+1))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					if len(a.Value) > 0 {
						args = append(args, string(a.Value))
					} else {
						args = append(args, a.Description)
					}
				}
				b.console = append(b.console, string(e.Type)+": "+strings.Join(args, " "))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(t *testing.T, what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b.state())
	}
}

func evalJS[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v\n%s", expr, err, b.state())
	}
	return v
}

// state describes the page for a failure message.
func (b *browser) state() string {
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		errors: window.__headwaterErrors, stats: window.__headwaterStats,
		message: document.getElementById('player-message') && document.getElementById('player-message').textContent,
		error: document.getElementById('player-error') && document.getElementById('player-error').textContent,
		streams: document.getElementById('streams') && document.getElementById('streams').innerText,
		location: location.href}, null, 1)`))
	if err != nil {
		page = "(page state unavailable: " + err.Error() + ")"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("page: %s\nconsole:\n  %s\nrequests: %d", page, strings.Join(b.console, "\n  "), len(b.requests))
}

type pageError struct {
	Source  string `json:"source"`
	Type    string `json:"type"`
	Details string `json:"details"`
	Fatal   bool   `json:"fatal"`
}

type pageStats struct {
	Stream        string   `json:"stream"`
	CurrentTime   float64  `json:"currentTime"`
	Latency       *float64 `json:"latency"`
	TargetLatency *float64 `json:"targetLatency"`
	Level         *string  `json:"level"`
	Buffer        float64  `json:"buffer"`
	Engine        string   `json:"engine"`
}

// TestPreviewPagePlaysInChromium opens the admin listener's preview page in
// headless Chromium with ?stream= for a live RTMP publish: the page lists
// the stream, hls.js plays it from the origin (the video's currentTime
// advances in real time) with no fatal error and no request outside the
// admin listener and the origin, and the page says so when the publisher is
// kicked.
func TestPreviewPagePlaysInChromium(t *testing.T) {
	requireChromium(t)
	s := startServer(t, func(c *config.Config) {
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	pub := testpeer.PublishRTMP(t, s.rtmpURL("preview"), 40*time.Second, 30)
	b := startBrowser(t) // starts while the first segments are cut

	type apiStream struct {
		Name       string `json:"name"`
		Live       bool   `json:"live"`
		Renditions []struct {
			Segments int `json:"segments"`
		} `json:"renditions"`
	}
	testpeer.WaitFor(t, 15*time.Second, "live/preview with a segment in each rendition", func() bool {
		var list struct{ Streams []apiStream }
		if err := json.Unmarshal(get(t, s.adminURL("/api/v1/streams")).body, &list); err != nil || len(list.Streams) != 1 {
			return false
		}
		st := list.Streams[0]
		return st.Live && len(st.Renditions) == 2 && st.Renditions[0].Segments > 0 && st.Renditions[1].Segments > 0
	})

	pageURL := s.adminURL("/?stream=live/preview")
	row := chromedp.CSS(`#streams tr[data-stream="live/preview"]`)
	b.do(t, "open "+pageURL+" and see the stream listed", 10*time.Second,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(row),
	)
	rowText := evalJS[string](t, b, `document.querySelector('#streams tr[data-stream="live/preview"]').innerText`)
	for _, want := range []string{"live/preview", "RTMP", "640×360"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("stream row %q lacks %q", rowText, want)
		}
	}

	b.do(t, "playback to start", 15*time.Second,
		chromedp.Poll[chromedp.Void](`document.querySelector('video').currentTime > 0`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	start := evalJS[float64](t, b, `document.querySelector('video').currentTime`)
	wallStart := time.Now()
	b.do(t, "currentTime to advance by 3 s", 8*time.Second,
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('video').currentTime >= %f`, start+3),
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	advanced := evalJS[float64](t, b, `document.querySelector('video').currentTime`) - start
	wall := time.Since(wallStart)
	t.Logf("video currentTime advanced %.2fs in %s of wall time", advanced, wall.Round(time.Millisecond))

	stats := evalJS[pageStats](t, b, `window.__headwaterStats`)
	if stats.Latency == nil || *stats.Latency <= 0 {
		t.Errorf("hls.js reported no latency: %+v", stats)
	} else {
		target := 0.0
		if stats.TargetLatency != nil {
			target = *stats.TargetLatency
		}
		t.Logf("hls.js latency %.2fs (target %.2fs), buffer %.2fs, level %v, %s", *stats.Latency, target, stats.Buffer, deref(stats.Level), stats.Engine)
	}
	if stats.Stream != "live/preview" || !strings.HasPrefix(stats.Engine, "hls.js ") || stats.Level == nil || !strings.HasPrefix(*stats.Level, "360p") {
		t.Errorf("page stats: %+v", stats)
	}
	checkPageErrors(t, b)

	// The layout fits the 1280 px window: no horizontal scrolling.
	if w := evalJS[[]int](t, b, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
		t.Errorf("page is %d px wide in a %d px window", w[0], w[1])
	}
	shot := takeScreenshot(t, b)

	// Only the admin listener and the origin were asked for anything.
	allowed := map[string]bool{s.AdminAddr().String(): true, s.OriginAddr().String(): true}
	b.mu.Lock()
	requests := append([]string(nil), b.requests...)
	b.mu.Unlock()
	var sawOrigin bool
	for _, r := range requests {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "data" && u.Scheme != "blob" && !allowed[u.Host]) {
			t.Errorf("the page requested %s, outside the admin listener and the origin", r)
		}
		if u != nil && u.Host == s.OriginAddr().String() {
			sawOrigin = true
		}
	}
	if !sawOrigin {
		t.Errorf("no request to the origin among %d", len(requests))
	}

	// Kick the publisher: the page tells the viewer the stream ended.
	req, _ := http.NewRequest(http.MethodDelete, s.adminURL("/api/v1/streams/live/preview"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_ = pub.Wait(t, 10*time.Second)
	b.do(t, "the page to show the stream ended", 8*time.Second,
		chromedp.Poll[chromedp.Void](`/Stream ended/.test(document.getElementById('player-message').textContent) &&
			/ended/i.test(document.querySelector('#streams tr[data-stream="live/preview"]').innerText)`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	checkPageErrors(t, b)
	t.Logf("screenshot: %s", shot)
}

// checkPageErrors fails on any fatal error the page recorded (hls.js fatal
// errors, CSP violations, uncaught exceptions) and logs the others.
func checkPageErrors(t *testing.T, b *browser) {
	t.Helper()
	errs := evalJS[[]pageError](t, b, `window.__headwaterErrors || []`)
	for _, e := range errs {
		if e.Fatal {
			t.Errorf("page error: %+v\n%s", e, b.state())
		} else {
			t.Logf("non-fatal page error: %+v", e)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.console {
		if strings.HasPrefix(c, "exception: ") {
			t.Errorf("uncaught exception in the page: %s", c)
		}
	}
}

// takeScreenshot saves the page as a PNG in the test's temporary directory,
// and also to $HEADWATER_PREVIEW_SCREENSHOT when that is set.
func takeScreenshot(t *testing.T, b *browser) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	path := filepath.Join(t.TempDir(), "preview.png")
	if extra := os.Getenv("HEADWATER_PREVIEW_SCREENSHOT"); extra != "" {
		path = extra
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	return path
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// playerPage serves page at "/" and the players vendored in
// preview/assets (hls.min.js, dash.all.min.js) beside it, on a test
// server of another origin than Headwater's (so the players go through
// CORS), closed when the test ends.
func playerPage(t *testing.T, page string) *httptest.Server {
	t.Helper()
	assets := filepath.Join(testpeer.RepoRoot(t), "preview", "assets")
	for _, f := range []string{"hls.min.js", "dash.all.min.js"} {
		if _, err := os.Stat(filepath.Join(assets, f)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, page)
		case "/hls.min.js", "/dash.all.min.js":
			http.ServeFile(w, r, filepath.Join(assets, r.URL.Path))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

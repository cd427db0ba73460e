package dash

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/store"
)

// TestBrowserPlayers plays live MPDs in headless Chromium with dash.js and
// Shaka Player, fed in real time with real CMAF segments: a live stream, the
// same in low-latency mode (parts appended and served as they are written)
// and a republish after a 3s outage (a second Period).
//
// dash.js is the build the preview page ships (preview/assets, or $DASHJS);
// Shaka is the npm package shaka-player that scripts/test.sh installs at the
// version scripts/players/package-lock.json pins into .cache/players (or
// $SHAKA). Chromium is found in PATH (or $CHROMIUM). Each is required.
func TestBrowserPlayers(t *testing.T) {
	chromium := testpeer.Chromium(t)
	players := map[string]string{
		"dashjs": dashJSBuild(t),
		"shaka":  testpeer.PlayerFile(t, "SHAKA", "shaka-player/dist/shaka-player.compiled.js"),
	}
	fm := encodeMedia(t, 40, 500)
	for _, player := range []string{"dashjs", "shaka"} {
		js := players[player]
		for _, tc := range []struct {
			name string
			ll   bool
			down time.Duration // outage after segment 5, 0 for none
		}{
			{name: "live"},
			{name: "lowlatency", ll: true},
			{name: "republish", down: 3 * time.Second},
		} {
			t.Run(player+"/"+tc.name, func(t *testing.T) {
				playLive(t, chromium, player, js, fm, tc.ll, tc.down)
			})
		}
	}
}

// dashJSBuild is $DASHJS, or the dash.js build vendored for the preview
// page.
func dashJSBuild(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DASHJS"); p != "" {
		return p
	}
	p := filepath.Join(testpeer.RepoRoot(t), "preview", "assets", "dash.all.min.js")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("dash.js build: %v", err)
	}
	return p
}

type playerReport struct {
	Time     float64  `json:"t"`
	Paused   bool     `json:"paused"`
	Ready    int      `json:"ready"`
	Latency  float64  `json:"latency"`
	LL       bool     `json:"ll"`
	Errors   []string `json:"errors"`
	Buffered float64  `json:"buffered"`
	Wall     float64  `json:"wall"` // ms since the epoch
}

func playLive(t *testing.T, chromium, player, js string, fm *ffmpegMedia, ll bool, down time.Duration) {
	const (
		startAt   = 4  // segments available when the player starts
		republish = 6  // first segment of the second publish
		watch     = 24 // seconds of wall clock to watch
	)
	st := store.New(store.Config{Window: 6})
	stream := st.Begin("live/test")
	srv := &ffmpegOrigin{rends: map[string]*store.Rendition{}, names: []string{"video", "audio"}}
	ids := map[string]string{"video": "0", "audio": "1"}
	add := func(s *store.Stream) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, n := range srv.names {
			info := fm.info[ids[n]]
			info.Name, info.PartTarget = n, 500*time.Millisecond
			r := s.AddRendition(info)
			r.SetInit(info, fm.init[ids[n]])
			srv.rends[n] = r
		}
	}
	add(stream)
	ast := time.Now().Add(-startAt * 2 * time.Second).Truncate(time.Millisecond)
	srv.o = Options{AvailabilityStart: ast, Window: 6, LowLatency: ll, UTCTimingURL: "/live/test/time", History: new(History)}

	// The feeder writes each part when its media would have been received.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fed sync.WaitGroup
	fed.Add(1)
	go func() {
		defer fed.Done()
		sleepUntil := func(at time.Time) bool {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Until(at)):
				return true
			}
		}
		for i := range len(fm.segs["0"]) {
			off := time.Duration(0)
			if down > 0 && i >= republish {
				off = down
				if i == republish {
					stream.End()
					if !sleepUntil(ast.Add(off + store.TicksToDuration(fm.segs["0"][i].t, fm.info["0"].Timescale))) {
						return
					}
					stream = st.Begin("live/test")
					add(stream)
				}
			}
			var segs []ffmpegSeg
			for _, n := range srv.names {
				segs = append(segs, fm.segs[ids[n]][i])
			}
			for j, n := range srv.names {
				ts := fm.info[ids[n]].Timescale
				if _, err := srv.rends[n].StartSegment(ast.Add(off+store.TicksToDuration(segs[j].t, ts)), segs[j].t); err != nil {
					t.Error(err)
					return
				}
			}
			nparts := len(segs[0].parts)
			for k := range nparts {
				end := store.TicksToDuration(segs[0].t+segs[0].d*uint64(k+1)/uint64(nparts), fm.info["0"].Timescale)
				if !sleepUntil(ast.Add(off + end)) {
					return
				}
				for j, n := range srv.names {
					ps := segs[j].parts
					// Audio fragments do not line up with video ones: hand
					// them out in proportion.
					from, to := len(ps)*k/nparts, len(ps)*(k+1)/nparts
					for _, p := range ps[from:to] {
						d := store.TicksToDuration(segs[j].d, fm.info[ids[n]].Timescale) / time.Duration(len(ps))
						if _, err := srv.rends[n].AppendPart(p, d, k == 0); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
			for j, n := range srv.names {
				if err := srv.rends[n].FinishSegment(segs[j].d); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()

	var mu sync.Mutex
	var reports []playerReport
	mux := http.NewServeMux()
	mux.Handle("/live/", srv)
	mux.HandleFunc("/player.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, js)
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
		var rep playerReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err == nil {
			mu.Lock()
			reports = append(reports, rep)
			mu.Unlock()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, playerPage, playerScripts[player], ll)
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()

	// The stream has been running for a while when the player starts.
	time.Sleep(time.Until(ast.Add(startAt*2*time.Second + 300*time.Millisecond)))
	bctx, bcancel := context.WithTimeout(ctx, watch*time.Second)
	defer bcancel()
	cmd := exec.CommandContext(bctx, chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio",
		"--autoplay-policy=no-user-gesture-required", "--user-data-dir="+t.TempDir(), hs.URL+"/")
	out, _ := cmd.CombinedOutput()
	cancel()
	fed.Wait()

	if os.Getenv("DASH_DEBUG") != "" {
		var rs []Rendition
		for _, n := range srv.names {
			rs = append(rs, Rendition{Name: n, Snap: srv.rends[n].Snapshot()})
		}
		o := srv.o
		o.PublishTime = time.Now()
		mpdOut, err := MPD(rs, o)
		t.Logf("final MPD (%v):\n%s\nhits: %v", err, mpdOut, srv.hits)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) < 5 {
		t.Fatalf("%d reports from the page; chromium said:\n%s", len(reports), out)
	}
	last := reports[len(reports)-1]
	var first playerReport
	for _, r := range reports {
		if r.Time > 0 {
			first = r
			break
		}
	}
	t.Logf("%s: played %.1fs to %.1fs (wall %ds), latency %.2fs, low latency %v, buffered %.2fs, errors %v",
		player, first.Time, last.Time, watch, last.Latency, last.LL, last.Buffered, last.Errors)
	if len(last.Errors) > 0 {
		t.Errorf("player errors: %v", last.Errors)
	}
	// Once started, playback about keeps up with the wall clock (a period
	// transition may jump the outage forward; a loaded machine decoding in
	// software may stall now and then).
	played, wall := last.Time-first.Time, (last.Wall-first.Wall)/1000
	if played < 5 || played < 0.6*wall {
		t.Errorf("playback advanced %.1fs in %.1fs since it started", played, wall)
	}
	if down > 0 {
		// Past the republish: the second Period starts at the outage's end.
		p1 := (store.TicksToDuration(fm.segs["0"][republish].t, fm.info["0"].Timescale) + down).Seconds()
		if last.Time < p1+2 {
			t.Errorf("playback at %.1fs, not into the second period (from %.1fs)", last.Time, p1)
		}
	}
	// Both players' latency: dash.js's from the MPD's timing, Shaka's from
	// the ProducerReferenceTime (its UTCTiming child says the wallClockTime
	// is a date: without it Shaka read it as an NTP timestamp, 2,208,988,800 s
	// off).
	if ll && (last.Latency <= 0 || last.Latency > 4) {
		t.Errorf("%s: low-latency playback %.2fs behind live", player, last.Latency)
	}
}

var playerScripts = map[string]string{
	"dashjs": `
const p = dashjs.MediaPlayer().create();
p.on(dashjs.MediaPlayer.events.ERROR, e => errors.push('dash.js: ' + JSON.stringify(e.error || e)));
p.initialize(v, url, true);
latency = () => p.getCurrentLiveLatency();
lowLatency = () => p.getLowLatencyModeEnabled ? p.getLowLatencyModeEnabled() : !!(p.getSettings().streaming.lowLatencyEnabled);
`,
	"shaka": `
shaka.polyfill.installAll();
const p = new shaka.Player();
p.addEventListener('error', e => errors.push('shaka: ' + JSON.stringify(e.detail)));
p.configure({streaming: {lowLatencyMode: LL}});
p.attach(v).then(() => p.load(url)).catch(e => errors.push('shaka load: ' + JSON.stringify(e)));
latency = () => p.getStats().liveLatency;
lowLatency = () => LL;
`,
}

const playerPage = `<!doctype html>
<html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/player.js"></script>
<script>
const v = document.getElementById('v');
const url = '/live/test/manifest.mpd';
const errors = [];
let latency = () => -1, lowLatency = () => false;
v.addEventListener('error', () => errors.push('video: ' + (v.error && v.error.message)));
const LL = %[2]v;
try {
%[1]s
} catch (e) { errors.push('setup: ' + e); }
setInterval(() => {
  let buffered = 0;
  if (v.buffered.length) buffered = v.buffered.end(v.buffered.length - 1) - v.currentTime;
  let lat = -1;
  try { lat = latency(); } catch (e) {}
  let ll = false;
  try { ll = lowLatency(); } catch (e) {}
  fetch('/report', {method: 'POST', body: JSON.stringify({
    wall: Date.now(), t: v.currentTime, paused: v.paused, ready: v.readyState, latency: lat, ll: ll, errors: errors, buffered: buffered})});
}, 1000);
</script>
</body></html>
`

func init() {
	// Keep the page's format verbs honest.
	if strings.Count(playerPage, "%[") != 2 {
		panic("playerPage")
	}
}

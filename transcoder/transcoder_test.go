package transcoder

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/headwater-live/headwater/media"
)

// recOutput records what a rendition output receives.
type recOutput struct {
	info   RenditionInfo
	mu     sync.Mutex
	frames []*media.Frame
	gaps   []Gap
	closed bool
	times  []time.Time // when each frame was written
}

func (o *recOutput) WriteFrame(f *media.Frame) {
	o.mu.Lock()
	o.frames = append(o.frames, f)
	o.times = append(o.times, time.Now())
	o.mu.Unlock()
}

func (o *recOutput) Gap(g Gap) {
	o.mu.Lock()
	o.gaps = append(o.gaps, g)
	o.mu.Unlock()
}

func (o *recOutput) Close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// gops splits recorded frames at key frames.
func (o *recOutput) gops() [][]*media.Frame {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out [][]*media.Frame
	for _, f := range o.frames {
		if f.Key || len(out) == 0 {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], f)
	}
	return out
}

type recorder struct {
	mu   sync.Mutex
	outs map[string]*recOutput
}

func newRecorder() *recorder { return &recorder{outs: map[string]*recOutput{}} }

func (r *recorder) factory(ri RenditionInfo) Output {
	o := &recOutput{info: ri}
	r.mu.Lock()
	r.outs[ri.Stream+"/"+ri.Rendition.Name] = o
	r.mu.Unlock()
	return o
}

func (r *recorder) get(name string) *recOutput {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outs[name]
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []string
	for k := range r.outs {
		n = append(n, k)
	}
	return n
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startPool starts a pool and waits until it is ready.
func startPool(t testing.TB, cfg PoolConfig, m *Metrics) *Pool {
	t.Helper()
	p := NewPool(cfg, m, testLogger(t))
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	deadline := time.Now().Add(30 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("pool not ready after 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p
}

// publish runs a stream through the transcoder: frames are written as fast
// as the subscription takes them (pace 0) or in real time.
func publish(t testing.TB, reg *media.Registry, tr *Transcoder, name string, frames []*media.Frame, pace float64, rec *recorder) <-chan error {
	t.Helper()
	st, err := reg.Publish(name, media.PublishInfo{Protocol: "test"}, []*media.Track{frames[0].Track})
	if err != nil {
		t.Fatal(err)
	}
	sub := st.Subscribe(len(frames) + 16)
	errc := make(chan error, 1)
	go func() { errc <- tr.Run(context.Background(), name, sub, rec.factory) }()
	go func() {
		start := time.Now()
		for _, f := range frames {
			if pace > 0 {
				at := start.Add(time.Duration(float64(media.TicksToDuration(f.DTS-frames[0].DTS, 90000)) / pace))
				time.Sleep(time.Until(at))
			}
			c := *f
			c.Received = time.Now()
			st.WriteFrame(&c)
		}
		st.Close()
	}()
	return errc
}

func waitRun(t testing.TB, errc <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatal("Run did not return")
	}
}

// probe decodes a rendition's frames with ffprobe: size and decoded frames.
func probe(t testing.TB, frames []*media.Frame) (w, h, n int) {
	t.Helper()
	data, err := muxGOP(frames, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.ts")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=width,height,nb_read_frames", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var v struct {
		Streams []struct {
			Width, Height int
			NbReadFrames  string `json:"nb_read_frames"`
		}
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	if _, err := fmt.Sscan(v.Streams[0].NbReadFrames, &n); err != nil {
		t.Fatalf("ffprobe nb_read_frames %q: %v", v.Streams[0].NbReadFrames, err)
	}
	return v.Streams[0].Width, v.Streams[0].Height, n
}

func isIDR(payload []byte) bool {
	var au h264.AVCC
	if err := au.Unmarshal(payload); err != nil {
		return false
	}
	return h264.IsRandomAccess(au)
}

func TestLadderKeyframeAlignedWithSourceTimestamps(t *testing.T) {
	fx := sourceFixture(t, 1280, 720, 30, 60, 2, 6)
	m := NewMetrics(nil)
	pool := startPool(t, PoolConfig{Size: 2, MaxWait: 100, Prewarm: []Ladder{DefaultLadder().For(720)}}, m)
	tr, err := New(Config{Deadline: 20}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := media.NewRegistry(media.RegistryConfig{})
	rec := newRecorder()
	waitRun(t, publish(t, reg, tr, "live/a", fx.frames, 0, rec), 60*time.Second)

	if n := rec.names(); len(n) != 2 || rec.get("live/a/480p") == nil || rec.get("live/a/360p") == nil {
		t.Fatalf("renditions %v, want live/a/480p and live/a/360p (720p is not below the source)", n)
	}
	src := fx.gops()
	for _, name := range []string{"480p", "360p"} {
		o := rec.get("live/a/" + name)
		if !o.closed {
			t.Errorf("%s not closed", name)
		}
		if len(o.gaps) != 0 {
			t.Errorf("%s: gaps %+v", name, o.gaps)
		}
		gs := o.gops()
		if len(gs) != len(src) {
			t.Fatalf("%s: %d GOPs, source has %d", name, len(gs), len(src))
		}
		var lastDTS int64 = -1 << 62
		for i, g := range gs {
			if !g[0].Key || !isIDR(g[0].Payload) {
				t.Errorf("%s GOP %d does not start with an IDR", name, i)
			}
			if g[0].PTS != src[i][0].PTS {
				t.Errorf("%s GOP %d: first PTS %d, source %d", name, i, g[0].PTS, src[i][0].PTS)
			}
			if g[0].DTS != src[i][0].DTS {
				t.Errorf("%s GOP %d: first DTS %d, source %d", name, i, g[0].DTS, src[i][0].DTS)
			}
			if len(g) != len(src[i]) {
				t.Errorf("%s GOP %d: %d frames, source %d", name, i, len(g), len(src[i]))
			}
			srcPTS := map[int64]bool{}
			for _, f := range src[i] {
				srcPTS[f.PTS] = true
			}
			for k, f := range g {
				if k > 0 && f.Key {
					t.Errorf("%s GOP %d: extra key frame at %d", name, i, k)
				}
				if !srcPTS[f.PTS] {
					t.Errorf("%s GOP %d frame %d: PTS %d not a source PTS", name, i, k, f.PTS)
				}
				if f.DTS <= lastDTS || f.DTS > f.PTS {
					t.Errorf("%s GOP %d frame %d: DTS %d after %d, PTS %d", name, i, k, f.DTS, lastDTS, f.PTS)
				}
				lastDTS = f.DTS
			}
		}
		w, h, n := probe(t, o.frames)
		if h != o.info.Height || w != o.info.Width {
			t.Errorf("%s decoded as %dx%d, want %dx%d", name, w, h, o.info.Width, o.info.Height)
		}
		if n != len(fx.frames) {
			t.Errorf("%s: ffprobe decoded %d frames of %d", name, n, len(fx.frames))
		}
		t.Logf("%s: %dx%d, %d GOPs, %d frames decoded", name, w, h, len(gs), n)
	}
}

func TestBFramesInRenditions(t *testing.T) {
	fx := sourceFixture(t, 320, 180, 30, 30, 2, 3) // source with B-frames
	bf := 2
	lad := Ladder{{Name: "120p", Height: 120, Bitrate: "150k", Preset: "ultrafast", BFrames: &bf}}
	m := NewMetrics(nil)
	pool := startPool(t, PoolConfig{Size: 1, Warm: 1, Prewarm: []Ladder{lad}}, m)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/bf", fx.frames, 0, rec), 60*time.Second)
	o := rec.get("live/bf/120p")
	src := fx.gops()
	gs := o.gops()
	if len(gs) != len(src) {
		t.Fatalf("%d GOPs, source %d", len(gs), len(src))
	}
	reordered := false
	last := int64(-1 << 62)
	for i, g := range gs {
		if !isIDR(g[0].Payload) || g[0].PTS != src[i][0].PTS {
			t.Errorf("GOP %d: IDR %v, PTS %d, source %d", i, isIDR(g[0].Payload), g[0].PTS, src[i][0].PTS)
		}
		pts := map[int64]bool{}
		for _, f := range src[i] {
			pts[f.PTS] = true
		}
		for k, f := range g {
			if !pts[f.PTS] || f.DTS <= last || f.DTS > f.PTS {
				t.Errorf("GOP %d frame %d: PTS %d (source: %v) DTS %d after %d", i, k, f.PTS, pts[f.PTS], f.DTS, last)
			}
			if k > 0 && f.PTS < g[k-1].PTS {
				reordered = true
			}
			last = f.DTS
		}
	}
	if !reordered {
		t.Error("no B-frames in the output")
	}
	if _, _, n := probe(t, o.frames); n != len(fx.frames) {
		t.Errorf("decoded %d of %d frames", n, len(fx.frames))
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	if forkServerDir != "" {
		os.RemoveAll(forkServerDir)
	}
	os.Exit(code)
}

func TestShortGOPsShareAJobAndKeepTheirKeyFrames(t *testing.T) {
	fx := sourceFixture(t, 320, 180, 30, 10, 0, 2) // six GOPs of 333 ms
	lad := Ladder{{Name: "90p", Height: 90, Bitrate: "100k", Preset: "ultrafast"}}
	m := NewMetrics(nil)
	pool := startPool(t, PoolConfig{Size: 1, Warm: 1, MaxWait: 100, Prewarm: []Ladder{lad}}, m)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	waitRun(t, publish(t, media.NewRegistry(media.RegistryConfig{}), tr, "live/short", fx.frames, 0, rec), 60*time.Second)
	if n := counter(t, m, "90p", OutcomeOK); n != 3 {
		t.Errorf("%v jobs, want 3 (two 333 ms GOPs per job)", n)
	}
	o := rec.get("live/short/90p")
	src := fx.gops()
	gs := o.gops()
	if len(gs) != len(src) || len(o.frames) != len(fx.frames) {
		t.Fatalf("%d GOPs (source %d), %d frames", len(gs), len(src), len(o.frames))
	}
	for i := range gs {
		if gs[i][0].PTS != src[i][0].PTS || !isIDR(gs[i][0].Payload) {
			t.Errorf("GOP %d starts at %d (IDR %v), source at %d", i, gs[i][0].PTS, isIDR(gs[i][0].Payload), src[i][0].PTS)
		}
	}
}

package switcher

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

const frameDur = 40 * time.Millisecond // 25 fps

// rig is a Switcher publishing to a real registry whose publishes are
// captured.
type rig struct {
	t     testing.TB
	sw    *Switcher
	reg   *media.Registry
	caps  *testpeer.Captures
	mu    sync.Mutex
	ended []string
	sws   []Switch
}

func newRig(t testing.TB, pol Policy, slates SlateSource) *rig {
	t.Helper()
	r := &rig{t: t, caps: testpeer.NewCaptures()}
	r.reg = media.NewRegistry(media.RegistryConfig{OnPublish: r.caps.OnPublish})
	r.sw = New(Config{
		Publisher: r.reg,
		Policy: func(name string) Policy {
			if name == "plain/a" {
				return Policy{}
			}
			return pol
		},
		Slates: slates,
		Buffer: 1024,
		OnEnd: func(name string) {
			r.mu.Lock()
			r.ended = append(r.ended, name)
			r.mu.Unlock()
		},
		OnSwitch: func(s Switch) {
			r.mu.Lock()
			r.sws = append(r.sws, s)
			r.mu.Unlock()
		},
	}, prometheus.NewRegistry())
	t.Cleanup(r.sw.Close)
	return r
}

func (r *rig) endedNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ended...)
}

func (r *rig) switches() []Switch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Switch(nil), r.sws...)
}

// publisher is a fake ingest session: a video and an audio track.
type publisher struct {
	st           *media.Stream
	video, audio *media.Track
	n            int   // video frames written
	gop          int   // frames per GOP
	base         int64 // its own clock's start
}

func (r *rig) publish(name string, backup bool, sps byte) *publisher {
	r.t.Helper()
	p, err := r.tryPublish(name, backup, sps)
	if err != nil {
		r.t.Fatalf("publish %s (backup %v): %v", name, backup, err)
	}
	return p
}

func (r *rig) tryPublish(name string, backup bool, sps byte) (*publisher, error) {
	video := &media.Track{ID: 0, Codec: &media.H264{SPS: []byte{0x67, sps}, PPS: []byte{0x68}}, ClockRate: 90000}
	audio := &media.Track{ID: 1, Codec: &media.AAC{}, ClockRate: 48000}
	st, err := r.sw.Publish(name, media.PublishInfo{Protocol: "test", SessionID: name, Backup: backup}, []*media.Track{video, audio})
	if err != nil {
		return nil, err
	}
	return &publisher{st: st, video: video, audio: audio, gop: 5, base: int64(sps) * 1000000}, nil
}

// frames writes n video frames (a key frame every gop) each followed by
// an audio frame, stamped now.
func (p *publisher) frames(n int) {
	for range n {
		dts := p.base + int64(p.n)*3600
		key := p.n%p.gop == 0
		p.st.WriteFrame(&media.Frame{Track: p.video, DTS: dts, PTS: dts, Key: key, Received: time.Now(), Payload: []byte{0, 0, 0, 1, 0x65}})
		p.st.WriteFrame(&media.Frame{Track: p.audio, DTS: dts * 48000 / 90000, PTS: dts * 48000 / 90000, Key: true, Received: time.Now(), Payload: []byte{1}})
		p.n++
	}
}

// paced writes frames in real time until ctx ends.
func (p *publisher) paced(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(frameDur)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.frames(1)
			}
		}
	}()
}

// waitFor polls cond until it holds or fails the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstKeyFrom reports whether a capture's first frame is a video key
// frame of track.
func firstKeyFrom(t *testing.T, c *testpeer.Capture, track *media.Track) {
	t.Helper()
	waitFor(t, "the output's first frame", func() bool { return c.Count() > 0 })
	f := c.Frames()[0]
	if f.Track != track || !f.Key {
		t.Fatalf("output starts with %s, want a key frame of track %p", testpeer.FormatFrame(f), track)
	}
}

func TestPolicyOffPublishesStraight(t *testing.T) {
	r := newRig(t, Policy{ReconnectWindow: time.Second}, nil)
	p := r.publish("plain/a", false, 1)
	if out, ok := r.reg.Get("plain/a"); !ok || out != p.st {
		t.Fatalf("the registry's stream is %p, want the publisher's own %p", out, p.st)
	}
	if _, err := r.tryPublish("plain/a", true, 2); !errors.Is(err, media.ErrAlreadyPublishing) {
		t.Fatalf("second publisher: %v, want ErrAlreadyPublishing", err)
	}
	p.st.Close()
	if _, ok := r.sw.Status("plain/a"); ok {
		t.Fatal("a stream under an off policy has a feed")
	}
}

func TestReconnectWithinWindowContinuesAndEndsAfterIt(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t, Policy{ReconnectWindow: 300 * time.Millisecond}, nil)
	p := r.publish("live/a", false, 1)
	out1 := r.caps.WaitPublished(t, "live/a", 1, time.Second)
	p.frames(10)
	waitFor(t, "20 frames forwarded", func() bool { return out1.Count() == 20 })
	p.st.Close()
	out1.Wait(t, time.Second)
	waitFor(t, "the reconnect window", func() bool {
		st, ok := r.sw.Status("live/a")
		return ok && st.OnAir == SourceNone && !st.AwaitingUntil.IsZero() && !st.Primary
	})
	if got := r.endedNames(); len(got) != 0 {
		t.Fatalf("ended inside the window: %v", got)
	}
	// Back within the window: a new output, starting at a key frame.
	q := r.publish("live/a", false, 2)
	q.n = 3 // joins mid-GOP: frames before its next key frame are not on the air
	q.frames(6)
	out2 := r.caps.WaitPublished(t, "live/a", 2, time.Second)
	firstKeyFrom(t, out2, q.video)
	// Video 5 to 8 and their audio (the switch is at video 5).
	waitFor(t, "the frames from the key frame on", func() bool { return out2.Count() == 8 })
	if got := r.endedNames(); len(got) != 0 {
		t.Fatalf("ended although the publisher came back: %v", got)
	}
	q.st.Close()
	waitFor(t, "the end after the window", func() bool { return len(r.endedNames()) == 1 })
	if _, ok := r.sw.Status("live/a"); ok {
		t.Fatal("the feed is still there after its end")
	}
	sws := r.switches()
	if len(sws) != 3 || sws[0].To != SourceNone || sws[1].Reason != ReasonResume || sws[1].To != SourcePrimary || sws[2].To != SourceNone {
		t.Fatalf("switches = %+v", sws)
	}
	r.sw.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestBackupTakesOverAtItsKeyFrameWhenThePrimaryLeaves(t *testing.T) {
	r := newRig(t, Policy{FailoverAfter: 200 * time.Millisecond, Failback: true}, nil)
	prim := r.publish("live/b", false, 1)
	out1 := r.caps.WaitPublished(t, "live/b", 1, time.Second)
	back := r.publish("live/b", true, 2)
	if _, err := r.tryPublish("live/b", true, 3); !errors.Is(err, media.ErrAlreadyPublishing) {
		t.Fatalf("a second backup: %v, want ErrAlreadyPublishing", err)
	}
	if !r.sw.Busy("live/b", media.PublishInfo{Backup: true}) || !r.sw.Busy("live/b", media.PublishInfo{}) {
		t.Fatal("Busy does not see the taken places")
	}
	prim.frames(5)
	back.frames(5)
	waitFor(t, "the primary's frames", func() bool { return out1.Count() == 10 })
	time.Sleep(50 * time.Millisecond)
	for _, f := range out1.Frames() {
		if f.Track != prim.video && f.Track != prim.audio {
			t.Fatalf("the backup's frame %s is on the air with the primary", testpeer.FormatFrame(f))
		}
	}
	prim.st.Close()
	// The backup goes on the air at once, from its latest key frame (its
	// frame 0: the GOP it kept while standing by).
	out2 := r.caps.WaitPublished(t, "live/b", 2, time.Second)
	firstKeyFrom(t, out2, back.video)
	out1.Wait(t, time.Second)
	if got := out2.Frames()[0].DTS; got != back.base {
		t.Fatalf("the backup went on the air at DTS %d, want its kept key frame %d", got, back.base)
	}
	waitFor(t, "the kept GOP replayed", func() bool { return out2.Count() == 10 })
	back.frames(2)
	waitFor(t, "the backup's next frames", func() bool { return out2.Count() == 14 })
	if v := testutil.ToFloat64(r.sw.m.switches.WithLabelValues(ReasonDisconnect)); v != 1 {
		t.Fatalf("disconnect switches = %v, want 1", v)
	}
	st, _ := r.sw.Status("live/b")
	if st.OnAir != SourceBackup || st.Primary || !st.Backup {
		t.Fatalf("status = %+v", st)
	}
}

func TestStallFailsOverAndThePrimaryFailsBack(t *testing.T) {
	r := newRig(t, Policy{FailoverAfter: 200 * time.Millisecond, Failback: true}, nil)
	prim := r.publish("live/c", false, 1)
	back := r.publish("live/c", true, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	back.paced(ctx, &wg)
	prim.frames(3) // then silent, still connected
	r.caps.WaitPublished(t, "live/c", 1, time.Second)
	out2 := r.caps.WaitPublished(t, "live/c", 2, 2*time.Second)
	firstKeyFrom(t, out2, back.video)
	sws := r.switches()
	if len(sws) != 1 || sws[0].Reason != ReasonStall || sws[0].From != SourcePrimary || sws[0].To != SourceBackup {
		t.Fatalf("switches = %+v", sws)
	}
	// The primary comes back: after FailoverAfter of frames, at its key
	// frame, it takes over again.
	primCtx, primCancel := context.WithCancel(ctx)
	defer primCancel()
	prim.n = 5
	prim.paced(primCtx, &wg)
	out3 := r.caps.WaitPublished(t, "live/c", 3, 3*time.Second)
	firstKeyFrom(t, out3, prim.video)
	sws = r.switches()
	if len(sws) != 2 || sws[1].Reason != ReasonFailback || sws[1].To != SourcePrimary {
		t.Fatalf("switches = %+v", sws)
	}
}

func TestNoFailbackKeepsTheBackup(t *testing.T) {
	r := newRig(t, Policy{FailoverAfter: 150 * time.Millisecond, Failback: false}, nil)
	prim := r.publish("live/d", false, 1)
	back := r.publish("live/d", true, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	back.paced(ctx, &wg)
	prim.frames(1)
	prim.st.Close()
	r.caps.WaitPublished(t, "live/d", 2, 2*time.Second)
	again := r.publish("live/d", false, 3)
	again.paced(ctx, &wg)
	time.Sleep(time.Second)
	if n := r.caps.Publishes("live/d"); n != 2 {
		t.Fatalf("%d publishes: the primary took over although failback is off", n)
	}
}

func TestKickEndsTheFeedAndItsPublishers(t *testing.T) {
	r := newRig(t, Policy{ReconnectWindow: time.Hour, FailoverAfter: time.Second}, nil)
	prim := r.publish("live/e", false, 1)
	back := r.publish("live/e", true, 2)
	out := r.caps.WaitPublished(t, "live/e", 1, time.Second)
	out.Stream.Kick()
	waitFor(t, "the feed's end", func() bool { return len(r.endedNames()) == 1 })
	for _, p := range []*publisher{prim, back} {
		select {
		case <-p.st.Context().Done():
		case <-time.After(time.Second):
			t.Fatal("a publisher was not dropped with its stream")
		}
	}
}

// fakeSlate is a slate of 1 frame of video per frameDur and no audio.
type fakeSlate struct{ track *media.Track }

func (s fakeSlate) Cursor() SlateCursor { return &fakeCursor{track: s.track} }

type fakeCursor struct {
	track *media.Track
	n     int
}

func (c *fakeCursor) Tracks() []*media.Track { return []*media.Track{c.track} }

func (c *fakeCursor) Next(until time.Duration, now time.Time) []*media.Frame {
	var out []*media.Frame
	for time.Duration(c.n)*frameDur < until {
		dts := int64(c.n) * 3600
		out = append(out, &media.Frame{Track: c.track, DTS: dts, PTS: dts, Key: c.n%25 == 0, Received: now, Payload: []byte{0, 0, 0, 1, 0x65}})
		c.n++
	}
	return out
}

type fakeSlates struct {
	mu    sync.Mutex
	calls int
}

func (s *fakeSlates) Slate(_ context.Context, video, _ *media.Track, dur time.Duration) (Slate, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if dur != frameDur {
		return nil, errors.New("wrong frame duration")
	}
	return fakeSlate{track: &media.Track{ID: 0, Codec: &media.H264{SPS: []byte{0x67, 9}, PPS: []byte{0x68}}, ClockRate: 90000}}, nil
}

func TestSlateFillsTheGapInRealTime(t *testing.T) {
	slates := &fakeSlates{}
	r := newRig(t, Policy{ReconnectWindow: 5 * time.Second, Slate: true}, slates)
	p := r.publish("live/f", false, 1)
	p.frames(minFramesForDuration) // the frame duration is measured over these
	r.caps.WaitPublished(t, "live/f", 1, time.Second)
	waitFor(t, "the slate to be made", func() bool {
		slates.mu.Lock()
		defer slates.mu.Unlock()
		return slates.calls == 1
	})
	time.Sleep(50 * time.Millisecond)
	p.st.Close()
	out2 := r.caps.WaitPublished(t, "live/f", 2, time.Second)
	if out2.Stream.Info().Protocol != SlateProtocol {
		t.Fatalf("second output is %q, want the slate", out2.Stream.Info().Protocol)
	}
	time.Sleep(time.Second)
	// About 25 frames a second, written at most slateTick/2 ahead.
	if n := out2.Count(); n < 22 || n > 30 {
		t.Fatalf("%d slate frames in 1 s, want 25 (±3)", n)
	}
	q := r.publish("live/f", false, 2)
	q.frames(6)
	out3 := r.caps.WaitPublished(t, "live/f", 3, time.Second)
	firstKeyFrom(t, out3, q.video)
	out2.Wait(t, time.Second)
	if st, _ := r.sw.Status("live/f"); st.OnAir != SourcePrimary {
		t.Fatalf("on air: %s", st.OnAir)
	}
	if len(r.endedNames()) != 0 {
		t.Fatal("ended")
	}
}

func TestCloseEndsEveryFeed(t *testing.T) {
	r := newRig(t, Policy{ReconnectWindow: time.Hour}, nil)
	a := r.publish("live/g1", false, 1)
	r.publish("live/g2", true, 2)
	a.st.Close()
	r.caps.WaitPublished(t, "live/g2", 1, time.Second)
	r.sw.Close()
	if got := r.endedNames(); len(got) != 2 {
		t.Fatalf("ended = %v, want both", got)
	}
	if _, err := r.tryPublish("live/g3", false, 3); !errors.Is(err, ErrEnding) {
		t.Fatalf("publish after Close: %v", err)
	}
	if r.reg.Len() != 0 {
		t.Fatalf("%d outputs left", r.reg.Len())
	}
}

// slowPublisher holds every Publish of the name "live/slow" until released:
// a cluster's placement claim on an unreachable NATS.
type slowPublisher struct {
	*media.Registry
	release chan struct{}
}

func (p slowPublisher) Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	if name == "live/slow" {
		<-p.release
	}
	return p.Registry.Publish(name, info, tracks)
}

// TestSlowPublishHoldsNothingElse: while the first output of one name is
// being published, other names publish, the metrics' counts answer, and a
// backup of the same name queues and joins the feed once it runs.
func TestSlowPublishHoldsNothingElse(t *testing.T) {
	slow := slowPublisher{Registry: media.NewRegistry(media.RegistryConfig{}), release: make(chan struct{})}
	sw := New(Config{Publisher: slow, Buffer: 64,
		Policy: func(string) Policy { return Policy{ReconnectWindow: time.Second, FailoverAfter: time.Second} }}, prometheus.NewRegistry())
	defer sw.Close()
	tracks := []*media.Track{{ID: 0, Codec: &media.H264{SPS: []byte{0x67, 1}, PPS: []byte{0x68}}, ClockRate: 90000}}
	first := make(chan error, 1)
	go func() {
		_, err := sw.Publish("live/slow", media.PublishInfo{SessionID: "slow"}, tracks)
		first <- err
	}()
	waitFor(t, "the slow name's feed reserved", func() bool { _, ok := sw.Status("live/slow"); return ok })
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := sw.Publish("live/other", media.PublishInfo{}, tracks); err != nil {
			t.Errorf("another name: %v", err)
		}
		_ = sw.count(SourceSlate)
		if _, err := sw.Publish("live/slow", media.PublishInfo{Backup: true}, tracks); err != nil {
			t.Errorf("the slow name's backup: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("a slow first publish held the other publishes")
	}
	close(slow.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backup joined", func() bool { st, _ := sw.Status("live/slow"); return st.Backup && st.Primary })
}

package store

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func videoInfo(name string) RenditionInfo {
	return RenditionInfo{Name: name, Kind: media.KindVideo, Timescale: 90000,
		SegmentTarget: 2 * time.Second, PartTarget: 200 * time.Millisecond}
}

func newTestRendition(t testing.TB, cfg Config) (*Store, *Stream, *Rendition) {
	t.Helper()
	s := New(cfg)
	st := s.Begin("live/x")
	r := st.AddRendition(videoInfo("video"))
	if name := r.SetInit(videoInfo("video"), []byte("init-A")); name != "init.mp4" {
		t.Fatalf("first init named %q", name)
	}
	return s, st, r
}

// addSegment writes a complete segment of parts parts, each 200 ms, at base.
func addSegment(t testing.TB, r *Rendition, base uint64, parts int) uint64 {
	t.Helper()
	msn, err := r.StartSegment(t0.Add(TicksToDuration(base, 90000)), base)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < parts; i++ {
		if _, err := r.AppendPart([]byte("seg"+strconv.FormatUint(msn, 10)+"part"+strconv.Itoa(i)), 200*time.Millisecond, i == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.FinishSegment(uint64(parts) * 18000); err != nil {
		t.Fatal(err)
	}
	return msn
}

func msns(segs []*Segment) []uint64 {
	out := make([]uint64, len(segs))
	for i, s := range segs {
		out[i] = s.MSN
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	c := New(Config{}).Config()
	if c.Window != 6 || c.KeepExtra != 4 || c.EndedGrace != time.Minute {
		t.Fatalf("defaults %+v", c)
	}
	if c := New(Config{KeepExtra: -1}).Config(); c.KeepExtra != 0 {
		t.Fatalf("negative KeepExtra gives %d", c.KeepExtra)
	}
}

func TestWindowTrimming(t *testing.T) {
	for _, tc := range []struct {
		window, extra int
		keep          int
	}{{3, 2, 5}, {3, -1, 3}, {1, -1, 1}, {0, 0, 10}} {
		t.Run(strconv.Itoa(tc.window)+"+"+strconv.Itoa(tc.extra), func(t *testing.T) {
			_, _, r := newTestRendition(t, Config{Window: tc.window, KeepExtra: tc.extra})
			var early *Snapshot
			for i := 0; i < 12; i++ {
				addSegment(t, r, uint64(i)*36000, 2)
				if i == 1 {
					early = r.Snapshot()
				}
			}
			snap := r.Snapshot()
			if len(snap.Segments) != tc.keep {
				t.Fatalf("kept %d segments, want %d", len(snap.Segments), tc.keep)
			}
			for i, seg := range snap.Segments {
				if want := uint64(12 - tc.keep + i); seg.MSN != want {
					t.Fatalf("segments %v", msns(snap.Segments))
				}
				if got, ok := snap.Segment(seg.MSN); !ok || got != seg {
					t.Fatalf("Segment(%d) not found", seg.MSN)
				}
			}
			if _, ok := snap.Segment(uint64(11 - tc.keep)); ok {
				t.Fatal("trimmed segment still found")
			}
			if n := min(2, tc.keep); len(early.Segments) != n || early.Segments[n-1].MSN != 1 {
				t.Fatalf("an earlier snapshot changed: %v", msns(early.Segments))
			}
			if snap.MaxSegmentDuration != 400*time.Millisecond {
				t.Fatalf("max duration %v", snap.MaxSegmentDuration)
			}
			if r.NextBaseTime() != 12*36000 {
				t.Fatalf("next base time %d", r.NextBaseTime())
			}
		})
	}
}

func TestInitVersioning(t *testing.T) {
	_, _, r := newTestRendition(t, Config{})
	data := []byte("init-B")
	// Same bytes with a new description: same name, description replaced.
	info := videoInfo("video")
	info.FrameRate = 30
	before := r.Snapshot()
	if name := r.SetInit(info, []byte("init-A")); name != "init.mp4" {
		t.Fatalf("same init renamed %q", name)
	}
	if in, _ := r.Snapshot().Init("init.mp4"); in.Info.FrameRate != 30 || r.Snapshot().Info.FrameRate != 30 {
		t.Fatal("description not replaced")
	}
	if in, _ := before.Init("init.mp4"); in.Info.FrameRate != 0 {
		t.Fatal("an earlier snapshot's init changed")
	}
	addSegment(t, r, 0, 2)
	if name := r.SetInit(info, []byte("init-A")); name != "init.mp4" {
		t.Fatal("same init renamed after a segment")
	}
	addSegment(t, r, 36000, 2)

	if name := r.SetInit(info, data); name != "init-1.mp4" {
		t.Fatalf("new init named %q", name)
	}
	data[0] = 'X' // the store keeps its own copy
	addSegment(t, r, 72000, 2)
	addSegment(t, r, 108000, 2)
	snap := r.Snapshot()
	got := ""
	for _, seg := range snap.Segments {
		got += seg.InitName + ":" + strconv.FormatBool(seg.Discontinuity) + " "
	}
	if want := "init.mp4:false init.mp4:false init-1.mp4:true init-1.mp4:false "; got != want {
		t.Fatalf("segments %s, want %s", got, want)
	}
	if in, ok := snap.Init("init-1.mp4"); !ok || string(in.Data) != "init-B" {
		t.Fatalf("init-1.mp4: %v %q", ok, in.Data)
	}
	if len(snap.Inits) != 2 {
		t.Fatalf("%d inits", len(snap.Inits))
	}
	if name := r.SetInit(info, []byte("init-C")); name != "init-2.mp4" {
		t.Fatalf("third init named %q", name)
	}
}

func TestFirstInitChangeBeforeAnySegment(t *testing.T) {
	_, _, r := newTestRendition(t, Config{})
	if name := r.SetInit(videoInfo("video"), []byte("init-B")); name != "init-1.mp4" {
		t.Fatalf("named %q", name)
	}
	addSegment(t, r, 0, 1)
	snap := r.Snapshot()
	if snap.Segments[0].Discontinuity {
		t.Fatal("the first segment is a discontinuity")
	}
	if len(snap.Inits) != 1 || snap.Inits[0].Name != "init-1.mp4" {
		t.Fatalf("unused init kept: %d inits", len(snap.Inits))
	}
}

func TestInitTrimming(t *testing.T) {
	_, _, r := newTestRendition(t, Config{Window: 1, KeepExtra: -1})
	addSegment(t, r, 0, 1) // init.mp4
	// A segment on init.mp4 stays open while two new versions come.
	if _, err := r.StartSegment(t0, 18000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart([]byte("x"), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	r.SetInit(videoInfo("video"), []byte("init-B"))
	r.SetInit(videoInfo("video"), []byte("init-C"))
	names := func() string {
		var s string
		for _, in := range r.Snapshot().Inits {
			s += in.Name + " "
		}
		return s
	}
	if got := names(); got != "init.mp4 init-2.mp4 " {
		t.Fatalf("inits while open: %s", got)
	}
	if err := r.FinishSegment(18000); err != nil { // trims segment 0
		t.Fatal(err)
	}
	if got := names(); got != "init.mp4 init-2.mp4 " {
		t.Fatalf("inits after the open segment finished: %s", got)
	}
	addSegment(t, r, 36000, 1) // init-2.mp4; drops the last init.mp4 segment
	if got := names(); got != "init-2.mp4 " {
		t.Fatalf("inits at the end: %s", got)
	}
	if seg := r.Snapshot().Segments[0]; seg.InitName != "init-2.mp4" || !seg.Discontinuity {
		t.Fatalf("segment %d on %s disc %v", seg.MSN, seg.InitName, seg.Discontinuity)
	}
}

func TestHas(t *testing.T) {
	_, _, r := newTestRendition(t, Config{})
	type q struct {
		msn  uint64
		part int
		want bool
	}
	check := func(step string, qs ...q) {
		t.Helper()
		snap := r.Snapshot()
		for _, c := range qs {
			if got := snap.Has(c.msn, c.part); got != c.want {
				t.Errorf("%s: Has(%d, %d) = %v, want %v", step, c.msn, c.part, got, c.want)
			}
		}
	}
	part := func() {
		t.Helper()
		if _, err := r.AppendPart([]byte("p"), 200*time.Millisecond, false); err != nil {
			t.Fatal(err)
		}
	}
	check("empty", q{0, -1, false}, q{0, 0, false})
	if _, err := r.StartSegment(t0, 0); err != nil {
		t.Fatal(err)
	}
	check("open, no part", q{0, -1, false}, q{0, 0, false})
	part()
	part()
	check("open, 2 parts", q{0, 0, true}, q{0, 1, true}, q{0, 2, false}, q{0, -1, false}, q{1, 0, false}, q{1, -1, false})
	part()
	if err := r.FinishSegment(54000); err != nil {
		t.Fatal(err)
	}
	check("0 complete", q{0, -1, true}, q{0, 2, true}, q{0, 3, false}, q{1, 0, false}, q{1, -1, false})
	if _, err := r.StartSegment(t0, 54000); err != nil {
		t.Fatal(err)
	}
	// Part 3 of segment 0 is part 0 of segment 1: not there yet.
	check("1 open, no part", q{0, -1, true}, q{0, 2, true}, q{0, 3, false}, q{0, 9, false}, q{1, 0, false}, q{1, -1, false})
	part()
	check("1 open, 1 part", q{0, 3, true}, q{0, 9, true}, q{1, 0, true}, q{1, 1, false}, q{1, -1, false}, q{2, 0, false})
	if err := r.FinishSegment(18000); err != nil {
		t.Fatal(err)
	}
	if err := r.AddGap(t0, 72000, 18000); err != nil {
		t.Fatal(err)
	}
	// Part 1 of segment 1 stands for part 0 of segment 2, a complete gap.
	check("2 gap", q{1, -1, true}, q{1, 1, true}, q{2, -1, true}, q{2, 0, false}, q{3, -1, false})
	if _, err := r.StartSegment(t0, 90000); err != nil {
		t.Fatal(err)
	}
	check("3 open, no part", q{1, 1, true}, q{2, 0, false}, q{3, 0, false})
	part()
	check("3 open, 1 part", q{2, 0, true}, q{3, 0, true})
}

func TestWait(t *testing.T) {
	_, st, r := newTestRendition(t, Config{})
	if _, err := r.StartSegment(t0, 0); err != nil {
		t.Fatal(err)
	}

	got := make(chan *Snapshot)
	go func() {
		snap, err := r.Wait(context.Background(), 0, 1)
		if err != nil {
			t.Error(err)
		}
		got <- snap
	}()
	if _, err := r.AppendPart([]byte("a"), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("Wait(0, 1) returned after part 0")
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := r.AppendPart([]byte("b"), 200*time.Millisecond, false); err != nil {
		t.Fatal(err)
	}
	select {
	case snap := <-got:
		if !snap.Has(0, 1) || len(snap.Open.Parts) != 2 {
			t.Fatalf("Wait returned a snapshot without the part")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}

	// A context that ends: the latest snapshot and the error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	snap, err := r.Wait(ctx, 5, 0)
	if !errors.Is(err, context.DeadlineExceeded) || snap == nil || snap.Open == nil {
		t.Fatalf("Wait: %v, %v", snap, err)
	}

	// The end of the stream releases waiters.
	go func() {
		snap, err := r.Wait(context.Background(), 9, 0)
		if err != nil || !snap.Ended {
			t.Errorf("Wait at the end: ended %v, %v", snap.Ended, err)
		}
		got <- snap
	}()
	time.Sleep(10 * time.Millisecond)
	st.End()
	select {
	case snap := <-got:
		if snap.Open != nil || len(snap.Segments) != 1 || snap.Segments[0].DurationTicks != 36000 {
			t.Fatal("End did not finish the open segment with its parts' duration")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not released by End")
	}
	// Changed is closed by the next change.
	ch := r.Changed()
	r.SetInit(videoInfo("video"), []byte("init-B"))
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed")
	}
}

func TestRepublishWithinGrace(t *testing.T) {
	s, st, r := newTestRendition(t, Config{EndedGrace: time.Hour})
	addSegment(t, r, 0, 2)
	addSegment(t, r, 36000, 2)
	st.End()
	if st.Live() || !r.Snapshot().Ended {
		t.Fatal("not ended")
	}
	st2 := s.Begin("live/x")
	if st2 != st || st2.Epoch() != 1 || !st2.Live() || st2.Started() != st.Started() {
		t.Fatalf("republish: same %v epoch %d live %v", st2 == st, st2.Epoch(), st2.Live())
	}
	r2 := st2.AddRendition(videoInfo("video"))
	if r2 != r || r2.Snapshot().Ended {
		t.Fatal("rendition not carried over and reopened")
	}
	if r2.NextBaseTime() != 72000 {
		t.Fatalf("timeline at %d", r2.NextBaseTime())
	}
	if r2.SetInit(videoInfo("video"), []byte("init-A")) != "init.mp4" {
		t.Fatal("same init renamed")
	}
	addSegment(t, r2, 72000, 2)
	addSegment(t, r2, 108000, 2)
	snap := r2.Snapshot()
	if got := msns(snap.Segments); len(got) != 4 || got[2] != 2 || got[3] != 3 {
		t.Fatalf("MSNs %v", got)
	}
	if seg := snap.Segments[2]; !seg.Discontinuity || seg.Epoch != 1 {
		t.Fatalf("first segment of the republish: disc %v epoch %d", seg.Discontinuity, seg.Epoch)
	}
	if seg := snap.Segments[3]; seg.Discontinuity || seg.Epoch != 1 {
		t.Fatal("second segment of the republish")
	}
	if snap.Segments[1].Epoch != 0 {
		t.Fatal("old segment's epoch changed")
	}
	// A rendition new in the republish starts at the stream's epoch.
	if r3 := st2.AddRendition(RenditionInfo{Name: "audio", Kind: media.KindAudio, Timescale: 48000}); r3.Snapshot().Info.Timescale != 48000 {
		t.Fatal("new rendition")
	} else {
		r3.SetInit(r3.Snapshot().Info, []byte("a"))
		if _, err := r3.StartSegment(t0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := r3.AppendPart([]byte("x"), time.Second, true); err != nil {
			t.Fatal(err)
		}
		if seg := r3.Snapshot().Open; seg.Epoch != 1 || seg.Discontinuity || seg.MSN != 0 {
			t.Fatalf("new rendition segment: epoch %d disc %v", seg.Epoch, seg.Discontinuity)
		}
	}
	if names := s.Names(); len(names) != 1 || names[0] != "live/x" {
		t.Fatalf("names %v", names)
	}
	if got := st2.Renditions(); len(got) != 2 || got[0].Name() != "video" || got[1].Name() != "audio" || got[0].Stream() != st2 {
		t.Fatal("renditions")
	}
}

func TestRepublishAfterGrace(t *testing.T) {
	s, st, r := newTestRendition(t, Config{EndedGrace: 20 * time.Millisecond})
	addSegment(t, r, 0, 2)
	st.End()
	time.Sleep(40 * time.Millisecond)
	st2 := s.Begin("live/x")
	if st2 == st || st2.Epoch() != 0 || len(st2.Renditions()) != 0 {
		t.Fatal("an expired stream was continued")
	}
	r2 := st2.AddRendition(videoInfo("video"))
	r2.SetInit(videoInfo("video"), []byte("init-A"))
	if msn := addSegment(t, r2, 0, 1); msn != 0 || r2.Snapshot().Segments[0].Discontinuity {
		t.Fatal("a new stream does not start afresh")
	}
	// The old stream's readers keep their data.
	if len(r.Snapshot().Segments) != 1 {
		t.Fatal("old rendition changed")
	}
	// Sweep forgets ended streams after the grace time, not live ones.
	s.Sweep(time.Now().Add(time.Hour))
	if _, ok := s.Stream("live/x"); !ok {
		t.Fatal("a live stream was swept")
	}
	st2.End()
	s.Sweep(time.Now())
	if _, ok := s.Stream("live/x"); !ok {
		t.Fatal("swept within the grace time")
	}
	s.Sweep(time.Now().Add(time.Second))
	if _, ok := s.Stream("live/x"); ok {
		t.Fatal("not swept")
	}
}

// TestRepublishWhileLive covers a publisher that comes back before the
// previous one was ended: its open segment is closed so the new one can
// start, and the timeline accounts for it.
func TestRepublishWhileLive(t *testing.T) {
	s, _, r := newTestRendition(t, Config{})
	addSegment(t, r, 0, 1)
	if _, err := r.StartSegment(t0, 18000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart([]byte("a"), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	st2 := s.Begin("live/x")
	if st2.Epoch() != 1 {
		t.Fatal("epoch")
	}
	if snap := r.Snapshot(); snap.Open != nil || len(snap.Segments) != 2 || r.NextBaseTime() != 36000 {
		t.Fatalf("open segment left: %v, %d segments", snap.Open != nil, len(snap.Segments))
	}
	if msn := addSegment(t, r, 36000, 1); msn != 2 {
		t.Fatalf("msn %d", msn)
	}
	if !r.Snapshot().Segments[2].Discontinuity {
		t.Fatal("no discontinuity")
	}
}

func TestEmptySegmentsDoNotUseNumbers(t *testing.T) {
	s, st, r := newTestRendition(t, Config{})
	addSegment(t, r, 0, 1)
	// A segment that gets no part: its number is given back.
	r.SetInit(videoInfo("video"), []byte("init-B"))
	if msn, _ := r.StartSegment(t0, 18000); msn != 1 {
		t.Fatalf("msn %d", msn)
	}
	if err := r.FinishSegment(0); err != nil {
		t.Fatal(err)
	}
	if snap := r.Snapshot(); len(snap.Segments) != 1 || snap.Open != nil || snap.NextMSN() != 1 {
		t.Fatal("empty segment kept")
	}
	// ... and the discontinuity it carried goes to the next one.
	if msn := addSegment(t, r, 18000, 1); msn != 1 {
		t.Fatalf("msn %d after an empty segment", msn)
	}
	if seg := r.Snapshot().Segments[1]; !seg.Discontinuity || seg.InitName != "init-1.mp4" {
		t.Fatal("discontinuity lost with the empty segment")
	}
	// Gaps use numbers.
	if err := r.AddGap(t0, 36000, 18000); err != nil {
		t.Fatal(err)
	}
	// End with an empty open segment, then a republish.
	if _, err := r.StartSegment(t0, 54000); err != nil {
		t.Fatal(err)
	}
	st.End()
	s.Begin("live/x")
	r.SetInit(videoInfo("video"), []byte("init-B"))
	addSegment(t, r, 54000, 1)
	addSegment(t, r, 72000, 1)
	snap := r.Snapshot()
	for i, seg := range snap.Segments {
		if seg.MSN != uint64(i) {
			t.Fatalf("MSNs %v", msns(snap.Segments))
		}
		if got, ok := snap.Segment(seg.MSN); !ok || got != seg {
			t.Fatalf("Segment(%d)", seg.MSN)
		}
	}
	if seg := snap.Segments[3]; !seg.Discontinuity || seg.Epoch != 1 {
		t.Fatal("republish discontinuity")
	}
	if !snap.Segments[2].Gap || snap.Segments[2].Duration != 200*time.Millisecond || snap.Segments[2].InitName != "init-1.mp4" {
		t.Fatalf("gap %+v", *snap.Segments[2])
	}
}

func TestLookups(t *testing.T) {
	_, _, r := newTestRendition(t, Config{Window: 2, KeepExtra: -1})
	for i := 0; i < 4; i++ {
		addSegment(t, r, uint64(i)*54000, 3)
	}
	if _, err := r.StartSegment(t0, 4*54000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart([]byte("open"), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	if msn, part, ok := snap.LastMSN(); !ok || msn != 4 || part != 0 || snap.NextMSN() != 5 {
		t.Fatalf("LastMSN %d %d %v", msn, part, ok)
	}
	for _, c := range []struct {
		msn  uint64
		part int
		want string
	}{{2, 0, "seg2part0"}, {3, 2, "seg3part2"}, {4, 0, "open"}, {1, 0, ""}, {3, 3, ""}, {3, -1, ""}, {5, 0, ""}} {
		p, ok := snap.Part(c.msn, c.part)
		if ok != (c.want != "") || ok && string(p.Data) != c.want {
			t.Errorf("Part(%d, %d) = %v", c.msn, c.part, ok)
		}
	}
	if p, _ := snap.Part(3, 1); p.Index != 1 || p.Independent || p.Duration != 200*time.Millisecond {
		t.Fatalf("part %+v", p)
	}
	seg, _ := snap.Segment(3)
	if string(seg.Data) != "seg3part0seg3part1seg3part2" || seg.Size != len(seg.Data) || !seg.Complete || seg.BaseTime != 3*54000 {
		t.Fatalf("segment data %q", seg.Data)
	}
	if _, ok := snap.Init("nope.mp4"); ok {
		t.Fatal("Init found a missing init")
	}
	var empty Snapshot
	if _, _, ok := empty.LastMSN(); ok || empty.NextMSN() != 0 {
		t.Fatal("empty snapshot")
	}
	if _, ok := empty.Segment(0); ok {
		t.Fatal("empty snapshot has a segment")
	}
}

func TestWriterErrors(t *testing.T) {
	s := New(Config{})
	r := s.Begin("x").AddRendition(videoInfo("video"))
	if _, err := r.StartSegment(t0, 0); err == nil {
		t.Fatal("segment without an init")
	}
	if _, err := r.AppendPart([]byte("x"), time.Second, true); err == nil {
		t.Fatal("part without a segment")
	}
	if err := r.FinishSegment(1); err == nil {
		t.Fatal("finish without a segment")
	}
	r.SetInit(videoInfo("video"), []byte("i"))
	if _, err := r.StartSegment(t0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartSegment(t0, 0); err == nil {
		t.Fatal("two open segments")
	}
	if err := r.AddGap(t0, 0, 1); err == nil {
		t.Fatal("gap while a segment is open")
	}
	r.End()
	r.End()
	if !r.Snapshot().Ended {
		t.Fatal("not ended")
	}
}

// TestSnapshotsImmutable has a reader check, under -race, that snapshots
// never change while the writer appends, finishes, trims and re-inits, and
// reuses the buffers it hands to the store.
func TestSnapshotsImmutable(t *testing.T) {
	_, st, r := newTestRendition(t, Config{Window: 3, KeepExtra: 1})
	type held struct {
		snap *Snapshot
		sum  uint32
	}
	digest := func(s *Snapshot) uint32 {
		h := crc32.NewIEEE()
		w := func(v ...any) {
			for _, x := range v {
				h.Write([]byte(strconv.Quote(fmtAny(x))))
			}
		}
		w(s.Version, s.Ended, s.MaxSegmentDuration, len(s.Inits), len(s.Segments), s.Info.FrameRate)
		for _, in := range s.Inits {
			w(in.Name, in.Info.FrameRate)
			h.Write(in.Data)
		}
		segs := s.Segments
		if s.Open != nil {
			segs = append(segs[:len(segs):len(segs)], s.Open)
		}
		for _, seg := range segs {
			w(seg.MSN, seg.Epoch, seg.Discontinuity, seg.InitName, seg.BaseTime, seg.DurationTicks, seg.Complete, seg.Size, len(seg.Parts))
			h.Write(seg.Data)
			for _, p := range seg.Parts {
				w(p.Index, p.Duration, p.Independent)
				h.Write(p.Data)
			}
		}
		return h.Sum32()
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var kept []held
			for i := 0; ; i++ {
				select {
				case <-done:
					for _, k := range kept {
						if digest(k.snap) != k.sum {
							t.Errorf("snapshot version %d changed", k.snap.Version)
						}
					}
					return
				default:
				}
				s := r.Snapshot()
				if i%50 == 0 && len(kept) < 200 {
					kept = append(kept, held{s, digest(s)})
				} else {
					digest(s)
				}
				if msn, part, ok := s.LastMSN(); ok {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					_, _ = r.Wait(ctx, msn, part+1) // a 1 ms wait: timing out is the common case
					cancel()
				}
			}
		}()
	}

	buf := make([]byte, 4000)
	info := videoInfo("video")
	var base uint64
	for seg := 0; seg < 60; seg++ {
		if seg%7 == 3 {
			info.FrameRate = float64(seg)
			buf[0] = byte(seg)
			r.SetInit(info, buf[:10]) // a new init, from a reused buffer
		}
		if _, err := r.StartSegment(t0, base); err != nil {
			t.Fatal(err)
		}
		for p := 0; p < 10; p++ {
			for i := range buf {
				buf[i] = byte(seg*10 + p)
			}
			if _, err := r.AppendPart(buf[:100+seg*50], 20*time.Millisecond, p == 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.FinishSegment(18000); err != nil {
			t.Fatal(err)
		}
		base += 18000
	}
	st.End()
	close(done)
	wg.Wait()

	// The data are what was written, not what the reused buffer holds now.
	snap := r.Snapshot()
	for _, seg := range snap.Segments {
		for i, p := range seg.Parts {
			if want := bytes.Repeat([]byte{byte(int(seg.MSN)*10 + i)}, 100+int(seg.MSN)*50); !bytes.Equal(p.Data, want) {
				t.Fatalf("part %d.%d holds other bytes", seg.MSN, i)
			}
		}
	}
}

func fmtAny(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Duration:
		return x.String()
	}
	return "?"
}

func BenchmarkStoreAppendPart(b *testing.B) {
	_, _, r := newTestRendition(b, Config{})
	data := make([]byte, 60<<10) // a 200 ms part of a ~2.4 Mb/s stream
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var base uint64
	if _, err := r.StartSegment(t0, base); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if _, err := r.AppendPart(data, 200*time.Millisecond, i%10 == 0); err != nil {
			b.Fatal(err)
		}
		if i%10 == 9 {
			if err := r.FinishSegment(180000); err != nil {
				b.Fatal(err)
			}
			base += 180000
			if _, err := r.StartSegment(t0, base); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestHoldSuspendsUntilRelease: a held stream's End (and its renditions')
// only closes the open segment; the next publish continues it with a
// discontinuity; Release ends it.
func TestHoldSuspendsUntilRelease(t *testing.T) {
	s, st, r := newTestRendition(t, Config{EndedGrace: 0})
	st.Hold()
	addSegment(t, r, 0, 2)
	if _, err := r.StartSegment(t0.Add(400*time.Millisecond), 36000); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart([]byte("open"), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	r.End() // the segmenter's end of its run
	st.End()
	snap := r.Snapshot()
	if snap.Ended || !st.Live() || snap.Open != nil || len(snap.Segments) != 2 {
		t.Fatalf("suspended: ended %v live %v open %v segments %d", snap.Ended, st.Live(), snap.Open != nil, len(snap.Segments))
	}
	s.Sweep(time.Now().Add(time.Hour))
	if _, ok := s.Stream("live/x"); !ok {
		t.Fatal("a held stream was swept")
	}
	st2 := s.Begin("live/x")
	if st2 != st || st2.Epoch() != 1 {
		t.Fatalf("the next publish: same %v, epoch %d", st2 == st, st2.Epoch())
	}
	addSegment(t, r, 54000, 1)
	if seg := r.Snapshot().Segments[2]; !seg.Discontinuity || seg.Epoch != 1 || seg.MSN != 2 {
		t.Fatalf("first segment after the suspension: %+v", seg)
	}
	st.Release()
	if !r.Snapshot().Ended || st.Live() || st.Held() {
		t.Fatal("Release did not end the stream")
	}
}

// TestAlignWithin: a rendition's first segment of the epoch takes the
// number of the source segment its start falls in (complete or open), and
// keeps its own numbering otherwise.
func TestAlignWithin(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   time.Duration
		want uint64
	}{
		{"inside the first", 500 * time.Millisecond, 0},
		{"inside the second", 1500 * time.Millisecond, 1},
		{"at the second's start", 1000 * time.Millisecond, 1},
		{"inside the open one", 2700 * time.Millisecond, 2},
		{"before any", -time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, st, src := newTestRendition(t, Config{})
			addSegment(t, src, 0, 5)     // 0: 0-1 s
			addSegment(t, src, 90000, 5) // 1: 1-2 s
			if _, err := src.StartSegment(t0, 180000); err != nil {
				t.Fatal(err)
			}
			if _, err := src.AppendPart([]byte("p"), 200*time.Millisecond, true); err != nil {
				t.Fatal(err)
			}
			info := RenditionInfo{Name: "audio", Kind: media.KindAudio, Timescale: 48000}
			r := st.AddRendition(info)
			r.SetInit(info, []byte("a"))
			r.AlignWithin(src, tc.at)
			msn, err := r.StartSegment(t0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if msn != tc.want {
				t.Fatalf("first segment numbered %d, want %d", msn, tc.want)
			}
			// The rendition's next segments are numbered on; aligning again
			// changes nothing.
			if _, err := r.AppendPart([]byte("x"), 200*time.Millisecond, true); err != nil {
				t.Fatal(err)
			}
			if err := r.FinishSegment(48000); err != nil {
				t.Fatal(err)
			}
			r.AlignWithin(src, 2700*time.Millisecond)
			if next, _ := r.StartSegment(t0, 48000); next != tc.want+1 {
				t.Fatalf("second segment numbered %d, want %d", next, tc.want+1)
			}
		})
	}
}

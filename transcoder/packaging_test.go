package transcoder

import (
	"context"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
)

// segmentedOutput is the wiring the server would do: a rendition becomes a
// media.Stream (published at its first frame, when its parameter sets are
// known) packaged by its own segmenter.
type segmentedOutput struct {
	reg  *media.Registry
	seg  *segmenter.Segmenter
	dst  *store.Stream
	name string
	st   *media.Stream
	done chan error
	gaps []Gap
	t    testing.TB
}

func (o *segmentedOutput) WriteFrame(f *media.Frame) {
	if o.st == nil {
		st, err := o.reg.Publish(o.name, media.PublishInfo{Protocol: "transcoder"}, []*media.Track{f.Track})
		if err != nil {
			o.t.Error(err)
			return
		}
		o.st = st
		sub := st.Subscribe(4096)
		o.done = make(chan error, 1)
		go func() { o.done <- o.seg.Run(context.Background(), sub, o.dst) }()
	}
	o.st.WriteFrame(f)
}

func (o *segmentedOutput) Gap(g Gap) { o.gaps = append(o.gaps, g) }

func (o *segmentedOutput) Close() {
	if o.st != nil {
		o.st.Close()
		if err := <-o.done; err != nil {
			o.t.Error(err)
		}
	}
}

// TestRenditionsPackageAlignedWithSource packages the source and its
// renditions with the segmenter: every rendition has the source's
// segments, at the same decode times.
func TestRenditionsPackageAlignedWithSource(t *testing.T) {
	fx := tinyFixture(t)
	lad := tinyLadder()
	m := NewMetrics(nil)
	pool := startPool(t, PoolConfig{Size: 2, Warm: 1, MaxWait: 100, Prewarm: []Ladder{lad}}, m)
	tr, err := New(Config{Ladders: Ladders{"": lad}, Deadline: 30}, pool, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Config{Window: 10})
	seg := segmenter.New(segmenter.Config{SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond}, nil, nil)
	reg := media.NewRegistry(media.RegistryConfig{})
	src, err := reg.Publish("live/p", media.PublishInfo{}, []*media.Track{fx.track})
	if err != nil {
		t.Fatal(err)
	}
	srcSub := src.Subscribe(4096)
	trSub := src.Subscribe(4096)
	srcDone := make(chan error, 1)
	srcDst := st.Begin("live/p")
	go func() { srcDone <- seg.Run(context.Background(), srcSub, srcDst) }()
	outs := map[string]*segmentedOutput{}
	trDone := make(chan error, 1)
	go func() {
		trDone <- tr.Run(context.Background(), "live/p", trSub, func(ri RenditionInfo) Output {
			name := ri.Stream + "/" + ri.Rendition.Name
			o := &segmentedOutput{reg: reg, seg: seg, dst: st.Begin(name), name: name, t: t}
			outs[ri.Rendition.Name] = o
			return o
		})
	}()
	for _, f := range fx.frames {
		c := *f
		c.Received = time.Now()
		src.WriteFrame(&c)
	}
	src.Close()
	if err := <-srcDone; err != nil {
		t.Fatal(err)
	}
	waitRun(t, trDone, 60*time.Second)

	want := srcDst.Renditions()[0].Snapshot().Segments
	if len(want) != 6 {
		t.Fatalf("source has %d segments", len(want))
	}
	for _, name := range []string{"120p", "90p"} {
		o := outs[name]
		rs := o.dst.Renditions()
		if len(rs) != 1 || len(o.gaps) != 0 {
			t.Fatalf("%s: %d renditions in the store, gaps %v", name, len(rs), o.gaps)
		}
		snap := rs[0].Snapshot()
		if size := map[string][2]int{"120p": {214, 120}, "90p": {160, 90}}[name]; snap.Info.Width != size[0] || snap.Info.Height != size[1] {
			t.Errorf("%s: store says %dx%d", name, snap.Info.Width, snap.Info.Height)
		}
		if len(snap.Segments) != len(want) {
			t.Fatalf("%s: %d segments, source %d", name, len(snap.Segments), len(want))
		}
		for i, s := range snap.Segments {
			w := want[i]
			if s.BaseTime != w.BaseTime || s.DurationTicks != w.DurationTicks || !s.Parts[0].Independent {
				t.Errorf("%s segment %d: base %d dur %d, source base %d dur %d", name, i, s.BaseTime, s.DurationTicks, w.BaseTime, w.DurationTicks)
			}
		}
	}
}

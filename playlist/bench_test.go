package playlist

import (
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// BenchmarkMedia renders an LL-HLS playlist of 6 segments of 10 × 0.2 s
// parts, an open segment with 5 parts and one sibling rendition.
func BenchmarkMedia(b *testing.B) {
	f := newFixture(b, store.Config{})
	v := f.video("video", 1280, 720, 8000)
	v.info.PartTarget = 200 * time.Millisecond
	v.r.SetInit(v.info, v.init)
	v.partDur, v.parts = 200*time.Millisecond, 10
	a := f.audio("audio")
	v.segments(8)
	a.segments(8)
	v.openWith(5)
	a.openWith(2)
	r, all := f.rendition("video"), f.renditions()
	if r.Snap.Info.Kind != media.KindVideo {
		b.Fatal("not video")
	}
	o := DefaultMediaOptions()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Media(r, all, o))
	}
	b.SetBytes(int64(n))
}

func BenchmarkMultivariant(b *testing.B) {
	f := newFixture(b, store.Config{})
	v := f.video("video", 1280, 720, 8000)
	a := f.audio("audio")
	v.segments(8)
	a.segments(8)
	all := f.renditions()
	b.ReportAllocs()
	for b.Loop() {
		Multivariant(all)
	}
}

func TestMediaAllocs(t *testing.T) {
	f := steady(t)
	r, all := f.rendition("video"), f.renditions()
	o := DefaultMediaOptions()
	if n := testing.AllocsPerRun(100, func() { Media(r, all, o) }); n > 1 {
		t.Errorf("%v allocations per playlist, want 1", n)
	}
	o.Skip, o.Window = true, 12
	if n := testing.AllocsPerRun(100, func() { Media(r, all, o) }); n > 1 {
		t.Errorf("%v allocations per delta playlist, want 1", n)
	}
}

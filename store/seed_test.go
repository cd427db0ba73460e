package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/playlist"
	"github.com/headwater-live/headwater/store"
)

func seedInfo(name string) store.RenditionInfo {
	return store.RenditionInfo{Name: name, Kind: media.KindVideo, Timescale: 90000,
		SegmentTarget: time.Second, PartTarget: 0}
}

// writeSegment writes a one-part segment of one second at base.
func writeSegment(t *testing.T, r *store.Rendition, base uint64) uint64 {
	t.Helper()
	msn, err := r.StartSegment(time.Unix(0, 0), base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart([]byte("x"), time.Second, true); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	return msn
}

func mediaText(r *store.Rendition) string {
	return string(playlist.Media(playlist.Rendition{Name: r.Name(), Snap: r.Snapshot()}, nil, playlist.MediaOptions{Window: 6}))
}

// TestBeginSeeded: a stream seeded with another node's continuity lists,
// in its first playlist, the seed's next sequence number as
// EXT-X-MEDIA-SEQUENCE, the seed's discontinuity count as
// EXT-X-DISCONTINUITY-SEQUENCE and an EXT-X-DISCONTINUITY before the first
// segment; its timeline end is the seed's; a rendition added later under a
// seeded name continues too, one not seeded starts at 0; and Continuity
// reports where it stands for the next takeover.
func TestBeginSeeded(t *testing.T) {
	s := store.New(store.Config{})
	seed := store.Seed{
		Renditions: []store.SeedRendition{{Name: "video", NextMSN: 117, DiscontinuitySequence: 3}, {Name: "144p", NextMSN: 115, DiscontinuitySequence: 2}},
		End:        90000 * 120, EndTimescale: 90000,
	}
	st := s.BeginSeeded("live/x", seed)
	if end, ts := st.TimelineEnd(); end != 90000*120 || ts != 90000 {
		t.Errorf("TimelineEnd = %d/%d, want %d/90000", end, ts, 90000*120)
	}
	r := st.AddRendition(seedInfo("video"))
	r.SetInit(seedInfo("video"), []byte("init"))
	if n := r.Snapshot().NextMSN(); n != 117 {
		t.Errorf("seeded rendition's NextMSN before its first segment = %d, want 117", n)
	}
	if msn := writeSegment(t, r, 90000*120); msn != 117 {
		t.Errorf("first segment MSN %d, want 117", msn)
	}
	writeSegment(t, r, 90000*121)
	text := mediaText(r)
	for _, want := range []string{"#EXT-X-MEDIA-SEQUENCE:117\n", "#EXT-X-DISCONTINUITY-SEQUENCE:3\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("playlist lacks %q:\n%s", want, text)
		}
	}
	first := strings.Index(text, "#EXTINF")
	if d := strings.Index(text, "#EXT-X-DISCONTINUITY\n"); d < 0 || d > first || strings.Count(text, "#EXT-X-DISCONTINUITY\n") != 1 {
		t.Errorf("want one EXT-X-DISCONTINUITY, before the first segment:\n%s", text)
	}
	if seg := r.Snapshot().Segments[0]; !seg.Discontinuity || seg.DiscontinuitySequence != 4 {
		t.Errorf("first segment: discontinuity %v, sequence %d, want true, 4", seg.Discontinuity, seg.DiscontinuitySequence)
	}

	// Continuity before 144p is added carries its seed on.
	c := st.Continuity()
	got := map[string]store.SeedRendition{}
	for _, sr := range c.Renditions {
		got[sr.Name] = sr
	}
	if v := got["video"]; v.NextMSN != 119 || v.DiscontinuitySequence != 4 {
		t.Errorf("Continuity video = %+v, want next 119, discontinuities 4", v)
	}
	if v := got["144p"]; v.NextMSN != 115 || v.DiscontinuitySequence != 2 {
		t.Errorf("Continuity 144p (not added) = %+v, want the seed's", v)
	}
	if c.End != 90000*122 || c.EndTimescale != 90000 {
		t.Errorf("Continuity end %d/%d, want %d/90000", c.End, c.EndTimescale, 90000*122)
	}

	low := st.AddRendition(seedInfo("144p"))
	low.SetInit(seedInfo("144p"), []byte("init"))
	if msn := writeSegment(t, low, 90000*120); msn != 115 {
		t.Errorf("144p first MSN %d, want 115", msn)
	}
	other := st.AddRendition(seedInfo("audio"))
	other.SetInit(seedInfo("audio"), []byte("init"))
	if msn := writeSegment(t, other, 90000*120); msn != 0 {
		t.Errorf("unseeded rendition's first MSN %d, want 0", msn)
	}
	if strings.Contains(mediaText(other), "#EXT-X-DISCONTINUITY\n") {
		t.Errorf("unseeded rendition has a discontinuity:\n%s", mediaText(other))
	}
}

// TestBeginSeededOverLocal: a stream still held here (ended within the
// grace) is continued as a republish; the seed raises its numbering only
// when the seed is further on.
func TestBeginSeededOverLocal(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seedNext uint64
		want     uint64
	}{{"seed behind", 1, 3}, {"seed ahead", 50, 50}} {
		t.Run(tc.name, func(t *testing.T) {
			s := store.New(store.Config{})
			st := s.Begin("live/x")
			r := st.AddRendition(seedInfo("video"))
			r.SetInit(seedInfo("video"), []byte("init"))
			for i := range 3 {
				writeSegment(t, r, uint64(i)*90000)
			}
			st.End()
			st2 := s.BeginSeeded("live/x", store.Seed{Renditions: []store.SeedRendition{{Name: "video", NextMSN: tc.seedNext, DiscontinuitySequence: 0}}})
			if st2 != st || st2.Epoch() != 1 {
				t.Fatalf("not continued as a republish: same %v, epoch %d", st2 == st, st2.Epoch())
			}
			r2 := st2.AddRendition(seedInfo("video"))
			if msn := writeSegment(t, r2, 3*90000); msn != tc.want {
				t.Errorf("first MSN after the seeded republish %d, want %d", msn, tc.want)
			}
			seg := r2.Snapshot().Segments[3]
			if !seg.Discontinuity || seg.DiscontinuitySequence != 1 {
				t.Errorf("republished segment: discontinuity %v, sequence %d, want true, 1", seg.Discontinuity, seg.DiscontinuitySequence)
			}
		})
	}
}

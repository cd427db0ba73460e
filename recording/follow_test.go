package recording

import (
	"testing"
	"time"

	"github.com/headwater-live/headwater/store"
)

// TestSegmentDue checks when a follower expects an open segment to be
// complete: a segment target after its first frame for the first one,
// then the time the segment before it took to arrive (shorter from a
// publisher faster than real time, at most 3 targets), plus the slack;
// never for a segment of another epoch or without a time.
func TestSegmentDue(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 16, 18, 0, 0, time.UTC)
	info := store.RenditionInfo{SegmentTarget: 2 * time.Second}
	seg := func(msn uint64, epoch int, at time.Duration) *store.Segment {
		return &store.Segment{MSN: msn, Epoch: epoch, ProgramDateTime: t0.Add(at)}
	}
	for _, tc := range []struct {
		name string
		snap store.Snapshot
		want time.Duration // after t0; -1 for none
	}{
		{"no open segment", store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 1, 0)}}, -1},
		{"first segment", store.Snapshot{Info: info, Open: seg(0, 1, 0)}, 2*time.Second + segmentSlack},
		{"real time", store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 1, 0)}, Open: seg(1, 1, 2*time.Second)},
			4*time.Second + segmentSlack},
		{"4x real time", store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 1, 0)}, Open: seg(1, 1, 500*time.Millisecond)},
			time.Second + segmentSlack},
		{"a long gap", store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 1, 0)}, Open: seg(1, 1, 20*time.Second)},
			26*time.Second + segmentSlack},
		{"after an earlier epoch", store.Snapshot{Info: info, Segments: []*store.Segment{seg(0, 1, 0)}, Open: seg(1, 2, 5*time.Second)},
			7*time.Second + segmentSlack},
		{"another epoch", store.Snapshot{Info: info, Open: seg(0, 2, 0)}, -1},
		{"no time", store.Snapshot{Info: info, Open: &store.Segment{Epoch: 1}}, -1},
		{"no target", store.Snapshot{Open: seg(0, 1, 0)}, -1},
	} {
		got := segmentDue(&tc.snap, 1)
		if tc.name == "after an earlier epoch" {
			got = segmentDue(&tc.snap, 2)
		}
		switch {
		case tc.want < 0 && !got.IsZero():
			t.Errorf("%s: due %v, want none", tc.name, got.Sub(t0))
		case tc.want >= 0 && (got.IsZero() || got.Sub(t0) != tc.want):
			t.Errorf("%s: due %v after the start (zero %v), want %v", tc.name, got.Sub(t0), got.IsZero(), tc.want)
		}
	}
}

package main

import (
	"os"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func loadView(t *testing.T, name string) mediaView {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m playlist.Media
	if err := m.Unmarshal(b); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return viewOf(&m)
}

// hintKey reads the part named by Headwater's preload-hint URI.
func hintKey(t *testing.T, uri string) partKey {
	t.Helper()
	msn, p := testpeer.ParsePartURI(t, uri)
	return partKey{MSN: msn, Part: p}
}

func keys(ps []partInfo) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key.String())
	}
	return out
}

func TestViewOfOpenSegment(t *testing.T) {
	// Captured from Headwater: two complete segments, the third open with
	// four parts, the hint on its fifth.
	v := loadView(t, "live_video.m3u8")
	if v.FirstMSN != 0 || v.InitURI != "init.mp4" || !v.CanBlock || v.Ended {
		t.Fatalf("view: %+v", v)
	}
	if len(v.Parts) != 24 {
		t.Fatalf("%d parts, want 24", len(v.Parts))
	}
	if want := (partKey{2, 4}); v.Next != want || hintKey(t, v.HintURI) != want {
		t.Fatalf("next %v, hint %q; want %v", v.Next, v.HintURI, want)
	}
	last, _ := v.newest()
	if last.Key != (partKey{2, 3}) || last.URI != "part2.3.m4s" || last.End != 800*time.Millisecond {
		t.Fatalf("newest %+v", last)
	}
	if v.Parts[9].Key != (partKey{0, 9}) || v.Parts[9].End != 2*time.Second || v.Parts[10].URI != "part1.0.m4s" {
		t.Fatalf("parts %+v %+v", v.Parts[9], v.Parts[10])
	}
	// Only complete segments carry their date: the open one's is not
	// parsed into a segment.
	if len(v.SegmentStart) != 2 {
		t.Fatalf("segment starts %v", v.SegmentStart)
	}
	want := time.Date(2026, 11, 26, 10, 22, 29, 872e6, time.UTC)
	if got := v.SegmentStart[1]; !got.Equal(want) {
		t.Fatalf("segment 1 starts %v, want %v", got, want)
	}
	if got := v.Next.query(); got != "_HLS_msn=2&_HLS_part=4" {
		t.Fatalf("query %q", got)
	}
}

func TestViewOfSegmentBoundary(t *testing.T) {
	// The last segment is complete: the hint is part 0 of the next one, and
	// old segments list no parts.
	v := loadView(t, "segment_boundary.m3u8")
	if v.FirstMSN != 2 {
		t.Fatalf("first msn %d", v.FirstMSN)
	}
	if want := (partKey{8, 0}); v.Next != want || hintKey(t, v.HintURI) != want {
		t.Fatalf("next %v, hint %q; want %v", v.Next, v.HintURI, want)
	}
	if len(v.Parts) != 12 || v.Parts[0].Key != (partKey{5, 0}) {
		t.Fatalf("parts %v", keys(v.Parts))
	}
}

func TestViewOfEnded(t *testing.T) {
	v := loadView(t, "ended.m3u8")
	if !v.Ended || v.HintURI != "" || v.InitURI != "init-1.mp4" {
		t.Fatalf("view %+v", v)
	}
	if last, _ := v.newest(); last.Key != (partKey{8, 1}) || last.End != 500*time.Millisecond {
		t.Fatalf("newest %+v", last)
	}
}

func TestPartsAfter(t *testing.T) {
	v := loadView(t, "live_video.m3u8")
	tests := []struct {
		name       string
		last       partKey
		have       bool
		maxCatchUp int
		want       []string
		resync     bool
	}{
		{"start at the live edge", partKey{}, false, 16, []string{"2.3"}, false},
		{"the next two parts", partKey{2, 1}, true, 16, []string{"2.2", "2.3"}, false},
		{"across a segment boundary", partKey{1, 8}, true, 16, []string{"1.9", "2.0", "2.1", "2.2", "2.3"}, false},
		{"up to date", partKey{2, 3}, true, 16, nil, false},
		{"ahead (a later playlist was seen)", partKey{2, 5}, true, 16, nil, false},
		{"too far behind", partKey{0, 2}, true, 16, []string{"2.3"}, true},
		{"nothing fetched yet ignores last", partKey{0, 0}, false, 16, []string{"2.3"}, false},
		{"catch-up limit", partKey{1, 8}, true, 4, []string{"2.3"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, resync := v.partsAfter(tt.last, tt.have, tt.maxCatchUp)
			if g := keys(got); len(g) != len(tt.want) || resync != tt.resync {
				t.Fatalf("got %v resync %v, want %v resync %v", g, resync, tt.want, tt.resync)
			}
			for i := range tt.want {
				if got[i].Key.String() != tt.want[i] {
					t.Fatalf("got %v, want %v", keys(got), tt.want)
				}
			}
		})
	}
	old := loadView(t, "segment_boundary.m3u8")
	if got, resync := old.partsAfter(partKey{4, 3}, true, 100); !resync || keys(got)[0] != "7.3" {
		t.Fatalf("before the first listed part: %v %v", keys(got), resync)
	}
	var empty mediaView
	if got, _ := empty.partsAfter(partKey{}, false, 16); got != nil {
		t.Fatalf("no parts: %v", keys(got))
	}
}

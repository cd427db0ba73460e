package main

import (
	"math"
	"testing"
	"time"
)

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		q       float64
		buckets []bucket
		want    float64
	}{
		{"middle of a bucket", 0.5, []bucket{{0.1, 0}, {0.2, 10}, {inf, 10}}, 0.15},
		{"lowest bucket starts at zero", 0.5, []bucket{{1, 10}, {inf, 10}}, 0.5},
		{"rank at a bucket edge", 0.5, []bucket{{1, 5}, {2, 10}, {inf, 10}}, 1},
		{"q=1 is the top of the highest non-empty bucket", 1, []bucket{{1, 5}, {2, 10}, {4, 10}, {inf, 10}}, 2},
		{"q=0", 0, []bucket{{1, 5}, {2, 10}, {inf, 10}}, 0},
		{"p99 across buckets", 0.99, []bucket{{0.01, 90}, {0.02, 98}, {0.05, 100}, {inf, 100}}, 0.035},
		{"rank in +Inf bucket gives highest finite bound", 0.9, []bucket{{1, 5}, {inf, 10}}, 1},
		{"unsorted input", 0.5, []bucket{{inf, 10}, {0.2, 10}, {0.1, 0}}, 0.15},
		{"non-monotonic counts are forced monotonic", 0.5, []bucket{{0.1, 4}, {0.2, 3}, {0.4, 8}, {inf, 8}}, 0.1},
		{"non-positive lowest bound is returned as is", 0.25, []bucket{{-1, 2}, {1, 4}, {inf, 4}}, -1},
		{"no observations", 0.5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"no +Inf bucket", 0.5, []bucket{{1, 3}, {2, 4}}, math.NaN()},
		{"one bucket only", 0.5, []bucket{{inf, 4}}, math.NaN()},
		{"q below 0", -0.1, []bucket{{1, 3}, {inf, 3}}, math.Inf(-1)},
		{"q above 1", 1.1, []bucket{{1, 3}, {inf, 3}}, math.Inf(1)},
		// The real part-publish latency buckets: 30 of 50 ≤ 0.25 ms, 13
		// more ≤ 0.5 ms, ...; the median (rank 25) lies in (0.1, 0.25] ms.
		{"headwater part latency", 0.5, []bucket{
			{0.0001, 0}, {0.00025, 30}, {0.0005, 43}, {0.001, 47}, {0.002, 48}, {0.005, 48}, {0.01, 48},
			{0.02, 48}, {0.03, 49}, {0.05, 50}, {0.075, 50}, {inf, 50},
		}, 0.0001 + 0.00015*25.0/30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bucketQuantile(tt.q, tt.buckets)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Fatalf("got %v, want NaN", got)
				}
				return
			}
			if math.IsInf(tt.want, 0) {
				if got != tt.want {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-12 {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBucketMax(t *testing.T) {
	inf := math.Inf(1)
	if got := bucketMax([]bucket{{0.1, 2}, {0.3, 4}, {0.5, 4}, {inf, 4}}); got != 0.3 {
		t.Errorf("got %v, want 0.3", got)
	}
	if got := bucketMax([]bucket{{0.1, 2}, {inf, 3}}); !math.IsInf(got, 1) {
		t.Errorf("got %v, want +Inf", got)
	}
	if got := bucketMax([]bucket{{0.1, 0}, {inf, 0}}); !math.IsNaN(got) {
		t.Errorf("got %v, want NaN", got)
	}
}

func TestBucketDelta(t *testing.T) {
	inf := math.Inf(1)
	before := []bucket{{0.1, 2}, {0.2, 5}, {inf, 6}}
	after := []bucket{{0.1, 3}, {0.2, 9}, {inf, 12}}
	got := bucketDelta(after, before)
	want := []bucket{{0.1, 1}, {0.2, 4}, {inf, 6}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// Absent before (histogram created during the run): after as is.
	if got := bucketDelta(after, nil); got[2].Count != 12 {
		t.Errorf("no before: got %v", got)
	}
	// Counter reset (server restarted): after as is.
	if got := bucketDelta(before, after); got[2].Count != 6 {
		t.Errorf("reset: got %v", got)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := summarize(d)
	if s.Count != 100 || s.P50ms != 50 || s.P90ms != 90 || s.P99ms != 99 || s.MaxMs != 100 {
		t.Fatalf("got %+v", s)
	}
	if d[0] != 100*time.Millisecond {
		t.Fatal("summarize sorted its input in place")
	}
	if s := summarize(nil); s.Count != 0 {
		t.Fatalf("empty: %+v", s)
	}
}

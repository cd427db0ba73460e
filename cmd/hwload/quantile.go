package main

import (
	"math"
	"sort"
	"time"
)

// bucket is one cumulative histogram bucket: Count observations were ≤ UpperBound.
type bucket struct {
	UpperBound float64
	Count      float64
}

// bucketQuantile returns the q-quantile (0 ≤ q ≤ 1) of a cumulative
// histogram the way PromQL's histogram_quantile does: find the bucket holding
// the rank q·total and interpolate linearly inside it (the lowest bucket
// starts at 0 when its upper bound is positive). If the rank falls into the
// +Inf bucket the upper bound of the highest finite bucket is returned. The
// buckets need not be sorted; the last must be +Inf. NaN when there are no
// observations or the buckets are unusable.
func bucketQuantile(q float64, buckets []bucket) float64 {
	if math.IsNaN(q) {
		return math.NaN()
	}
	if q < 0 {
		return math.Inf(-1)
	}
	if q > 1 {
		return math.Inf(1)
	}
	bs := append([]bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].UpperBound < bs[j].UpperBound })
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].UpperBound, 1) {
		return math.NaN()
	}
	// Counters scraped at slightly different moments can be non-monotonic;
	// PromQL forces them monotonic, so do we.
	for i := 1; i < len(bs); i++ {
		if bs[i].Count < bs[i-1].Count {
			bs[i].Count = bs[i-1].Count
		}
	}
	total := bs[len(bs)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	b := sort.Search(len(bs)-1, func(i int) bool { return bs[i].Count >= rank })
	if b == len(bs)-1 {
		return bs[len(bs)-2].UpperBound
	}
	if b == 0 && bs[0].UpperBound <= 0 {
		return bs[0].UpperBound
	}
	start, end, count := 0.0, bs[b].UpperBound, bs[b].Count
	if b > 0 {
		start = bs[b-1].UpperBound
		count -= bs[b-1].Count
		rank -= bs[b-1].Count
	}
	if count <= 0 {
		return end
	}
	return start + (end-start)*(rank/count)
}

// bucketMax returns the upper bound of the highest non-empty bucket: every
// observation was ≤ it (+Inf if some landed in the +Inf bucket). NaN when
// there are no observations.
func bucketMax(buckets []bucket) float64 {
	bs := append([]bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].UpperBound < bs[j].UpperBound })
	if len(bs) == 0 || bs[len(bs)-1].Count <= 0 {
		return math.NaN()
	}
	total := bs[len(bs)-1].Count
	for _, b := range bs {
		if b.Count >= total {
			return b.UpperBound
		}
	}
	return math.Inf(1)
}

// bucketDelta subtracts an earlier scrape of the same histogram from a later
// one, bucket by bucket (matched on the upper bound; a bucket missing from
// before counts as 0). A counter reset (negative delta) yields after as is.
func bucketDelta(after, before []bucket) []bucket {
	prev := make(map[float64]float64, len(before))
	for _, b := range before {
		prev[b.UpperBound] = b.Count
	}
	out := make([]bucket, len(after))
	reset := false
	for i, b := range after {
		out[i] = bucket{UpperBound: b.UpperBound, Count: b.Count - prev[b.UpperBound]}
		if out[i].Count < 0 {
			reset = true
		}
	}
	if reset {
		return append([]bucket(nil), after...)
	}
	return out
}

// durationQuantile returns the q-quantile of samples (nearest rank on the
// sorted samples); sorted must be in ascending order. 0 for no samples.
func durationQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// latencySummary is a distribution of client-side durations, in milliseconds.
type latencySummary struct {
	Count int     `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func summarize(samples []time.Duration) latencySummary {
	if len(samples) == 0 {
		return latencySummary{}
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencySummary{
		Count: len(s),
		P50ms: ms(durationQuantile(s, 0.50)),
		P90ms: ms(durationQuantile(s, 0.90)),
		P99ms: ms(durationQuantile(s, 0.99)),
		MaxMs: ms(s[len(s)-1]),
	}
}

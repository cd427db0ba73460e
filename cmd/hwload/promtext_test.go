package main

import (
	"math"
	"strings"
	"testing"
)

const metricsFixture = `# HELP headwater_part_publish_latency_seconds Time from the arrival at ingest of a part's last frame to the part being servable.
# TYPE headwater_part_publish_latency_seconds histogram
headwater_part_publish_latency_seconds_bucket{le="0.001"} 3
headwater_part_publish_latency_seconds_bucket{le="0.01"} 7
headwater_part_publish_latency_seconds_bucket{le="+Inf"} 8
headwater_part_publish_latency_seconds_sum 0.125
headwater_part_publish_latency_seconds_count 8
# TYPE rtt histogram
rtt_bucket{stream="a",le="1"} 1
rtt_bucket{stream="a",le="+Inf"} 2
rtt_bucket{stream="b",le="1"} 4
rtt_bucket{stream="b",le="+Inf"} 4
headwater_origin_requests_total{object="part",status="200"} 10
headwater_origin_requests_total{object="media_playlist",status="200"} 5 1700000000000
weird{path="a \"quoted\", {brace} \\ \n x",le="0.5"} 2.5e+01
process_cpu_seconds_total 1.5
process_resident_memory_bytes 2.0676608e+07
nan_metric NaN
`

func TestParsePromText(t *testing.T) {
	samples, err := parsePromText(strings.NewReader(metricsFixture))
	if err != nil {
		t.Fatal(err)
	}
	s := scrape{Samples: samples}
	if v, ok := s.sum("headwater_origin_requests_total"); !ok || v != 15 {
		t.Errorf("origin requests: %v %v", v, ok)
	}
	if v, ok := s.sum("process_cpu_seconds_total"); !ok || v != 1.5 {
		t.Errorf("cpu: %v %v", v, ok)
	}
	if v, _ := s.sum("process_resident_memory_bytes"); v != 20676608 {
		t.Errorf("rss: %v", v)
	}
	if _, ok := s.sum("absent"); ok {
		t.Error("absent metric found")
	}
	if _, ok := s.sum("nan_metric"); ok {
		t.Error("NaN counted")
	}
	var weird promSample
	for _, x := range samples {
		if x.Name == "weird" {
			weird = x
		}
	}
	if weird.Labels["path"] != "a \"quoted\", {brace} \\ \n x" || weird.Labels["le"] != "0.5" || weird.Value != 25 {
		t.Errorf("weird: %#v", weird)
	}

	h, ok := s.histogram("headwater_part_publish_latency_seconds")
	if !ok || h.Count != 8 || h.Sum != 0.125 || len(h.Buckets) != 3 {
		t.Fatalf("histogram: %+v %v", h, ok)
	}
	if !math.IsInf(h.Buckets[2].UpperBound, 1) || h.Buckets[2].Count != 8 {
		t.Errorf("+Inf bucket: %+v", h.Buckets[2])
	}
	r, _ := s.histogram("rtt")
	if len(r.Buckets) != 2 || r.Buckets[0].Count != 5 || r.Buckets[1].Count != 6 {
		t.Errorf("label sets not summed: %+v", r.Buckets)
	}
	if _, ok := s.histogram("headwater_first_part_latency_seconds"); ok {
		t.Error("absent histogram found")
	}
}

func TestParsePromTextErrors(t *testing.T) {
	for _, bad := range []string{
		"novalue\n",
		"x{a=\"b\" 1\n",
		"x{a=b} 1\n",
		"x 1 2 3\n",
		"x notanumber\n",
	} {
		if _, err := parsePromText(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

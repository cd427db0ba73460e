package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// promSample is one sample line of the Prometheus text exposition format.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// parsePromText parses the Prometheus text exposition format (version
// 0.0.4): comment lines are skipped, every other line is
// `name{label="value",...} value [timestamp]`. It is enough for what
// client_golang writes; it is not a validating parser.
func parsePromText(r io.Reader) ([]promSample, error) {
	var out []promSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parsePromLine(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", lineNo, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parsePromLine(line string) (promSample, error) {
	var s promSample
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		labels, n, err := parseLabels(rest)
		if err != nil {
			return s, err
		}
		s.Labels = labels
		rest = rest[n:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return s, fmt.Errorf("bad value in %q", line)
	}
	v, err := parsePromFloat(fields[0])
	if err != nil {
		return s, fmt.Errorf("bad value in %q: %w", line, err)
	}
	s.Value = v
	return s, nil
}

// parseLabels parses `{a="x",b="y"}` at the start of s and returns the labels
// and the number of bytes consumed.
func parseLabels(s string) (map[string]string, int, error) {
	labels := map[string]string{}
	i := 1 // past '{'
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return nil, 0, fmt.Errorf("unterminated labels in %q", s)
		}
		if s[i] == '}' {
			return labels, i + 1, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, 0, fmt.Errorf("bad label in %q", s)
		}
		name := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		if i >= len(s) || s[i] != '"' {
			return nil, 0, fmt.Errorf("unquoted label value in %q", s)
		}
		i++
		var b strings.Builder
		closed := false
		for i < len(s) {
			c := s[i]
			i++
			if c == '\\' && i < len(s) {
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				i++
				continue
			}
			if c == '"' {
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return nil, 0, fmt.Errorf("unterminated label value in %q", s)
		}
		labels[name] = b.String()
	}
}

func parsePromFloat(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

// scrape is one read of a /metrics endpoint.
type scrape struct {
	At      time.Time
	Samples []promSample
}

// fetchMetrics reads and parses a Prometheus text endpoint.
func fetchMetrics(ctx context.Context, client *http.Client, url string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return scrape{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return scrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scrape{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	at := time.Now()
	samples, err := parsePromText(resp.Body)
	if err != nil {
		return scrape{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return scrape{At: at, Samples: samples}, nil
}

// sum adds up every series of a metric (all label sets); ok is false when the
// metric is absent.
func (s scrape) sum(name string) (v float64, ok bool) {
	for _, x := range s.Samples {
		if x.Name == name && !math.IsNaN(x.Value) {
			v += x.Value
			ok = true
		}
	}
	return v, ok
}

// histogram returns the cumulative buckets of the histogram name (without
// the _bucket suffix), summed over all other labels, plus its _sum and
// _count; ok is false when it is absent.
func (s scrape) histogram(name string) (h histogram, ok bool) {
	byLE := map[float64]float64{}
	var order []float64
	for _, x := range s.Samples {
		switch x.Name {
		case name + "_bucket":
			le, err := parsePromFloat(x.Labels["le"])
			if err != nil {
				continue
			}
			if _, seen := byLE[le]; !seen {
				order = append(order, le)
			}
			byLE[le] += x.Value
			ok = true
		case name + "_sum":
			h.Sum += x.Value
		case name + "_count":
			h.Count += x.Value
		}
	}
	for _, le := range order {
		h.Buckets = append(h.Buckets, bucket{UpperBound: le, Count: byLE[le]})
	}
	return h, ok
}

// histogram is a scraped Prometheus histogram.
type histogram struct {
	Buckets []bucket
	Sum     float64
	Count   float64
}

// sub returns h minus an earlier scrape of the same histogram.
func (h histogram) sub(before histogram) histogram {
	d := histogram{Buckets: bucketDelta(h.Buckets, before.Buckets), Sum: h.Sum - before.Sum, Count: h.Count - before.Count}
	if d.Count < 0 {
		return h
	}
	return d
}

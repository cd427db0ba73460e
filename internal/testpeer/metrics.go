package testpeer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/headwater-live/headwater/ingest"
)

// Metric returns the value of the first counter or gauge series of the
// metric name in g whose labels include the label name/value pairs of
// labels (a later pair overrides an earlier one of the same name), and
// whether there is one. It fails t if g cannot be gathered.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	var v float64
	found := false
	eachSeries(t, g, name, labels, func(m *dto.Metric) bool {
		v, found = seriesValue(m)
		return !found
	})
	return v, found
}

// MetricSum returns the sum of the counter and gauge series of the metric
// name in g whose labels include the pairs of labels, 0 when there is none.
func MetricSum(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	eachSeries(t, g, name, labels, func(m *dto.Metric) bool {
		v, _ := seriesValue(m)
		sum += v
		return true
	})
	return sum
}

// WaitMetric polls Metric every 10ms until it is want (0 stands for a
// missing series), and fails t once timeout has passed.
func WaitMetric(t testing.TB, g prometheus.Gatherer, want float64, timeout time.Duration, name string, labels ...string) {
	t.Helper()
	WaitMetricCond(t, g, timeout, func(v float64) bool { return v == want }, fmt.Sprint(want), name, labels...)
}

// WaitMetricCond polls Metric every 10ms until cond holds for its value (0
// for a missing series), and fails t with desc, what was wanted, once
// timeout has passed.
func WaitMetricCond(t testing.TB, g prometheus.Gatherer, timeout time.Duration, cond func(float64) bool, desc, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, _ := Metric(t, g, name, labels...)
		if cond(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %s", name, labels, got, desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eachSeries calls fn with the series of the metric name whose labels
// include the pairs of labels, until fn returns false.
func eachSeries(t testing.TB, g prometheus.Gatherer, name string, labels []string, fn func(*dto.Metric) bool) {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			if !fn(m) {
				return
			}
		}
	}
}

// seriesValue is the value of a counter or gauge series.
func seriesValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), true
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

// IngestMetrics reads one ingest protocol's series from a registry: a
// headwater_ingest_* metric, which every protocol shares, is read with the
// label protocol=Protocol in front of the labels asked for.
type IngestMetrics struct {
	// T is the test that a missing registry or a wait that times out fails.
	T testing.TB
	// Reg is the registry the protocol's metrics are registered with.
	Reg prometheus.Gatherer
	// Protocol is the protocol label of the ingest metrics, such as "rtmp".
	Protocol string
}

// labels returns the labels of a look-up of name.
func (m IngestMetrics) labels(name string, labels []string) []string {
	if strings.HasPrefix(name, "headwater_ingest_") {
		return append([]string{"protocol", m.Protocol}, labels...)
	}
	return labels
}

// Lookup is Metric of the protocol's series.
func (m IngestMetrics) Lookup(name string, labels ...string) (float64, bool) {
	m.T.Helper()
	return Metric(m.T, m.Reg, name, m.labels(name, labels)...)
}

// Value is Lookup's value: 0 when there is no such series.
func (m IngestMetrics) Value(name string, labels ...string) float64 {
	m.T.Helper()
	v, _ := m.Lookup(name, labels...)
	return v
}

// Wait is WaitMetric of the protocol's series.
func (m IngestMetrics) Wait(want float64, timeout time.Duration, name string, labels ...string) {
	m.T.Helper()
	WaitMetric(m.T, m.Reg, want, timeout, name, m.labels(name, labels)...)
}

// WaitCond is WaitMetricCond of the protocol's series.
func (m IngestMetrics) WaitCond(timeout time.Duration, cond func(float64) bool, desc, name string, labels ...string) {
	m.T.Helper()
	WaitMetricCond(m.T, m.Reg, timeout, cond, desc, name, m.labels(name, labels)...)
}

// WaitErrors waits up to 5 s for the protocol's
// headwater_ingest_errors_total{reason} to be want.
func (m IngestMetrics) WaitErrors(reason ingest.Reason, want float64) {
	m.T.Helper()
	m.Wait(want, 5*time.Second, "headwater_ingest_errors_total", "reason", string(reason))
}

// CheckEnded checks the protocol's ingest metrics once every publish has
// ended cleanly: no session left (waiting up to 2 s), videoFrames video
// frames and at least 10000 bytes received, and no error of any reason.
func (m IngestMetrics) CheckEnded(videoFrames float64) {
	m.T.Helper()
	m.Wait(0, 2*time.Second, "headwater_ingest_sessions")
	if got := m.Value("headwater_ingest_frames_total", "kind", "video"); got != videoFrames {
		m.T.Errorf("video frames metric = %v, want %v", got, videoFrames)
	}
	if got := m.Value("headwater_ingest_bytes_total"); got < 10000 {
		m.T.Errorf("bytes metric = %v", got)
	}
	for _, r := range ingest.Reasons {
		if got := m.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			m.T.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
}

package ingest

import "github.com/prometheus/client_golang/prometheus"

// Collectors is a prometheus.Collector made of other collectors: a
// protocol's own metrics (headwater_srt_*, headwater_rtsp_*) register as one
// through metrics.Register, so that a second registration on the same
// registry returns the first.
type Collectors []prometheus.Collector

var _ prometheus.Collector = Collectors(nil)

// Describe implements prometheus.Collector.
func (cs Collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (cs Collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// NewCounter returns an unregistered counter.
func NewCounter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// NewGauge returns an unregistered gauge.
func NewGauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

// NewCounterVec returns an unregistered counter vector with the given labels.
func NewCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// NewGaugeVec returns an unregistered gauge vector with the given labels.
func NewGaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

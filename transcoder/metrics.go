package transcoder

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Outcomes of a rendition of a GOP (label "outcome" of
// headwater_transcoder_jobs_total). "retried" counts retries: a GOP that
// failed once and then succeeded counts once as retried and once as ok.
const (
	OutcomeOK      = "ok"
	OutcomeRetried = "retried"
	OutcomeShed    = "shed"
	OutcomeFailed  = "failed"
)

// Metrics are the transcoder's Prometheus metrics.
type Metrics struct {
	queueDepth         prometheus.Gauge
	queueUnits         prometheus.Gauge
	queueWait          prometheus.Histogram
	jobDuration        *prometheus.HistogramVec
	jobs               *prometheus.CounterVec
	gaps               *prometheus.CounterVec
	workers            *prometheus.GaugeVec
	coldStarts         prometheus.Counter
	spawns             prometheus.Counter
	forkServer         prometheus.Gauge
	forkServerRestarts prometheus.Counter
	startLatency       *prometheus.HistogramVec
	speed              prometheus.Histogram
	mediaSeconds       prometheus.Counter
	busySeconds        prometheus.Counter
	cpuSeconds         prometheus.Counter
	latency            prometheus.Histogram

	audioRestarts prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg when it is not
// nil. Registering on a registry that already holds them reuses the
// registered collectors (metrics.Register), so NewMetrics may be called more
// than once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		queueDepth: newGauge(reg, "queue_depth", "GOP jobs waiting for a worker."),
		queueUnits: newGauge(reg, "queue_renditions", "Rendition-GOPs waiting for a worker (the unit queue_size bounds)."),
		queueWait: newHistogram(reg, "queue_wait_seconds", "Time from a GOP's close to a worker taking its job.",
			[]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8}),
		jobDuration: metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: metricPrefix + "job_duration_seconds", Help: "Wall time of the ffmpeg run that produced a rendition of a GOP (all renditions of a GOP share one run).",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 4, 6, 10},
		}, []string{"rendition"})),
		jobs: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "jobs_total", Help: "Rendition-GOPs by outcome (ok, retried, shed, failed).",
		}, []string{"rendition", "outcome"})),
		gaps: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "gaps_total", Help: "Rendition-GOPs reported to the outputs as gaps, by reason.",
		}, []string{"reason"})),
		workers: metrics.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricPrefix + "workers", Help: "Worker slots by state: busy (running a job), warm (an ffmpeg started and blocked on its input), starting, idle (no process).",
		}, []string{"state"})),
		coldStarts:         newCounter(reg, "cold_starts_total", "Jobs that had to wait for an ffmpeg to start (no warm process of their command line)."),
		spawns:             newCounter(reg, "spawns_total", "ffmpeg processes started."),
		forkServer:         newGauge(reg, "fork_server_up", "1 when ffmpeg processes are forked from the fork server, 0 when each is executed."),
		forkServerRestarts: newCounter(reg, "fork_server_restarts_total", "Restarts of a fork server that died."),
		startLatency: metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: metricPrefix + "job_start_seconds", Help: "Time from a worker taking a job to an ffmpeg blocked on that job's input.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .02, .05, .1, .2, .5, 1},
		}, []string{"warm"})),
		speed: newHistogram(reg, "speed_ratio", "Media seconds transcoded per wall second, per job.",
			[]float64{.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32}),
		mediaSeconds: newCounter(reg, "media_seconds_total", "Seconds of source video transcoded (rate over worker_busy_seconds_total is the speed)."),
		busySeconds:  newCounter(reg, "worker_busy_seconds_total", "Wall seconds workers spent running jobs."),
		cpuSeconds:   newCounter(reg, "cpu_seconds_total", "User+system CPU seconds of finished ffmpeg processes."),
		latency: newHistogram(reg, "gop_latency_seconds", "Time from a GOP's close to its rendition frames being written to the outputs.",
			[]float64{.1, .25, .5, .75, 1, 1.5, 2, 3, 4, 6, 8}),
		audioRestarts: newCounter(reg, "audio_restarts_total", "Audio transcoder ffmpeg processes restarted after dying mid-stream."),
	}
}

// metricPrefix starts the name of every transcoder metric.
const metricPrefix = "headwater_transcoder_"

// newCounter makes the counter metricPrefix+name and registers it on reg.
func newCounter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + name, Help: help}))
}

// newGauge makes the gauge metricPrefix+name and registers it on reg.
func newGauge(reg prometheus.Registerer, name, help string) prometheus.Gauge {
	return metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: metricPrefix + name, Help: help}))
}

// newHistogram makes the histogram metricPrefix+name and registers it on reg.
func newHistogram(reg prometheus.Registerer, name, help string, buckets []float64) prometheus.Histogram {
	return metrics.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: metricPrefix + name, Help: help, Buckets: buckets,
	}))
}

package transcoder

import "github.com/prometheus/client_golang/prometheus"

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

// NewMetrics creates the metrics and registers them on reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "headwater_transcoder_"
	m := &Metrics{
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "queue_depth", Help: "GOP jobs waiting for a worker.",
		}),
		queueUnits: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "queue_renditions", Help: "Rendition-GOPs waiting for a worker (the unit queue_size bounds).",
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "queue_wait_seconds", Help: "Time from a GOP's close to a worker taking its job.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8},
		}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: ns + "job_duration_seconds", Help: "Wall time of the ffmpeg run that produced a rendition of a GOP (all renditions of a GOP share one run).",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 4, 6, 10},
		}, []string{"rendition"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "jobs_total", Help: "Rendition-GOPs by outcome (ok, retried, shed, failed).",
		}, []string{"rendition", "outcome"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "gaps_total", Help: "Rendition-GOPs reported to the outputs as gaps, by reason.",
		}, []string{"reason"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "workers", Help: "Worker slots by state: busy (running a job), warm (an ffmpeg started and blocked on its input), starting, idle (no process).",
		}, []string{"state"}),
		coldStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "cold_starts_total", Help: "Jobs that had to wait for an ffmpeg to start (no warm process of their command line).",
		}),
		spawns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "spawns_total", Help: "ffmpeg processes started.",
		}),
		forkServer: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "fork_server_up", Help: "1 when ffmpeg processes are forked from the fork server, 0 when each is executed.",
		}),
		forkServerRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "fork_server_restarts_total", Help: "Restarts of a fork server that died.",
		}),
		startLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: ns + "job_start_seconds", Help: "Time from a worker taking a job to an ffmpeg blocked on that job's input.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .02, .05, .1, .2, .5, 1},
		}, []string{"warm"}),
		speed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "speed_ratio", Help: "Media seconds transcoded per wall second, per job.",
			Buckets: []float64{.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32},
		}),
		mediaSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "media_seconds_total", Help: "Seconds of source video transcoded (rate over worker_busy_seconds_total is the speed).",
		}),
		busySeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "worker_busy_seconds_total", Help: "Wall seconds workers spent running jobs.",
		}),
		cpuSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "cpu_seconds_total", Help: "User+system CPU seconds of finished ffmpeg processes.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "gop_latency_seconds", Help: "Time from a GOP's close to its rendition frames being written to the outputs.",
			Buckets: []float64{.1, .25, .5, .75, 1, 1.5, 2, 3, 4, 6, 8},
		}),
		audioRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "audio_restarts_total", Help: "Audio transcoder ffmpeg processes restarted after dying mid-stream.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.queueDepth, m.queueUnits, m.queueWait, m.jobDuration, m.jobs, m.gaps,
			m.workers, m.coldStarts, m.spawns, m.forkServer, m.forkServerRestarts, m.startLatency, m.speed, m.mediaSeconds,
			m.busySeconds, m.cpuSeconds, m.latency)
		reg.MustRegister(m.audioRestarts)
	}
	return m
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Targets from the performance issue, on the 2-core reference machine.
const (
	targetPartP50       = 0.025 // s
	targetPartP99       = 0.050 // s
	targetFirstPart     = 0.300 // s
	targetIngestCores   = 0.3   // for targetIngestStreams publishers
	targetIngestStreams = 20
)

type liveOptions struct {
	rtmp       string
	origin     string
	metrics    string
	streams    int
	readers    int
	duration   time.Duration
	warmup     time.Duration
	bitrate    string
	serverPID  int
	jsonOut    bool
	jsonFile   string
	renditions string
	keyPrefix  string
	ffmpeg     string
	sample     string
	stagger    time.Duration
}

func liveFlags(o *liveOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("hwload live", flag.ContinueOnError)
	fs.StringVar(&o.rtmp, "rtmp", "rtmp://127.0.0.1:1935/live", "RTMP application URL; publisher i pushes to <rtmp>/<key-prefix><i>")
	fs.StringVar(&o.origin, "origin", "http://127.0.0.1:8080", "origin base URL; readers load <origin>/<app>/<key>/<rendition>/index.m3u8")
	fs.StringVar(&o.metrics, "metrics", "http://127.0.0.1:9090/metrics", "server's Prometheus endpoint (\"\" to skip server-side figures)")
	fs.IntVar(&o.streams, "streams", 1, "publishers (each one stream)")
	fs.IntVar(&o.readers, "readers", 0, "LL-HLS readers, spread round-robin over the streams")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "measurement window")
	fs.DurationVar(&o.warmup, "warmup", 8*time.Second, "time between starting the publishers and the measurement window (first-part latency counts from the start)")
	fs.StringVar(&o.bitrate, "bitrate", "2M", "video bitrate of the sample (ffmpeg syntax)")
	fs.IntVar(&o.serverPID, "server-pid", 0, "server process id: also measure its CPU from /proc/<pid>/stat")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&o.jsonFile, "json-out", "", "also write the JSON report to this file")
	fs.StringVar(&o.renditions, "renditions", "video", "comma-separated renditions each reader follows (e.g. video,audio)")
	fs.StringVar(&o.keyPrefix, "key-prefix", "load", "stream key prefix")
	fs.StringVar(&o.ffmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	fs.StringVar(&o.sample, "sample", "", "FLV to publish instead of the generated sample")
	fs.DurationVar(&o.stagger, "stagger", 50*time.Millisecond, "delay between publisher starts")
	return fs
}

// liveReport is the result of `hwload live`.
type liveReport struct {
	Streams    int      `json:"streams"`
	Readers    int      `json:"readers"`
	Renditions []string `json:"renditions"`
	Bitrate    string   `json:"bitrate"`
	DurationS  float64  `json:"duration_s"`
	WarmupS    float64  `json:"warmup_s"`

	Client struct {
		Requests          int            `json:"requests"`
		ReqPerSec         float64        `json:"req_per_s"`
		BlockingReqPerSec float64        `json:"blocking_playlist_req_per_s"`
		PartReqPerSec     float64        `json:"part_req_per_s"`
		Bytes             int64          `json:"bytes"`
		MBPerSec          float64        `json:"mb_per_s"`
		Errors            int            `json:"errors"`
		ErrorKinds        map[string]int `json:"error_kinds,omitempty"`
		Resyncs           int            `json:"resyncs"`
		BlockingWait      latencySummary `json:"blocking_reload_wait"`
		PartLatency       latencySummary `json:"part_request_latency"`
		PartAge           latencySummary `json:"part_age_at_receipt"`
	} `json:"client"`

	Server struct {
		Scraped          bool         `json:"scraped"`
		PartLatency      *histSummary `json:"part_publish_latency,omitempty"`
		FirstPart        *histSummary `json:"first_part_latency,omitempty"`
		CPUCores         *float64     `json:"cpu_cores,omitempty"`      // from process_cpu_seconds_total
		CPUCoresProc     *float64     `json:"cpu_cores_proc,omitempty"` // from /proc/<pid>/stat
		CPUCoresPerStrm  *float64     `json:"cpu_cores_per_stream,omitempty"`
		RSSBytes         *float64     `json:"rss_bytes,omitempty"`
		OriginReqPerSec  *float64     `json:"origin_req_per_s,omitempty"`
		FramesDropped    *float64     `json:"frames_dropped,omitempty"`
		MissingHistogram []string     `json:"missing_metrics,omitempty"`
	} `json:"server"`

	LoadGen struct {
		HwloadCores      float64  `json:"hwload_cores"`
		PublisherCores   float64  `json:"publisher_cores"`
		PublishersExited int      `json:"publishers_exited"`
		PublisherErrors  []string `json:"publisher_errors,omitempty"`
	} `json:"load_generator"`

	Machine machineReport `json:"machine"`

	Targets []targetCheck `json:"targets"`
}

// histSummary summarises a Prometheus histogram over the measured interval.
type histSummary struct {
	Count  float64 `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	// MaxLEms: every observation was ≤ this bucket bound.
	MaxLEms float64 `json:"max_le_ms"`
}

func summarizeHistogram(h histogram) *histSummary {
	if h.Count <= 0 {
		return &histSummary{}
	}
	return &histSummary{
		Count:   h.Count,
		MeanMs:  h.Sum / h.Count * 1000,
		P50ms:   bucketQuantile(0.50, h.Buckets) * 1000,
		P99ms:   bucketQuantile(0.99, h.Buckets) * 1000,
		MaxLEms: bucketMax(h.Buckets) * 1000,
	}
}

// MarshalJSON keeps +Inf bounds encodable.
func (h histSummary) MarshalJSON() ([]byte, error) {
	type plain histSummary
	p := plain(h)
	for _, f := range []*float64{&p.MeanMs, &p.P50ms, &p.P99ms, &p.MaxLEms} {
		if math.IsInf(*f, 0) || math.IsNaN(*f) {
			*f = -1
		}
	}
	return json.Marshal(p)
}

type targetCheck struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
}

func runLive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o liveOptions
	if err := parseFlags(liveFlags(&o), args, stderr); err != nil {
		return err
	}
	if o.streams < 1 || o.readers < 0 || o.duration <= 0 || o.warmup < 0 {
		return errors.New("need --streams ≥ 1, --readers ≥ 0, --duration > 0, --warmup ≥ 0")
	}
	rtmpURL, err := url.Parse(o.rtmp)
	if err != nil || rtmpURL.Scheme != "rtmp" || strings.Trim(rtmpURL.Path, "/") == "" {
		return fmt.Errorf("--rtmp %q: want rtmp://host:port/app", o.rtmp)
	}
	app := strings.Trim(rtmpURL.Path, "/")
	originURL, err := url.Parse(strings.TrimRight(o.origin, "/"))
	if err != nil || (originURL.Scheme != "http" && originURL.Scheme != "https") {
		return fmt.Errorf("--origin %q: want http://host:port", o.origin)
	}
	var renditions []string
	for _, r := range strings.Split(o.renditions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			renditions = append(renditions, r)
		}
	}
	if o.readers > 0 && len(renditions) == 0 {
		return errors.New("--renditions: name at least one")
	}
	if _, err := exec.LookPath(o.ffmpeg); err != nil {
		return fmt.Errorf("ffmpeg is needed to publish: %w", err)
	}
	sample := o.sample
	if sample == "" {
		if sample, err = ensureSample(ctx, o.ffmpeg, o.bitrate, stderr); err != nil {
			return err
		}
	}

	metricsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	scrapeOrNil := func() *scrape {
		if o.metrics == "" {
			return nil
		}
		s, err := fetchMetrics(ctx, metricsClient, o.metrics)
		if err != nil {
			fmt.Fprintf(stderr, "hwload: metrics: %v\n", err)
			return nil
		}
		return &s
	}
	serverCPU := func() (time.Duration, bool) {
		if o.serverPID <= 0 {
			return 0, false
		}
		st, err := readProcStat(o.serverPID)
		if err != nil {
			fmt.Fprintf(stderr, "hwload: server pid: %v\n", err)
			return 0, false
		}
		return st.CPU(), true
	}

	m0 := scrapeOrNil()
	if o.metrics != "" && m0 == nil {
		return fmt.Errorf("cannot read %s; is the server running? (--metrics \"\" to go without)", o.metrics)
	}

	fmt.Fprintf(stderr, "hwload: starting %d publishers of %s\n", o.streams, sample)
	pubs, err := startPublishers(ctx, o.ffmpeg, sample, strings.TrimRight(o.rtmp, "/"), o.keyPrefix, o.streams, o.stagger)
	if err != nil {
		return err
	}
	defer pubs.stop(3 * time.Second)

	// Readers: one keep-alive connection each per rendition.
	var measuring atomic.Bool
	readCtx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	conns := o.readers*len(renditions) + 4
	readerClient := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	var (
		wg      sync.WaitGroup
		readers []*reader
	)
	for i := 0; i < o.readers; i++ {
		key := fmt.Sprintf("%s%d", o.keyPrefix, i%o.streams)
		for _, rend := range renditions {
			u := *originURL
			u.Path = strings.TrimRight(u.Path, "/") + "/" + app + "/" + key + "/" + rend + "/index.m3u8"
			r := newReader(readerClient, &u, &measuring)
			readers = append(readers, r)
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.run(readCtx)
			}()
		}
	}
	fmt.Fprintf(stderr, "hwload: %d readers started; warming up %s, then measuring %s\n", o.readers, o.warmup, o.duration)

	sleepCtx(ctx, o.warmup)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	self1, _ := readProcStat(0)
	pub1, _ := cpuOf(pubs.pids())
	m1 := scrapeOrNil()
	srv1, srvOK1 := serverCPU()
	rq1, rqErr1 := runQueueWait(o.serverPID)
	mach1 := sampleMachine()
	t1 := time.Now()
	measuring.Store(true)

	sleepCtx(ctx, o.duration)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	measuring.Store(false)
	t2 := time.Now()
	mach2 := sampleMachine()
	rq2, rqErr2 := runQueueWait(o.serverPID)
	srv2, srvOK2 := serverCPU()
	m2 := scrapeOrNil()
	pub2, _ := cpuOf(pubs.pids())
	self2, _ := readProcStat(0)
	wall := t2.Sub(t1).Seconds()

	rep := liveReport{
		Streams: o.streams, Readers: o.readers, Renditions: renditions, Bitrate: o.bitrate,
		DurationS: wall, WarmupS: o.warmup.Seconds(),
	}
	rep.LoadGen.PublishersExited = pubs.exitedEarly()
	rep.LoadGen.PublisherErrors = pubs.failures()
	rep.LoadGen.HwloadCores = (self2.CPU() - self1.CPU()).Seconds() / wall
	rep.LoadGen.PublisherCores = (pub2 - pub1).Seconds() / wall

	stopReaders()
	wg.Wait()
	pubs.stop(3 * time.Second)

	var total readerStats
	for _, r := range readers {
		total.add(&r.stats)
	}
	c := &rep.Client
	c.Requests = total.requests()
	c.ReqPerSec = float64(c.Requests) / wall
	c.BlockingReqPerSec = float64(total.BlockingRequests) / wall
	c.PartReqPerSec = float64(total.PartRequests) / wall
	c.Bytes = total.Bytes
	c.MBPerSec = float64(total.Bytes) / 1e6 / wall
	c.Errors = total.Errors
	c.ErrorKinds = total.ErrorKinds
	c.Resyncs = total.Resyncs
	c.BlockingWait = summarize(total.BlockingWait)
	c.PartLatency = summarize(total.PartLatency)
	c.PartAge = summarize(total.PartAge)

	s := &rep.Server
	if m1 != nil && m2 != nil {
		s.Scraped = true
		mwall := m2.At.Sub(m1.At).Seconds()
		if h2, ok := m2.histogram("headwater_part_publish_latency_seconds"); ok {
			h1, _ := m1.histogram("headwater_part_publish_latency_seconds")
			s.PartLatency = summarizeHistogram(h2.sub(h1))
		} else {
			s.MissingHistogram = append(s.MissingHistogram, "headwater_part_publish_latency_seconds")
		}
		if h2, ok := m2.histogram("headwater_first_part_latency_seconds"); ok && m0 != nil {
			h0, _ := m0.histogram("headwater_first_part_latency_seconds")
			s.FirstPart = summarizeHistogram(h2.sub(h0))
		} else {
			s.MissingHistogram = append(s.MissingHistogram, "headwater_first_part_latency_seconds")
		}
		if c2, ok := m2.sum("process_cpu_seconds_total"); ok {
			c1, _ := m1.sum("process_cpu_seconds_total")
			s.CPUCores = ptr((c2 - c1) / mwall)
		}
		if v, ok := m2.sum("process_resident_memory_bytes"); ok {
			s.RSSBytes = ptr(v)
		}
		if r2, ok := m2.sum("headwater_origin_requests_total"); ok {
			r1, _ := m1.sum("headwater_origin_requests_total")
			s.OriginReqPerSec = ptr((r2 - r1) / mwall)
		}
		if d2, ok := m2.sum("headwater_segmenter_frames_dropped_total"); ok {
			d1, _ := m1.sum("headwater_segmenter_frames_dropped_total")
			s.FramesDropped = ptr(d2 - d1)
		}
	}
	if srvOK1 && srvOK2 {
		s.CPUCoresProc = ptr((srv2 - srv1).Seconds() / wall)
	}
	if cores := rep.serverCores(); cores != nil {
		s.CPUCoresPerStrm = ptr(*cores / float64(o.streams))
	}
	accounted := rep.LoadGen.HwloadCores + rep.LoadGen.PublisherCores
	if cores := rep.serverCores(); cores != nil {
		accounted += *cores
	}
	rep.Machine = newMachineReport(mach1, mach2, wall, accounted, runtime.NumCPU())
	if o.serverPID > 0 && rqErr1 == nil && rqErr2 == nil {
		rep.Machine.ServerRunQueueWait = ptr((rq2 - rq1).Seconds() / wall)
	}
	rep.Targets = rep.checkTargets()

	if err := writeJSONFile(o.jsonFile, rep); err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(stdout)
	return nil
}

func ptr[T any](v T) *T { return &v }

// serverCores prefers the /proc figure (exact pid) over the metrics one.
func (r *liveReport) serverCores() *float64 {
	if r.Server.CPUCoresProc != nil {
		return r.Server.CPUCoresProc
	}
	return r.Server.CPUCores
}

func (r *liveReport) checkTargets() []targetCheck {
	var out []targetCheck
	if h := r.Server.PartLatency; h != nil && h.Count > 0 {
		out = append(out,
			targetCheck{Name: "part publish latency p50", Target: "≤ 25 ms", Value: h.P50ms, Unit: "ms", Met: h.P50ms <= targetPartP50*1000},
			targetCheck{Name: "part publish latency p99", Target: "≤ 50 ms", Value: h.P99ms, Unit: "ms", Met: h.P99ms <= targetPartP99*1000})
	}
	if h := r.Server.FirstPart; h != nil && h.Count > 0 {
		out = append(out, targetCheck{Name: "first part servable after first key frame (max, bucket bound)", Target: "≤ 300 ms",
			Value: h.MaxLEms, Unit: "ms", Met: h.MaxLEms <= targetFirstPart*1000})
	}
	if cores := r.serverCores(); cores != nil && r.Readers == 0 {
		name := fmt.Sprintf("server CPU, %d publishers at %s", r.Streams, r.Bitrate)
		v := *cores
		if r.Streams != targetIngestStreams {
			name = fmt.Sprintf("server CPU scaled to %d publishers (measured with %d at %s)", targetIngestStreams, r.Streams, r.Bitrate)
			v = v * targetIngestStreams / float64(r.Streams)
		}
		out = append(out, targetCheck{Name: name, Target: "≤ 0.3 cores (20 × 2 Mbit/s)", Value: v, Unit: "cores", Met: v <= targetIngestCores})
	}
	return out
}

func (r *liveReport) print(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("hwload live: %d streams at %s, %d readers (%s), %.1f s measured after %.0f s warm-up",
		r.Streams, r.Bitrate, r.Readers, strings.Join(r.Renditions, "+"), r.DurationS, r.WarmupS)
	c := r.Client
	if r.Readers > 0 {
		p("client   %d requests = %.1f req/s (%.1f/s blocking reloads, %.1f/s parts), %.1f MB = %.2f MB/s, errors %d%s, resyncs %d",
			c.Requests, c.ReqPerSec, c.BlockingReqPerSec, c.PartReqPerSec, float64(c.Bytes)/1e6, c.MBPerSec, c.Errors, fmtKinds(c.ErrorKinds), c.Resyncs)
		p("         blocking reload wait  %s", c.BlockingWait)
		p("         part request latency  %s", c.PartLatency)
		p("         part age at receipt   %s  (receipt − segment PROGRAM-DATE-TIME − part end offset)", c.PartAge)
	}
	s := r.Server
	if !s.Scraped {
		p("server   metrics not scraped")
	} else {
		if h := s.PartLatency; h != nil {
			p("server   part publish latency  %s", h)
		}
		if h := s.FirstPart; h != nil {
			p("         first part latency    %s", h)
		}
		if len(s.MissingHistogram) > 0 {
			p("         absent: %s", strings.Join(s.MissingHistogram, ", "))
		}
	}
	var cpu []string
	if s.CPUCores != nil {
		cpu = append(cpu, fmt.Sprintf("%.3f cores (process_cpu_seconds_total)", *s.CPUCores))
	}
	if s.CPUCoresProc != nil {
		cpu = append(cpu, fmt.Sprintf("%.3f cores (/proc/pid/stat)", *s.CPUCoresProc))
	}
	if len(cpu) > 0 {
		p("         CPU %s; %.4f cores per stream", strings.Join(cpu, ", "), *s.CPUCoresPerStrm)
	}
	var misc []string
	if s.RSSBytes != nil {
		misc = append(misc, fmt.Sprintf("RSS %.1f MB", *s.RSSBytes/1e6))
	}
	if s.OriginReqPerSec != nil {
		misc = append(misc, fmt.Sprintf("origin %.1f req/s", *s.OriginReqPerSec))
	}
	if s.FramesDropped != nil {
		misc = append(misc, fmt.Sprintf("frames dropped %.0f", *s.FramesDropped))
	}
	if len(misc) > 0 {
		p("         %s", strings.Join(misc, ", "))
	}
	p("loadgen  hwload %.3f cores, %d ffmpeg publishers %.3f cores (same machine as the server); publishers exited early: %d",
		r.LoadGen.HwloadCores, r.Streams, r.LoadGen.PublisherCores, r.LoadGen.PublishersExited)
	for _, e := range r.LoadGen.PublisherErrors {
		p("         %s", strings.TrimSpace(e))
	}
	p("machine  %s", r.Machine)
	for _, t := range r.Targets {
		verdict := "MET"
		if !t.Met {
			verdict = "MISSED"
		}
		p("target   %-62s %s: %s %s", t.Name, t.Target, fmtNum(t.Value)+" "+t.Unit, verdict)
	}
}

func (l latencySummary) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s ms, p90 %s ms, p99 %s ms, max %s ms (n=%d)", fmtNum(l.P50ms), fmtNum(l.P90ms), fmtNum(l.P99ms), fmtNum(l.MaxMs), l.Count)
}

func (h *histSummary) String() string {
	if h.Count == 0 {
		return "no observations"
	}
	return fmt.Sprintf("p50 %s ms, p99 %s ms, mean %s ms, max ≤ %s ms (n=%.0f)", fmtNum(h.P50ms), fmtNum(h.P99ms), fmtNum(h.MeanMs), fmtNum(h.MaxLEms), h.Count)
}

func fmtNum(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsNaN(v):
		return "NaN"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func fmtKinds(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

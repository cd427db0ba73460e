package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type httpOptions struct {
	urlsFile    string
	urlList     string
	connections int
	duration    time.Duration
	warmup      time.Duration
	baseline    time.Duration
	pids        string
	pidChildren string
	label       string
	jsonOut     bool
	jsonFile    string
}

func httpFlags(o *httpOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("hwload http", flag.ContinueOnError)
	fs.StringVar(&o.urlsFile, "urls", "", "file with one URL per line (# comments allowed)")
	fs.StringVar(&o.urlList, "url-list", "", "comma-separated URLs")
	fs.IntVar(&o.connections, "connections", 64, "concurrent keep-alive connections, each a closed loop over the URLs")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measurement window")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before the window opens (not counted)")
	fs.DurationVar(&o.baseline, "baseline", 0, "before the load, measure the pids' idle CPU for this long and also report CPU per GB net of it")
	fs.StringVar(&o.pids, "pid", "", "comma-separated server pids whose CPU (utime+stime of all their threads) is measured")
	fs.StringVar(&o.pidChildren, "pid-children", "", "comma-separated pids measured together with all their descendants (e.g. an nginx master)")
	fs.StringVar(&o.label, "label", "", "name for the report (e.g. headwater, nginx)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as one JSON line")
	fs.StringVar(&o.jsonFile, "json-out", "", "also write the JSON report (one line) to this file")
	return fs
}

// httpReport is the result of `hwload http`.
type httpReport struct {
	Label       string         `json:"label,omitempty"`
	Connections int            `json:"connections"`
	URLs        int            `json:"urls"`
	DurationS   float64        `json:"duration_s"`
	Requests    int            `json:"requests"`
	ReqPerSec   float64        `json:"req_per_s"`
	Bytes       int64          `json:"bytes"`
	GB          float64        `json:"gb"`
	GBPerSec    float64        `json:"gb_per_s"`
	Errors      int            `json:"errors"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
	Latency     latencySummary `json:"latency"`

	PIDs             []int    `json:"pids,omitempty"`
	MissingPIDs      []int    `json:"missing_pids,omitempty"`
	ServerCPUSeconds float64  `json:"server_cpu_s"`
	ServerCores      float64  `json:"server_cores"`
	CPUSecondsPerGB  float64  `json:"server_cpu_s_per_gb"`
	BaselineCores    *float64 `json:"baseline_cores,omitempty"`
	CPUSecondsPerGBN *float64 `json:"server_cpu_s_per_gb_net,omitempty"`

	ClientCores    float64 `json:"client_cores"`
	ClientCPUPerGB float64 `json:"client_cpu_s_per_gb"`

	Machine machineReport `json:"machine"`
}

type httpWorkerStats struct {
	requests int
	bytes    int64
	errors   int
	kinds    map[string]int
	lat      []time.Duration
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("bad pid %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func readURLs(o *httpOptions) ([]string, error) {
	var urls []string
	if o.urlsFile != "" {
		f, err := os.Open(o.urlsFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				urls = append(urls, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	for _, u := range strings.Split(o.urlList, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("no URLs: give --urls FILE or --url-list a,b,c")
	}
	return urls, nil
}

func runHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o httpOptions
	if err := parseFlags(httpFlags(&o), args, stderr); err != nil {
		return err
	}
	if o.connections < 1 || o.duration <= 0 || o.warmup < 0 || o.baseline < 0 {
		return errors.New("need --connections ≥ 1, --duration > 0, --warmup ≥ 0, --baseline ≥ 0")
	}
	urls, err := readURLs(&o)
	if err != nil {
		return err
	}
	pids, err := parsePIDs(o.pids)
	if err != nil {
		return err
	}
	parents, err := parsePIDs(o.pidChildren)
	if err != nil {
		return err
	}
	for _, p := range parents {
		d, err := descendants(p)
		if err != nil {
			return err
		}
		pids = append(pids, p)
		pids = append(pids, d...)
	}
	for _, p := range pids {
		if _, err := readProcStat(p); err != nil {
			return fmt.Errorf("pid %d: %w", p, err)
		}
	}

	rep := httpReport{Label: o.label, Connections: o.connections, URLs: len(urls), PIDs: pids}

	if o.baseline > 0 && len(pids) > 0 {
		b0, _ := cpuOf(pids)
		t0 := time.Now()
		sleepCtx(ctx, o.baseline)
		b1, _ := cpuOf(pids)
		rep.BaselineCores = ptr((b1 - b0).Seconds() / time.Since(t0).Seconds())
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// One transport, one idle connection kept per worker; no compression
	// (media segments do not shrink and it would cost the client CPU), no
	// proxy (loopback targets).
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        o.connections,
		MaxIdleConnsPerHost: o.connections,
		MaxConnsPerHost:     o.connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      64 * 1024,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	var measuring atomic.Bool
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	stats := make([]httpWorkerStats, o.connections)
	var wg sync.WaitGroup
	for i := 0; i < o.connections; i++ {
		reqs := make([]*http.Request, len(urls))
		for j, u := range urls {
			if reqs[j], err = http.NewRequestWithContext(loadCtx, http.MethodGet, u, nil); err != nil {
				return fmt.Errorf("URL %q: %w", u, err)
			}
		}
		wg.Add(1)
		go func(st *httpWorkerStats, first int) {
			defer wg.Done()
			httpWorker(loadCtx, client, reqs, first, &measuring, st)
		}(&stats[i], i*len(urls)/o.connections)
	}

	sleepCtx(ctx, o.warmup)
	self1, _ := readProcStat(0)
	cpu1, _ := cpuOf(pids)
	rq1 := runQueueWaitOf(pids)
	mach1 := sampleMachine()
	t1 := time.Now()
	measuring.Store(true)
	sleepCtx(ctx, o.duration)
	measuring.Store(false)
	t2 := time.Now()
	mach2 := sampleMachine()
	rq2 := runQueueWaitOf(pids)
	cpu2, missing := cpuOf(pids)
	self2, _ := readProcStat(0)
	stop()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	wall := t2.Sub(t1).Seconds()
	var lat []time.Duration
	for i := range stats {
		st := &stats[i]
		rep.Requests += st.requests
		rep.Bytes += st.bytes
		rep.Errors += st.errors
		addErrorKinds(&rep.ErrorKinds, st.kinds)
		lat = append(lat, st.lat...)
	}
	rep.DurationS = wall
	rep.ReqPerSec = float64(rep.Requests) / wall
	rep.GB = float64(rep.Bytes) / 1e9
	rep.GBPerSec = rep.GB / wall
	rep.Latency = summarize(lat)
	rep.MissingPIDs = missing
	rep.ServerCPUSeconds = (cpu2 - cpu1).Seconds()
	rep.ServerCores = rep.ServerCPUSeconds / wall
	rep.ClientCores = (self2.CPU() - self1.CPU()).Seconds() / wall
	if rep.GB > 0 {
		rep.CPUSecondsPerGB = rep.ServerCPUSeconds / rep.GB
		rep.ClientCPUPerGB = (self2.CPU() - self1.CPU()).Seconds() / rep.GB
		if rep.BaselineCores != nil {
			rep.CPUSecondsPerGBN = ptr(max(rep.ServerCPUSeconds-*rep.BaselineCores*wall, 0) / rep.GB)
		}
	}

	rep.Machine = newMachineReport(mach1, mach2, wall, rep.ServerCores+rep.ClientCores, runtime.NumCPU())
	if len(pids) > 0 {
		rep.Machine.ServerRunQueueWait = ptr((rq2 - rq1).Seconds() / wall)
	}
	if err := writeJSONFile(o.jsonFile, rep); err != nil {
		return err
	}
	if o.jsonOut {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.print(stdout)
	return nil
}

// httpWorker is one closed-loop connection: GET the URLs in turn, starting
// at first, reading each body to the end into one reused buffer.
func httpWorker(ctx context.Context, client *http.Client, reqs []*http.Request, first int, measuring *atomic.Bool, st *httpWorkerStats) {
	buf := make([]byte, 256*1024)
	st.lat = make([]time.Duration, 0, 1<<14)
	for i := first; ctx.Err() == nil; i++ {
		req := reqs[i%len(reqs)]
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil && measuring.Load() {
				st.fail("transport")
			}
			sleepCtx(ctx, 10*time.Millisecond) // do not spin on a dead server
			continue
		}
		n, err := drain(resp.Body, buf)
		resp.Body.Close()
		if !measuring.Load() {
			continue
		}
		switch {
		case err != nil:
			if ctx.Err() == nil {
				st.fail("transport")
			}
		case resp.StatusCode != http.StatusOK:
			st.fail("HTTP " + strconv.Itoa(resp.StatusCode))
		default:
			st.requests++
			st.bytes += n
			st.lat = append(st.lat, time.Since(start))
		}
	}
}

func (st *httpWorkerStats) fail(kind string) {
	st.errors++
	if st.kinds == nil {
		st.kinds = map[string]int{}
	}
	st.kinds[kind]++
}

func (r *httpReport) print(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	label := ""
	if r.Label != "" {
		label = " [" + r.Label + "]"
	}
	p("hwload http%s: %d connections over %d URLs, %.1f s", label, r.Connections, r.URLs, r.DurationS)
	p("  requests %d = %.0f req/s, %.3f GB = %.3f GB/s, errors %d%s", r.Requests, r.ReqPerSec, r.GB, r.GBPerSec, r.Errors, fmtKinds(r.ErrorKinds))
	p("  latency  %s", r.Latency)
	if len(r.PIDs) > 0 {
		p("  server   pids %v: %.2f CPU-s = %.3f cores → %.3f CPU-s per GB served", r.PIDs, r.ServerCPUSeconds, r.ServerCores, r.CPUSecondsPerGB)
		if r.BaselineCores != nil && r.CPUSecondsPerGBN != nil {
			p("           idle baseline %.3f cores → %.3f CPU-s per GB net of it", *r.BaselineCores, *r.CPUSecondsPerGBN)
		}
		if len(r.MissingPIDs) > 0 {
			p("           pids gone during the run: %v", r.MissingPIDs)
		}
	}
	p("  client   hwload %.3f cores = %.3f CPU-s per GB (client and server share this machine's cores)", r.ClientCores, r.ClientCPUPerGB)
	p("  machine  %s", r.Machine)
}

// runQueueWaitOf sums runQueueWait over pids, skipping those that are gone.
func runQueueWaitOf(pids []int) time.Duration {
	var total time.Duration
	for _, p := range pids {
		if d, err := runQueueWait(p); err == nil {
			total += d
		}
	}
	return total
}

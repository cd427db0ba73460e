package transcoder

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// FFmpegConfig configures the local ffmpeg runner.
type FFmpegConfig struct {
	// Path is the ffmpeg binary; "ffmpeg" (from PATH) by default.
	Path string
	// Warm is the number of idle pre-started processes to keep.
	Warm int
	// LogLevel is ffmpeg's -loglevel ("error" by default).
	LogLevel string
	// StderrBytes is how much of a process's stderr is kept (8 KiB).
	StderrBytes int
	// Prewarm lists rendition sets to keep warm processes for before any
	// job asked for them.
	Prewarm []Ladder
	// ForkServer chooses how processes start (ForkServerAuto when empty).
	ForkServer ForkServerMode
	// ForkServerDir is where the fork server library is compiled (the
	// user cache directory when empty).
	ForkServerDir string
}

// FFmpegRunner is the local Runner: it runs each job in a fresh ffmpeg
// process, taken from a set of pre-started processes blocked on their
// input when one was started for the job's command line.
type FFmpegRunner struct {
	cfg FFmpegConfig
	m   *Metrics
	log *slog.Logger

	mu       sync.Mutex
	idle     map[string][]*proc // template key -> processes, oldest first
	nIdle    int                // idle processes, starting ones included
	all      map[*proc]struct{}
	demand   map[string]*demand
	spawning map[string]int       // template key -> idle processes being started
	failing  map[string]time.Time // template key -> no spawn before
	closed   bool
	filled   bool // the warm set was full once
	kick     chan struct{}
	done     chan struct{}
	loopDone chan struct{}
	started  bool

	fsMu    sync.Mutex
	fs      *forkServer // nil: processes are executed
	fsLib   string      // the fork server's library; "" when not used
	fsRetry time.Time   // no restart of a dead fork server before

	onRun func(j *Job, p *proc) // test hook: a job was handed to a process
}

var _ Runner = (*FFmpegRunner)(nil)

// NewFFmpegRunner returns a runner; Start begins pre-starting processes.
func NewFFmpegRunner(cfg FFmpegConfig, m *Metrics, log *slog.Logger) *FFmpegRunner {
	if cfg.Path == "" {
		cfg.Path = "ffmpeg"
	}
	if cfg.StderrBytes <= 0 {
		cfg.StderrBytes = 8 << 10
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &FFmpegRunner{
		cfg:      cfg,
		m:        m,
		log:      log,
		idle:     make(map[string][]*proc),
		all:      make(map[*proc]struct{}),
		demand:   make(map[string]*demand),
		spawning: make(map[string]int),
		failing:  make(map[string]time.Time),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	for _, l := range cfg.Prewarm {
		if len(l) == 0 {
			continue
		}
		t := buildTemplate(l, cfg.LogLevel)
		r.demand[t.Key] = &demand{tmpl: t, score: 1, at: time.Now()}
	}
	return r
}

// Start starts the fork server (per cfg.ForkServer) and begins keeping
// cfg.Warm processes started. It fails only when cfg.ForkServer is
// ForkServerOn and the fork server cannot start.
func (r *FFmpegRunner) Start() error {
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return nil
	}
	r.started = true
	r.mu.Unlock()
	if err := r.startForkServer(); err != nil {
		r.mu.Lock()
		r.started = false
		r.mu.Unlock()
		return err
	}
	go r.loop()
	return nil
}

// forkServerStartTimeout bounds the start of the fork server (loading and
// binding ffmpeg's libraries eagerly).
const forkServerStartTimeout = 10 * time.Second

// startForkServer builds the fork server's library and starts it, per
// cfg.ForkServer.
func (r *FFmpegRunner) startForkServer() error {
	mode, err := ParseForkServerMode(string(r.cfg.ForkServer))
	if err != nil {
		return fmt.Errorf("fork server: %w", err)
	}
	if mode == ForkServerOff {
		r.m.forkServer.Set(0)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lib, err := ForkServerLibrary(ctx, r.cfg.ForkServerDir)
	var fs *forkServer
	if err == nil {
		fs, err = startForkServer(r.cfg.Path, lib, forkServerStartTimeout)
	}
	if err != nil {
		r.m.forkServer.Set(0)
		if mode == ForkServerOn {
			return fmt.Errorf("transcoder: %w", err)
		}
		r.log.Warn("transcoder: no fork server, each ffmpeg process is executed (~70 ms more CPU per GOP job)",
			"error", err)
		return nil
	}
	r.fsMu.Lock()
	r.fs, r.fsLib = fs, lib
	r.fsMu.Unlock()
	r.m.forkServer.Set(1)
	r.log.Info("transcoder: forking ffmpeg processes from a fork server", "library", lib, "pid", fs.cmd.Process.Pid)
	return nil
}

// forker returns the fork server, restarting it when it died (at most
// once a second, executing processes meanwhile); nil when processes are
// executed.
func (r *FFmpegRunner) forker() *forkServer {
	r.fsMu.Lock()
	defer r.fsMu.Unlock()
	if r.fs == nil {
		return nil
	}
	if r.fs.alive() {
		return r.fs
	}
	if time.Now().Before(r.fsRetry) {
		return nil
	}
	r.fsRetry = time.Now().Add(time.Second)
	r.m.forkServer.Set(0)
	r.m.forkServerRestarts.Inc()
	fs, err := startForkServer(r.cfg.Path, r.fsLib, forkServerStartTimeout)
	if err != nil {
		r.log.Error("transcoder: fork server died and cannot restart; executing ffmpeg meanwhile",
			"died", r.fs.err, "error", err)
		return nil
	}
	r.log.Warn("transcoder: fork server died; restarted", "died", r.fs.err, "pid", fs.cmd.Process.Pid)
	r.fs = fs
	r.m.forkServer.Set(1)
	return fs
}

// Forking reports whether processes are forked from a live fork server.
func (r *FFmpegRunner) Forking() bool {
	r.fsMu.Lock()
	defer r.fsMu.Unlock()
	return r.fs != nil && r.fs.alive()
}

// Ready reports whether the warm set has been filled (once; it then stays
// true until Close): every pre-started process is blocked on its input.
func (r *FFmpegRunner) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.filled {
		return true
	}
	if r.cfg.Warm <= 0 {
		r.filled = true
		return true
	}
	n := 0
	for _, ps := range r.idle {
		for _, p := range ps {
			if p.isReady() {
				n++
			}
		}
	}
	r.filled = n >= r.cfg.Warm
	return r.filled
}

// Processes is the number of live ffmpeg processes (warm and running).
func (r *FFmpegRunner) Processes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// WarmCounts returns the idle processes: ready and still starting.
func (r *FFmpegRunner) WarmCounts() (ready, starting int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ps := range r.idle {
		for _, p := range ps {
			if p.isReady() {
				ready++
			} else if p.alive() {
				starting++
			}
		}
	}
	return ready, starting
}

// Close kills every process and waits for them.
func (r *FFmpegRunner) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	started := r.started
	all := make([]*proc, 0, len(r.all))
	for p := range r.all {
		all = append(all, p)
	}
	r.mu.Unlock()
	close(r.done)
	if started {
		<-r.loopDone
	}
	for _, p := range all {
		p.kill()
	}
	for _, p := range all {
		<-p.exited
	}
	r.mu.Lock()
	for _, ps := range r.idle {
		for _, p := range ps {
			p.stdin.Close()
			p.stdout.Close()
		}
	}
	r.idle = map[string][]*proc{}
	r.nIdle = 0
	r.mu.Unlock()
	r.fsMu.Lock()
	fs := r.fs
	r.fs = nil // no restart from now on
	r.fsMu.Unlock()
	if fs != nil {
		fs.close()
	}
}

// Run implements Runner.
func (r *FFmpegRunner) Run(ctx context.Context, j *Job) ([]OutTrack, RunStats, error) {
	for i := range j.Renditions {
		if j.Renditions[i].bitrate == 0 { // a job that came over the wire
			if err := j.Renditions[i].Validate(); err != nil {
				return nil, RunStats{}, err
			}
		}
	}
	t := buildTemplate(j.Renditions, r.cfg.LogLevel)
	start := time.Now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, RunStats{}, ErrClosed
	}
	r.noteLocked(t)
	// A ready process of this command line, else one still starting.
	var p *proc
	ps := r.idle[t.Key]
	pick := -1
	for i, x := range ps {
		if x.isReady() {
			pick = i
			break
		}
		if pick < 0 && x.alive() {
			pick = i
		}
	}
	if pick >= 0 {
		p = ps[pick]
		r.idle[t.Key] = append(ps[:pick:pick], ps[pick+1:]...)
		r.nIdle--
	}
	warm := p != nil && p.isReady()
	if p == nil {
		// Evict an idle process of another command line, so that the
		// processes stay within the configured number.
		if r.nIdle >= r.cfg.Warm && r.nIdle > 0 {
			r.evictLocked()
		}
		r.mu.Unlock()
		np, err := spawn(r.cfg.Path, r.forker(), t, r.cfg.StderrBytes)
		r.m.spawns.Inc()
		if err != nil {
			return nil, RunStats{}, fmt.Errorf("starting ffmpeg: %w", err)
		}
		p = np
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			p.release()
			return nil, RunStats{}, ErrClosed
		}
		r.all[p] = struct{}{}
		go func() {
			<-p.exited
			r.mu.Lock()
			delete(r.all, p)
			r.mu.Unlock()
		}()
	}
	r.mu.Unlock()
	r.poke() // replace it
	if !warm {
		r.m.coldStarts.Inc()
		select {
		case <-p.ready:
		case <-ctx.Done():
		}
	}
	st := RunStats{Warm: warm, Start: time.Since(start)}
	if r.onRun != nil {
		r.onRun(j, p)
	}
	outs, err := p.run(ctx, j)
	st.CPU = p.cpu()
	r.m.cpuSeconds.Add(st.CPU.Seconds())
	if err != nil {
		st.Stderr = p.stderr.String()
	}
	return outs, st, err
}

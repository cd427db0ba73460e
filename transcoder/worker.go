package transcoder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/headwater-live/headwater/media"
)

// proc is one ffmpeg process started for a template, executed or forked
// from the fork server.
type proc struct {
	tmpl    Template
	pid     int
	stdin   *os.File // write end of the process's stdin
	stdout  *os.File // read end of its stdout
	stderr  *tailBuffer
	spawned time.Time

	ready   chan struct{} // closed once blocked reading stdin (or given up checking)
	readyAt time.Time
	exited  chan struct{} // closed once it was waited for and its stderr read
	waitErr error
	cpuTime time.Duration // user+system CPU, once exited
	killed  bool
	mu      sync.Mutex
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	total int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// kill ends the process (and anything it started) with SIGKILL.
func (p *proc) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) isReady() bool {
	select {
	case <-p.ready:
		return p.alive()
	default:
		return false
	}
}

// cpu is the process's CPU time, once it exited.
func (p *proc) cpu() time.Duration {
	select {
	case <-p.exited:
		return p.cpuTime
	default:
		return 0
	}
}

// readSyscall is the number of read(2), as /proc/<pid>/syscall shows it.
var readSyscall = map[string]string{"amd64": "0", "arm64": "63", "386": "3", "arm": "3", "riscv64": "63"}[runtime.GOARCH]

// blockedOnStdin reports whether pid is blocked in read(0, ...): ffmpeg has
// loaded its libraries, parsed its options and waits for its input. ok is
// false when the system does not tell.
func blockedOnStdin(pid int) (blocked, ok bool) {
	if readSyscall != "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err == nil {
			f := strings.Fields(string(b))
			return len(f) >= 2 && f[0] == readSyscall && f[1] == "0x0", true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	if err != nil || len(b) == 0 || string(b) == "0" {
		return false, false
	}
	return strings.Contains(string(b), "pipe"), true
}

// watchReady closes p.ready once the process blocks on its input.
func (p *proc) watchReady() {
	defer close(p.ready)
	pid := p.pid
	start := time.Now()
	for {
		select {
		case <-p.exited:
			return
		default:
		}
		blocked, ok := blockedOnStdin(pid)
		el := time.Since(start)
		if blocked || (!ok && el > 300*time.Millisecond) || el > 10*time.Second {
			p.readyAt = time.Now()
			return
		}
		switch {
		case el < 100*time.Millisecond:
			time.Sleep(500 * time.Microsecond)
		case el < 2*time.Second:
			time.Sleep(2 * time.Millisecond)
		default:
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// spawn starts ffmpeg for a template: forked from fs when not nil, else
// executed from path. The process blocks reading stdin until a job is
// written to it.
func spawn(path string, fs *forkServer, t Template, stderrLimit int) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p := &proc{
		tmpl:   t,
		stdin:  inW,
		stdout: outR,
		stderr: &tailBuffer{limit: stderrLimit},
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	p.spawned = time.Now()
	if fs != nil {
		err = p.fork(fs, inR, outW)
	} else {
		err = p.exec(path, inR, outW)
	}
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	go p.watchReady()
	return p, nil
}

// exec starts the process by executing path.
func (p *proc) exec(path string, stdin, stdout *os.File) error {
	cmd := exec.Command(path, p.tmpl.Args...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		if cmd.ProcessState != nil {
			p.cpuTime = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		close(p.exited)
	}()
	return nil
}

// fork starts the process from the fork server.
func (p *proc) fork(fs *forkServer, stdin, stdout *os.File) error {
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	pid, child, err := fs.spawn(p.tmpl.Args, stdin, stdout, errW)
	errW.Close()
	if err != nil {
		errR.Close()
		return err
	}
	p.pid = pid
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(p.stderr, errR)
		errR.Close()
		close(copied)
	}()
	go func() {
		<-child.exited
		if child.err == nil {
			<-copied // the process's stderr is complete
		}
		switch {
		case child.err != nil:
			p.waitErr = child.err
		case child.status != 0:
			p.waitErr = &forkExitError{child.status}
		}
		p.cpuTime = child.cpu
		close(p.exited)
	}()
	return nil
}

// release closes the parent's ends of the pipes of a process not used.
func (p *proc) release() {
	p.kill()
	<-p.exited
	p.stdin.Close()
	p.stdout.Close()
}

// run feeds a job to the process and reads its renditions back.
func (p *proc) run(ctx context.Context, j *Job) ([]OutTrack, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := p.stdin.Write(j.Input)
		if cerr := p.stdin.Close(); err == nil {
			err = cerr
		}
		werr <- err
	}()
	type demuxed struct {
		outs []OutTrack
		err  error
	}
	dc := make(chan demuxed, 1)
	go func() {
		outs, err := demuxOutput(p.stdout, p.tmpl.N, timestampMapper(j), progress(j))
		if err != nil {
			p.kill() // do not leave it blocked writing to a pipe nobody reads
		}
		_, _ = io.Copy(io.Discard, p.stdout)
		p.stdout.Close()
		dc <- demuxed{outs, err}
	}()
	var d demuxed
	select {
	case d = <-dc:
	case <-ctx.Done():
		p.kill()
		d = <-dc
	}
	select {
	case <-p.exited:
	case <-ctx.Done(): // output complete, yet the process does not exit
		p.kill()
		<-p.exited
	}
	wErr := <-werr
	switch {
	case p.waitErr == nil && d.err == nil:
		// Complete, even if ctx ended meanwhile.
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errTimeout
		}
		return nil, ctx.Err()
	case p.waitErr != nil:
		return nil, fmt.Errorf("ffmpeg: %w", p.waitErr)
	case d.err != nil:
		return nil, d.err
	}
	if wErr != nil && !errors.Is(wErr, syscall.EPIPE) {
		return nil, fmt.Errorf("writing the GOP to ffmpeg: %w", wErr)
	}
	return d.outs, nil
}

// progress streams a run's frames to j.Progress.
func progress(j *Job) func(i int, o *OutTrack) {
	if j.Progress == nil {
		return nil
	}
	return func(i int, o *OutTrack) {
		if i < len(j.Renditions) {
			k := len(o.Frames) - 1
			j.Progress(j.Renditions[i].Name, j.Attempt, k, o.Codec, o.Frames[k])
		}
	}
}

var errTimeout = errors.New("ffmpeg did not finish before the job's deadline")

// timestampMapper maps the output's MPEG-TS timestamps back to the
// source's: a PTS onto the source frame it was made from (exact), a DTS by
// the clock conversion.
func timestampMapper(j *Job) func(pts, dts int64) (int64, int64) {
	byTS := make(map[int64]int64, len(j.PTS))
	for _, pts := range j.PTS {
		byTS[media.RescaleNearest(pts-j.Base, j.ClockRate, tsClock)+tsOffset] = pts
	}
	back := func(ts int64) int64 { return media.RescaleNearest(ts-tsOffset, tsClock, j.ClockRate) + j.Base }
	return func(pts, dts int64) (int64, int64) {
		if src, ok := byTS[pts]; ok {
			pts = src
		} else {
			pts = back(pts)
		}
		return pts, back(dts)
	}
}

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

type demand struct {
	tmpl  Template
	score float64
	at    time.Time
	fails int
}

// demandHalfLife is how fast the memory of a command line's use fades.
const demandHalfLife = 30 * time.Second

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

func (r *FFmpegRunner) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// loop keeps cfg.Warm idle processes, for the command lines in demand.
func (r *FFmpegRunner) loop() {
	defer close(r.loopDone)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		r.refill()
		r.updateGauges()
		select {
		case <-r.done:
			return
		case <-r.kick:
		case <-tick.C:
		}
	}
}

func (r *FFmpegRunner) updateGauges() {
	ready, starting := r.WarmCounts()
	r.m.workers.WithLabelValues("warm").Set(float64(ready))
	r.m.workers.WithLabelValues("starting").Set(float64(starting))
}

// refill starts processes until cfg.Warm are idle. Processes are started
// outside the lock: Run never waits for a fork.
func (r *FFmpegRunner) refill() {
	for {
		r.mu.Lock()
		if r.closed || r.nIdle >= r.cfg.Warm {
			r.mu.Unlock()
			return
		}
		t, ok := r.pickLocked()
		if !ok {
			r.mu.Unlock()
			return
		}
		r.nIdle++
		r.spawning[t.Key]++
		r.mu.Unlock()

		p, err := spawn(r.cfg.Path, r.forker(), t, r.cfg.StderrBytes)
		r.m.spawns.Inc()

		r.mu.Lock()
		r.spawning[t.Key]--
		if r.spawning[t.Key] == 0 {
			delete(r.spawning, t.Key)
		}
		if err != nil || r.closed {
			r.nIdle--
			closed := r.closed
			if err != nil {
				r.failing[t.Key] = time.Now().Add(5 * time.Second)
			}
			r.mu.Unlock()
			if err != nil {
				r.log.Error("transcoder: cannot start ffmpeg", "path", r.cfg.Path, "error", err)
			} else if closed {
				p.release()
			}
			return
		}
		r.all[p] = struct{}{}
		r.idle[t.Key] = append(r.idle[t.Key], p)
		r.mu.Unlock()
		go r.reap(p)
	}
}

// reap forgets a process once it has exited; an idle one that died by
// itself makes its command line back off.
func (r *FFmpegRunner) reap(p *proc) {
	<-p.exited
	r.mu.Lock()
	delete(r.all, p)
	ps := r.idle[p.tmpl.Key]
	for i, x := range ps {
		if x == p {
			r.idle[p.tmpl.Key] = append(ps[:i:i], ps[i+1:]...)
			r.nIdle--
			p.stdin.Close()
			p.stdout.Close()
			p.mu.Lock()
			killed := p.killed
			p.mu.Unlock()
			if !killed && !errors.Is(p.waitErr, errForkServerGone) {
				d := r.demand[p.tmpl.Key]
				n := 1
				if d != nil {
					d.fails++
					n = d.fails
				}
				back := time.Duration(math.Min(float64(time.Second)*math.Pow(2, float64(n-1)), float64(30*time.Second)))
				r.failing[p.tmpl.Key] = time.Now().Add(back)
				r.log.Warn("transcoder: a warm ffmpeg exited before any job", "error", p.waitErr,
					"stderr", p.stderr.String(), "retry_in", back)
			}
			break
		}
	}
	if len(r.idle[p.tmpl.Key]) == 0 {
		delete(r.idle, p.tmpl.Key)
	}
	r.mu.Unlock()
	r.poke()
}

func (r *FFmpegRunner) pruneLocked() {
	now := time.Now()
	for k, d := range r.demand {
		if decay(d, now) < 0.01 && len(r.idle[k]) == 0 {
			delete(r.demand, k)
		}
	}
}

func decay(d *demand, now time.Time) float64 {
	el := now.Sub(d.at)
	if el <= 0 {
		return d.score
	}
	return d.score * math.Exp2(-el.Seconds()/demandHalfLife.Seconds())
}

// pickLocked chooses the command line of the next warm process: the one
// most in demand relative to the processes already warm for it.
func (r *FFmpegRunner) pickLocked() (Template, bool) {
	now := time.Now()
	var best *demand
	bestV := -1.0
	for k, d := range r.demand {
		if until, ok := r.failing[k]; ok && now.Before(until) {
			continue
		}
		v := decay(d, now) / float64(1+len(r.idle[k])+r.spawning[k])
		if v > bestV || v == bestV && best != nil && d.tmpl.Key < best.tmpl.Key {
			best, bestV = d, v
		}
	}
	if best == nil {
		return Template{}, false
	}
	return best.tmpl, true
}

// note records a use of a command line.
func (r *FFmpegRunner) noteLocked(t Template) {
	now := time.Now()
	d := r.demand[t.Key]
	if d == nil {
		d = &demand{tmpl: t}
		r.demand[t.Key] = d
	}
	d.score = decay(d, now) + 1
	d.at = now
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

// evictLocked kills the idle process least in demand.
func (r *FFmpegRunner) evictLocked() {
	now := time.Now()
	var victim *proc
	worst := math.Inf(1)
	for k, ps := range r.idle {
		if len(ps) == 0 {
			continue
		}
		v := 0.0
		if d := r.demand[k]; d != nil {
			v = decay(d, now) / float64(len(ps))
		}
		if v < worst {
			worst, victim = v, ps[0]
		}
	}
	if victim == nil {
		return
	}
	ps := r.idle[victim.tmpl.Key]
	r.idle[victim.tmpl.Key] = ps[1:]
	r.nIdle--
	go victim.release()
	if len(r.idle[victim.tmpl.Key]) == 0 {
		delete(r.idle, victim.tmpl.Key)
	}
}

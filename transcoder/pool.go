package transcoder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reservation reserves workers for some jobs: reserved workers run only
// jobs of streams under Streams (a name prefix matched at a '/'-element
// boundary, see UnderPrefix; "" for any) that include
// one of Renditions (any when empty). Reserved renditions are also shed
// last.
type Reservation struct {
	Streams    string   `yaml:"streams" json:"streams"`
	Renditions []string `yaml:"renditions" json:"renditions"`
	Workers    int      `yaml:"workers" json:"workers"`
}

func (r Reservation) matchStream(s string) bool { return UnderPrefix(r.Streams, s) }

func (r Reservation) matchRendition(name string) bool {
	if len(r.Renditions) == 0 {
		return true
	}
	for _, n := range r.Renditions {
		if n == name {
			return true
		}
	}
	return false
}

// matches reports whether a reserved worker may run j.
func (r Reservation) matches(j *Job) bool {
	if !r.matchStream(j.Stream) {
		return false
	}
	for _, x := range j.Renditions {
		if r.matchRendition(x.Name) {
			return true
		}
	}
	return false
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// FFmpeg is the ffmpeg binary ("ffmpeg" from PATH by default).
	FFmpeg string
	// Size is the number of jobs run at once (runtime.NumCPU() by default).
	Size int
	// Warm is the number of idle pre-started ffmpeg processes to keep
	// (Size by default; negative for none).
	Warm int
	// QueueSize bounds the queue in rendition-GOPs (16×Size by default):
	// past it the lowest-priority renditions of queued GOPs are shed.
	QueueSize int
	// MaxWait is how long a GOP may wait for a worker, in GOP durations
	// (1 by default): a job taken after waiting n×MaxWait loses its n
	// lowest-priority renditions (it keeps at least one), so that a pool
	// falling behind sheds work instead of letting renditions lag.
	MaxWait float64
	// Reserve reserves workers for chosen streams/renditions; the
	// reserved workers must leave at least one worker unreserved.
	Reserve []Reservation
	// Prewarm lists the rendition sets to pre-start processes for before
	// any stream asked (the default ladder for a 1080p source by default).
	Prewarm []Ladder
	// LogLevel is ffmpeg's -loglevel ("error").
	LogLevel string
	// StderrBytes is how much of a failed process's stderr is kept (8 KiB).
	StderrBytes int
	// LogInterval rate-limits failure logs per stream (10s).
	LogInterval time.Duration
	// ForkServer chooses how ffmpeg processes are started: ForkServerAuto
	// (the default) forks them from a pre-linked ffmpeg when the fork
	// server can be built and started, else executes ffmpeg;
	// ForkServerOn fails Start when it cannot; ForkServerOff always
	// executes ffmpeg.
	ForkServer ForkServerMode

	// Queue and Runner replace the local queue and the ffmpeg runner (a
	// message queue, remote workers, tests). Nil uses the local ones.
	Queue  Queue
	Runner Runner
}

// Defaults of PoolConfig (and config.Default's transcoder section).
const (
	// DefaultFFmpeg is the ffmpeg binary looked up in PATH.
	DefaultFFmpeg = "ffmpeg"
	// DefaultMaxWait is PoolConfig.MaxWait's default, in GOP durations.
	DefaultMaxWait = 1
)

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Size <= 0 {
		c.Size = runtime.NumCPU()
	}
	if c.Warm == 0 {
		c.Warm = c.Size
	}
	if c.Warm < 0 {
		c.Warm = 0
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 16 * c.Size
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.Prewarm == nil {
		c.Prewarm = []Ladder{DefaultLadder()}
	}
	if c.LogInterval <= 0 {
		c.LogInterval = 10 * time.Second
	}
	return c
}

// Validate checks the configuration.
func (c PoolConfig) Validate() error {
	c = c.withDefaults()
	reserved := 0
	for i, r := range c.Reserve {
		if r.Workers < 1 {
			return fmt.Errorf("reserve[%d]: workers must be at least 1", i)
		}
		if err := CheckStreamPrefix(r.Streams); err != nil {
			return fmt.Errorf("reserve[%d]: %w", i, err)
		}
		reserved += r.Workers
	}
	if reserved >= c.Size {
		return fmt.Errorf("reserve: %d workers reserved of %d: leave at least one unreserved", reserved, c.Size)
	}
	for i, l := range c.Prewarm {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("prewarm[%d]: %w", i, err)
		}
	}
	return nil
}

var _ Executor = (*Pool)(nil)

// Pool runs GOP jobs on Size workers. It implements Executor.
type Pool struct {
	cfg   PoolConfig
	m     *Metrics
	log   *slog.Logger
	queue Queue
	run   Runner
	ff    *FFmpegRunner // nil with a custom Runner

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
	closed atomic.Bool
	busy   atomic.Int64

	mu      sync.Mutex
	costK   float64 // EWMA of wall seconds per output pixel-frame (0: unknown)
	logged  map[string]time.Time
	skipped map[string]int
}

// NewPool returns a pool; nothing runs until Start. m and log may be nil.
func NewPool(cfg PoolConfig, m *Metrics, log *slog.Logger) *Pool {
	cfg = cfg.withDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{cfg: cfg, m: m, log: log, logged: map[string]time.Time{}, skipped: map[string]int{}}
	for i := range cfg.Prewarm {
		_ = cfg.Prewarm[i].Validate()
	}
	p.queue = cfg.Queue
	if p.queue == nil {
		p.queue = newLocalQueue(cfg.QueueSize, p.protected, m)
	}
	p.run = cfg.Runner
	if p.run == nil {
		p.ff = NewFFmpegRunner(FFmpegConfig{
			Path: cfg.FFmpeg, Warm: cfg.Warm, LogLevel: cfg.LogLevel,
			StderrBytes: cfg.StderrBytes, Prewarm: cfg.Prewarm,
			ForkServer: cfg.ForkServer,
		}, m, log)
		p.run = p.ff
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// protected reports whether a rendition of a job is reserved.
func (p *Pool) protected(j *Job, r Rendition) bool {
	for _, res := range p.cfg.Reserve {
		if res.matchStream(j.Stream) && res.matchRendition(r.Name) {
			return true
		}
	}
	return false
}

// Start starts the workers and the warm processes. ctx ending closes the pool.
func (p *Pool) Start(ctx context.Context) error {
	if err := p.cfg.Validate(); err != nil {
		return err
	}
	if p.closed.Load() {
		return ErrClosed
	}
	var err error
	p.start.Do(func() {
		if p.ff != nil {
			if err = p.ff.Start(); err != nil {
				return
			}
		}
		var slots []*Reservation
		for i := range p.cfg.Reserve {
			for k := 0; k < p.cfg.Reserve[i].Workers; k++ {
				slots = append(slots, &p.cfg.Reserve[i])
			}
		}
		for len(slots) < p.cfg.Size {
			slots = append(slots, nil)
		}
		for _, res := range slots {
			p.wg.Add(1)
			go p.worker(res)
		}
		p.m.workers.WithLabelValues("busy").Set(0)
		p.m.workers.WithLabelValues("idle").Set(float64(p.cfg.Size))
		if ctx != nil {
			go func() {
				select {
				case <-ctx.Done():
					p.Close()
				case <-p.ctx.Done():
				}
			}()
		}
	})
	if err != nil {
		return fmt.Errorf("transcoder pool: %w", err)
	}
	return nil
}

// Ready reports whether the warm processes have been started and are
// waiting for input (once filled, it stays true until Close).
func (p *Pool) Ready() bool {
	if p.closed.Load() {
		return false
	}
	if p.ff != nil {
		return p.ff.Ready()
	}
	if r, ok := p.run.(interface{ Ready() bool }); ok {
		return r.Ready()
	}
	return true
}

// Size is the number of jobs the pool runs at once (PoolConfig.Size with
// its default): a feeder that never has more than Size of its jobs
// unfinished never makes one wait in the pool's queue.
func (p *Pool) Size() int { return p.cfg.Size }

// Processes is the number of live ffmpeg processes (0 with a custom Runner).
func (p *Pool) Processes() int {
	if p.ff == nil {
		return 0
	}
	return p.ff.Processes()
}

// Close stops the workers, completes queued jobs as canceled, kills every
// ffmpeg and waits for them.
func (p *Pool) Close() {
	if p.closed.Swap(true) {
		return
	}
	p.cancel()
	p.queue.Close()
	p.wg.Wait()
	if p.ff != nil {
		p.ff.Close()
	}
}

// Submit implements Executor.
func (p *Pool) Submit(j *Job) {
	if j.Ctx == nil {
		j.Ctx = context.Background()
	}
	if p.closed.Load() {
		completeShed(j, p.m, "canceled")
		return
	}
	if len(j.Renditions) == 0 {
		if j.Done != nil {
			j.Done(&Result{Job: j})
		}
		return
	}
	p.queue.Put(j)
}

func (p *Pool) worker(res *Reservation) {
	defer p.wg.Done()
	var accept func(*Job) bool
	if res != nil {
		accept = res.matches
	}
	for {
		j, err := p.queue.Take(p.ctx, accept)
		if err != nil {
			return
		}
		n := p.busy.Add(1)
		p.m.workers.WithLabelValues("busy").Set(float64(n))
		p.m.workers.WithLabelValues("idle").Set(float64(int64(p.cfg.Size) - n))
		p.runJob(j)
		n = p.busy.Add(-1)
		p.m.workers.WithLabelValues("busy").Set(float64(n))
		p.m.workers.WithLabelValues("idle").Set(float64(int64(p.cfg.Size) - n))
	}
}

// cost is a job's work in output pixel-frames.
func cost(rs []Rendition, frames int) float64 {
	c := 0.0
	for _, r := range rs {
		h := float64(r.Height)
		c += h * h * 16 / 9
	}
	return c * float64(frames)
}

func (p *Pool) estimate(rs []Rendition, frames int) time.Duration {
	p.mu.Lock()
	k := p.costK
	p.mu.Unlock()
	return time.Duration(k * cost(rs, frames) * float64(time.Second))
}

func (p *Pool) learn(rs []Rendition, frames int, wall time.Duration) {
	c := cost(rs, frames)
	if c <= 0 {
		return
	}
	k := wall.Seconds() / c
	p.mu.Lock()
	if p.costK == 0 {
		p.costK = k
	} else {
		p.costK = 0.8*p.costK + 0.2*k
	}
	p.mu.Unlock()
}

// degrade sheds the lowest-priority renditions of a job that waited too
// long: one per MaxWait of waiting, keeping at least one.
func (p *Pool) degrade(j *Job, now time.Time) {
	if j.Duration <= 0 || len(j.Renditions) < 2 {
		return
	}
	n := int(float64(now.Sub(j.Closed)) / (p.cfg.MaxWait * float64(j.Duration)))
	for ; n > 0 && len(j.Renditions) > 1; n-- {
		idx := 0
		for i, r := range j.Renditions {
			pi, pb := p.protected(j, r), p.protected(j, j.Renditions[idx])
			if (!pi && pb) || (pi == pb && r.Priority < j.Renditions[idx].Priority) {
				idx = i
			}
		}
		r := j.Renditions[idx]
		j.Renditions = append(j.Renditions[:idx:idx], j.Renditions[idx+1:]...)
		j.shed = append(j.shed, r)
		p.m.jobs.WithLabelValues(r.Name, OutcomeShed).Inc()
	}
}

func (p *Pool) runJob(j *Job) {
	now := time.Now()
	if j.Attempt == 0 {
		p.m.queueWait.Observe(now.Sub(j.Closed).Seconds())
	}
	if err := j.Ctx.Err(); err != nil {
		completeShed(j, p.m, "canceled")
		return
	}
	if !now.Before(j.Deadline) {
		completeShed(j, p.m, "late")
		return
	}
	if j.Attempt == 0 {
		p.degrade(j, now)
	}
	if est := p.estimate(j.Renditions, len(j.PTS)); est > 0 && now.Add(est).After(j.Deadline) {
		// It would be killed at its deadline: do not spend the CPU.
		completeShed(j, p.m, "late")
		return
	}
	ctx, cancel := context.WithDeadline(j.Ctx, j.Deadline)
	stop := context.AfterFunc(p.ctx, cancel) // Close kills running jobs
	outs, st, err := p.run.Run(ctx, j)
	stop()
	cancel()
	wall := time.Since(now)
	p.m.startLatency.WithLabelValues(fmt.Sprint(st.Warm)).Observe(st.Start.Seconds())
	if err == nil && len(outs) != len(j.Renditions) {
		err = fmt.Errorf("runner returned %d renditions for %d", len(outs), len(j.Renditions))
	}
	if err != nil {
		canceled := j.Ctx.Err() != nil || p.closed.Load()
		if !canceled {
			p.logFailure(j, err, st)
		}
		if canceled {
			completeShed(j, p.m, "canceled")
			return
		}
		if j.Attempt == 0 && !errors.Is(err, errTimeout) {
			left := time.Until(j.Deadline)
			est := p.estimate(j.Renditions, len(j.PTS))
			if est == 0 {
				est = j.Duration / 2
			}
			if left > est {
				j.Attempt++
				for _, r := range j.Renditions {
					p.m.jobs.WithLabelValues(r.Name, OutcomeRetried).Inc()
				}
				p.queue.Put(j)
				return
			}
		}
		reason := "failed"
		if errors.Is(err, errTimeout) {
			reason = "timeout"
		}
		p.complete(j, nil, reason, err, st, wall)
		return
	}
	p.learn(j.Renditions, len(j.PTS), wall)
	p.m.busySeconds.Add(wall.Seconds())
	p.m.mediaSeconds.Add(j.Duration.Seconds())
	if wall > 0 {
		p.m.speed.Observe(j.Duration.Seconds() / wall.Seconds())
	}
	for _, r := range j.Renditions {
		p.m.jobDuration.WithLabelValues(r.Name).Observe(wall.Seconds())
	}
	p.complete(j, outs, "", nil, st, wall)
}

func (p *Pool) complete(j *Job, outs []OutTrack, reason string, err error, st RunStats, wall time.Duration) {
	res := &Result{Job: j, Retried: j.Attempt > 0, Err: err, Wall: wall, CPU: st.CPU}
	for _, r := range j.shed {
		res.Renditions = append(res.Renditions, RenditionResult{Rendition: r, Outcome: OutcomeShed, Reason: "shed"})
	}
	for i, r := range j.Renditions {
		rr := RenditionResult{Rendition: r}
		if err != nil {
			rr.Outcome, rr.Reason = OutcomeFailed, reason
			p.m.jobs.WithLabelValues(r.Name, OutcomeFailed).Inc()
		} else {
			rr.Outcome, rr.Track = OutcomeOK, &outs[i]
			p.m.jobs.WithLabelValues(r.Name, OutcomeOK).Inc()
		}
		res.Renditions = append(res.Renditions, rr)
	}
	if j.Done != nil {
		j.Done(res)
	}
}

// logFailure logs a failed run with its stderr, at most once per
// LogInterval per stream.
func (p *Pool) logFailure(j *Job, err error, st RunStats) {
	p.mu.Lock()
	last, seen := p.logged[j.Stream]
	if seen && time.Since(last) < p.cfg.LogInterval {
		p.skipped[j.Stream]++
		p.mu.Unlock()
		return
	}
	p.logged[j.Stream] = time.Now()
	skipped := p.skipped[j.Stream]
	delete(p.skipped, j.Stream)
	if len(p.logged) > 4096 { // forget old streams
		for k, t := range p.logged {
			if time.Since(t) > p.cfg.LogInterval {
				delete(p.logged, k)
			}
		}
	}
	p.mu.Unlock()
	names := make([]string, len(j.Renditions))
	for i, r := range j.Renditions {
		names[i] = r.Name
	}
	p.log.Error("transcoder: job failed", "stream", j.Stream, "gop", j.Seq, "attempt", j.Attempt,
		"renditions", strings.Join(names, ","), "error", err, "stderr", st.Stderr,
		"suppressed_since_last", skipped)
}

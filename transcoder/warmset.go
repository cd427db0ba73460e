package transcoder

import (
	"errors"
	"math"
	"time"
)

type demand struct {
	tmpl  Template
	score float64
	at    time.Time
	fails int
}

// demandHalfLife is how fast the memory of a command line's use fades.
const demandHalfLife = 30 * time.Second

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

// decay is d's use count faded to now.
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

// noteLocked records a use of a command line.
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

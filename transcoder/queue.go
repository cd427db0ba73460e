package transcoder

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Take after Close.
var ErrClosed = errors.New("transcoder: queue closed")

var _ Queue = (*localQueue)(nil)

// localQueue is the in-process Queue: one FIFO per stream (oldest GOP
// first), round robin between streams, bounded in rendition-GOPs.
type localQueue struct {
	capacity  int                            // rendition-GOPs
	protected func(j *Job, r Rendition) bool // reserved: shed last
	m         *Metrics

	mu      sync.Mutex
	streams map[string][]*Job
	ring    []string // streams with queued jobs, round-robin order
	next    int      // ring index to serve next
	jobs    int
	units   int
	closed  bool
	wake    chan struct{} // closed and replaced on every Put
}

// NewQueue returns the local queue holding at most capacity rendition-GOPs
// (one GOP of a 3-rung ladder is 3). When a Put takes it past capacity it
// sheds renditions of queued jobs, the lowest Priority first and, among
// equals, the oldest GOP first; renditions reserved through protected are
// shed only when nothing else is left. A job left without renditions is
// removed and completed as shed.
func NewQueue(capacity int, protected func(j *Job, r Rendition) bool, m *Metrics) Queue {
	return newLocalQueue(capacity, protected, m)
}

func newLocalQueue(capacity int, protected func(j *Job, r Rendition) bool, m *Metrics) *localQueue {
	if capacity < 1 {
		capacity = 1
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &localQueue{
		capacity:  capacity,
		protected: protected,
		m:         m,
		streams:   make(map[string][]*Job),
		wake:      make(chan struct{}),
	}
}

func (q *localQueue) Put(j *Job) {
	var done []*Job
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		j.shedWhy = "canceled"
		completeShed(j, q.m, "canceled")
		return
	}
	if j.enqueued.IsZero() {
		j.enqueued = time.Now()
	}
	js, ok := q.streams[j.Stream]
	if !ok || len(js) == 0 {
		q.ring = append(q.ring, j.Stream)
	}
	if j.Attempt > 0 {
		q.streams[j.Stream] = append([]*Job{j}, js...) // a retry is the stream's oldest GOP
	} else {
		q.streams[j.Stream] = append(js, j)
	}
	j.units = len(j.Renditions)
	q.jobs++
	q.units += j.units
	for q.units > q.capacity {
		victim, idx := q.victimLocked()
		if victim == nil {
			break
		}
		r := victim.Renditions[idx]
		victim.Renditions = append(victim.Renditions[:idx:idx], victim.Renditions[idx+1:]...)
		victim.shed = append(victim.shed, r)
		victim.units--
		q.units--
		q.m.jobs.WithLabelValues(r.Name, OutcomeShed).Inc()
		if len(victim.Renditions) == 0 {
			q.removeLocked(victim)
			done = append(done, victim)
		}
	}
	q.gaugesLocked()
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
	for _, v := range done {
		completeShed(v, q.m, "shed")
	}
}

// victimLocked picks the rendition to shed: unprotected before protected,
// then lowest priority, then oldest GOP.
func (q *localQueue) victimLocked() (*Job, int) {
	var best *Job
	bestIdx, bestProt, bestPrio := -1, true, 0
	for _, js := range q.streams {
		for _, j := range js {
			for i, r := range j.Renditions {
				prot := q.protected != nil && q.protected(j, r)
				better := best == nil ||
					(!prot && bestProt) ||
					(prot == bestProt && (r.Priority < bestPrio ||
						r.Priority == bestPrio && older(j, best)))
				if better {
					best, bestIdx, bestProt, bestPrio = j, i, prot, r.Priority
				}
			}
		}
	}
	return best, bestIdx
}

// older orders jobs by GOP close time, then stream and sequence (a
// deterministic tie-break).
func older(a, b *Job) bool {
	if !a.Closed.Equal(b.Closed) {
		return a.Closed.Before(b.Closed)
	}
	if a.Stream != b.Stream {
		return a.Stream < b.Stream
	}
	return a.Seq < b.Seq
}

func (q *localQueue) removeLocked(j *Job) {
	js := q.streams[j.Stream]
	for i, x := range js {
		if x == j {
			js = append(js[:i:i], js[i+1:]...)
			break
		}
	}
	q.jobs--
	q.units -= j.units
	j.units = 0
	if len(js) == 0 {
		delete(q.streams, j.Stream)
		for i, s := range q.ring {
			if s == j.Stream {
				q.ring = append(q.ring[:i:i], q.ring[i+1:]...)
				if q.next > i {
					q.next--
				}
				break
			}
		}
		if q.next >= len(q.ring) {
			q.next = 0
		}
	} else {
		q.streams[j.Stream] = js
	}
}

func (q *localQueue) gaugesLocked() {
	q.m.queueDepth.Set(float64(q.jobs))
	q.m.queueUnits.Set(float64(q.units))
}

func (q *localQueue) Take(ctx context.Context, accept func(*Job) bool) (*Job, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		n := len(q.ring)
		for i := 0; i < n; i++ {
			k := (q.next + i) % n
			j := q.streams[q.ring[k]][0]
			if accept != nil && !accept(j) {
				continue
			}
			q.next = k + 1 // the stream after this one is served next
			q.removeLocked(j)
			q.gaugesLocked()
			q.mu.Unlock()
			return j, nil
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (q *localQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.jobs
}

func (q *localQueue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	var all []*Job
	for _, js := range q.streams {
		all = append(all, js...)
	}
	q.streams = map[string][]*Job{}
	q.ring, q.next, q.jobs, q.units = nil, 0, 0, 0
	q.gaugesLocked()
	close(q.wake)
	q.mu.Unlock()
	for _, j := range all {
		completeShed(j, q.m, "canceled")
	}
}

// completeShed completes a job none of whose renditions will be produced.
func completeShed(j *Job, m *Metrics, reason string) {
	res := &Result{Job: j}
	for _, r := range j.shed {
		res.Renditions = append(res.Renditions, RenditionResult{Rendition: r, Outcome: OutcomeShed, Reason: "shed"})
	}
	for _, r := range j.Renditions {
		res.Renditions = append(res.Renditions, RenditionResult{Rendition: r, Outcome: OutcomeShed, Reason: reason})
		if reason != "canceled" {
			m.jobs.WithLabelValues(r.Name, OutcomeShed).Inc()
		}
	}
	j.Renditions = nil
	if j.Done != nil {
		j.Done(res)
	}
}

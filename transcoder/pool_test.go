package transcoder

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// fakeRunner is a Runner without ffmpeg: it records which jobs ran and
// can block or fail them.
type fakeRunner struct {
	mu      sync.Mutex
	ran     []string
	block   chan struct{} // jobs of stream "slow" wait on it
	fail    map[uint64]int
	started chan string
}

func (f *fakeRunner) Run(ctx context.Context, j *Job) ([]OutTrack, RunStats, error) {
	f.mu.Lock()
	f.ran = append(f.ran, j.Stream)
	fails := f.fail[j.Seq]
	if fails > 0 {
		f.fail[j.Seq] = fails - 1
	}
	f.mu.Unlock()
	if f.started != nil {
		f.started <- j.Stream
	}
	if j.Stream == "slow" {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, RunStats{}, errTimeout
		}
	}
	if fails > 0 {
		return nil, RunStats{}, errors.New("boom")
	}
	outs := make([]OutTrack, len(j.Renditions))
	for i := range outs {
		outs[i] = OutTrack{Codec: &media.H264{SPS: []byte{0x67}, PPS: []byte{0x68}},
			Frames: []OutFrame{{DTS: j.Base, PTS: j.Base, Key: true, AU: []byte{0, 0, 0, 1, 0x65}}}}
	}
	return outs, RunStats{Warm: true}, nil
}

func collect() (func(*Result), func() []*Result) {
	var mu sync.Mutex
	var rs []*Result
	return func(r *Result) {
			mu.Lock()
			rs = append(rs, r)
			mu.Unlock()
		}, func() []*Result {
			mu.Lock()
			defer mu.Unlock()
			return append([]*Result(nil), rs...)
		}
}

func TestReservedWorkers(t *testing.T) {
	fr := &fakeRunner{block: make(chan struct{}), started: make(chan string, 16)}
	q := &watchedQueue{Queue: newLocalQueue(16, func(*Job, Rendition) bool { return false }, NewMetrics(nil)), refused: make(chan string, 16)}
	pool := NewPool(PoolConfig{Size: 2, Runner: fr, Queue: q, Reserve: []Reservation{{Streams: "vip", Workers: 1}}}, nil, nil)
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	done, results := collect()
	rs := []Rendition{{Name: "360p", Height: 360, Priority: 1}}
	now := time.Now()
	submit := func(stream string, seq uint64) {
		j := testJob(stream, seq, now, rs...)
		j.Deadline = now.Add(time.Minute)
		j.Done = done
		pool.Submit(j)
	}
	// The unreserved worker is stuck on a slow job; the reserved one does
	// not take ordinary jobs, only vip ones.
	submit("slow", 0)
	if s := <-fr.started; s != "slow" {
		t.Fatalf("first job %s", s)
	}
	// It refuses it (an event, not a quiet interval).
	submit("other", 0)
	for refused := false; !refused; {
		select {
		case s := <-fr.started:
			t.Fatalf("reserved worker ran %s", s)
		case s := <-q.refused:
			refused = s == "other" // it may have refused "slow" first
		case <-time.After(5 * time.Second):
			t.Fatal("the reserved worker neither ran nor refused the ordinary job")
		}
	}
	submit("vip", 0)
	select {
	case s := <-fr.started:
		if s != "vip" {
			t.Fatalf("reserved worker ran %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("vip job not run by the reserved worker")
	}
	close(fr.block)
	testpeer.WaitFor(t, 5*time.Second, "all jobs", func() bool { return len(results()) == 3 })
}

// watchedQueue reports the jobs the workers' accept functions refuse.
type watchedQueue struct {
	Queue
	refused chan string
}

func (q *watchedQueue) Take(ctx context.Context, accept func(*Job) bool) (*Job, error) {
	if accept == nil {
		return q.Queue.Take(ctx, nil)
	}
	return q.Queue.Take(ctx, func(j *Job) bool {
		ok := accept(j)
		if !ok {
			select {
			case q.refused <- j.Stream:
			default:
			}
		}
		return ok
	})
}

func TestRetryOnceThenFail(t *testing.T) {
	fr := &fakeRunner{fail: map[uint64]int{1: 1, 2: 5}}
	m := NewMetrics(nil)
	pool := NewPool(PoolConfig{Size: 1, Runner: fr}, m, nil)
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	done, results := collect()
	rs := []Rendition{{Name: "360p", Height: 360, Priority: 1}}
	for seq := uint64(0); seq < 3; seq++ {
		j := testJob("s", seq, time.Now(), rs...)
		j.Deadline = time.Now().Add(time.Minute)
		j.Duration = 2 * time.Second
		j.Done = done
		pool.Submit(j)
	}
	testpeer.WaitFor(t, 5*time.Second, "results", func() bool { return len(results()) == 3 })
	got := map[uint64]string{}
	for _, r := range results() {
		got[r.Job.Seq] = r.Renditions[0].Outcome
		if r.Job.Seq == 1 && !r.Retried {
			t.Error("GOP 1 not marked retried")
		}
	}
	if got[0] != OutcomeOK || got[1] != OutcomeOK || got[2] != OutcomeFailed {
		t.Errorf("outcomes %v", got)
	}
	if n := counter(t, m, "360p", OutcomeRetried); n != 2 {
		t.Errorf("retried %v, want 2 (GOPs 1 and 2)", n)
	}
	// A job whose deadline passed in the queue is shed, not run.
	late := testJob("s", 9, time.Now().Add(-time.Minute), rs...)
	late.Deadline = time.Now().Add(-time.Second)
	late.Done = done
	pool.Submit(late)
	testpeer.WaitFor(t, 5*time.Second, "late job", func() bool { return len(results()) == 4 })
	if r := results()[3]; r.Renditions[0].Outcome != OutcomeShed || r.Renditions[0].Reason != "late" {
		t.Errorf("late job: %+v", r.Renditions[0])
	}
}

func TestLongWaitShedsLowPriorityRenditions(t *testing.T) {
	fr := &fakeRunner{}
	m := NewMetrics(nil)
	pool := NewPool(PoolConfig{Size: 1, Runner: fr, MaxWait: 1}, m, nil)
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	done, results := collect()
	l := DefaultLadder()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	submit := func(waited time.Duration) {
		j := testJob("s", 0, time.Now().Add(-waited), l...)
		j.Duration = time.Second
		j.Deadline = time.Now().Add(time.Minute)
		j.Done = done
		pool.Submit(j)
	}
	submit(0)
	submit(1500 * time.Millisecond) // one MaxWait: the tallest rung goes
	submit(5 * time.Second)         // way behind: only the lowest rung is kept
	testpeer.WaitFor(t, 5*time.Second, "results", func() bool { return len(results()) == 3 })
	for i, want := range []string{"720p=ok 480p=ok 360p=ok", "720p=shed 480p=ok 360p=ok", "720p=shed 480p=shed 360p=ok"} {
		got := map[string]string{}
		for _, rr := range results()[i].Renditions {
			got[rr.Rendition.Name] = rr.Outcome
		}
		if s := "720p=" + got["720p"] + " 480p=" + got["480p"] + " 360p=" + got["360p"]; s != want {
			t.Errorf("job %d: %s, want %s", i, s, want)
		}
	}
}

func TestPoolSize(t *testing.T) {
	if got := NewPool(PoolConfig{Size: 3, Runner: &fakeRunner{}}, nil, nil).Size(); got != 3 {
		t.Errorf("Size() = %d, want 3", got)
	}
	if got, want := NewPool(PoolConfig{Runner: &fakeRunner{}}, nil, nil).Size(), runtime.NumCPU(); got != want {
		t.Errorf("default Size() = %d, want NumCPU %d", got, want)
	}
}

package gopqueue

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/transcoder"
)

// restartableNATS is a JetStream server on a fixed port that can be
// restarted with an empty store (the queue's stream and consumer gone).
type restartableNATS struct {
	t    *testing.T
	port int
	mu   sync.Mutex
	s    *server.Server
}

func (n *restartableNATS) start() {
	n.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true,
		StoreDir: n.t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats server not ready")
	}
	n.mu.Lock()
	n.s = s
	n.mu.Unlock()
}

func (n *restartableNATS) stop() {
	n.mu.Lock()
	s := n.s
	n.s = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// TestQueueRecreatedAfterNATSLostIt: the NATS server restarts with an
// empty store (the queue's stream and consumer are gone); the executor
// and the worker reconnect, KeepStreams creates the stream and consumer
// again, and jobs are done again.
func TestQueueRecreatedAfterNATSLostIt(t *testing.T) {
	leakCheck(t)
	addr := testpeer.FreeAddr(t)
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	n := &restartableNATS{t: t, port: port}
	n.start()
	t.Cleanup(n.stop)
	url := "nats://" + addr

	nc, js := connect(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	var keep sync.WaitGroup
	keep.Add(1)
	go func() {
		defer keep.Done()
		KeepStreams(ctx, js, 1, 200*time.Millisecond, nil, WithAckWait(testAckWait))
	}()
	t.Cleanup(func() { cancel(); keep.Wait() })
	// KeepStreams creates the queue from nothing.
	testpeer.WaitFor(t, 10*time.Second, "the queue created by KeepStreams", func() bool {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		_, err := js.Consumer(cctx, StreamName, ConsumerName)
		return err == nil
	})

	reg := prometheus.NewRegistry()
	e := newExecutor(t, nc, js, "owner", reg)
	wnc, wjs := connect(t, url)
	pool := startPool(t, transcoder.PoolConfig{Size: 1, Runner: &fakeRunner{frames: 3}})
	runWorker(t, wnc, wjs, pool, WorkerConfig{FetchWait: 500 * time.Millisecond}, nil)

	// jobDone submits jobs (deadline 2 s) until one is done with every
	// rendition, within timeout.
	jobDone := func(what string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for tries := 1; ; tries++ {
			rec := newRecord()
			j := rec.attach(fakeJob("live/keep", 1000, 2*time.Second))
			e.Submit(j)
			res := rec.wait(t, 5*time.Second)
			ok := res.Err == nil
			for _, rr := range res.Renditions {
				ok = ok && rr.Outcome == transcoder.OutcomeOK
			}
			if ok {
				t.Logf("%s: job %d done (try %d)", what, j.ID, tries)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no job done within %s (last: err %v, renditions %+v)", what, timeout, res.Err, res.Renditions)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	jobDone("before the restart", 10*time.Second)

	// NATS restarts with an empty store: the stream and consumer are gone.
	n.stop()
	n.start()
	testpeer.WaitFor(t, 10*time.Second, "the clients reconnected", func() bool {
		return nc.IsConnected() && wnc.IsConnected()
	})
	jobDone("after the restart", 20*time.Second)
	ci := consumerInfo(t, js)
	if ci.Config.AckWait != testAckWait {
		t.Errorf("re-created consumer's ack wait %s, want %s", ci.Config.AckWait, testAckWait)
	}
	if v := testpeer.MetricSum(t, reg, "headwater_gopqueue_jobs_total", "outcome", "ok"); v < 2 {
		t.Errorf("jobs ok %v, want at least 2", v)
	}
}

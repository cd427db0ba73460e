package gopqueue

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// testAckWait is the ack wait of the tests' consumer: a lost job is
// redelivered after it.
const testAckWait = time.Second

// natsServer starts an embedded NATS server with JetStream in a temporary
// directory, creates the queue's stream and consumer and returns its URL.
func natsServer(t testing.TB) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	_, js := connect(t, s.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStreams(ctx, js, 1, WithAckWait(testAckWait)); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := EnsureStreams(ctx, js, 1, WithAckWait(testAckWait)); err != nil {
		t.Fatal(err)
	}
	return s.ClientURL()
}

// connect opens a connection closed at the end of the test.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// consumerInfo reads the queue consumer's state.
func consumerInfo(t testing.TB, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, StreamName, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

// fakeRunner is a transcoder.Runner without ffmpeg: it streams frames
// frames per rendition, delay apart, through the job's Progress, and
// records how many jobs it ran and ran at once.
type fakeRunner struct {
	frames int
	delay  time.Duration
	// hold, when set, is called before frame k of an attempt; it may
	// block (until ctx ends).
	hold func(ctx context.Context, j *transcoder.Job, k int) error

	ran, now, peak atomic.Int64
}

func fakeFrame(j *transcoder.Job, rendition, k int) transcoder.OutFrame {
	return transcoder.OutFrame{DTS: int64(k) * 3000, PTS: int64(k) * 3000, Key: k == 0,
		AU: []byte{0, 0, 0, 2, byte(rendition), byte(k)}}
}

var fakeCodec = &media.H264{SPS: []byte{0x67, 1, 2}, PPS: []byte{0x68, 3}}

func (f *fakeRunner) Run(ctx context.Context, j *transcoder.Job) ([]transcoder.OutTrack, transcoder.RunStats, error) {
	f.ran.Add(1)
	n := f.now.Add(1)
	defer f.now.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	outs := make([]transcoder.OutTrack, len(j.Renditions))
	for k := 0; k < f.frames; k++ {
		if f.hold != nil {
			if err := f.hold(ctx, j, k); err != nil {
				return nil, transcoder.RunStats{}, err
			}
		}
		if f.delay > 0 {
			select {
			case <-time.After(f.delay):
			case <-ctx.Done():
				return nil, transcoder.RunStats{}, ctx.Err()
			}
		}
		for i, r := range j.Renditions {
			fr := fakeFrame(j, i, k)
			outs[i].Codec = fakeCodec
			outs[i].Frames = append(outs[i].Frames, fr)
			if j.Progress != nil {
				j.Progress(r.Name, j.Attempt, k, fakeCodec, fr)
			}
		}
	}
	return outs, transcoder.RunStats{Warm: true}, nil
}

// startPool starts a pool closed at the end of the test.
func startPool(t testing.TB, pc transcoder.PoolConfig) *transcoder.Pool {
	t.Helper()
	if pc.Warm == 0 && pc.Runner != nil {
		pc.Warm = -1
	}
	p := transcoder.NewPool(pc, nil, nil)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// runWorker runs a worker until the returned stop is called (stop waits
// for Run to return).
func runWorker(t testing.TB, nc *nats.Conn, js jetstream.JetStream, pool JobPool, cfg WorkerConfig, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	w, err := NewWorker(nc, js, pool, cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newExecutor(t testing.TB, nc *nats.Conn, js jetstream.JetStream, node string, reg prometheus.Registerer) *Executor {
	t.Helper()
	return newExecutorCfg(t, nc, js, ExecutorConfig{Node: node}, reg)
}

// newExecutorCfg is an executor configured as cfg, its consumer state
// polled every 100 ms unless cfg says otherwise, closed at the end of the
// test.
func newExecutorCfg(t testing.TB, nc *nats.Conn, js jetstream.JetStream, cfg ExecutorConfig, reg prometheus.Registerer) *Executor {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	e, err := NewExecutor(nc, js, cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// directCfg is an owner's configuration serving held inputs directly on
// loopback.
func directCfg(node string) ExecutorConfig {
	return ExecutorConfig{Node: node, InputListen: "127.0.0.1:0"}
}

// progressCall is one Progress call.
type progressCall struct {
	rendition   string
	attempt, k  int
	codec       media.Codec
	frame       transcoder.OutFrame
	afterResult bool
}

// record collects a job's Progress calls and Done results.
type record struct {
	mu       sync.Mutex
	progress []progressCall
	results  []*transcoder.Result
	done     chan struct{}
}

func newRecord() *record { return &record{done: make(chan struct{})} }

func (r *record) attach(j *transcoder.Job) *transcoder.Job {
	j.Progress = func(name string, attempt, k int, codec media.Codec, f transcoder.OutFrame) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.progress = append(r.progress, progressCall{rendition: name, attempt: attempt, k: k, codec: codec, frame: f,
			afterResult: len(r.results) > 0})
	}
	j.Done = func(res *transcoder.Result) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.results = append(r.results, res)
		if len(r.results) == 1 {
			close(r.done)
		}
	}
	return j
}

func (r *record) wait(t testing.TB, timeout time.Duration) *transcoder.Result {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("no Done after %s", timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.results[0]
}

// check verifies the Done/Progress contract: Done exactly once (after a
// grace for a second one), no Progress after it, and per rendition the
// frames of each attempt numbered 0, 1, 2, … with attempts never going
// back. It returns the last attempt's frames per rendition.
func (r *record) check(t testing.TB) map[string][]transcoder.OutFrame {
	t.Helper()
	time.Sleep(100 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) != 1 {
		t.Fatalf("Done called %d times", len(r.results))
	}
	last := map[string][]transcoder.OutFrame{}
	att := map[string]int{}
	for _, p := range r.progress {
		if p.afterResult {
			t.Errorf("Progress %s k=%d after Done", p.rendition, p.k)
		}
		a, seen := att[p.rendition]
		switch {
		case seen && p.attempt < a:
			t.Errorf("rendition %s: attempt %d after attempt %d", p.rendition, p.attempt, a)
		case !seen || p.attempt > a:
			att[p.rendition] = p.attempt
			last[p.rendition] = nil
		}
		if p.k != len(last[p.rendition]) {
			t.Errorf("rendition %s attempt %d: frame k=%d after %d frames", p.rendition, p.attempt, p.k, len(last[p.rendition]))
		}
		last[p.rendition] = append(last[p.rendition], p.frame)
	}
	return last
}

func testRenditions() []transcoder.Rendition {
	return []transcoder.Rendition{
		{Name: "720p", Height: 720, Bitrate: "3000k", Priority: 1},
		{Name: "480p", Height: 480, Bitrate: "1400k", Priority: 2},
		{Name: "360p", Height: 360, Bitrate: "800k", Priority: 3},
	}
}

var jobIDs atomic.Uint64

// fakeJob is a job for a fake runner: input bytes of input, its GOP
// closed now, deadline after d.
func fakeJob(stream string, input int, d time.Duration) *transcoder.Job {
	now := time.Now()
	in := make([]byte, input)
	for i := range in {
		in[i] = byte(i * 7)
	}
	id := jobIDs.Add(1)
	return &transcoder.Job{ID: id, Stream: stream, Seq: id, Renditions: testRenditions(), Input: in,
		Base: 90000, ClockRate: 90000, PTS: []int64{0, 3000, 6000}, DTS: []int64{0, 3000, 6000},
		Duration: 2 * time.Second, Closed: now, Deadline: now.Add(d)}
}

// leakCheck records the goroutine count and, at the end of the test
// (after the cleanups registered later), waits for it to fall back.
func leakCheck(t *testing.T) {
	t.Helper()
	base := runtimeGoroutines()
	t.Cleanup(func() { testpeer.WaitGoroutines(t, base) })
}

// proxy is a TCP proxy between a client and the NATS server that can
// stop forwarding (a process stopped with SIGSTOP: its connection stays
// open and silent).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool
	cond   *sync.Cond
	wg     sync.WaitGroup
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			_ = dst.Close()
			_ = src.Close()
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *proxy) pause(on bool) {
	p.mu.Lock()
	p.paused = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.pause(false)
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

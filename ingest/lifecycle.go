package ingest

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Lifecycle is the start-once, close-once skeleton every ingest server
// shares: it knows whether the server started and whether it is closing,
// tracks the connections and goroutines the server runs, and on Close
// closes the connections and waits for the goroutines. Safe for concurrent
// use; the zero value is not usable, see NewLifecycle.
type Lifecycle struct {
	protocol string
	ctx      context.Context // cancelled when Close begins
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	conns   map[io.Closer]struct{}
}

// NewLifecycle returns the lifecycle of a server of protocol ("rtmp",
// "srt", "rtsp"), which prefixes its errors.
func NewLifecycle(protocol string) *Lifecycle {
	ctx, cancel := context.WithCancel(context.Background())
	return &Lifecycle{protocol: protocol, ctx: ctx, cancel: cancel, conns: make(map[io.Closer]struct{})}
}

// Start runs listen, which opens the server's listeners, unless the server
// is closed or started already. listen runs under the lifecycle's lock
// (Close waits for it) and may call Go; when it fails, the server is not
// started and Start may be called again.
func (l *Lifecycle) Start(listen func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("%s: server closed", l.protocol)
	}
	if l.started {
		return fmt.Errorf("%s: server already started", l.protocol)
	}
	if err := listen(); err != nil {
		return err
	}
	l.started = true
	return nil
}

// Context is cancelled when Close begins: it bounds work in progress
// (publish authorisations, dials, waits).
func (l *Lifecycle) Context() context.Context { return l.ctx }

// Done is closed when Close begins.
func (l *Lifecycle) Done() <-chan struct{} { return l.ctx.Done() }

// Closed tells whether Close has begun.
func (l *Lifecycle) Closed() bool { return l.ctx.Err() != nil }

// Go runs f on a goroutine that Close waits for. Call it from Start's
// listen function, from a goroutine Close waits for (an accept loop), or
// from one that ends before Close's stop function returns (a callback of
// a library server that stop closes), so that it never races with the end
// of Close.
func (l *Lifecycle) Go(f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
}

// Serve runs serve, the session of connection c, on a goroutine that Close
// waits for; Close also closes c. Once Close has begun it closes c instead
// and returns false.
func (l *Lifecycle) Serve(c io.Closer, serve func()) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
		serve()
	}()
	return true
}

// Close begins closing (Context, Done and Closed tell), runs stop, which
// closes the server's listeners, then closes every connection given to
// Serve and waits for every goroutine of Go and Serve. It returns stop's
// error. A second Close only waits.
func (l *Lifecycle) Close(stop func() error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.wg.Wait()
		return nil
	}
	l.closed = true
	l.cancel()
	conns := make([]io.Closer, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	var err error
	if stop != nil {
		err = stop()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	l.wg.Wait()
	return err
}

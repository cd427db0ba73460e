package testpeer

import (
	"runtime"
	"testing"
	"time"
)

// WaitFor polls cond every 50ms until it is true, and fails t with "timed
// out after <timeout> waiting for <what>" once timeout has passed.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitGoroutines waits up to 5 s for the number of goroutines to fall to at
// most n, and fails t with a dump of all goroutines otherwise.
func WaitGoroutines(t testing.TB, n int) {
	t.Helper()
	WaitGoroutinesCounted(t, n, 5*time.Second, runtime.NumGoroutine)
}

// WaitGoroutinesCounted is WaitGoroutines with another timeout and another
// count of the goroutines that matter (one that leaves out a client
// library's, say). It polls count every 20ms.
func WaitGoroutinesCounted(t testing.TB, n int, timeout time.Duration, count func() int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := count()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

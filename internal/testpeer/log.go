package testpeer

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// LogBuffer is a bytes.Buffer safe for concurrent writers and readers: a
// server's or a process's output, printed when a test fails or searched by
// WaitLog.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitLog polls log every 10ms until it contains substr, and fails t with
// `log has no "substr"` once timeout has passed.
func WaitLog(t testing.TB, log fmt.Stringer, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(log.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q", substr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package testpeer

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// Server is what Serve needs of a server, such as headwater's
// server.Server.
type Server interface {
	// Start starts the server's listeners.
	Start() error
	// Shutdown stops the server within ctx.
	Shutdown(ctx context.Context) error
}

// Serve starts srv, failing t if it does not start. When the test ends, srv
// is shut down (within 10 s; an error fails t) and then log, the server's
// log, is logged if the test failed.
func Serve(t testing.TB, srv Server, log fmt.Stringer) {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
}

// CloseAtEnd closes srv when the test ends (an error fails t) and then
// logs log, the server's log, if the test failed or the environment
// variable env is set (RTMP_TEST_LOG=1 go test -run ..., say).
func CloseAtEnd(t testing.TB, srv io.Closer, log fmt.Stringer, env string) {
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() || os.Getenv(env) != "" {
			t.Logf("server log:\n%s", log.String())
		}
	})
}

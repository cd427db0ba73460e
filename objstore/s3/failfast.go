package s3

import (
	"context"
	"errors"
	"net/http"
)

// abortKey is the context key of an operation's abort function.
type abortKey struct{}

// failFast is the client's transport. When a request gets no answer (the
// endpoint refused the connection, could not be resolved, ...), it aborts
// the operation's context with that error, so that minio-go's retry
// loop, which even with MaxRetries 1 waits up to 200 ms (DefaultRetryUnit
// with jitter) after its last attempt unless the context ends, returns at
// once: a failed upload costs the spool's backoff, not a random extra.
type failFast struct{ next http.RoundTripper }

// RoundTrip sends req, aborting its operation when it fails.
func (f failFast) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(req)
	if err != nil {
		if abort, ok := req.Context().Value(abortKey{}).(context.CancelCauseFunc); ok {
			abort(err)
		}
	}
	return resp, err
}

// operation returns the context of one operation of the client, which
// failFast can abort, and its abort function (the caller calls it with
// nil when done).
func operation(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, abort := context.WithCancelCause(ctx)
	return context.WithValue(ctx, abortKey{}, abort), abort
}

// aborted returns the error of an operation in ctx that returned err: the
// request's own error when failFast aborted it (minio-go then returns
// only "context canceled"); ctx's cause when err is nil but ctx ended (a
// listing cut short); else err.
func aborted(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if err == nil || !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return err
}

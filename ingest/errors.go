package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"syscall"
)

// SessionError is the failure of an ingest session (or connection) with
// the Reason it is counted under in headwater_ingest_errors_total.
type SessionError struct {
	// Reason is the metric reason of the failure.
	Reason Reason
	// Err is what went wrong.
	Err error
	// Stack is the goroutine stack of a recovered panic, "" otherwise.
	Stack string
}

var _ error = (*SessionError)(nil)

// Error returns the message of Err.
func (e *SessionError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *SessionError) Unwrap() error { return e.Err }

// Fail returns a SessionError of reason whose error is formatted as by
// fmt.Errorf.
func Fail(reason Reason, format string, args ...any) error {
	return &SessionError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ProtocolError returns a SessionError of ReasonProtocol: the peer broke the
// protocol after the handshake.
func ProtocolError(format string, args ...any) error {
	return Fail(ReasonProtocol, format, args...)
}

// Recovered returns the SessionError (ReasonInternal, with the stack) of a
// panic value recovered in a session. Call it from the deferred function
// that recovered, so that the stack is the panic's.
func Recovered(r any) *SessionError {
	return &SessionError{Reason: ReasonInternal, Err: fmt.Errorf("panic: %v", r), Stack: string(debug.Stack())}
}

// IsTimeout tells whether err is a network deadline or timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// IsDisconnect tells whether err is the peer (or a local Close) ending the
// connection mid-stream rather than a protocol failure: a truncated read, a
// reset, a broken pipe or a closed connection. A clean io.EOF is not
// included: callers tell it apart.
func IsDisconnect(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe)
}

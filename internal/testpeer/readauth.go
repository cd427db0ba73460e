package testpeer

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/headwater-live/headwater/ingest"
)

// Tokens of the read authorisation tests: distinctive, so that a leak into
// the logs cannot go unnoticed.
const (
	// GoodReadToken is the token ReadAuth accepts.
	GoodReadToken = "GOODREADTOKEN-5e1b9c"
	// ForgedReadToken is a token ReadAuth refuses as badly signed.
	ForgedReadToken = "FORGEDREADTOKEN-8d2a4f"
)

// ReadCall is one call of ReadAuth.Authorize.
type ReadCall struct {
	// Stream and Token are the stream asked for and the token given.
	Stream, Token string
	// IP is the reader's address.
	IP netip.Addr
}

// ReadAuth is a fake read authorizer: it accepts GoodReadToken for Stream
// only and records its calls.
type ReadAuth struct {
	// Stream is the stream GoodReadToken is good for.
	Stream string

	mu    sync.Mutex
	calls []ReadCall
}

// Authorize is an ingest.ReadAuthorizer: it refuses a missing token
// (missing_token), one other than GoodReadToken (bad_signature) and a
// stream other than Stream (wrong_path).
func (a *ReadAuth) Authorize(stream, token string, ip netip.Addr) error {
	a.mu.Lock()
	a.calls = append(a.calls, ReadCall{stream, token, ip})
	a.mu.Unlock()
	switch {
	case token == "":
		return &ingest.ReadRefusal{Reason: "missing_token", Err: errors.New("no playback token")}
	case token != GoodReadToken:
		return &ingest.ReadRefusal{Reason: "bad_signature", Err: errors.New("playback token signature invalid")}
	case stream != a.Stream:
		return &ingest.ReadRefusal{Reason: "wrong_path", Err: errors.New("playback token does not cover this path")}
	}
	return nil
}

// Calls returns the calls so far.
func (a *ReadAuth) Calls() []ReadCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ReadCall(nil), a.calls...)
}

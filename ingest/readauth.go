package ingest

import (
	"errors"
	"net"
	"net/netip"

	"github.com/headwater-live/headwater/internal/connlimit"
)

// ReadAuthorizer decides whether a reader may read a live stream over a
// protocol that serves live streams back (SRT m=request, RTSP DESCRIBE and
// SETUP). stream is the stream name ("live/key"), token the credential the
// reader presented ("" when it presented none) and ip the reader's address
// (the zero Addr when unknown). A nil error allows the read. The error is
// logged: it must not quote the token. The server builds it from the
// playback token configuration, so that ingest packages know nothing of
// tokens; a nil ReadAuthorizer lets every reader in.
type ReadAuthorizer func(stream, token string, ip netip.Addr) error

// ReadRefusal is an error of a ReadAuthorizer carrying a short reason, which
// RTSP tells the reader in an X-Headwater-Token header as the HTTP origin
// does ("missing_token", "expired"...). Its message never quotes the token.
type ReadRefusal struct {
	Reason string
	Err    error
}

func (e *ReadRefusal) Error() string { return e.Err.Error() }
func (e *ReadRefusal) Unwrap() error { return e.Err }

// RefusalReason returns the Reason of the ReadRefusal in err's chain, or "".
func RefusalReason(err error) string {
	var r *ReadRefusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// AddrIP returns the IP address of a network address, unmapped and without
// zone; the zero Addr when it has none.
func AddrIP(a net.Addr) netip.Addr { return connlimit.AddrIP(a) }

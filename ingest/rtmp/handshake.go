package rtmp

import (
	"errors"
	"fmt"
	"io"

	gortmp "github.com/yapingcat/gomedia/go-rtmp"
)

const handshakeSize = 1536

// errNoData is a connection closed before sending a single byte (a TCP
// health check, a port scan): not worth an error.
var errNoData = errors.New("closed before the handshake")

// handshake performs the server side of the RTMP handshake: it reads C0+C1,
// answers S0+S1+S2 and reads C2.
//
// The handshake computations (simple handshake, and the Flash Player 9
// "complex" one with HMAC-SHA256 digests that librtmp-based encoders such as
// OBS verify) are gomedia's: its RtmpServerHandle is fed exactly C0C1 and C2
// and is dropped afterwards, the chunk and command layers being ours (see
// the package documentation for why). Its output callback is where S0S1S2
// is written.
func (s *session) handshake() (err error) {
	var c0c1 [1 + handshakeSize]byte
	n, err := io.ReadFull(s.br, c0c1[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return errNoData
		}
		return fmt.Errorf("reading C0+C1 (%d of %d bytes): %w", n, len(c0c1), err)
	}
	if c0c1[0] != 3 {
		// 6 and 8 are RTMPE (encrypted), anything else is not RTMP at all.
		return fmt.Errorf("unsupported RTMP version %d in C0", c0c1[0])
	}

	h := gortmp.NewRtmpServerHandle()
	var (
		werr  error
		wrote int
	)
	h.SetOutput(func(b []byte) error {
		if werr != nil {
			return werr
		}
		wrote += len(b)
		_, werr = s.conn.Write(b)
		return werr
	})
	if err := gomediaInput(h, c0c1[:]); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("writing S0+S1+S2: %w", werr)
	}
	if wrote != 1+2*handshakeSize {
		return fmt.Errorf("handshake library wrote %d bytes instead of S0+S1+S2", wrote)
	}

	var c2 [handshakeSize]byte
	if n, err := io.ReadFull(s.br, c2[:]); err != nil {
		return fmt.Errorf("reading C2 (%d of %d bytes): %w", n, len(c2), err)
	}
	if err := gomediaInput(h, c2[:]); err != nil {
		return err
	}
	if st := h.GetState(); st != gortmp.STATE_HANDSHAKE_DONE {
		return fmt.Errorf("handshake library in state %d after C2", st)
	}
	return nil
}

// gomediaInput feeds the handshake library. It never panicked on any input
// tried (C0C1 and C2 have fixed sizes and its digest offsets stay in
// bounds); if it does, the session's recover counts it as an internal error.
func gomediaInput(h *gortmp.RtmpServerHandle, b []byte) error {
	if err := h.Input(b); err != nil {
		return fmt.Errorf("handshake library: %w", err)
	}
	return nil
}

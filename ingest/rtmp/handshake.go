package rtmp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The server side of the RTMP handshake: C0+C1 in, S0+S1+S2 out, C2 in.
//
// Two handshakes are in use. The simple one of the RTMP specification
// (librtmp without a SWF hash, so OBS; many hardware encoders): C1 is time,
// four zero bytes and 1528 random bytes, and S2 must echo C1. librtmp checks
// the whole of S2 against C1 ("HandShake: client signature does not match!"
// otherwise), so S2 is C1 byte for byte, its second time field included.
//
// The digest ("complex") handshake of Flash Player 9 (ffmpeg, librtmp with a
// SWF hash, Flash-era players and some encoders): C1 carries a non-zero
// client version and an HMAC-SHA256 digest, keyed with the first 30 bytes of
// the Genuine FP key, of C1 without the digest's 32 bytes. The digest sits in
// one of C1's two 764-byte blocks (scheme 0: bytes 8-771, scheme 1: bytes
// 772-1535), at an offset given by the block's first four bytes. The server
// answers with an S1 digested the same way under the same scheme with the
// first 36 bytes of the Genuine FMS key, and an S2 of random bytes whose last
// 32 are an HMAC-SHA256 of the rest keyed with HMAC-SHA256(Genuine FMS key,
// C1's digest). A C1 with a zero version, or whose digest verifies under
// neither scheme, gets the simple handshake, which such clients fall back to
// (librtmp does when S1's version is zero).
//
// C2 is read and not checked: what clients put in it varies (librtmp's
// simple C2 is S1 with its own time in the second field).

const (
	handshakeSize = 1536
	digestSize    = sha256.Size
	// rtmpVersion is C0 and S0: plain RTMP (6 and 8 are RTMPE).
	rtmpVersion = 3
	// serverVersion is S1's version field in the digest handshake (Adobe
	// Media Server 5.0.3.1): clients only check that it is not zero.
	serverVersion = 0x05000301
	// digestBlock is the size of each of C1's and S1's two blocks that may
	// hold the digest, after the time and version fields.
	digestBlock = 764

	// keyTail ends both keys of the digest handshake.
	keyTail = "\xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57" +
		"\x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae"
	// genuineFPKey is the client's key; C1's digest uses its first 30 bytes.
	genuineFPKey = "Genuine Adobe Flash Player 001" + keyTail
	// genuineFMSKey is the server's key; S1's digest uses its first 36
	// bytes, S2's signature key all of it.
	genuineFMSKey = "Genuine Adobe Flash Media Server 001" + keyTail
)

// errNoData is a connection closed before sending a single byte (a TCP
// health check, a port scan): not worth an error.
var errNoData = errors.New("closed before the handshake")

// handshakeKind says which handshake a client was answered with.
type handshakeKind int

const (
	handshakeSimple  handshakeKind = iota // S2 echoes C1
	handshakeDigest0                      // digest handshake, C1's digest in its first block
	handshakeDigest1                      // digest handshake, C1's digest in its second block
)

func (k handshakeKind) String() string {
	switch k {
	case handshakeDigest0:
		return "digest (scheme 0)"
	case handshakeDigest1:
		return "digest (scheme 1)"
	default:
		return "simple"
	}
}

// handshake performs the server side of the RTMP handshake on the session's
// connection, within the deadline the caller set.
func (s *session) handshake() error {
	kind, version, err := serverHandshake(s.br, s.conn, rand.Reader)
	if err != nil {
		return err
	}
	s.log.Debug("rtmp: handshake", "kind", kind.String(),
		"client_version", fmt.Sprintf("%d.%d.%d.%d", version>>24, version>>16&0xff, version>>8&0xff, version&0xff))
	return nil
}

// serverHandshake reads C0+C1 from r, writes S0+S1+S2 to w in one write
// (random bytes from random) and reads C2. It returns the kind of handshake
// and the client version C1 announced.
func serverHandshake(r io.Reader, w io.Writer, random io.Reader) (handshakeKind, uint32, error) {
	var c0c1 [1 + handshakeSize]byte
	n, err := io.ReadFull(r, c0c1[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return 0, 0, errNoData
		}
		return 0, 0, fmt.Errorf("reading C0+C1 (%d of %d bytes): %w", n, len(c0c1), err)
	}
	if c0c1[0] != rtmpVersion {
		// 6 and 8 are RTMPE (encrypted), anything else is not RTMP at all.
		return 0, 0, fmt.Errorf("unsupported RTMP version %d in C0", c0c1[0])
	}
	c1 := c0c1[1:]
	version := binary.BigEndian.Uint32(c1[4:8])
	reply, kind, err := handshakeReply(c1, random)
	if err != nil {
		return 0, version, err
	}
	if _, err := w.Write(reply); err != nil {
		return 0, version, fmt.Errorf("writing S0+S1+S2: %w", err)
	}
	var c2 [handshakeSize]byte
	if n, err := io.ReadFull(r, c2[:]); err != nil {
		return 0, version, fmt.Errorf("reading C2 (%d of %d bytes): %w", n, len(c2), err)
	}
	return kind, version, nil
}

// handshakeReply returns S0+S1+S2 answering c1 (handshakeSize bytes), with
// S1's and S2's random bytes read from random.
func handshakeReply(c1 []byte, random io.Reader) ([]byte, handshakeKind, error) {
	reply := make([]byte, 1+2*handshakeSize)
	reply[0] = rtmpVersion
	s1, s2 := reply[1:1+handshakeSize], reply[1+handshakeSize:]
	// S1's time field stays zero (the specification allows it; no client
	// reads it).
	if _, err := io.ReadFull(random, s1[8:]); err != nil {
		return nil, 0, fmt.Errorf("random bytes for S1: %w", err)
	}

	off, scheme, ok := clientDigest(c1)
	if !ok {
		copy(s2, c1)
		return reply, handshakeSimple, nil
	}

	binary.BigEndian.PutUint32(s1[4:8], serverVersion)
	soff := digestOffset(s1, scheme)
	copy(s1[soff:], packetDigest(s1, soff, genuineFMSKey[:36]))

	if _, err := io.ReadFull(random, s2[:handshakeSize-digestSize]); err != nil {
		return nil, 0, fmt.Errorf("random bytes for S2: %w", err)
	}
	key := hmacSHA256([]byte(genuineFMSKey), c1[off:off+digestSize])
	copy(s2[handshakeSize-digestSize:], hmacSHA256(key, s2[:handshakeSize-digestSize]))
	return reply, handshakeDigest0 + handshakeKind(scheme), nil
}

// clientDigest finds the digest of a C1 of the digest handshake: its offset
// and scheme, trying scheme 0 and then 1. ok is false for a C1 with a zero
// version field (the simple handshake) or without a valid digest.
func clientDigest(c1 []byte) (off, scheme int, ok bool) {
	if binary.BigEndian.Uint32(c1[4:8]) == 0 {
		return 0, 0, false
	}
	for scheme := range 2 {
		off := digestOffset(c1, scheme)
		if hmac.Equal(c1[off:off+digestSize], packetDigest(c1, off, genuineFPKey[:30])) {
			return off, scheme, true
		}
	}
	return 0, 0, false
}

// digestOffset is where the digest of a C1 or S1 (handshakeSize bytes)
// sits under scheme 0 or 1: in that scheme's block, after its first four
// bytes, at their sum modulo 728 (the digest then ends inside the block).
func digestOffset(p []byte, scheme int) int {
	base := 8 + scheme*digestBlock
	sum := int(p[base]) + int(p[base+1]) + int(p[base+2]) + int(p[base+3])
	return base + 4 + sum%(digestBlock-4-digestSize)
}

// packetDigest is the HMAC-SHA256, keyed with key, of p without the digest's
// 32 bytes at off.
func packetDigest(p []byte, off int, key string) []byte {
	h := hmac.New(sha256.New, []byte(key))
	h.Write(p[:off])
	h.Write(p[off+digestSize:])
	return h.Sum(nil)
}

func hmacSHA256(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

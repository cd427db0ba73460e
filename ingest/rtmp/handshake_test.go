package rtmp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"
)

// Keys of the Flash Player 9 handshake ("Genuine Adobe Flash Player 001" and
// "Genuine Adobe Flash Media Server 001", each followed by the same 32 bytes).
var (
	fpKeyTail = []byte{
		0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
		0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
	}
	genuineFPKey  = append([]byte("Genuine Adobe Flash Player 001"), fpKeyTail...)
	genuineFMSKey = append([]byte("Genuine Adobe Flash Media Server 001"), fpKeyTail...)
)

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// digestOffset is librtmp's GetDigestOffset1 (scheme 0) / GetDigestOffset2 (scheme 1).
func digestOffset(b []byte, scheme int) int {
	base := 8
	if scheme == 1 {
		base = 772
	}
	sum := int(b[base]) + int(b[base+1]) + int(b[base+2]) + int(b[base+3])
	return sum%728 + base + 4
}

// TestComplexHandshake performs the Flash Player 9 handshake the way
// librtmp (OBS) does and checks the server's S1 digest and S2 signature,
// which librtmp refuses to go on without.
func TestComplexHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for scheme := 0; scheme < 2; scheme++ {
		conn, err := net.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))

		c1 := make([]byte, handshakeSize)
		copy(c1[4:], []byte{0x80, 0, 7, 2}) // client version: FP9 handshake
		for i := 8; i < len(c1); i++ {
			c1[i] = byte(i*13 + scheme)
		}
		off := digestOffset(c1, scheme)
		copy(c1[off:], hmacSHA256(genuineFPKey[:30], c1[:off], c1[off+32:]))
		clientDigest := c1[off : off+32]
		if _, err := conn.Write(append([]byte{3}, c1...)); err != nil {
			t.Fatal(err)
		}

		s := make([]byte, 1+2*handshakeSize)
		if _, err := io.ReadFull(conn, s); err != nil {
			t.Fatal(err)
		}
		s1, s2 := s[1:1+handshakeSize], s[1+handshakeSize:]
		if s1[4] == 0 {
			t.Fatalf("scheme %d: server answered with a simple handshake", scheme)
		}
		soff := digestOffset(s1, scheme)
		if want := hmacSHA256(genuineFMSKey[:36], s1[:soff], s1[soff+32:]); !bytes.Equal(s1[soff:soff+32], want) {
			t.Errorf("scheme %d: S1 digest does not verify", scheme)
		}
		key := hmacSHA256(genuineFMSKey, clientDigest)
		if want := hmacSHA256(key, s2[:handshakeSize-32]); !bytes.Equal(s2[handshakeSize-32:], want) {
			t.Errorf("scheme %d: S2 signature does not verify", scheme)
		}

		// C2 (librtmp signs it likewise; the server does not check), then a connect.
		if _, err := conn.Write(make([]byte, handshakeSize)); err != nil {
			t.Fatal(err)
		}
		c := &rawClient{t: t, conn: conn}
		c.br, c.bw = newClientIO(conn)
		c.cw = chunkWriter{w: c.bw, chunkSize: defaultChunkSize}
		c.cr = newChunkReader(c.br, DefaultMaxChunkStreams, DefaultMaxUnassembledBytes)
		if err := c.command(0, "connect", amfObj{{"app", "live"}}); err != nil {
			t.Fatal(err)
		}
		c.expect("_result", "NetConnection.Connect.Success")
	}
}

package rtmp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The client side of the handshake as librtmp (handshake.h: HandShake,
// GetDigestOffset1/2, CalculateDigest) and ffmpeg (rtmpproto.c:
// rtmp_handshake) do it, written from their logic and kept apart from
// handshake.go so that each checks the other.

// refKey returns the Genuine FP key (server false) or the Genuine FMS key
// (server true), 62 and 68 bytes, as librtmp spells them.
func refKey(server bool) []byte {
	tail := []byte{
		0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
		0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
	}
	if server {
		return append([]byte("Genuine Adobe Flash Media Server 001"), tail...)
	}
	return append([]byte("Genuine Adobe Flash Player 001"), tail...)
}

func refHMAC(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// refDigestPos is librtmp's GetDigestOffset1 (scheme 0) and
// GetDigestOffset2 (scheme 1).
func refDigestPos(p []byte, scheme int) int {
	if scheme == 0 {
		return (int(p[8])+int(p[9])+int(p[10])+int(p[11]))%728 + 12
	}
	return (int(p[772])+int(p[773])+int(p[774])+int(p[775]))%728 + 776
}

// refDigest is librtmp's CalculateDigest: the HMAC of p without the 32
// bytes at pos.
func refDigest(p []byte, pos int, key []byte) []byte {
	return refHMAC(key, p[:pos], p[pos+32:])
}

// refC1 builds a C1 as librtmp's HandShake does: its uptime, then the
// version, random bytes and, for a non-zero version, the digest under
// scheme keyed with key (refKey(false)[:30] for a genuine client).
func refC1(seed uint64, version [4]byte, scheme int, key []byte) []byte {
	c1 := make([]byte, handshakeSize)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range c1 {
		c1[i] = byte(r.Uint32())
	}
	copy(c1[0:4], []byte{0, 0x12, 0x34, 0x56})
	copy(c1[4:8], version[:])
	if version != [4]byte{} {
		pos := refDigestPos(c1, scheme)
		copy(c1[pos:], refDigest(c1, pos, key))
	}
	return c1
}

// clientCheck is what a client verifies of the server's answer, as librtmp
// and ffmpeg do. digest says whether the client offered the digest
// handshake; scheme is where its own digest sits in c1.
type clientCheck struct {
	digest bool
	scheme int
}

// verify checks S0+S1+S2 against c1 and returns how the server answered
// (simple, or the digest handshake under the scheme S1's digest verified
// with) and what the client would complain about.
func (cc clientCheck) verify(c1, reply []byte) (answer string, complaints []string) {
	if len(reply) != 1+2*handshakeSize {
		return "", []string{fmt.Sprintf("S0+S1+S2 is %d bytes", len(reply))}
	}
	if reply[0] != 3 {
		complaints = append(complaints, "Type mismatch")
	}
	s1, s2 := reply[1:1+handshakeSize], reply[1+handshakeSize:]
	// librtmp: "if (FP9HandShake && type == 3 && !serversig[4]) FP9HandShake = false"
	if !cc.digest || s1[4] == 0 {
		if !bytes.Equal(s2, c1) {
			complaints = append(complaints, "HandShake: client signature does not match!")
		}
		if !bytes.Equal(s1[4:8], []byte{0, 0, 0, 0}) {
			complaints = append(complaints, "S1 of a simple handshake has a non-zero version")
		}
		return "simple", complaints
	}
	// Both librtmp and ffmpeg look for S1's digest in the second block
	// first, then in the first.
	sScheme := -1
	for _, scheme := range []int{1, 0} {
		pos := refDigestPos(s1, scheme)
		if bytes.Equal(s1[pos:pos+32], refDigest(s1, pos, refKey(true)[:36])) {
			sScheme = scheme
			break
		}
	}
	if sScheme < 0 {
		return "digest", append(complaints, "Couldn't verify the server digest")
	}
	cpos := refDigestPos(c1, cc.scheme)
	key := refHMAC(refKey(true), c1[cpos:cpos+32])
	if !bytes.Equal(s2[handshakeSize-32:], refHMAC(key, s2[:handshakeSize-32])) {
		complaints = append(complaints, "HandShake: Server not genuine Adobe!")
	}
	return fmt.Sprintf("digest scheme %d", sScheme), complaints
}

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "handshake", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1+handshakeSize || b[0] != 3 {
		t.Fatalf("%s: not a C0+C1 (%d bytes)", name, len(b))
	}
	return b[1:]
}

// TestHandshake answers C1s of real clients (captured from OBS 29 and
// ffmpeg 5.1) and C1s built as librtmp builds them over TCP, checks the
// answer as those clients check it, then sends C2 and a connect. A C1
// whose digest does not verify gets the simple handshake, which such a
// client falls back to.
func TestHandshake(t *testing.T) {
	t.Parallel()
	fp10 := [4]byte{128, 0, 3, 2} // librtmp's client version (FP10 build)
	fp9 := [4]byte{9, 0, 124, 2}  // ffmpeg's and Flash Player 9's
	genuine := refKey(false)[:30] // C1's digest key
	wrongKey := refKey(true)[:36] // the server's key: not a client's digest
	cases := []struct {
		name   string
		c1     []byte
		client clientCheck
		want   string
	}{
		// librtmp without a SWF hash (OBS) does the simple handshake.
		{"OBS 29 (librtmp, captured)", readVector(t, "obs-29.0-c0c1.bin"), clientCheck{}, "simple"},
		// ffmpeg always offers the digest handshake, digest in block 1.
		{"ffmpeg 5.1 (captured)", readVector(t, "ffmpeg-5.1-c0c1.bin"), clientCheck{digest: true, scheme: 0}, "digest scheme 0"},
		{"librtmp with a SWF hash (digest in block 2)", refC1(1, fp10, 1, genuine), clientCheck{digest: true, scheme: 1}, "digest scheme 1"},
		{"Flash Player 9 (digest in block 1)", refC1(2, fp9, 0, genuine), clientCheck{digest: true, scheme: 0}, "digest scheme 0"},
		{"librtmp simple (built)", refC1(3, [4]byte{}, 0, nil), clientCheck{}, "simple"},
		{"version without a digest", func() []byte {
			c1 := refC1(4, fp10, 1, genuine)
			c1[refDigestPos(c1, 1)] ^= 1
			return c1
		}(), clientCheck{digest: true, scheme: 1}, "simple"},
		{"digest with the server's key", refC1(5, fp9, 0, wrongKey), clientCheck{digest: true, scheme: 0}, "simple"},
	}
	e := newEnv(t, Config{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, e.addr())
			if _, err := c.conn.Write(append([]byte{3}, tc.c1...)); err != nil {
				t.Fatal(err)
			}
			reply := make([]byte, 1+2*handshakeSize)
			if _, err := io.ReadFull(c.br, reply); err != nil {
				t.Fatalf("reading S0+S1+S2: %v", err)
			}
			answer, complaints := tc.client.verify(tc.c1, reply)
			if answer != tc.want || len(complaints) > 0 {
				t.Errorf("server answered %q with complaints %q, want %q without", answer, complaints, tc.want)
			}
			s1 := reply[1 : 1+handshakeSize]
			if !bytes.Equal(s1[0:4], []byte{0, 0, 0, 0}) {
				t.Errorf("S1 time = %x, want 0", s1[0:4])
			}
			wantVersion := []byte{5, 0, 3, 1}
			if tc.want == "simple" {
				wantVersion = []byte{0, 0, 0, 0}
			}
			if !bytes.Equal(s1[4:8], wantVersion) {
				t.Errorf("S1 version = %v, want %v", s1[4:8], wantVersion)
			}
			// C2 as librtmp's simple handshake sends it: S1 with its own time.
			c2 := slices.Clone(s1)
			copy(c2[4:8], []byte{0, 0, 0, 9})
			if _, err := c.conn.Write(c2); err != nil {
				t.Fatal(err)
			}
			if err := c.command(0, "connect", amfObj{{"app", "live"}}); err != nil {
				t.Fatal(err)
			}
			c.expect("_result", "NetConnection.Connect.Success")
		})
	}
}

// TestHandshakeReplyExact pins the answers to the captured C1s byte for
// byte, with a fixed random source: to ffmpeg's, S1 is zero time, version
// 5.0.3.1 and the random bytes with the digest at its scheme-0 offset, S2
// the next random bytes and the signature; to OBS's, S1 is zero time and
// version and the random bytes, S2 is C1 itself.
func TestHandshakeReplyExact(t *testing.T) {
	t.Parallel()
	ff := readVector(t, "ffmpeg-5.1-c0c1.bin")
	reply, kind, err := handshakeReply(ff, rand.NewChaCha8([32]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	if kind != handshakeDigest0 {
		t.Errorf("ffmpeg: kind %v, want %v", kind, handshakeDigest0)
	}
	// The digest at S1's scheme-0 offset, then S2's signature, recomputed
	// by the reference code.
	s1, s2 := reply[1:1+handshakeSize], reply[1+handshakeSize:]
	if !bytes.Equal(reply[:9], []byte{3, 0, 0, 0, 0, 5, 0, 3, 1}) {
		t.Errorf("ffmpeg: S0, S1 time and version = %v", reply[:9])
	}
	pos := refDigestPos(s1, 0)
	if !bytes.Equal(s1[pos:pos+32], refDigest(s1, pos, refKey(true)[:36])) {
		t.Error("ffmpeg: S1's digest is not at its scheme-0 offset")
	}
	random := make([]byte, 2*handshakeSize)
	_, _ = rand.NewChaCha8([32]byte{}).Read(random)
	if !bytes.Equal(s1[8:pos], random[:pos-8]) || !bytes.Equal(s1[pos+32:], random[pos+32-8:handshakeSize-8]) {
		t.Error("ffmpeg: S1 is not the random bytes around its digest")
	}
	if !bytes.Equal(s2[:handshakeSize-32], random[handshakeSize-8:2*handshakeSize-40]) {
		t.Error("ffmpeg: S2 is not the random bytes after S1's")
	}

	obs := readVector(t, "obs-29.0-c0c1.bin")
	reply, kind, err = handshakeReply(obs, rand.NewChaCha8([32]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{3}, make([]byte, 8)...), random[:handshakeSize-8]...), obs...)
	if kind != handshakeSimple || !bytes.Equal(reply, want) {
		t.Errorf("OBS: kind %v, reply differs from S0, S1 (zero time and version, random) and C1", kind)
	}

	// A random source that fails is an error, not a weak handshake.
	if _, _, err := handshakeReply(obs, strings.NewReader("short")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short random source: %v, want io.ErrUnexpectedEOF", err)
	}
}

// fuzzHandshakeInput turns a fuzz input into what a client sends, so that
// small inputs reach every path (a raw C0+C1+C2 is 3073 bytes, which the
// fuzzer mutates and minimizes slowly). in[0] even: in[1:] is sent as it is
// (any C0, C1 and C2, cut anywhere). Odd: C0 is in[1]; C1 is seed
// in[2]%len(seeds) (the captured C1s of OBS and ffmpeg, a C1 built as
// librtmp builds it with a digest, all zeros) with in[5:] written over it at
// offset in[3:5] mod 1536; C2 follows in full when in[0]&2 is set, else
// only its first in[0]>>2 bytes.
func fuzzHandshakeInput(in []byte, seeds [][]byte) []byte {
	if len(in) == 0 || in[0]%2 == 0 {
		if len(in) == 0 {
			return nil
		}
		return in[1:]
	}
	var head [5]byte
	copy(head[:], in)
	c1 := slices.Clone(seeds[int(head[2])%len(seeds)])
	at := (int(head[3])<<8 | int(head[4])) % handshakeSize
	if len(in) > 5 {
		copy(c1[at:], in[5:])
	}
	c2 := handshakeSize
	if head[0]&2 == 0 {
		c2 = int(head[0] >> 2)
	}
	return slices.Concat([]byte{head[1]}, c1, make([]byte, c2))
}

// FuzzHandshake feeds serverHandshake arbitrary C0+C1+C2 (see
// fuzzHandshakeInput) and checks its answer as librtmp and ffmpeg would:
// an error before a full C0+C1 or on a C0 other than 3 (nothing written),
// otherwise S0+S1+S2 in one write that a client verifies without
// complaint, simple exactly when C1 has a zero version or no digest valid
// under either scheme; an error then only when C2 is short.
func FuzzHandshake(f *testing.F) {
	var seeds [][]byte
	for _, name := range []string{"obs-29.0-c0c1.bin", "ffmpeg-5.1-c0c1.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", "handshake", name))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b[1:])
		f.Add(append([]byte{0}, b[:100]...)) // raw, cut in C1
	}
	seeds = append(seeds, refC1(7, [4]byte{128, 0, 3, 2}, 1, refKey(false)[:30]), make([]byte, handshakeSize))
	for i := range seeds {
		f.Add([]byte{3, 3, byte(i), 0, 0})             // seed i, full C2
		f.Add([]byte{1 | 40<<2, 3, byte(i), 0, 0})     // seed i, C2 cut at 40 bytes
		f.Add([]byte{3, 3, byte(i), 0, 4, 0, 0, 0, 0}) // seed i, zero version
		f.Add([]byte{3, 3, byte(i), 3, 0x10, 0xff})    // seed i, a byte of block 2 changed
		f.Add([]byte{3, 6, byte(i), 0, 0})             // RTMPE
	}
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := fuzzHandshakeInput(raw, seeds)
		var out bytes.Buffer
		w := &countingWriter{w: &out}
		kind, _, err := serverHandshake(bytes.NewReader(in), w, rand.NewChaCha8([32]byte{1}))
		if len(in) == 0 && !errors.Is(err, errNoData) {
			t.Fatalf("empty input: %v, want errNoData", err)
		}
		if len(in) < 1+handshakeSize || in[0] != 3 {
			if err == nil {
				t.Fatal("no error without a full C0+C1 of version 3")
			}
			if out.Len() != 0 {
				t.Fatalf("wrote %d bytes without a valid C0+C1", out.Len())
			}
			return
		}
		if (len(in) < 1+2*handshakeSize) != (err != nil) {
			t.Fatalf("%d bytes in: error %v", len(in), err)
		}
		if w.writes != 1 || out.Len() != 1+2*handshakeSize {
			t.Fatalf("%d writes, %d bytes: want S0+S1+S2 in one write", w.writes, out.Len())
		}
		c1 := in[1 : 1+handshakeSize]
		cc, want := clientCheck{}, "simple"
		if !bytes.Equal(c1[4:8], []byte{0, 0, 0, 0}) {
			for _, scheme := range []int{0, 1} {
				pos := refDigestPos(c1, scheme)
				if bytes.Equal(c1[pos:pos+32], refDigest(c1, pos, refKey(false)[:30])) {
					cc, want = clientCheck{digest: true, scheme: scheme}, fmt.Sprintf("digest scheme %d", scheme)
					break
				}
			}
		}
		answer, complaints := cc.verify(c1, out.Bytes())
		if answer != want || len(complaints) > 0 {
			t.Fatalf("answered %q with complaints %q, want %q without", answer, complaints, want)
		}
		if err == nil && (kind == handshakeSimple) != (want == "simple") {
			t.Fatalf("kind %v for a %s answer", kind, want)
		}
	})
}

// countingWriter counts the writes to w.
type countingWriter struct {
	w      io.Writer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}

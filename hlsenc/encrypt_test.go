package hlsenc

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestEncryptRoundTrip(t *testing.T) {
	key := NewKey()
	iv := key.IV(0)
	sizes := []int{0, 1, 15, 16, 17, 31, 32, 33, 1000, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 5}
	for _, n := range sizes {
		p := randBytes(n)
		orig := append([]byte(nil), p...)
		c := EncryptSegment(key, iv, p)
		if len(c) != EncryptedSize(n) || cap(c) != len(c) || len(c)%16 != 0 || len(c) <= n {
			t.Fatalf("n=%d: len %d cap %d", n, len(c), cap(c))
		}
		if !bytes.Equal(p, orig) {
			t.Fatalf("n=%d: plaintext modified", n)
		}
		got, err := DecryptSegment(key, iv, c)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: round trip failed: %v", n, err)
		}
		// AppendEncrypt after existing bytes, with and without room.
		for _, dst := range [][]byte{[]byte("head"), append(make([]byte, 0, 4+len(c)), "head"...)} {
			a := AppendEncrypt(dst, key, iv, p)
			if string(a[:4]) != "head" || !bytes.Equal(a[4:], c) {
				t.Fatalf("n=%d: AppendEncrypt differs", n)
			}
		}
		var w bytes.Buffer
		if m, err := WriteEncrypted(&w, key, iv, p); err != nil || m != int64(len(c)) || !bytes.Equal(w.Bytes(), c) {
			t.Fatalf("n=%d: WriteEncrypted differs (%d, %v)", n, m, err)
		}
		if n > 0 {
			if _, err := DecryptSegment(NewKey(), iv, c); err == nil {
				// A wrong key yields valid padding with probability ~1/256.
				t.Logf("n=%d: wrong key decrypted with valid padding (rare but possible)", n)
			}
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 15), make([]byte, 17)} {
		if _, err := DecryptSegment(key, iv, bad); err == nil {
			t.Fatalf("DecryptSegment(%d bytes) succeeded", len(bad))
		}
	}
}

// TestEncryptMatchesOpenSSL checks the ciphertext byte for byte against
// openssl's AES-128-CBC with PKCS#7 padding, and that openssl decrypts it.
func TestEncryptMatchesOpenSSL(t *testing.T) {
	testpeer.RequireBinary(t, "apt-get install -y openssl; ./scripts/test.sh installs it", "openssl")
	dir := t.TempDir()
	key := NewKey()
	m := key.Material()
	k := hex.EncodeToString(m[:])
	for _, msn := range []uint64{0, 7, 1 << 40} {
		iv := key.IV(msn)
		ivh := hex.EncodeToString(iv[:])
		for _, n := range []int{0, 5, 16, 100000} {
			p := randBytes(n)
			plain := filepath.Join(dir, "plain")
			enc := filepath.Join(dir, "enc")
			if err := os.WriteFile(plain, p, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(enc, EncryptSegment(key, iv, p), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("openssl", "enc", "-d", "-aes-128-cbc", "-K", k, "-iv", ivh, "-in", enc).Output()
			if err != nil || !bytes.Equal(out, p) {
				t.Fatalf("n=%d: openssl decrypt: %v", n, err)
			}
			theirs, err := exec.Command("openssl", "enc", "-aes-128-cbc", "-K", k, "-iv", ivh, "-in", plain).Output()
			if err != nil || !bytes.Equal(theirs, EncryptSegment(key, iv, p)) {
				t.Fatalf("n=%d: openssl's ciphertext differs: %v", n, err)
			}
		}
	}
}

// TestPartsEncryptedIndependently encrypts a segment and its parts as
// separate resources (the LL-HLS rule) and decrypts each part on its own.
func TestPartsEncryptedIndependently(t *testing.T) {
	key := NewKey()
	parts := [][]byte{randBytes(1000), randBytes(2001), randBytes(16)}
	seg := bytes.Join(parts, nil)
	iv := key.IV(42)
	var joined []byte
	for i, p := range parts {
		c := EncryptSegment(key, iv, p)
		got, err := DecryptSegment(key, iv, c)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("part %d: %v", i, err)
		}
		joined = append(joined, got...)
	}
	got, err := DecryptSegment(key, iv, EncryptSegment(key, iv, seg))
	if err != nil || !bytes.Equal(got, seg) || !bytes.Equal(joined, seg) {
		t.Fatal("segment and parts disagree")
	}
}

// TestFFmpegDecrypts packages a short stream as fMP4 HLS with ffmpeg,
// encrypts its segments with this package under two keys (a rotation,
// with the METHOD=NONE / EXT-X-MAP / EXT-X-KEY sequence of a mid-playlist
// init), and checks ffmpeg's HLS demuxer decodes exactly the frames of the
// clear playlist. It runs for explicit and sequence IVs.
func TestFFmpegDecrypts(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	dir := t.TempDir()
	gen := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3",
		"-c:v", "libx264", "-g", "25", "-c:a", "aac", "-f", "hls", "-hls_time", "1",
		"-hls_segment_type", "fmp4", "-hls_playlist_type", "vod", "-hls_segment_filename", "seg%d.m4s", "clear.m3u8")
	gen.Dir = dir
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg making the test stream: %v\n%s", err, out)
	}
	frames := func(playlist string) string {
		t.Helper()
		cmd := exec.Command("ffmpeg", "-v", "error", "-allowed_extensions", "ALL", "-i", playlist, "-map", "0", "-f", "framemd5", "-")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return "error: " + err.Error()
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	clear := frames("clear.m3u8")
	if strings.Count(clear, "\n") < 100 {
		t.Fatalf("clear playlist decodes to too few frames:\n%s", clear)
	}
	for _, sequenceIV := range []bool{false, true} {
		t.Run(fmt.Sprintf("sequenceIV=%v", sequenceIV), func(t *testing.T) {
			p := NewMemoryProvider(MemoryConfig{RotateEvery: 2, SequenceIV: sequenceIV})
			const stream = "live/a"
			var pl strings.Builder
			pl.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n")
			pl.WriteString("#EXT-X-MAP:URI=\"init.mp4\"\n")
			var cur Key
			for msn := uint64(0); msn < 3; msn++ {
				key, err := p.KeyFor(stream, msn)
				if err != nil {
					t.Fatal(err)
				}
				if key.ID() != cur.ID() {
					if !cur.IsZero() {
						// A mid-playlist init must stay in the clear.
						pl.WriteString(NoneKeyTag + "\n#EXT-X-MAP:URI=\"init.mp4\"\n")
					}
					cur = key
					var kf bytes.Buffer
					if _, err := key.WriteTo(&kf); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, key.ID()+".key"), kf.Bytes(), 0o600); err != nil {
						t.Fatal(err)
					}
					pl.WriteString(KeyTag(key, key.ID()+".key") + "\n")
				}
				clearSeg, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("seg%d.m4s", msn)))
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("enc%v-%d.m4s", sequenceIV, msn)
				if err := os.WriteFile(filepath.Join(dir, name), EncryptSegment(key, key.IV(msn), clearSeg), 0o600); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&pl, "#EXTINF:1.000000,\n%s\n", name)
			}
			pl.WriteString("#EXT-X-ENDLIST\n")
			name := fmt.Sprintf("enc-%v.m3u8", sequenceIV)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(pl.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := frames(name); got != clear {
				t.Fatalf("encrypted playlist decodes differently:\n%s\nplaylist:\n%s", firstLines(got, 5), pl.String())
			}
			// Negative control: a wrong key must not decode to the same frames.
			if err := os.WriteFile(filepath.Join(dir, cur.ID()+".key"), randBytes(16), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := frames(name); got == clear {
				t.Fatal("decoded identically with a wrong key: the check proves nothing")
			}
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func BenchmarkEncryptSegment(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			key := NewKey()
			p := randBytes(size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				_ = EncryptSegment(key, key.IV(1), p)
			}
		})
	}
}

func BenchmarkWriteEncrypted(b *testing.B) {
	key := NewKey()
	p := randBytes(1 << 20)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = WriteEncrypted(discard{}, key, key.IV(1), p)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	key := NewKey()
	p := randBytes(1 << 20)
	c := NewCache(64 << 20)
	id := ObjectID{Stream: "live/a", Rendition: "video", MSN: 1, Part: -1}
	c.Encrypt(id, key, key.IV(1), p)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Encrypt(id, key, key.IV(1), p)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

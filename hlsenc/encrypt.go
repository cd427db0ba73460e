package hlsenc

import (
	"crypto/cipher"
	"errors"
	"io"
	"sync"
)

// EncryptedSize is the size of the ciphertext of an n-byte resource: PKCS#7
// always pads, by 1 to 16 bytes.
func EncryptedSize(n int) int { return n - n%KeySize + KeySize }

// EncryptSegment encrypts a whole resource (segment or part) with
// AES-128-CBC and PKCS#7 padding, as METHOD=AES-128 requires. It makes one
// allocation, of exactly EncryptedSize(len(plaintext)) bytes, and never
// modifies plaintext.
func EncryptSegment(key Key, iv [KeySize]byte, plaintext []byte) []byte {
	return AppendEncrypt(make([]byte, 0, EncryptedSize(len(plaintext))), key, iv, plaintext)
}

// AppendEncrypt appends the ciphertext of plaintext to dst (which must not
// overlap plaintext) and returns the extended slice.
func AppendEncrypt(dst []byte, key Key, iv [KeySize]byte, plaintext []byte) []byte {
	n := len(plaintext)
	full := n - n%KeySize
	total := EncryptedSize(n)
	off := len(dst)
	if cap(dst)-off < total {
		grown := make([]byte, off, off+total)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:off+total]
	out := dst[off:]
	cbc := cipher.NewCBCEncrypter(key.mat().block, iv[:])
	cbc.CryptBlocks(out[:full], plaintext[:full])
	var last [KeySize]byte
	pad := byte(KeySize - n%KeySize)
	copy(last[:], plaintext[full:])
	for i := n % KeySize; i < KeySize; i++ {
		last[i] = pad
	}
	cbc.CryptBlocks(out[full:], last[:])
	return dst
}

// ErrBadCiphertext is returned by DecryptSegment for input that is not a
// whole number of blocks or whose padding is wrong.
var ErrBadCiphertext = errors.New("hlsenc: ciphertext malformed or wrong key")

// DecryptSegment reverses EncryptSegment (for tests and tools; players do
// this).
func DecryptSegment(key Key, iv [KeySize]byte, ciphertext []byte) ([]byte, error) {
	n := len(ciphertext)
	if n == 0 || n%KeySize != 0 {
		return nil, ErrBadCiphertext
	}
	out := make([]byte, n)
	cipher.NewCBCDecrypter(key.mat().block, iv[:]).CryptBlocks(out, ciphertext)
	pad := int(out[n-1])
	if pad == 0 || pad > KeySize {
		return nil, ErrBadCiphertext
	}
	for _, b := range out[n-pad:] {
		if int(b) != pad {
			return nil, ErrBadCiphertext
		}
	}
	return out[:n-pad], nil
}

// chunkSize is the size of WriteEncrypted's pooled buffers.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// WriteEncrypted streams the ciphertext of plaintext to w through a pooled
// 64 KiB buffer, without allocating the whole ciphertext: for serving a
// large resource once (no Range, no cache). It returns the bytes written.
func WriteEncrypted(w io.Writer, key Key, iv [KeySize]byte, plaintext []byte) (int64, error) {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	cbc := cipher.NewCBCEncrypter(key.mat().block, iv[:])
	n := len(plaintext)
	full := n - n%KeySize
	var written int64
	for off := 0; off < full; off += chunkSize {
		end := min(off+chunkSize, full)
		cbc.CryptBlocks(buf[:end-off], plaintext[off:end])
		m, err := w.Write(buf[:end-off])
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	var last [KeySize]byte
	pad := byte(KeySize - n%KeySize)
	copy(last[:], plaintext[full:])
	for i := n % KeySize; i < KeySize; i++ {
		last[i] = pad
	}
	cbc.CryptBlocks(last[:], last[:])
	m, err := w.Write(last[:])
	return written + int64(m), err
}

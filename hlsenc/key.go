// Package hlsenc implements HLS METHOD=AES-128 encryption: content keys
// that never print, a rotating in-memory key provider, AES-128-CBC with
// PKCS#7 padding of whole resources, and the EXT-X-KEY tag and key URIs.
//
// # What is encrypted
//
// METHOD=AES-128 encrypts each resource a playlist lists as a whole:
// every segment, and every LL-HLS partial segment (each part is its own
// resource, encrypted independently with the same key and IV rules as its
// parent segment, whose Media Sequence Number it shares — RFC 8216bis
// §3.2, §4.4.4.4, §4.4.4.9). A segment's ciphertext is therefore not the
// concatenation of its parts' ciphertexts: the origin encrypts the segment
// bytes and each part's bytes separately (Cache helps). Because an EXT-X-KEY
// applying to a parent segment must precede its first EXT-X-PART, keys
// change only at segment boundaries (KeyProvider works per segment MSN).
//
// Initialisation sections (init.mp4) stay in the clear: they hold codec
// configuration, not media, and the same init URL is listed under many
// keys. An EXT-X-MAP is covered by the EXT-X-KEY before it, so a playlist
// writes EXT-X-MAP before the first EXT-X-KEY, and surrounds a later
// EXT-X-MAP (after a codec change) with "#EXT-X-KEY:METHOD=NONE" and the
// EXT-X-KEY in force (see the playlist wiring notes in docs/security.md).
//
// # IV
//
// Each Key carries a random IV written explicitly in its EXT-X-KEY
// (IV=0x...), shared by every resource under that key. A provider built
// with SequenceIV uses the RFC 8216 default instead — no IV attribute, the
// IV being the segment's Media Sequence Number — so that no two segments
// share an IV; parts use their parent's MSN.
package hlsenc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
)

// KeySize is the AES-128 key size, and the size of an IV.
const KeySize = 16

// redacted replaces key material wherever a Key is printed.
const redacted = "REDACTED"

// Key is one AES-128 content key with its id and IV. The key bytes never
// appear in output: String, GoString, Format (every fmt verb), MarshalJSON,
// MarshalText and LogValue all print the id only, and the bytes live behind
// a pointer, so even fmt's reflection over a struct's unexported Key field
// prints an address. The zero Key is invalid. Keys are immutable and safe
// for concurrent use.
type Key struct {
	id string
	s  *sealed
}

// sealed adds a second pointer between a Key and its material: fmt prints
// a bad verb's operand (%s of a pointer, say) by dereferencing it once even
// when it sits in an unexported field, where no method can redact it; the
// second level then prints as an address.
type sealed struct{ m *material }

// mat returns the key's material.
func (k Key) mat() *material { return k.s.m }

// material holds the secret bytes and the expanded cipher.
type material struct {
	key        [KeySize]byte
	iv         [KeySize]byte
	sequenceIV bool
	block      cipher.Block
}

// String redacts material should it ever be printed directly.
func (*material) String() string { return redacted }

// GoString redacts material should it ever be printed directly.
func (*material) GoString() string { return redacted }

// Format redacts material should it ever be printed directly.
func (*material) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// NewKey returns a new random key with a random id and a random IV.
func NewKey() Key { return newRandomKey(false) }

func newRandomKey(sequenceIV bool) Key {
	var k, iv [KeySize]byte
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails (Go >= 1.24)
	_, _ = rand.Read(iv[:])
	return newKey(NewKeyID(), k, iv, sequenceIV)
}

// NewKeyID returns a random key id: 16 hex digits, unguessable, so a key
// URI reveals nothing and a restarted server never reuses one.
func NewKeyID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// KeyFromBytes builds a key from existing material (keys kept by an
// external key service). id must be a valid key id ([A-Za-z0-9_-], 1..64).
func KeyFromBytes(id string, key, iv [KeySize]byte, sequenceIV bool) (Key, error) {
	if !ValidKeyID(id) {
		return Key{}, fmt.Errorf("hlsenc: invalid key id %q", id)
	}
	return newKey(id, key, iv, sequenceIV), nil
}

func newKey(id string, key, iv [KeySize]byte, sequenceIV bool) Key {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("hlsenc: " + err.Error()) // impossible: the size is right
	}
	return Key{id: id, s: &sealed{m: &material{key: key, iv: iv, sequenceIV: sequenceIV, block: block}}}
}

// ValidKeyID reports whether id can name a key: 1 to 64 characters from
// [A-Za-z0-9_-]. It owns that alphabet for every key id in a URL: playback
// token key ids (playback.ValidKeyID) are such ids of at most 16
// characters.
func ValidKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ID returns the key id (not secret: it names the key file).
func (k Key) ID() string { return k.id }

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.s == nil }

// SequenceIV reports whether resources under k use their Media Sequence
// Number as IV (no IV attribute) rather than k's explicit IV.
func (k Key) SequenceIV() bool { return k.s != nil && k.mat().sequenceIV }

// IV returns the IV of the resources of segment msn (parts included): the
// key's explicit IV, or msn as a big-endian 128-bit number for a
// SequenceIV key. The IV is not secret.
func (k Key) IV(msn uint64) [KeySize]byte {
	m := k.mat()
	if m.sequenceIV {
		return SequenceIV(msn)
	}
	return m.iv
}

// SequenceIV returns the default IV of RFC 8216 §5.2: the Media Sequence
// Number as a big-endian 128-bit number.
func SequenceIV(msn uint64) [KeySize]byte {
	var iv [KeySize]byte
	for i := 0; i < 8; i++ {
		iv[KeySize-1-i] = byte(msn >> (8 * i))
	}
	return iv
}

// Material returns the 16 key bytes: the body of the key file served to
// players. It is the only way out of a Key; keep its result out of logs.
func (k Key) Material() [KeySize]byte { return k.mat().key }

// WriteTo writes the 16 key bytes to w (the key file's body).
func (k Key) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(k.mat().key[:])
	return int64(n), err
}

// String describes the key without its material.
func (k Key) String() string {
	if k.s == nil {
		return "hlsenc.Key(zero)"
	}
	return "hlsenc.Key(id=" + k.id + ", " + redacted + ")"
}

// GoString is String, for %#v.
func (k Key) GoString() string { return k.String() }

// Format prints String whatever the verb (%x and %d included).
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// MarshalText returns String: a key never leaves the process encoded.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MarshalJSON returns String as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"` + k.String() + `"`), nil }

// LogValue logs the key id only.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.id), slog.String("material", redacted))
}

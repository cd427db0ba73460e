package recording

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/headwater-live/headwater/hlsenc"
)

// sessionKey is the stored form of an encrypted stream's session key, at
// KeysKey, apart from the media (which is recorded in the clear, so that
// it can be re-encrypted, re-packaged or handed to a DRM packager later).
type sessionKey struct {
	ID  string `json:"id"`
	Key string `json:"key"` // 16 bytes, hex
}

// newSessionKey makes the AES-128 key a recorded session of an encrypted
// stream is played back with, and its stored form. Its IVs are the
// segments' sequence numbers.
func newSessionKey() (sessionKey, error) {
	var k [hlsenc.KeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return sessionKey{}, fmt.Errorf("recording: session key: %w", err)
	}
	return sessionKey{ID: hlsenc.NewKeyID(), Key: hex.EncodeToString(k[:])}, nil
}

// key returns the hlsenc form of a stored session key.
func (sk sessionKey) key() (hlsenc.Key, error) {
	var k [hlsenc.KeySize]byte
	if n, err := hex.Decode(k[:], []byte(sk.Key)); err != nil || n != hlsenc.KeySize {
		return hlsenc.Key{}, fmt.Errorf("recording: stored session key is not %d hex bytes", hlsenc.KeySize)
	}
	return hlsenc.KeyFromBytes(sk.ID, k, [hlsenc.KeySize]byte{}, true)
}

// SessionKey returns the AES-128 key a recorded session of an encrypted
// stream is played back with (the same for every rendition; IVs are the
// segments' sequence numbers).
func (r *Recorder) SessionKey(ctx context.Context, stream, session string) (hlsenc.Key, error) {
	var sk sessionKey
	if err := r.readJSON(ctx, KeysKey(stream, session), &sk); err != nil {
		return hlsenc.Key{}, err
	}
	return sk.key()
}

// writeKey stores the session's key (once, as the session starts).
func (s *session) writeKey() error {
	sk, err := newSessionKey()
	if err != nil {
		return err
	}
	b, err := json.Marshal(sk)
	if err != nil {
		return fmt.Errorf("recording: session key: %w", err)
	}
	return s.rec.cfg.Writer.Add(KeysKey(s.sum.Stream, s.sum.Session), b, "application/json")
}

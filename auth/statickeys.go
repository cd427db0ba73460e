package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// hashPrefix starts every stored key hash.
const hashPrefix = "sha256:"

// HashKey returns the form in which a stream key is stored in the
// configuration: "sha256:" and the hex SHA-256 of the key. This is what
// `headwater auth hash-key` prints. A plain hash is enough because keys are
// meant to be long random strings (GenerateKey), not passwords; a short
// human-chosen key could be brute-forced from its hash.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// GenerateKey returns a new random stream key: 32 random bytes, base64url
// (43 characters, safe in URLs, RTMP publish names and SRT streamids).
func GenerateKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (Go >= 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseKeyHash parses a stored key hash ("sha256:<64 hex digits>").
func ParseKeyHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	rest, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return h, errors.New(`key hash must start with "sha256:" (use "headwater auth hash-key")`)
	}
	if len(rest) != 2*sha256.Size {
		return h, fmt.Errorf("key hash must have %d hex digits after \"sha256:\", not %d", 2*sha256.Size, len(rest))
	}
	if _, err := hex.Decode(h[:], []byte(rest)); err != nil {
		return h, errors.New("key hash is not hexadecimal")
	}
	return h, nil
}

// KeyRule grants the holders of some keys the right to publish one stream
// or every stream whose name starts with a prefix.
type KeyRule struct {
	// Stream is an exact stream name ("live/studio1"). Exactly one of
	// Stream and Prefix is set.
	Stream string `yaml:"stream" json:"stream,omitempty"`
	// Prefix is a stream name prefix, matched as a plain string prefix:
	// "live/" covers every live stream, "live/team-" covers "live/team-a".
	Prefix string `yaml:"prefix" json:"prefix,omitempty"`
	// Hashes are the accepted keys, as HashKey values. Several allow a key
	// to be rotated without a gap.
	Hashes []string `yaml:"hashes" json:"hashes"`
}

type keyRule struct {
	stream, prefix string
	hashes         [][sha256.Size]byte
}

// StaticKeys checks stream keys against configured hashes. A stream that no
// rule covers cannot be published with a static key.
type StaticKeys struct {
	rules []keyRule
}

// NewStaticKeys validates rules. It needs at least one rule.
func NewStaticKeys(rules []KeyRule) (*StaticKeys, error) {
	if len(rules) == 0 {
		return nil, errors.New("static keys: no rules")
	}
	s := &StaticKeys{}
	for i, r := range rules {
		if (r.Stream == "") == (r.Prefix == "") {
			return nil, fmt.Errorf("static keys: rule %d: set exactly one of stream and prefix", i)
		}
		if len(r.Hashes) == 0 {
			return nil, fmt.Errorf("static keys: rule %d: no hashes", i)
		}
		kr := keyRule{stream: r.Stream, prefix: r.Prefix}
		for j, hs := range r.Hashes {
			h, err := ParseKeyHash(hs)
			if err != nil {
				return nil, fmt.Errorf("static keys: rule %d, hash %d: %w", i, j, err)
			}
			kr.hashes = append(kr.hashes, h)
		}
		s.rules = append(s.rules, kr)
	}
	return s, nil
}

// Check returns nil when key is accepted for stream by any rule covering
// it, or a RefusalError wrapping ErrBadKey. Every candidate hash is
// compared, in constant time, whatever the outcome.
func (s *StaticKeys) Check(stream, key string) error {
	if key == "" {
		return refuse(ErrMissingCredentials, "")
	}
	sum := sha256.Sum256([]byte(key))
	match, covered := 0, false
	for i := range s.rules {
		r := &s.rules[i]
		if r.stream != "" && r.stream != stream || r.prefix != "" && !strings.HasPrefix(stream, r.prefix) {
			continue
		}
		covered = true
		for j := range r.hashes {
			match |= subtle.ConstantTimeCompare(sum[:], r.hashes[j][:])
		}
	}
	if match == 1 {
		return nil
	}
	if !covered {
		return refuse(ErrBadKey, "no key configured for this stream")
	}
	return refuse(ErrBadKey, "")
}

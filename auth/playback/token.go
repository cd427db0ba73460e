// Package playback guards the origin: signed, short-lived playback tokens
// carried in the request path (so that they survive CDNs and are inherited
// by every relative URI of a playlist), and the shared-secret header that
// lets an origin serve only its CDN.
//
// # Token format (version 1)
//
// A token is base64url(payload) "." base64url(mac), both without padding
// and canonical (no stray bits), so it is one path element made of
// [A-Za-z0-9_-.]. The payload is binary:
//
//	offset  size  field
//	0       1     version, 1
//	1       1     L, the key id length (1..16)
//	2       L     key id, [A-Za-z0-9_-]
//	2+L     4     expiry, Unix seconds, big-endian uint32
//	6+L     1     N, the client IP length: 0 (not bound), 4 or 16
//	7+L     N     client IP (IPv4-mapped IPv6 addresses are stored as IPv4)
//	7+L+N   rest  path prefix, '/'-separated names from [A-Za-z0-9_.-]
//
// mac is HMAC-SHA256(secret of the key id, "headwater-playback-v1" 0x00
// payload), 32 bytes. A token authorises, until its expiry, the paths its
// prefix covers, plus the HLS key files of those paths, "/keys" + path
// ending in ".key". A prefix ending in '/' is a prefix claim and covers
// every path under it ("/live/" covers "/live/a/video/seg1.m4s" and the
// streams "live/a/x"); a prefix without one is a stream claim and covers
// only that stream's objects, one or two elements below it ("/live/a"
// covers "/live/a/index.m3u8" and "/live/a/video/seg1.m4s", not
// "/live/a/x/video/index.m3u8", nor "/live/ab"). The origin also checks a
// stream claim against the stream a path resolves to (CoversStream). docs/security.md has a JavaScript
// verifier for CDN edges, tested against this package.
package playback

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/hlsenc"
)

// PathPrefix starts a tokenised path: /t/<token>/<path>.
const PathPrefix = "/t/"

// KeyPathPrefix starts the path of an HLS key file; a token covering
// "/<stream>/" also covers "/keys/<stream>/<id>.key".
const KeyPathPrefix = "/keys"

// Limits.
const (
	MaxKeyIDLength  = 16
	MinSecretLength = 32
	MaxPrefixLength = 256
	// MaxTokenLength bounds the tokens parsed.
	MaxTokenLength = 512
)

const (
	version    = 1
	macSize    = sha256.Size
	macContext = "headwater-playback-v1\x00"
)

var b64 = base64.RawURLEncoding.Strict()

// Verification errors. Their messages never quote the token.
var (
	ErrMalformed    = errors.New("playback token malformed")
	ErrUnknownKey   = errors.New("playback token signed with an unknown key")
	ErrBadSignature = errors.New("playback token signature invalid")
	ErrExpired      = errors.New("playback token expired")
	ErrWrongPath    = errors.New("playback token does not cover this path")
	ErrWrongIP      = errors.New("playback token bound to another client address")
	ErrBadPath      = errors.New("path not acceptable")
)

// Keyring holds the token keys: several for verification, so that keys can
// be rotated, one of them active for signing. It is immutable and safe for
// concurrent use.
type Keyring struct {
	keys   map[string][]byte
	active string
	now    func() time.Time
}

// NewKeyring returns a keyring of keys (id -> secret) signing with active.
// Ids are 1 to 16 characters from [A-Za-z0-9_-]; secrets have at least 32
// bytes. To rotate: add the new key, make it active once every verifier
// (origins, edge workers) knows it, and remove the old one after the longest
// token lifetime.
func NewKeyring(keys map[string][]byte, active string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("playback: no token key")
	}
	k := &Keyring{keys: make(map[string][]byte, len(keys)), active: active, now: time.Now}
	for id, secret := range keys {
		if !ValidKeyID(id) {
			return nil, fmt.Errorf("playback: key id %q: 1 to %d characters from [A-Za-z0-9_-]", id, MaxKeyIDLength)
		}
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("playback: key %q: secret has %d bytes, at least %d are needed", id, len(secret), MinSecretLength)
		}
		k.keys[id] = append([]byte(nil), secret...)
	}
	if _, ok := k.keys[active]; !ok {
		return nil, fmt.Errorf("playback: active key %q is not in the keyring", active)
	}
	return k, nil
}

// KeyIDs returns the key ids, sorted.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Active returns the id of the signing key.
func (k *Keyring) Active() string { return k.active }

// GenerateSecret returns a new random token secret: 32 random bytes,
// base64url (43 characters). The secret is the string itself (its bytes),
// in Go as in the edge worker.
func GenerateSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidKeyID reports whether id can name a token key: 1 to MaxKeyIDLength
// characters from [A-Za-z0-9_-], the alphabet of every key id Headwater
// puts in a URL (hlsenc.ValidKeyID owns it).
func ValidKeyID(id string) bool {
	return len(id) <= MaxKeyIDLength && hlsenc.ValidKeyID(id)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// cleanPath reports whether p is an absolute path of name elements: no
// empty element (but a trailing '/' is allowed), no "." or "..", no byte
// outside [A-Za-z0-9_.-/].
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			elem := p[start:i]
			if elem == "." || elem == ".." || elem == "" && i < len(p) {
				return false
			}
			start = i + 1
			continue
		}
		if !nameByte(p[i]) {
			return false
		}
	}
	return true
}

// Sign returns a token authorising the paths under prefix until exp, bound
// to ip unless ip is the zero Addr. prefix is a path such as "/live/key/"
// ("live/key" is read as "/live/key"); "/" authorises everything.
func (k *Keyring) Sign(prefix string, exp time.Time, ip netip.Addr) (string, error) {
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if len(prefix) > MaxPrefixLength || !cleanPath(prefix) {
		return "", fmt.Errorf("playback: prefix %q is not a clean path of at most %d bytes", prefix, MaxPrefixLength)
	}
	secs := exp.Unix()
	if secs <= 0 || secs > math.MaxUint32 {
		return "", errors.New("playback: expiry out of range")
	}
	var ipb []byte
	if ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		ipb = ip.AsSlice()
	}
	kid := k.active
	p := make([]byte, 0, 7+len(kid)+len(ipb)+len(prefix))
	p = append(p, version, byte(len(kid)))
	p = append(p, kid...)
	p = binary.BigEndian.AppendUint32(p, uint32(secs))
	p = append(p, byte(len(ipb)))
	p = append(p, ipb...)
	p = append(p, prefix...)
	mac := k.mac(kid, p)
	return b64.EncodeToString(p) + "." + b64.EncodeToString(mac), nil
}

func (k *Keyring) mac(kid string, payload []byte) []byte {
	m := hmac.New(sha256.New, k.keys[kid])
	m.Write([]byte(macContext))
	m.Write(payload)
	return m.Sum(nil)
}

// Claims are the verified content of a token.
type Claims struct {
	KeyID   string
	Expires time.Time
	IP      netip.Addr // zero when the token is not bound to an address
	Prefix  string
}

// Parse verifies a token's signature and returns its claims, without
// checking expiry, address or path (Verify does).
func (k *Keyring) Parse(token string) (Claims, error) {
	if len(token) > MaxTokenLength {
		return Claims{}, ErrMalformed
	}
	enc, encMAC, ok := strings.Cut(token, ".")
	if !ok || enc == "" || b64.EncodedLen(macSize) != len(encMAC) {
		return Claims{}, ErrMalformed
	}
	p, err := b64.DecodeString(enc)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	mac, err := b64.DecodeString(encMAC)
	if err != nil || len(mac) != macSize {
		return Claims{}, ErrMalformed
	}
	if len(p) < 2 || p[0] != version {
		return Claims{}, ErrMalformed
	}
	kl := int(p[1])
	if kl == 0 || kl > MaxKeyIDLength || len(p) < 2+kl+5 {
		return Claims{}, ErrMalformed
	}
	kid := string(p[2 : 2+kl])
	if _, ok := k.keys[kid]; !ok {
		return Claims{}, ErrUnknownKey
	}
	if !hmac.Equal(mac, k.mac(kid, p)) {
		return Claims{}, ErrBadSignature
	}
	// Authentic: the rest was written by Sign, but stay defensive.
	rest := p[2+kl:]
	c := Claims{KeyID: kid, Expires: time.Unix(int64(binary.BigEndian.Uint32(rest)), 0)}
	n := int(rest[4])
	rest = rest[5:]
	if n != 0 && n != 4 && n != 16 || len(rest) < n {
		return Claims{}, ErrMalformed
	}
	if n > 0 {
		c.IP, _ = netip.AddrFromSlice(rest[:n])
	}
	c.Prefix = string(rest[n:])
	if !cleanPath(c.Prefix) {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

// Verify checks that token authorises a request for path (the part after
// /t/<token>) from clientIP at now. clientIP matters only for tokens bound
// to an address.
func (k *Keyring) Verify(token, path string, clientIP netip.Addr, now time.Time) error {
	_, err := k.VerifyClaims(token, path, clientIP, now)
	return err
}

// VerifyClaims is Verify returning the token's claims too.
func (k *Keyring) VerifyClaims(token, path string, clientIP netip.Addr, now time.Time) (Claims, error) {
	c, err := k.Parse(token)
	if err != nil {
		return Claims{}, err
	}
	if now.Unix() >= c.Expires.Unix() {
		return Claims{}, ErrExpired
	}
	if c.IP.IsValid() && (!clientIP.IsValid() || clientIP.Unmap().WithZone("") != c.IP) {
		return Claims{}, ErrWrongIP
	}
	if !cleanPath(path) {
		return Claims{}, ErrBadPath
	}
	if !Covers(c.Prefix, path) {
		return Claims{}, ErrWrongPath
	}
	return c, nil
}

// Covers reports whether a token prefix covers a (clean) path: the path is
// under the prefix at an element boundary, or is the key file
// "/keys<path>.key" of such a path.
func Covers(prefix, path string) bool {
	if under(prefix, path) {
		return true
	}
	if rest, ok := strings.CutPrefix(path, KeyPathPrefix); ok && strings.HasSuffix(path, ".key") && strings.HasPrefix(rest, "/") {
		return under(prefix, rest)
	}
	return false
}

func under(prefix, path string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	if path == prefix {
		return true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || rest[0] != '/' {
		return false
	}
	// A stream claim: the stream's directory, its objects and its
	// renditions' objects.
	if strings.HasSuffix(rest, "/") {
		return rest == "/"
	}
	return strings.Count(rest, "/") <= 2
}

// CoversStream reports whether a token prefix covers the stream ("live/a")
// as a whole: a stream claim of that stream, or a prefix claim above it.
func CoversStream(prefix, stream string) bool {
	return under(prefix, StreamPath(stream))
}

// SplitTokenPath splits "/t/<token>/<rest>" into the token and "/<rest>".
// ok is false when path does not start with "/t/" followed by a non-empty
// element and a '/'.
func SplitTokenPath(path string) (token, rest string, ok bool) {
	after, found := strings.CutPrefix(path, PathPrefix)
	if !found {
		return "", "", false
	}
	i := strings.IndexByte(after, '/')
	if i <= 0 {
		return "", "", false
	}
	return after[:i], after[i:], true
}

// StreamPath is the path a token must cover to read a stream ("live/key")
// as a whole, over SRT or RTSP: its directory, "/live/key/", under which
// the origin serves its playlists and media. The tokens IssueURL signs for
// the stream (the stream claim "/live/key"), and those of a prefix above it
// ("/live/"), cover it; a token for one rendition or one file, or for a
// stream "live" whose name this one extends, does not.
func StreamPath(stream string) string {
	return "/" + strings.Trim(stream, "/") + "/"
}

// IssueURL signs a token for stream ("live/key") valid for ttl from now,
// bound to ip unless it is the zero Addr, and returns the multivariant
// playlist URL under base ("https://cdn.example.com"):
// base/t/<token>/<stream>/index.m3u8. This is what
// `headwater token issue --stream live/key --ttl 5m` prints.
func (k *Keyring) IssueURL(base, stream string, ttl time.Duration, ip netip.Addr) (string, error) {
	if ttl <= 0 {
		return "", errors.New("playback: ttl must be positive")
	}
	stream = strings.Trim(stream, "/")
	tok, err := k.Sign("/"+stream, k.now().Add(ttl), ip)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(base, "/") + PathPrefix + tok + "/" + stream + "/index.m3u8", nil
}

// KeySettings name one token key in the configuration; the secret is read
// from a file so that it stays out of the configuration file.
type KeySettings struct {
	ID         string `yaml:"id"`
	SecretFile string `yaml:"secret_file"`
}

// LoadKeyring reads the secret files of keys with [auth.ReadSecret]
// (surrounding whitespace trimmed) and returns their keyring, signing with active.
func LoadKeyring(keys []KeySettings, active string) (*Keyring, error) {
	m := make(map[string][]byte, len(keys))
	for _, ks := range keys {
		b, err := auth.ReadSecret(ks.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("playback: key %q: %w", ks.ID, err)
		}
		if _, dup := m[ks.ID]; dup {
			return nil, fmt.Errorf("playback: key %q listed twice", ks.ID)
		}
		m[ks.ID] = b
	}
	return NewKeyring(m, active)
}

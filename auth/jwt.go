package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultJWTLeeway is the clock skew allowed on exp and nbf.
const DefaultJWTLeeway = 10 * time.Second

// MaxTokenLength bounds the JWTs parsed (longer ones are refused unread).
const MaxTokenLength = 8 << 10

// minHMACSecret is the shortest HS256 secret accepted: RFC 7518 §3.2 asks
// for a key at least as long as the hash output.
const minHMACSecret = 32

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// PublishClaims are the claims of a publish token.
//
//	{"stream": "live/studio1", "exp": 1767225600}
//	{"stream_prefix": "live/team-", "exp": 1767225600, "nbf": 1767222000}
//
// exp is required; nbf, iss and aud are checked when present (iss and aud
// must match when configured). At least one of stream and stream_prefix is
// required; each one present must match.
type PublishClaims struct {
	jwt.RegisteredClaims
	// Stream is the exact stream name the token may publish.
	Stream string `json:"stream,omitempty"`
	// StreamPrefix is a prefix of the stream names the token may publish.
	StreamPrefix string `json:"stream_prefix,omitempty"`
}

// JWTConfig configures a JWTVerifier. At least one key source is needed.
type JWTConfig struct {
	// HMACSecret enables HS256, HS384 and HS512 with this shared secret
	// (at least 32 bytes).
	HMACSecret []byte
	// PublicKeysPEM holds PEM blocks: "PUBLIC KEY" (RSA or EC), "RSA PUBLIC
	// KEY" or "CERTIFICATE". RSA keys enable RS256/384/512 and PS256/384/512,
	// EC keys the ES algorithm of their curve (P-256: ES256, P-384: ES384,
	// P-521: ES512).
	PublicKeysPEM []byte
	// JWKS is a JSON Web Key Set document (RFC 7517) holding RSA and EC
	// public keys; a token's "kid" header selects among them.
	JWKS []byte
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be in the token's aud.
	Audience string
	// Leeway is the clock skew allowed on exp and nbf; 0 means
	// DefaultJWTLeeway, a negative value none.
	Leeway time.Duration
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// publicKey is a verification key with its JWKS metadata.
type publicKey struct {
	kid string
	alg string // "" when the JWK names none
	key any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// JWTVerifier verifies publish JWTs. It is safe for concurrent use.
type JWTVerifier struct {
	secret  []byte
	keys    []publicKey
	methods []string
	parser  *jwt.Parser
}

// NewJWTVerifier builds a verifier from cfg.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	v := &JWTVerifier{}
	if len(cfg.HMACSecret) > 0 {
		if len(cfg.HMACSecret) < minHMACSecret {
			return nil, fmt.Errorf("jwt: HMAC secret has %d bytes, at least %d are needed", len(cfg.HMACSecret), minHMACSecret)
		}
		v.secret = append([]byte(nil), cfg.HMACSecret...)
	}
	if len(cfg.PublicKeysPEM) > 0 {
		keys, err := parsePEMKeys(cfg.PublicKeysPEM)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, keys...)
	}
	if len(cfg.JWKS) > 0 {
		keys, err := parseJWKS(cfg.JWKS)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, keys...)
	}
	if v.secret == nil && len(v.keys) == 0 {
		return nil, errors.New("jwt: no HMAC secret and no public key configured")
	}
	v.methods = v.validMethods()

	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultJWTLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithStrictDecoding(),
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// validMethods lists the algorithms the configured keys can verify. A
// token's alg must be one of them, so that a public key can never be used as
// an HMAC secret and "none" is never accepted.
func (v *JWTVerifier) validMethods() []string {
	set := map[string]bool{}
	if v.secret != nil {
		set["HS256"], set["HS384"], set["HS512"] = true, true, true
	}
	for _, k := range v.keys {
		for _, alg := range algsFor(k.key) {
			if k.alg == "" || k.alg == alg {
				set[alg] = true
			}
		}
	}
	methods := make([]string, 0, len(set))
	for m := range set {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	return methods
}

// algsFor returns the JWS algorithms a public key verifies.
func algsFor(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	}
	return nil
}

// Methods returns the algorithms accepted, sorted.
func (v *JWTVerifier) Methods() []string { return append([]string(nil), v.methods...) }

// keyfunc picks the verification key(s) for a parsed token: the HMAC
// secret for HS*, else the public keys able to verify its alg, narrowed to
// its kid when it names one.
func (v *JWTVerifier) keyfunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if strings.HasPrefix(alg, "HS") {
		if v.secret == nil {
			return nil, errors.New("no HMAC secret")
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		if kid != "" && k.kid != kid || k.alg != "" && k.alg != alg {
			continue
		}
		for _, a := range algsFor(k.key) {
			if a == alg {
				set.Keys = append(set.Keys, k.key)
				break
			}
		}
	}
	switch len(set.Keys) {
	case 0:
		return nil, errors.New("no key for this token")
	case 1:
		return set.Keys[0], nil
	}
	return set, nil
}

// Verify checks a publish token for stream and returns its claims. Errors
// are RefusalErrors wrapping ErrBadToken, ErrExpired, ErrNotYetValid or
// ErrWrongStream; their details never quote the token or its claims.
func (v *JWTVerifier) Verify(token, stream string) (*PublishClaims, error) {
	if token == "" {
		return nil, refuse(ErrMissingCredentials, "")
	}
	if len(token) > MaxTokenLength {
		return nil, refuse(ErrBadToken, "too long")
	}
	claims := &PublishClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyfunc)
	if err != nil {
		return nil, jwtRefusal(err)
	}
	if claims.Stream == "" && claims.StreamPrefix == "" {
		return nil, refuse(ErrWrongStream, "token has no stream or stream_prefix claim")
	}
	if claims.Stream != "" && claims.Stream != stream {
		return nil, refuse(ErrWrongStream, "stream claim differs")
	}
	if claims.StreamPrefix != "" && !strings.HasPrefix(stream, claims.StreamPrefix) {
		return nil, refuse(ErrWrongStream, "stream_prefix claim does not match")
	}
	return claims, nil
}

// jwtRefusal maps a golang-jwt error to a refusal with a fixed detail (the
// library's messages are not quoted).
func jwtRefusal(err error) *RefusalError {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(ErrExpired, "")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse(ErrNotYetValid, "")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ErrBadToken, "required claim missing")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(ErrBadToken, "wrong issuer")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(ErrBadToken, "wrong audience")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(ErrBadToken, "signature invalid or algorithm not allowed")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(ErrBadToken, "no key to verify it")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(ErrBadToken, "malformed")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return refuse(ErrBadToken, "invalid claims")
	}
	return refuse(ErrBadToken, "")
}

// parsePEMKeys reads every public key in a PEM document.
func parsePEMKeys(data []byte) ([]publicKey, error) {
	var keys []publicKey
	for n := 0; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("jwt: PEM block %d is a %q, not a public key or certificate", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("jwt: PEM block %d: %w", n, err)
		}
		if err := checkPublicKey(key); err != nil {
			return nil, fmt.Errorf("jwt: PEM block %d: %w", n, err)
		}
		keys = append(keys, publicKey{key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("jwt: no PEM public key found")
	}
	return keys, nil
}

// checkPublicKey accepts RSA keys of at least minRSABits and EC keys on
// P-256, P-384 or P-521.
func checkPublicKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, at least %d are needed", k.N.BitLen(), minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if len(algsFor(k)) == 0 {
			return errors.New("EC key on an unsupported curve")
		}
		return nil
	}
	return fmt.Errorf("unsupported public key type %T", key)
}

package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testSecret = []byte("0123456789abcdef0123456789abcdef-hs256")

	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	ecKey2   *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKey2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func pemOf(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func jwkOf(kid, alg string, pub any) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
			"n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes() // 0x04 || X || Y
		n := (len(b) - 1) / 2
		return map[string]string{"kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": k.Curve.Params().Name,
			"x": enc(b[1 : 1+n]), "y": enc(b[1+n:])}
	}
	panic("key type")
}

func jwksOf(keys ...map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// claims returns valid claims for stream, expiring in an hour.
func claims(stream string) PublishClaims {
	return PublishClaims{
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour))},
		Stream:           stream,
	}
}

func sign(t testing.TB, m jwt.SigningMethod, c PublishClaims, key any, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, cfg JWTConfig) *JWTVerifier {
	t.Helper()
	cfg.Now = func() time.Time { return testNow }
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tamper flips a character of the signature.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 3
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func TestJWT(t *testing.T) {
	testKeys(t)
	hs := newVerifier(t, JWTConfig{HMACSecret: testSecret})
	rs := newVerifier(t, JWTConfig{PublicKeysPEM: pemOf(t, &rsaKey.PublicKey)})
	es := newVerifier(t, JWTConfig{PublicKeysPEM: pemOf(t, &ecKey.PublicKey)})
	jwks := newVerifier(t, JWTConfig{JWKS: jwksOf(
		jwkOf("r1", "RS256", &rsaKey.PublicKey),
		jwkOf("r2", "", &rsaKey2.PublicKey),
		jwkOf("e1", "ES256", &ecKey.PublicKey),
	)})
	both := newVerifier(t, JWTConfig{HMACSecret: testSecret, PublicKeysPEM: pemOf(t, &rsaKey.PublicKey)})
	withIss := newVerifier(t, JWTConfig{HMACSecret: testSecret, Issuer: "studio", Audience: "headwater"})

	c := claims("live/a")
	expired := c
	expired.ExpiresAt = jwt.NewNumericDate(testNow.Add(-time.Minute))
	withinLeeway := c
	withinLeeway.ExpiresAt = jwt.NewNumericDate(testNow.Add(-5 * time.Second))
	noExp := c
	noExp.ExpiresAt = nil
	future := c
	future.NotBefore = jwt.NewNumericDate(testNow.Add(time.Minute))
	started := c
	started.NotBefore = jwt.NewNumericDate(testNow.Add(-time.Minute))
	prefix := c
	prefix.Stream, prefix.StreamPrefix = "", "live/team-"
	noStream := c
	noStream.Stream = ""
	issAud := c
	issAud.Issuer, issAud.Audience = "studio", jwt.ClaimStrings{"headwater"}
	wrongIss := issAud
	wrongIss.Issuer = "other"

	rsPEM := pemOf(t, &rsaKey.PublicKey)
	none := sign(t, jwt.SigningMethodNone, c, jwt.UnsafeAllowNoneSignatureType, "")

	for _, tc := range []struct {
		name   string
		v      *JWTVerifier
		token  string
		stream string
		want   error
	}{
		{"HS256 valid", hs, sign(t, jwt.SigningMethodHS256, c, testSecret, ""), "live/a", nil},
		{"HS512 valid", hs, sign(t, jwt.SigningMethodHS512, c, testSecret, ""), "live/a", nil},
		{"HS256 expired", hs, sign(t, jwt.SigningMethodHS256, expired, testSecret, ""), "live/a", ErrExpired},
		{"HS256 expired within leeway", hs, sign(t, jwt.SigningMethodHS256, withinLeeway, testSecret, ""), "live/a", nil},
		{"HS256 no exp", hs, sign(t, jwt.SigningMethodHS256, noExp, testSecret, ""), "live/a", ErrBadToken},
		{"HS256 nbf in the future", hs, sign(t, jwt.SigningMethodHS256, future, testSecret, ""), "live/a", ErrNotYetValid},
		{"HS256 nbf passed", hs, sign(t, jwt.SigningMethodHS256, started, testSecret, ""), "live/a", nil},
		{"HS256 wrong stream", hs, sign(t, jwt.SigningMethodHS256, c, testSecret, ""), "live/b", ErrWrongStream},
		{"HS256 stream is exact", hs, sign(t, jwt.SigningMethodHS256, c, testSecret, ""), "live/ab", ErrWrongStream},
		{"HS256 prefix", hs, sign(t, jwt.SigningMethodHS256, prefix, testSecret, ""), "live/team-1", nil},
		{"HS256 prefix mismatch", hs, sign(t, jwt.SigningMethodHS256, prefix, testSecret, ""), "live/other", ErrWrongStream},
		{"HS256 no stream claim", hs, sign(t, jwt.SigningMethodHS256, noStream, testSecret, ""), "live/a", ErrWrongStream},
		{"HS256 wrong secret", hs, sign(t, jwt.SigningMethodHS256, c, []byte("another-secret-another-secret-xx"), ""), "live/a", ErrBadToken},
		{"HS256 tampered signature", hs, tamper(sign(t, jwt.SigningMethodHS256, c, testSecret, "")), "live/a", ErrBadToken},
		{"HS256 tampered payload", hs, tamperPayload(t, sign(t, jwt.SigningMethodHS256, c, testSecret, "")), "live/b", ErrBadToken},
		{"alg none refused", hs, none, "live/a", ErrBadToken},
		{"alg none refused (RSA)", rs, none, "live/a", ErrBadToken},
		{"garbage", hs, "not.a.jwt", "live/a", ErrBadToken},
		{"too long", hs, strings.Repeat("a", MaxTokenLength+1), "live/a", ErrBadToken},
		{"issuer and audience", withIss, sign(t, jwt.SigningMethodHS256, issAud, testSecret, ""), "live/a", nil},
		{"issuer missing", withIss, sign(t, jwt.SigningMethodHS256, c, testSecret, ""), "live/a", ErrBadToken},
		{"wrong issuer", withIss, sign(t, jwt.SigningMethodHS256, wrongIss, testSecret, ""), "live/a", ErrBadToken},

		{"RS256 valid", rs, sign(t, jwt.SigningMethodRS256, c, rsaKey, ""), "live/a", nil},
		{"PS256 valid", rs, sign(t, jwt.SigningMethodPS256, c, rsaKey, ""), "live/a", nil},
		{"RS256 expired", rs, sign(t, jwt.SigningMethodRS256, expired, rsaKey, ""), "live/a", ErrExpired},
		{"RS256 wrong stream", rs, sign(t, jwt.SigningMethodRS256, c, rsaKey, ""), "live/b", ErrWrongStream},
		{"RS256 other key", rs, sign(t, jwt.SigningMethodRS256, c, rsaKey2, ""), "live/a", ErrBadToken},
		{"RS256 tampered", rs, tamper(sign(t, jwt.SigningMethodRS256, c, rsaKey, "")), "live/a", ErrBadToken},
		// Algorithm confusion: an HS256 token keyed with the RSA public key.
		{"HS256 with the public key refused", rs, sign(t, jwt.SigningMethodHS256, c, rsPEM, ""), "live/a", ErrBadToken},
		{"HS256 with the public key refused (both)", both, sign(t, jwt.SigningMethodHS256, c, rsPEM, ""), "live/a", ErrBadToken},
		{"HS256 with the secret (both)", both, sign(t, jwt.SigningMethodHS256, c, testSecret, ""), "live/a", nil},
		{"ES256 on an RSA verifier", rs, sign(t, jwt.SigningMethodES256, c, ecKey, ""), "live/a", ErrBadToken},
		{"RS256 on an HMAC verifier", hs, sign(t, jwt.SigningMethodRS256, c, rsaKey, ""), "live/a", ErrBadToken},

		{"ES256 valid", es, sign(t, jwt.SigningMethodES256, c, ecKey, ""), "live/a", nil},
		{"ES256 expired", es, sign(t, jwt.SigningMethodES256, expired, ecKey, ""), "live/a", ErrExpired},
		{"ES256 wrong stream", es, sign(t, jwt.SigningMethodES256, c, ecKey, ""), "live/b", ErrWrongStream},
		{"ES256 other key", es, sign(t, jwt.SigningMethodES256, c, ecKey2, ""), "live/a", ErrBadToken},
		{"ES256 tampered", es, tamper(sign(t, jwt.SigningMethodES256, c, ecKey, "")), "live/a", ErrBadToken},
		{"ES384 on a P-256 key", es, sign(t, jwt.SigningMethodES384, c, mustEC(t, elliptic.P384()), ""), "live/a", ErrBadToken},

		{"JWKS RS256 by kid", jwks, sign(t, jwt.SigningMethodRS256, c, rsaKey, "r1"), "live/a", nil},
		{"JWKS second RSA key by kid", jwks, sign(t, jwt.SigningMethodRS256, c, rsaKey2, "r2"), "live/a", nil},
		{"JWKS no kid: any matching key", jwks, sign(t, jwt.SigningMethodRS256, c, rsaKey2, ""), "live/a", nil},
		{"JWKS ES256 by kid", jwks, sign(t, jwt.SigningMethodES256, c, ecKey, "e1"), "live/a", nil},
		{"JWKS kid names another key", jwks, sign(t, jwt.SigningMethodRS256, c, rsaKey2, "r1"), "live/a", ErrBadToken},
		{"JWKS unknown kid", jwks, sign(t, jwt.SigningMethodRS256, c, rsaKey, "nope"), "live/a", ErrBadToken},
		{"JWKS alg pinned to RS256", jwks, sign(t, jwt.SigningMethodPS256, c, rsaKey, "r1"), "live/a", ErrBadToken},
		{"JWKS alg free key", jwks, sign(t, jwt.SigningMethodPS256, c, rsaKey2, "r2"), "live/a", nil},
		{"JWKS expired", jwks, sign(t, jwt.SigningMethodES256, expired, ecKey, "e1"), "live/a", ErrExpired},
		{"JWKS wrong stream", jwks, sign(t, jwt.SigningMethodES256, c, ecKey, "e1"), "live/b", ErrWrongStream},
		{"JWKS HS256 refused", jwks, sign(t, jwt.SigningMethodHS256, c, testSecret, "r1"), "live/a", ErrBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.token, tc.stream)
			if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil {
				var re *RefusalError
				if !errors.As(err, &re) {
					t.Fatalf("error %T is not a *RefusalError", err)
				}
				assertNoSecret(t, err.Error(), tc.token)
			}
		})
	}
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tamperPayload rewrites the stream claim without re-signing.
func tamperPayload(t testing.TB, tok string) string {
	parts := strings.Split(tok, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p = []byte(strings.Replace(string(p), "live/a", "live/b", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

// assertNoSecret fails when msg contains the secret or any long piece of it.
func assertNoSecret(t testing.TB, msg, secret string) {
	t.Helper()
	if secret == "" {
		return
	}
	if strings.Contains(msg, secret) {
		t.Fatalf("message %q contains the secret", msg)
	}
	for _, part := range strings.Split(secret, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Fatalf("message %q contains part of the secret", msg)
		}
	}
}

func TestNewJWTVerifierInvalid(t *testing.T) {
	testKeys(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	priv, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	privJWK := jwkOf("p", "ES256", &ecKey.PublicKey)
	privJWK["d"] = "AAAA"
	offCurve := jwkOf("x", "ES256", &ecKey.PublicKey)
	offCurve["y"] = offCurve["x"]
	for name, cfg := range map[string]JWTConfig{
		"nothing":         {},
		"short secret":    {HMACSecret: []byte("short")},
		"no PEM":          {PublicKeysPEM: []byte("hello")},
		"private PEM":     {PublicKeysPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})},
		"weak RSA":        {PublicKeysPEM: pemOf(t, &small.PublicKey)},
		"bad JWKS":        {JWKS: []byte("{")},
		"empty JWKS":      {JWKS: []byte(`{"keys":[]}`)},
		"oct only JWKS":   {JWKS: []byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`)},
		"private JWK":     {JWKS: jwksOf(privJWK)},
		"point off-curve": {JWKS: jwksOf(offCurve)},
		"weak RSA JWK":    {JWKS: jwksOf(jwkOf("w", "RS256", &small.PublicKey))},
	} {
		if _, err := NewJWTVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	v := newVerifier(t, JWTConfig{HMACSecret: testSecret, JWKS: jwksOf(jwkOf("e", "", &ecKey.PublicKey))})
	if got := strings.Join(v.Methods(), ","); got != "ES256,HS256,HS384,HS512" {
		t.Fatalf("Methods = %s", got)
	}
}

// FuzzParseJWT feeds arbitrary strings to the verifier: it must never panic,
// and must accept nothing but the tokens the test itself signed.
func FuzzParseJWT(f *testing.F) {
	v := newVerifier(f, JWTConfig{HMACSecret: testSecret})
	valid := map[string]bool{}
	for _, s := range []string{"live/a", "live/b"} {
		tok := sign(f, jwt.SigningMethodHS256, claims(s), testSecret, "")
		valid[tok] = true
		f.Add(tok)
		f.Add(tamper(tok))
		f.Add(tok + "=")
		f.Add(strings.Replace(tok, ".", "..", 1))
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdHJlYW0iOiJsaXZlL2EiLCJleHAiOjk5OTk5OTk5OTl9.")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, stream := range []string{"live/a", "live/b"} {
			if _, err := v.Verify(tok, stream); err == nil && !valid[tok] {
				t.Fatalf("accepted a token the test did not sign: %q", tok)
			}
		}
	})
}

package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testutilCount(m *Metrics) float64 { return testutil.ToFloat64(m.dropped) }

func TestChain(t *testing.T) {
	key := GenerateKey()
	sk, err := NewStaticKeys([]KeyRule{{Prefix: "live/", Hashes: []string{HashKey(key)}}})
	if err != nil {
		t.Fatal(err)
	}
	jv := newVerifier(t, JWTConfig{HMACSecret: testSecret})
	tokA := sign(t, jwt.SigningMethodHS256, claims("live/a"), testSecret, "")

	var hookCalls atomic.Int32
	hookStatus := atomic.Int32{}
	hookStatus.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookCalls.Add(1)
		w.WriteHeader(int(hookStatus.Load()))
	}))
	defer srv.Close()
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, Secret: webhookSecret})
	if err != nil {
		t.Fatal(err)
	}

	req := func(stream string, params map[string]string) PublishRequest {
		return PublishRequest{Protocol: "rtmp", Stream: stream, RemoteAddr: "198.51.100.1:1000", RequestID: "id", Params: params}
	}
	type tc struct {
		name      string
		params    map[string]string
		key       string
		stream    string
		hook      int
		want      error
		wantCalls int32
	}
	run := func(t *testing.T, c *Chain, cases []tc) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				hookCalls.Store(0)
				hookStatus.Store(int32(tc.hook))
				r := req(tc.stream, tc.params)
				r.Key = tc.key
				err := c.AuthorizePublish(context.Background(), r)
				if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
					t.Fatalf("AuthorizePublish = %v, want %v", err, tc.want)
				}
				if hookCalls.Load() != tc.wantCalls {
					t.Fatalf("webhook called %d times, want %d", hookCalls.Load(), tc.wantCalls)
				}
				if err != nil {
					assertNoSecret(t, err.Error(), key)
					assertNoSecret(t, err.Error(), tokA)
				}
			})
		}
	}

	t.Run("off", func(t *testing.T) {
		c := New(Config{})
		if c.Enabled() {
			t.Fatal("empty chain is enabled")
		}
		run(t, c, []tc{{name: "anything goes", stream: "live/a"}})
	})
	t.Run("keys or jwt, then webhook", func(t *testing.T) {
		c := New(Config{StaticKeys: sk, JWT: jv, Webhook: wh})
		run(t, c, []tc{
			{name: "key", stream: "live/a", params: map[string]string{"key": key}, hook: 200, wantCalls: 1},
			{name: "key in Key", stream: "live/a", key: key, hook: 200, wantCalls: 1},
			{name: "token", stream: "live/a", params: map[string]string{"token": tokA}, hook: 200, wantCalls: 1},
			{name: "token as jwt", stream: "live/a", params: map[string]string{"jwt": tokA}, hook: 200, wantCalls: 1},
			{name: "bad token, good key", stream: "live/a", params: map[string]string{"token": "x.y.z", "key": key}, hook: 200, wantCalls: 1},
			{name: "good token, bad key", stream: "live/a", params: map[string]string{"token": tokA, "key": "nope"}, hook: 200, wantCalls: 1},
			{name: "token for another stream", stream: "live/b", params: map[string]string{"token": tokA}, want: ErrWrongStream},
			{name: "bad key", stream: "live/a", params: map[string]string{"key": "nope"}, want: ErrBadKey},
			{name: "nothing", stream: "live/a", want: ErrMissingCredentials},
			{name: "webhook denies", stream: "live/a", params: map[string]string{"key": key}, hook: 403, want: ErrWebhookDenied, wantCalls: 1},
			{name: "webhook fails", stream: "live/a", params: map[string]string{"key": key}, hook: 502, want: ErrWebhookUnavailable, wantCalls: 1},
		})
	})
	t.Run("jwt only", func(t *testing.T) {
		run(t, New(Config{JWT: jv}), []tc{
			{name: "token", stream: "live/a", params: map[string]string{"token": tokA}},
			{name: "key not enabled", stream: "live/a", params: map[string]string{"key": key}, want: ErrBadKey},
		})
	})
	t.Run("keys only", func(t *testing.T) {
		run(t, New(Config{StaticKeys: sk}), []tc{
			{name: "key", stream: "live/a", params: map[string]string{"key": key}},
			{name: "token not enabled", stream: "live/a", params: map[string]string{"token": tokA}, want: ErrBadToken},
		})
	})
	t.Run("webhook only", func(t *testing.T) {
		run(t, New(Config{Webhook: wh}), []tc{
			{name: "allowed", stream: "live/a", hook: 200, wantCalls: 1},
			{name: "denied", stream: "live/a", hook: 404, want: ErrWebhookDenied, wantCalls: 1},
		})
	})
}

func TestChainRateLimitAndMetrics(t *testing.T) {
	key := GenerateKey()
	sk, _ := NewStaticKeys([]KeyRule{{Stream: "live/a", Hashes: []string{HashKey(key)}}})
	lim := NewFailureLimiter(3, time.Minute, 100)
	now := testNow
	lim.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "rtmp", "srt")
	var logs bytes.Buffer
	c := New(Config{StaticKeys: sk, Limiter: lim, Metrics: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	ctx := context.Background()
	bad := PublishRequest{Protocol: "rtmp", Stream: "live/a", RemoteAddr: "203.0.113.9:4000", Params: map[string]string{"key": "wrong-guess-1"}}
	good := bad
	good.Params = map[string]string{"key": key}

	for i := range 3 {
		if err := c.AuthorizePublish(ctx, bad); !errors.Is(err, ErrBadKey) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// Limited now, even with the right key, and from another port.
	good.RemoteAddr = "203.0.113.9:4001"
	if err := c.AuthorizePublish(ctx, good); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after 3 failures: %v", err)
	}
	// Another address is not affected.
	other := good
	other.RemoteAddr = "203.0.113.10:4000"
	if err := c.AuthorizePublish(ctx, other); err != nil {
		t.Fatalf("other address: %v", err)
	}
	// One token comes back after window/failures.
	now = now.Add(21 * time.Second)
	if err := c.AuthorizePublish(ctx, good); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if got := testutil.ToFloat64(m.refusals.WithLabelValues("rtmp", "bad_key")); got != 3 {
		t.Fatalf("bad_key refusals = %v", got)
	}
	if got := testutil.ToFloat64(m.refusals.WithLabelValues("rtmp", "rate_limited")); got != 1 {
		t.Fatalf("rate_limited refusals = %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "headwater_auth_refusals_total"); n != 2*len(Reasons) {
		t.Fatalf("%d series, want %d (initialised at zero)", n, 2*len(Reasons))
	}
	if strings.Contains(logs.String(), "wrong-guess") || strings.Contains(logs.String(), key) {
		t.Fatalf("logs contain a key: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"reason":"bad_key"`) {
		t.Fatalf("logs lack the reason: %s", logs.String())
	}
	// NewMetrics on the same registry reuses the collectors.
	if m2 := NewMetrics(reg); m2.refusals != m.refusals {
		t.Fatal("collectors not reused")
	}
}

func TestFailureLimiter(t *testing.T) {
	l := NewFailureLimiter(2, 10*time.Second, 3)
	now := testNow
	l.now = func() time.Time { return now }
	a := "192.0.2.1:1"
	if !l.Allow(a) {
		t.Fatal("new client refused")
	}
	l.Failure(a)
	if !l.Allow(a) {
		t.Fatal("refused after one failure of two")
	}
	l.Failure(a)
	if l.Allow(a) {
		t.Fatal("allowed after two failures")
	}
	now = now.Add(4 * time.Second) // 0.8 token
	if l.Allow(a) {
		t.Fatal("allowed before a token came back")
	}
	now = now.Add(time.Second + time.Millisecond)
	if !l.Allow(a) {
		t.Fatal("refused after the refill")
	}
	now = now.Add(time.Minute)
	if !l.Allow(a) || l.Len() != 0 {
		t.Fatalf("full bucket not forgotten: len %d", l.Len())
	}

	// IPv6 clients are limited per /64; IPv4-mapped addresses are IPv4.
	l.Failure("[2001:db8:1:2::1]:5")
	l.Failure("[2001:db8:1:2:ffff::9]:6")
	if l.Allow("[2001:db8:1:2::77]:7") {
		t.Fatal("same /64 not limited")
	}
	if !l.Allow("[2001:db8:1:3::1]:7") {
		t.Fatal("other /64 limited")
	}
	l.Failure("[::ffff:192.0.2.9]:1")
	l.Failure("192.0.2.9")
	if l.Allow("192.0.2.9:2") {
		t.Fatal("IPv4-mapped address not the same client")
	}

	// Memory is bounded: the least recently used client is forgotten.
	for i := range 10 {
		l.Failure(fmt.Sprintf("10.0.0.%d:1", i))
		if l.Len() > 3 {
			t.Fatalf("len %d > 3", l.Len())
		}
	}
}

func TestPublishRequestRedacted(t *testing.T) {
	r := PublishRequest{Protocol: "srt", Stream: "live/a", RemoteAddr: "192.0.2.1:1", RequestID: "id",
		Params: map[string]string{"token": "SECRET-TOKEN"}, Key: "SECRET-KEY"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "req", r)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "req", r)
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		fmt.Fprintf(&buf, f+"\n", r)
		fmt.Fprintf(&buf, f+"\n", struct{ R PublishRequest }{r})
	}
	if s := buf.String(); strings.Contains(s, "SECRET") {
		t.Fatalf("secret printed:\n%s", s)
	}
	if !strings.Contains(buf.String(), "token") {
		t.Fatal("parameter names missing")
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	testKeys(t)
	var s Settings
	c, err := Build(s, nil, nil)
	if err != nil || c.Enabled() {
		t.Fatalf("empty settings: %v enabled=%v", err, c.Enabled())
	}
	key := GenerateKey()
	s.StaticKeys = []KeyRule{{Stream: "live/a", Hashes: []string{HashKey(key)}}}
	s.JWT.HMACSecretFile = write("hs", append(testSecret, '\n'))
	s.JWT.JWKSFile = write("jwks", jwksOf(jwkOf("e1", "ES256", &ecKey.PublicKey)))
	s.RateLimit.Failures = 5
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		if VerifyWebhook(testSecret, r.Header, buf.Bytes(), time.Now(), 0) != nil {
			w.WriteHeader(401)
		}
		var ev WebhookEvent
		_ = json.Unmarshal(buf.Bytes(), &ev)
	}))
	defer srv.Close()
	s.Webhook.URL = srv.URL
	s.Webhook.SecretFile = s.JWT.HMACSecretFile
	c, err = Build(s, prometheus.NewRegistry(), nil, "rtmp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := claims("live/a")
	cl.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	tok := sign(t, jwt.SigningMethodES256, cl, ecKey, "e1")
	for _, p := range []map[string]string{{"key": key}, {"token": tok}} {
		if err := c.AuthorizePublish(context.Background(), PublishRequest{Protocol: "rtmp", Stream: "live/a", RemoteAddr: "192.0.2.1:1", Params: p}); err != nil {
			t.Fatalf("%v: %v", p, err)
		}
	}
	s.JWT.HMACSecretFile = write("empty", []byte("\n"))
	if _, err := Build(s, nil, nil); err == nil {
		t.Fatal("empty secret file accepted")
	}
}

func TestParamsFromQuery(t *testing.T) {
	name := url.Values{"key": {"from-name", "second"}, "token": {"t"}}
	connect := url.Values{"key": {"from-connect"}, "app": {"x"}, "huge": {strings.Repeat("a", MaxTokenLength+1)}}
	p := ParamsFromQuery(name, connect)
	if len(p) != 3 || p["key"] != "from-name" || p["token"] != "t" || p["app"] != "x" {
		t.Fatalf("ParamsFromQuery = %v", p)
	}
	many := url.Values{}
	for i := range 100 {
		many.Set(fmt.Sprint("k", i), "v")
	}
	if got := len(ParamsFromQuery(many)); got != 32 {
		t.Fatalf("%d params kept", got)
	}
	if ParamsFromQuery() != nil {
		t.Fatal("no queries: want nil")
	}
}

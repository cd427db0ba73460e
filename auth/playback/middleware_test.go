package playback

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// echo is an origin stand-in: it reports the path it was asked for and
// sets the Cache-Control an origin would.
type echo struct{ cc []string }

func (e echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["Cache-Control"] = e.cc
	w.Header().Set("X-Path", r.URL.Path)
	w.Header().Set("X-Query", r.URL.RawQuery)
	w.Header().Set("X-Request-URI", r.RequestURI)
	w.Header().Set("X-CDN-Header", r.Header.Get(DefaultCDNHeader))
	if c, ok := ClaimsFromContext(r.Context()); ok {
		w.Header().Set("X-Claims-Prefix", c.Prefix)
	}
	if ViaCDN(r.Context()) {
		w.Header().Set("X-Via-CDN", "yes")
	}
	_, _ = io.WriteString(w, "ok")
}

func do(h http.Handler, target, remote string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestMiddleware(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	exp := now.Add(90 * time.Second)
	tok := mustSign(t, ring, "/live/a/", exp, netip.Addr{})
	bound := mustSign(t, ring, "/live/a/", exp, netip.MustParseAddr("198.51.100.7"))
	shared := []string{"public, max-age=86400, immutable"}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := Middleware(Config{Keyring: ring, Required: true, Metrics: m, Now: func() time.Time { return now }})(echo{cc: shared})

	w := do(h, "/t/"+tok+"/live/a/video/seg1.m4s?x=1", "192.0.2.1:1000", nil)
	if w.Code != 200 || w.Header().Get("X-Path") != "/live/a/video/seg1.m4s" || w.Header().Get("X-Query") != "x=1" ||
		w.Header().Get("X-Request-URI") != "/live/a/video/seg1.m4s?x=1" || w.Header().Get("X-Claims-Prefix") != "/live/a/" {
		t.Fatalf("valid token: %d %v", w.Code, w.Header())
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=90, immutable" {
		t.Fatalf("Cache-Control = %q, want max-age capped to the token's 90 s", cc)
	}
	if shared[0] != "public, max-age=86400, immutable" {
		t.Fatal("the handler's shared header slice was modified")
	}

	for _, tc := range []struct {
		name, target, remote string
		code                 int
		reason               Reason
	}{
		{"missing token", "/live/a/index.m3u8", "", 403, ReasonMissingToken},
		{"health exempt", "/healthz", "", 200, ""},
		{"other stream", "/t/" + tok + "/live/b/index.m3u8", "", 403, ReasonWrongPath},
		{"tampered", "/t/" + flipMAC(tok) + "/live/a/index.m3u8", "", 403, ReasonBadSignature},
		{"garbage", "/t/garbage/live/a/index.m3u8", "", 403, ReasonMalformed},
		{"escaped path", "/t/" + tok + "/live/a/%2e%2e/b/index.m3u8", "", 403, ReasonBadPath},
		{"bound, right client", "/t/" + bound + "/live/a/index.m3u8", "198.51.100.7:5", 200, ""},
		{"bound, wrong client", "/t/" + bound + "/live/a/index.m3u8", "198.51.100.8:5", 403, ReasonWrongIP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(h, tc.target, tc.remote, nil)
			if w.Code != tc.code || Reason(w.Header().Get("X-Headwater-Token")) != tc.reason {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Header().Get("X-Headwater-Token"), tc.code, tc.reason)
			}
			if tc.code == 403 && w.Header().Get("Cache-Control") != "no-store" {
				t.Fatal("refusal is cacheable")
			}
		})
	}
	if got := testutil.ToFloat64(m.refusals.WithLabelValues("wrong_ip")); got != 1 {
		t.Fatalf("wrong_ip refusals = %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "headwater_playback_refusals_total"); n != len(Reasons) {
		t.Fatalf("%d series", n)
	}

	expired := Middleware(Config{Keyring: ring, Now: func() time.Time { return exp }})(echo{cc: shared})
	if w := do(expired, "/t/"+tok+"/live/a/index.m3u8", "", nil); w.Code != 403 || w.Header().Get("X-Headwater-Token") != "expired" {
		t.Fatalf("expired: %d", w.Code)
	}
	optional := Middleware(Config{Keyring: ring})(echo{cc: shared})
	if w := do(optional, "/live/a/index.m3u8", "", nil); w.Code != 200 || w.Header().Get("Cache-Control") != shared[0] || w.Header().Get("X-Claims-Prefix") != "" {
		t.Fatalf("optional tokens: untokenised request %d %q", w.Code, w.Header().Get("Cache-Control"))
	}
}

func TestCapCacheControl(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		max  int64
		want string
	}{
		{[]string{"public, max-age=86400, immutable"}, 30, "public, max-age=30, immutable"},
		{[]string{"public, max-age=1"}, 30, "public, max-age=1"},
		{[]string{"public, max-age=600, s-maxage=3600"}, 60, "public, max-age=60, s-maxage=60"},
		{[]string{"Max-Age=100"}, 5, "max-age=5"},
		{[]string{"private, no-store"}, 5, "private, no-store"},
		{[]string{"public", "max-age=100"}, 5, "public, max-age=5"},
		{[]string{"max-age=\"100\""}, 5, "max-age=5"},
		{[]string{"max-age=junk"}, 5, "max-age=5"},
		{[]string{"max-age=100"}, -3, "max-age=0"},
	} {
		h := http.Header{"Cache-Control": tc.in}
		capCacheControl(h, tc.max)
		if got := strings.Join(h["Cache-Control"], ", "); got != tc.want {
			t.Errorf("cap(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestRequireHeader(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := RequireHeaderSecrets(DefaultCDNHeader, []string{"old-cdn-secret", "new-cdn-secret"}, m, "/healthz")(echo{})
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
		code       int
	}{
		{"right secret", "/live/a/index.m3u8", map[string]string{DefaultCDNHeader: "new-cdn-secret"}, 200},
		{"old secret during rotation", "/live/a/index.m3u8", map[string]string{DefaultCDNHeader: "old-cdn-secret"}, 200},
		{"wrong secret", "/live/a/index.m3u8", map[string]string{DefaultCDNHeader: "new-cdn-secreT"}, 403},
		{"prefix of the secret", "/live/a/index.m3u8", map[string]string{DefaultCDNHeader: "new-cdn"}, 403},
		{"no header", "/live/a/index.m3u8", nil, 403},
		{"health exempt", "/healthz", nil, 200},
	} {
		w := do(h, tc.path, "", tc.hdr)
		if w.Code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.code)
		}
		if w.Code == 200 && w.Header().Get("X-CDN-Header") != "" {
			t.Errorf("%s: the secret header reached the handler", tc.name)
		}
		if w.Code == 200 && (w.Header().Get("X-Via-CDN") == "yes") != (tc.path != "/healthz") {
			t.Errorf("%s: ViaCDN wrong", tc.name)
		}
	}
	if got := testutil.ToFloat64(m.refusals.WithLabelValues("cdn_header")); got != 3 {
		t.Fatalf("cdn_header refusals = %v", got)
	}
	// Two copies of the header are refused (ambiguous).
	r := httptest.NewRequest(http.MethodGet, "/live/a/x", nil)
	r.Header.Add(DefaultCDNHeader, "new-cdn-secret")
	r.Header.Add(DefaultCDNHeader, "new-cdn-secret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Fatalf("duplicate header: %d", w.Code)
	}
	single := RequireHeader("X-Edge", "s3cret")(echo{})
	if do(single, "/x", "", map[string]string{"X-Edge": "s3cret"}).Code != 200 || do(single, "/healthz", "", nil).Code != 403 {
		t.Fatal("RequireHeader")
	}
}

// TestCDNChain runs the recommended order: CDN header check, then tokens
// with the client address from the CDN's header, then the origin.
func TestCDNChain(t *testing.T) {
	ring := keyring(t, "a", map[string][]byte{"a": secretA})
	bound := mustSign(t, ring, "/live/a/", now.Add(time.Minute), netip.MustParseAddr("203.0.113.50"))
	tokens := Middleware(Config{Keyring: ring, Required: true, ClientIP: HeaderIP("X-Forwarded-For"), Now: func() time.Time { return now }})
	h := RequireHeader(DefaultCDNHeader, "cdn", "/healthz")(tokens(echo{}))
	target := "/t/" + bound + "/live/a/index.m3u8"
	if w := do(h, target, "10.0.0.1:1", map[string]string{DefaultCDNHeader: "cdn", "X-Forwarded-For": "192.0.2.1, 203.0.113.50"}); w.Code != 200 {
		t.Fatalf("via CDN: %d %s", w.Code, w.Header().Get("X-Headwater-Token"))
	}
	// A forged X-Forwarded-For without the CDN secret gets nowhere.
	if w := do(h, target, "203.0.113.9:1", map[string]string{"X-Forwarded-For": "203.0.113.50"}); w.Code != 403 || w.Header().Get("X-Headwater-Token") != "cdn_header" {
		t.Fatalf("around the CDN: %d", w.Code)
	}
	if w := do(h, target, "10.0.0.1:1", map[string]string{DefaultCDNHeader: "cdn", "X-Forwarded-For": "203.0.113.51"}); w.Code != 403 {
		t.Fatalf("other viewer: %d", w.Code)
	}
}

func TestClientIP(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "[::ffff:192.0.2.1]:443"
	if got := RemoteIP(r); got != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("RemoteIP = %v", got)
	}
	r.RemoteAddr = "garbage"
	if RemoteIP(r).IsValid() {
		t.Fatal("garbage parsed")
	}
	r.Header.Set("Cf-Connecting-Ip", " 2001:db8::1 ")
	if got := HeaderIP("CF-Connecting-IP")(r); got != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("HeaderIP = %v", got)
	}
	if HeaderIP("X-Forwarded-For")(r).IsValid() {
		t.Fatal("missing header parsed")
	}
}

func BenchmarkVerify(b *testing.B) {
	ring := keyring(b, "a", map[string][]byte{"a": secretA})
	tok := mustSign(b, ring, "/live/a/", now.Add(time.Hour), netip.Addr{})
	b.ReportAllocs()
	for b.Loop() {
		if err := ring.Verify(tok, "/live/a/video/seg1.m4s", netip.Addr{}, now); err != nil {
			b.Fatal(err)
		}
	}
}

package playback

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/metrics"
)

// Reason is the reason label of headwater_playback_refusals_total.
type Reason string

// Refusal reasons.
const (
	ReasonMissingToken Reason = "missing_token"
	ReasonMalformed    Reason = "malformed"
	ReasonUnknownKey   Reason = "unknown_key"
	ReasonBadSignature Reason = "bad_signature"
	ReasonExpired      Reason = "expired"
	ReasonWrongPath    Reason = "wrong_path"
	ReasonWrongIP      Reason = "wrong_ip"
	ReasonBadPath      Reason = "bad_path"
	ReasonCDNHeader    Reason = "cdn_header"
)

// Reasons lists every Reason in a stable order.
var Reasons = []Reason{
	ReasonMissingToken, ReasonMalformed, ReasonUnknownKey, ReasonBadSignature,
	ReasonExpired, ReasonWrongPath, ReasonWrongIP, ReasonBadPath, ReasonCDNHeader,
}

// ReasonOf maps a Verify error to its Reason.
func ReasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrWrongPath):
		return ReasonWrongPath
	case errors.Is(err, ErrWrongIP):
		return ReasonWrongIP
	case errors.Is(err, ErrBadPath):
		return ReasonBadPath
	}
	return ReasonMalformed
}

// Metrics count refused playback requests:
//
//	headwater_playback_refusals_total{reason}
//
// A nil *Metrics counts nothing.
type Metrics struct {
	refusals *prometheus.CounterVec
}

// NewMetrics creates the metrics, registered on reg unless it is nil
// (collectors already registered under the same name are reused).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "headwater_playback_refusals_total",
		Help: "Origin requests refused by the playback token or CDN header check, by reason.",
	}, []string{"reason"})}
	m.refusals = metrics.Register(reg, m.refusals)
	for _, r := range Reasons {
		m.refusals.WithLabelValues(string(r))
	}
	return m
}

func (m *Metrics) refused(r Reason) {
	if m != nil {
		m.refusals.WithLabelValues(string(r)).Inc()
	}
}

// Config configures Middleware.
type Config struct {
	// Keyring verifies the tokens.
	Keyring *Keyring
	// Required refuses requests without a token (except Exempt paths).
	// When false, untokenised requests pass through untouched: useful while
	// players migrate, or when a CDN edge verifies the tokens and forwards
	// the stripped paths (then guard the origin with RequireHeader).
	Required bool
	// ClientIP returns the client address IP-bound tokens are checked
	// against; nil means RemoteIP. Behind a CDN use HeaderIP, and only
	// inside RequireHeader, which makes that header trustworthy.
	ClientIP func(*http.Request) netip.Addr
	// Exempt reports paths that need no token; nil exempts "/healthz".
	Exempt func(path string) bool
	// Metrics counts refusals; may be nil.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Middleware verifies the token of "/t/<token>/<path>" requests and hands
// the request to next with the path rewritten to "/<path>" (so the origin
// never sees, nor logs, the token). Refused requests get 403 with
// Cache-Control: no-store and an X-Headwater-Token header naming the reason
// ("expired" tells a player to fetch a new URL). Responses to tokenised
// requests have their max-age and s-maxage capped to the token's remaining
// lifetime, so that no cache serves a tokenised URL after its token expired.
func Middleware(cfg Config) func(http.Handler) http.Handler {
	if cfg.ClientIP == nil {
		cfg.ClientIP = RemoteIP
	}
	if cfg.Exempt == nil {
		cfg.Exempt = func(p string) bool { return p == "/healthz" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, rest, ok := SplitTokenPath(r.URL.Path)
			if !ok {
				if cfg.Required && !cfg.Exempt(r.URL.Path) {
					cfg.Metrics.refused(ReasonMissingToken)
					forbid(w, ReasonMissingToken)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			if r.URL.RawPath != "" { // escapes that decode differently: never needed
				cfg.Metrics.refused(ReasonBadPath)
				forbid(w, ReasonBadPath)
				return
			}
			now := cfg.Now()
			c, err := cfg.Keyring.VerifyClaims(token, rest, cfg.ClientIP(r), now)
			if err != nil {
				reason := ReasonOf(err)
				cfg.Metrics.refused(reason)
				forbid(w, reason)
				return
			}
			r2 := r.WithContext(context.WithValue(r.Context(), claimsKey{}, c))
			u := *r.URL
			u.Path, u.RawPath = rest, ""
			r2.URL = &u
			r2.RequestURI = u.RequestURI()
			remaining := int64(c.Expires.Sub(now) / time.Second)
			next.ServeHTTP(&capWriter{ResponseWriter: w, maxAge: remaining}, r2)
		})
	}
}

func forbid(w http.ResponseWriter, reason Reason) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Headwater-Token", string(reason))
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, "forbidden\n")
}

// capWriter caps the Cache-Control freshness of a response.
type capWriter struct {
	http.ResponseWriter
	maxAge  int64
	wroteHd bool
}

func (w *capWriter) WriteHeader(code int) {
	if !w.wroteHd && code >= 200 {
		w.wroteHd = true
		capCacheControl(w.Header(), w.maxAge)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *capWriter) Write(b []byte) (int, error) {
	if !w.wroteHd {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying io.ReaderFrom (sendfile, no copy buffer).
func (w *capWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHd {
		w.WriteHeader(http.StatusOK)
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Flush lets streaming responses through.
func (w *capWriter) Flush() {
	if !w.wroteHd {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *capWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// capCacheControl lowers max-age and s-maxage directives above maxAge. The
// header's value slice is replaced, never modified (handlers may share it).
func capCacheControl(h http.Header, maxAge int64) {
	vals := h["Cache-Control"]
	if len(vals) == 0 {
		return
	}
	if maxAge < 0 {
		maxAge = 0
	}
	changed := false
	var out []string
	for _, v := range vals {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.TrimSpace(d)
			name, val, ok := strings.Cut(d, "=")
			if ok && (strings.EqualFold(name, "max-age") || strings.EqualFold(name, "s-maxage")) {
				if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err != nil || n > maxAge {
					d = strings.ToLower(name) + "=" + strconv.FormatInt(maxAge, 10)
					changed = true
				}
			}
			if d != "" {
				out = append(out, d)
			}
		}
	}
	if changed {
		h["Cache-Control"] = []string{strings.Join(out, ", ")}
	}
}

// RemoteIP returns the address of the peer of r's connection.
func RemoteIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

// HeaderIP returns a ClientIP function reading the client address from a
// header set by a trusted CDN: "CF-Connecting-IP", "Fastly-Client-IP",
// "True-Client-IP", or "X-Forwarded-For", of which the last entry (the one
// the CDN appended) is used. A missing or unparsable header yields the zero
// Addr, which no IP-bound token matches. Only use it behind RequireHeader:
// anyone else can forge these headers.
func HeaderIP(name string) func(*http.Request) netip.Addr {
	name = http.CanonicalHeaderKey(name)
	xff := name == "X-Forwarded-For"
	return func(r *http.Request) netip.Addr {
		vals := r.Header[name]
		if len(vals) == 0 {
			return netip.Addr{}
		}
		v := vals[len(vals)-1]
		if xff {
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				v = v[i+1:]
			}
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return netip.Addr{}
		}
		return ip.Unmap()
	}
}

type claimsKey struct{}

type viaCDNKey struct{}

// ClaimsFromContext returns the claims of the token Middleware verified for
// this request; ok is false when the request carried no token. Handlers of
// sensitive objects (HLS key files) use it, with ViaCDN, to serve only
// authorised requests even when tokens are not Required.
func ClaimsFromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// ViaCDN reports whether RequireHeader checked the CDN secret of this
// request (so the CDN, which verified the token at its edge, vouches for it).
func ViaCDN(ctx context.Context) bool {
	v, _ := ctx.Value(viaCDNKey{}).(bool)
	return v
}

// DefaultCDNHeader is the header carrying the CDN's shared secret.
const DefaultCDNHeader = "X-Headwater-CDN-Secret"

// RequireHeader returns a middleware that serves only requests carrying
// header name with value secret (compared in constant time), so that an
// origin behind a CDN cannot be reached around it. Other requests get 403
// (no-store). The header is removed before next sees the request.
// exemptPaths (typically "/healthz", for load balancers) need no header.
func RequireHeader(name, secret string, exemptPaths ...string) func(http.Handler) http.Handler {
	return RequireHeaderSecrets(name, []string{secret}, nil, exemptPaths...)
}

// RequireHeaderSecrets is RequireHeader accepting any of several secrets
// (to rotate the CDN secret without downtime) and counting refusals in m
// (which may be nil).
func RequireHeaderSecrets(name string, secrets []string, m *Metrics, exemptPaths ...string) func(http.Handler) http.Handler {
	name = http.CanonicalHeaderKey(name)
	sums := make([][sha256.Size]byte, 0, len(secrets))
	for _, s := range secrets {
		if s == "" {
			panic("playback: empty CDN secret")
		}
		sums = append(sums, sha256.Sum256([]byte(s)))
	}
	if len(sums) == 0 {
		panic("playback: no CDN secret")
	}
	exempt := make(map[string]bool, len(exemptPaths))
	for _, p := range exemptPaths {
		exempt[p] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			vals := r.Header[name]
			if !exempt[r.URL.Path] {
				ok := 0
				if len(vals) == 1 {
					// Hash first: the comparison then leaks nothing, not even the length.
					got := sha256.Sum256([]byte(vals[0]))
					for i := range sums {
						ok |= subtle.ConstantTimeCompare(got[:], sums[i][:])
					}
				}
				if ok != 1 {
					m.refused(ReasonCDNHeader)
					forbid(w, ReasonCDNHeader)
					return
				}
			}
			delete(r.Header, name)
			if !exempt[r.URL.Path] {
				r = r.WithContext(context.WithValue(r.Context(), viaCDNKey{}, true))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Package auth decides whether a publisher may publish a stream. It is the
// one entry point for every ingest protocol (RTMP, SRT, RTSP): the ingest
// session builds a PublishRequest and calls AuthorizePublish before it
// registers the stream, then Unpublished once the authorised publish ends.
//
// Mechanisms (each off unless configured):
//
//   - static keys: per stream name or name prefix, stored as "sha256:<hex>"
//     hashes and compared in constant time (StaticKeys, HashKey, GenerateKey);
//   - JWT publish tokens: HS256/384/512 with a shared secret, RS*/PS*/ES*
//     with PEM public keys or a JWKS document (JWTVerifier);
//   - an HTTP webhook: a signed JSON POST whose 2xx response allows the
//     publish, plus fire-and-forget unpublish notifications (Webhook);
//   - a failure rate limiter per client address (FailureLimiter).
//
// The Chain combines them: the credential mechanisms (static keys, JWT) are
// alternatives — a publisher presents a key or a token and ONE configured
// credential mechanism must accept it — and the webhook, when configured,
// must allow as well (it runs only once the credentials passed, so it never
// sees unauthenticated traffic unless it is the only mechanism). With no
// mechanism configured, every publish is allowed: auth is off by default.
//
// Refusals are *RefusalError values wrapping one of the Err* sentinels; their
// messages name the reason and never contain a key, a token, a parameter
// value or the webhook URL.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strings"
)

// PublishRequest describes one publish attempt.
type PublishRequest struct {
	// Protocol is the ingest protocol: "rtmp", "srt", "rtsp".
	Protocol string
	// Stream is the stream name being published ("live/key").
	Stream string
	// RemoteAddr is the publisher's address, "ip:port" or "ip".
	RemoteAddr string
	// RequestID identifies the session in logs (the ingest session id).
	RequestID string
	// Params are the publisher's parameters: the query of the RTMP publish
	// name or connect URL, the extra keys of an SRT streamid, the query of an
	// RTSP URL. A static key is read from "key", a JWT from "token" or "jwt".
	Params map[string]string
	// Key is a secret presented outside Params (an RTSP password, say). When
	// set it is the static key checked; otherwise Params["key"] is.
	Key string
}

// LogValue logs the request without its secrets: parameter names only.
func (r PublishRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("protocol", r.Protocol),
		slog.String("stream", r.Stream),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("request_id", r.RequestID),
		slog.String("params", strings.Join(r.paramNames(), ",")),
	)
}

// String describes the request without its secrets.
func (r PublishRequest) String() string {
	return fmt.Sprintf("publish{protocol=%s stream=%s remote=%s id=%s params=[%s] key=%t}",
		r.Protocol, r.Stream, r.RemoteAddr, r.RequestID, strings.Join(r.paramNames(), ","), r.Key != "")
}

// Format makes every fmt verb print String, so that %v, %+v and %#v never
// show Key or parameter values.
func (r PublishRequest) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

func (r PublishRequest) paramNames() []string {
	names := make([]string, 0, len(r.Params))
	for k := range r.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// staticKey is the key the static key mechanism checks.
func (r *PublishRequest) staticKey() string {
	if r.Key != "" {
		return r.Key
	}
	return r.Params["key"]
}

// token is the JWT presented, from Params["token"] or Params["jwt"].
func (r *PublishRequest) token() string {
	if t := r.Params["token"]; t != "" {
		return t
	}
	return r.Params["jwt"]
}

// Authenticator authorises publishes. Implementations are safe for
// concurrent use.
type Authenticator interface {
	// AuthorizePublish returns nil when the publish may go ahead, or an
	// error (a *RefusalError for a refusal) when it may not. It blocks for
	// at most the webhook timeout.
	AuthorizePublish(ctx context.Context, req PublishRequest) error
	// Unpublished reports that a publish AuthorizePublish allowed has
	// ended. It does not block.
	Unpublished(ctx context.Context, req PublishRequest)
}

// Reason is the reason label of headwater_auth_refusals_total. The set is
// fixed.
type Reason string

// Refusal reasons.
const (
	ReasonMissingCredentials Reason = "missing_credentials"
	ReasonBadKey             Reason = "bad_key"
	ReasonBadToken           Reason = "bad_token"
	ReasonExpired            Reason = "expired"
	ReasonNotYetValid        Reason = "not_yet_valid"
	ReasonWrongStream        Reason = "wrong_stream"
	ReasonWebhookDenied      Reason = "webhook_denied"
	ReasonWebhookUnavailable Reason = "webhook_unavailable"
	ReasonRateLimited        Reason = "rate_limited"
	ReasonInternal           Reason = "internal"
)

// Reasons lists every Reason in a stable order.
var Reasons = []Reason{
	ReasonMissingCredentials, ReasonBadKey, ReasonBadToken, ReasonExpired,
	ReasonNotYetValid, ReasonWrongStream, ReasonWebhookDenied,
	ReasonWebhookUnavailable, ReasonRateLimited, ReasonInternal,
}

// Sentinel errors: every refusal wraps exactly one (test with errors.Is).
var (
	ErrMissingCredentials = errors.New("no key or token presented")
	ErrBadKey             = errors.New("stream key not accepted")
	ErrBadToken           = errors.New("token not accepted")
	ErrExpired            = errors.New("token expired")
	ErrNotYetValid        = errors.New("token not valid yet")
	ErrWrongStream        = errors.New("token does not cover this stream")
	ErrWebhookDenied      = errors.New("publish denied by webhook")
	ErrWebhookUnavailable = errors.New("publish webhook unavailable")
	ErrRateLimited        = errors.New("too many failed attempts from this address")
	ErrInternal           = errors.New("internal authentication error")
)

var sentinelReason = map[error]Reason{
	ErrMissingCredentials: ReasonMissingCredentials,
	ErrBadKey:             ReasonBadKey,
	ErrBadToken:           ReasonBadToken,
	ErrExpired:            ReasonExpired,
	ErrNotYetValid:        ReasonNotYetValid,
	ErrWrongStream:        ReasonWrongStream,
	ErrWebhookDenied:      ReasonWebhookDenied,
	ErrWebhookUnavailable: ReasonWebhookUnavailable,
	ErrRateLimited:        ReasonRateLimited,
	ErrInternal:           ReasonInternal,
}

// RefusalError is a refused publish. Its message is safe to log and to send
// back to the publisher's software: it holds the reason and a detail written
// by this package, never a credential.
type RefusalError struct {
	Reason Reason
	// Detail is a short safe explanation ("signature invalid", "status 403").
	Detail string
	err    error
}

func (e *RefusalError) Error() string {
	if e.Detail == "" {
		return "publish refused: " + e.err.Error()
	}
	return "publish refused: " + e.err.Error() + " (" + e.Detail + ")"
}

// Unwrap returns the sentinel.
func (e *RefusalError) Unwrap() error { return e.err }

// refuse builds a RefusalError for a sentinel.
func refuse(sentinel error, detail string) *RefusalError {
	r, ok := sentinelReason[sentinel]
	if !ok {
		sentinel, r = ErrInternal, ReasonInternal
	}
	return &RefusalError{Reason: r, Detail: detail, err: sentinel}
}

// ReasonOf returns the refusal reason of err: its RefusalError's, or
// ReasonInternal for any other non-nil error. It returns "" for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ReasonInternal
}

// countsAsFailure reports whether a refusal is the publisher's fault and so
// feeds the rate limiter: bad or missing credentials and webhook denials do,
// an unavailable webhook or a rate-limited attempt do not.
func countsAsFailure(r Reason) bool {
	switch r {
	case ReasonWebhookUnavailable, ReasonRateLimited, ReasonInternal:
		return false
	}
	return true
}

// clientKey returns the rate-limiting key of a remote address: the IPv4
// address, or the /64 of an IPv6 address (one host usually owns a whole
// /64, so per-address limits would be trivial to dodge). Unparsable
// addresses are used as they are, truncated.
func clientKey(remote string) string {
	addr, err := netip.ParseAddrPort(remote)
	var ip netip.Addr
	if err == nil {
		ip = addr.Addr()
	} else if ip, err = netip.ParseAddr(remote); err != nil {
		if len(remote) > 64 {
			remote = remote[:64]
		}
		return remote
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Bounds of ParamsFromQuery.
const (
	maxParams          = 32
	maxParamValueBytes = MaxTokenLength
)

// ParamsFromQuery flattens query strings into PublishRequest.Params: the
// first value of each key, earlier arguments winning (pass the RTMP publish
// name's query before the connect URL's). At most 32 keys are kept and
// values longer than MaxTokenLength are dropped, so a publisher cannot make
// the server hold or forward arbitrary amounts of data.
func ParamsFromQuery(queries ...url.Values) map[string]string {
	var params map[string]string
	for _, q := range queries {
		for k, vs := range q {
			if len(vs) == 0 || len(vs[0]) > maxParamValueBytes || len(k) > 64 {
				continue
			}
			if _, dup := params[k]; dup {
				continue
			}
			if len(params) >= maxParams {
				return params
			}
			if params == nil {
				params = make(map[string]string)
			}
			params[k] = vs[0]
		}
	}
	return params
}

package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Webhook headers.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256, keyed with
	// the webhook secret, of the timestamp header's value, a ".", and the
	// body: HMAC(secret, timestamp + "." + body).
	HeaderSignature = "X-Headwater-Signature"
	// HeaderTimestamp carries the Unix time (seconds) the request was
	// signed; receivers refuse requests outside a small tolerance so that a
	// captured request cannot be replayed later.
	HeaderTimestamp = "X-Headwater-Timestamp"
	// HeaderRequestID repeats the body's request_id.
	HeaderRequestID = "X-Headwater-Request-Id"
)

// Webhook actions.
const (
	ActionPublish   = "publish"
	ActionUnpublish = "unpublish"
)

// Webhook defaults.
const (
	DefaultWebhookTimeout     = 2 * time.Second
	DefaultUnpublishInFlight  = 8
	DefaultSignatureTolerance = 5 * time.Minute
	maxWebhookResponse        = 4 << 10
)

// WebhookEvent is the JSON body POSTed to the webhook.
type WebhookEvent struct {
	// Action is "publish" (an authorisation request) or "unpublish" (a
	// notification; its response is ignored).
	Action     string `json:"action"`
	Protocol   string `json:"protocol"`
	Stream     string `json:"stream"`
	RemoteAddr string `json:"remote_addr"`
	RequestID  string `json:"request_id"`
	// Params are the publisher's parameters, as given: they may hold the
	// publisher's credentials, which the webhook is trusted with.
	Params map[string]string `json:"params"`
	// Key is PublishRequest.Key when it was set.
	Key string `json:"key,omitempty"`
	// Time is when the event was sent (RFC 3339, UTC).
	Time time.Time `json:"time"`
}

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL receives the POSTs (https recommended: the body holds credentials).
	URL string
	// Secret keys the HMAC-SHA256 signature. Empty sends unsigned requests
	// (only sensible on a loopback or private network).
	Secret []byte
	// Timeout bounds each request; 0 means DefaultWebhookTimeout.
	Timeout time.Duration
	// OnUnpublish sends an "unpublish" event when a publish ends.
	OnUnpublish bool
	// UnpublishInFlight bounds the concurrent unpublish notifications; one
	// that would exceed it is dropped (and logged). 0 means
	// DefaultUnpublishInFlight.
	UnpublishInFlight int
	// Client sends the requests; nil means a dedicated client. Redirects
	// are never followed (a 3xx refuses).
	Client *http.Client
	// Traceparent, when set, returns the W3C traceparent of a context; a
	// non-empty value is sent in the traceparent header. TraceparentFromContext
	// reads the one set by WithTraceparent.
	Traceparent func(context.Context) string
	// Logger logs failures (never the URL's query or the body). Nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// Webhook asks an HTTP endpoint to authorise publishes.
type Webhook struct {
	cfg     WebhookConfig
	client  *http.Client
	logURL  string // without userinfo or query, for logs
	log     *slog.Logger
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	dropped func() // counts a dropped notification
}

// NewWebhook validates cfg and returns a Webhook.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("webhook: url must be an absolute http:// or https:// URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWebhookTimeout
	}
	if cfg.UnpublishInFlight <= 0 {
		cfg.UnpublishInFlight = DefaultUnpublishInFlight
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: cfg.Timeout,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	safe := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return &Webhook{
		cfg:    cfg,
		client: &c,
		logURL: safe.String(),
		log:    log,
		sem:    make(chan struct{}, cfg.UnpublishInFlight),
	}, nil
}

// Authorize POSTs a "publish" event and waits for the answer: a 2xx status
// allows; any other status refuses with ErrWebhookDenied (5xx with
// ErrWebhookUnavailable); a transport error or the timeout refuses with
// ErrWebhookUnavailable.
func (w *Webhook) Authorize(ctx context.Context, req PublishRequest) error {
	status, err := w.post(ctx, ActionPublish, req)
	switch {
	case err != nil:
		w.log.LogAttrs(ctx, slog.LevelWarn, "auth: publish webhook unavailable",
			slog.String("url", w.logURL), slog.String("request_id", req.RequestID), slog.String("error", err.Error()))
		return refuse(ErrWebhookUnavailable, err.Error())
	case status >= 200 && status < 300:
		return nil
	case status >= 500:
		return refuse(ErrWebhookUnavailable, "status "+strconv.Itoa(status))
	}
	return refuse(ErrWebhookDenied, "status "+strconv.Itoa(status))
}

// Notify sends an "unpublish" event in the background, when OnUnpublish is
// set. It never blocks: beyond UnpublishInFlight concurrent notifications,
// or after Close, the event is dropped.
func (w *Webhook) Notify(ctx context.Context, req PublishRequest) {
	if !w.cfg.OnUnpublish {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	select {
	case w.sem <- struct{}{}:
	default:
		w.mu.Unlock()
		w.log.LogAttrs(ctx, slog.LevelWarn, "auth: unpublish notification dropped: too many in flight",
			slog.String("request_id", req.RequestID), slog.String("stream", req.Stream))
		if w.dropped != nil {
			w.dropped()
		}
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	ctx = context.WithoutCancel(ctx) // the session's context ends with it
	go func() {
		defer func() {
			<-w.sem
			w.wg.Done()
		}()
		status, err := w.post(ctx, ActionUnpublish, req)
		if err == nil && (status < 200 || status >= 300) {
			err = fmt.Errorf("status %d", status)
		}
		if err != nil {
			w.log.LogAttrs(ctx, slog.LevelWarn, "auth: unpublish notification failed",
				slog.String("url", w.logURL), slog.String("request_id", req.RequestID), slog.String("error", err.Error()))
		}
	}()
}

// Close stops new notifications and waits for those in flight (each is
// bounded by the timeout).
func (w *Webhook) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.wg.Wait()
}

// post sends one event and returns the response status. Errors are
// described without the URL (which may carry a secret in its query).
func (w *Webhook) post(ctx context.Context, action string, req PublishRequest) (int, error) {
	params := req.Params
	if params == nil {
		params = map[string]string{}
	}
	body, err := json.Marshal(WebhookEvent{
		Action: action, Protocol: req.Protocol, Stream: req.Stream, RemoteAddr: req.RemoteAddr,
		RequestID: req.RequestID, Params: params, Key: req.Key, Time: w.cfg.Now().UTC().Truncate(time.Millisecond),
	})
	if err != nil {
		return 0, errors.New("cannot encode the event")
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("cannot build the request")
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "headwater-webhook/1")
	if req.RequestID != "" {
		hr.Header.Set(HeaderRequestID, req.RequestID)
	}
	if w.cfg.Traceparent != nil {
		if tp := w.cfg.Traceparent(ctx); tp != "" {
			hr.Header.Set("Traceparent", tp)
		}
	}
	if len(w.cfg.Secret) > 0 {
		ts := strconv.FormatInt(w.cfg.Now().Unix(), 10)
		hr.Header.Set(HeaderTimestamp, ts)
		hr.Header.Set(HeaderSignature, SignWebhook(w.cfg.Secret, ts, body))
	}
	resp, err := w.client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return 0, errors.New("timed out")
		}
		return 0, errors.New("request failed: " + transportCause(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// transportCause describes a client error without the URL that
// *url.Error puts in its message.
func transportCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if errors.As(err, &op) {
		if op.Err != nil {
			return op.Op + ": " + op.Err.Error()
		}
		return op.Op
	}
	msg := err.Error()
	if i := strings.Index(msg, "://"); i >= 0 { // never echo a URL
		msg = "transport error"
	}
	return msg
}

// SignWebhook returns the HeaderSignature value of a body sent at timestamp
// ts (the HeaderTimestamp value).
func SignWebhook(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of VerifyWebhook.
var (
	ErrSignatureMissing = errors.New("webhook signature or timestamp missing")
	ErrSignatureInvalid = errors.New("webhook signature invalid")
	ErrSignatureStale   = errors.New("webhook timestamp outside the tolerance")
)

// VerifyWebhook is the receiver's check of a webhook request: the signature
// header must match the body and timestamp, and the timestamp must be within
// tolerance of now (DefaultSignatureTolerance when 0). Receivers should also
// refuse a (request_id, action) pair seen before within the tolerance.
func VerifyWebhook(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	ts, sig := h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return ErrSignatureMissing
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrSignatureInvalid
	}
	if d := now.Sub(time.Unix(secs, 0)); d > tolerance || d < -tolerance {
		return ErrSignatureStale
	}
	if !hmac.Equal([]byte(sig), []byte(SignWebhook(secret, ts, body))) {
		return ErrSignatureInvalid
	}
	return nil
}

type traceparentKey struct{}

// WithTraceparent returns a context carrying a W3C traceparent for the
// webhook requests made with it (see WebhookConfig.Traceparent).
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceparentKey{}, traceparent)
}

// TraceparentFromContext returns the traceparent set by WithTraceparent.
func TraceparentFromContext(ctx context.Context) string {
	s, _ := ctx.Value(traceparentKey{}).(string)
	return s
}

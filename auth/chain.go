package auth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config assembles a Chain. Every field is optional; nil mechanisms are off.
type Config struct {
	// StaticKeys and JWT are the credential mechanisms: when either is set,
	// a publisher must present a key (Params["key"] or Key) accepted by
	// StaticKeys or a token (Params["token"] or Params["jwt"]) accepted by
	// JWT.
	StaticKeys *StaticKeys
	JWT        *JWTVerifier
	// Webhook, when set, must also allow the publish; it is asked after the
	// credentials passed.
	Webhook *Webhook
	// Limiter refuses clients with too many recent failures.
	Limiter *FailureLimiter
	// Metrics counts refusals; nil counts nothing.
	Metrics *Metrics
	// Logger logs refusals (reason, stream, address; never credentials).
	Logger *slog.Logger
}

// Chain is the Authenticator combining the configured mechanisms (see the
// package documentation for the rules).
type Chain struct {
	cfg Config
	log *slog.Logger
}

var _ Authenticator = (*Chain)(nil)

// New returns the Chain of cfg's mechanisms.
func New(cfg Config) *Chain {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Webhook != nil && cfg.Metrics != nil {
		cfg.Webhook.dropped = cfg.Metrics.droppedNotification
	}
	return &Chain{cfg: cfg, log: log}
}

// Enabled reports whether any mechanism is configured; when none is, every
// publish is allowed.
func (c *Chain) Enabled() bool {
	return c.cfg.StaticKeys != nil || c.cfg.JWT != nil || c.cfg.Webhook != nil
}

// AuthorizePublish implements Authenticator.
func (c *Chain) AuthorizePublish(ctx context.Context, req PublishRequest) error {
	if !c.Enabled() {
		return nil
	}
	if c.cfg.Limiter != nil && !c.cfg.Limiter.Allow(req.RemoteAddr) {
		return c.refused(ctx, req, refuse(ErrRateLimited, ""))
	}
	if err := c.credentials(req); err != nil {
		return c.refused(ctx, req, err)
	}
	if c.cfg.Webhook != nil {
		if err := c.cfg.Webhook.Authorize(ctx, req); err != nil {
			return c.refused(ctx, req, err)
		}
	}
	return nil
}

// credentials runs the credential mechanisms: one of them must accept what
// the publisher presented. When both a token and a key were presented and
// both fail, the token's refusal is returned.
func (c *Chain) credentials(req PublishRequest) error {
	sk, jv := c.cfg.StaticKeys, c.cfg.JWT
	if sk == nil && jv == nil {
		return nil
	}
	token, key := req.token(), req.staticKey()
	var tokenErr, keyErr error
	if jv != nil && token != "" {
		if _, tokenErr = jv.Verify(token, req.Stream); tokenErr == nil {
			return nil
		}
	}
	if sk != nil && key != "" {
		if keyErr = sk.Check(req.Stream, key); keyErr == nil {
			return nil
		}
	}
	switch {
	case tokenErr != nil:
		return tokenErr
	case keyErr != nil:
		return keyErr
	case token != "" && jv == nil:
		return refuse(ErrBadToken, "tokens are not enabled")
	case key != "" && sk == nil:
		return refuse(ErrBadKey, "static keys are not enabled")
	}
	return refuse(ErrMissingCredentials, "")
}

// refused records a refusal (rate limiter, metrics, log) and returns it.
func (c *Chain) refused(ctx context.Context, req PublishRequest, err error) error {
	reason := ReasonOf(err)
	if c.cfg.Limiter != nil && countsAsFailure(reason) {
		c.cfg.Limiter.Failure(req.RemoteAddr)
	}
	c.cfg.Metrics.Refused(req.Protocol, reason)
	c.log.LogAttrs(ctx, slog.LevelInfo, "auth: publish refused",
		slog.String("reason", string(reason)), slog.String("protocol", req.Protocol),
		slog.String("stream", req.Stream), slog.String("remote_addr", req.RemoteAddr),
		slog.String("request_id", req.RequestID), slog.String("error", err.Error()))
	return err
}

// Unpublished implements Authenticator: it sends the webhook's unpublish
// notification when configured.
func (c *Chain) Unpublished(ctx context.Context, req PublishRequest) {
	if c.cfg.Webhook != nil {
		c.cfg.Webhook.Notify(ctx, req)
	}
}

// Close waits for the unpublish notifications in flight.
func (c *Chain) Close() {
	if c.cfg.Webhook != nil {
		c.cfg.Webhook.Close()
	}
}

// Settings mirror the proposed "auth.publish" configuration section; Build
// turns them into a Chain. Secrets are read from files so that they stay out
// of the configuration file.
type Settings struct {
	StaticKeys []KeyRule         `yaml:"static_keys"`
	JWT        JWTSettings       `yaml:"jwt"`
	Webhook    WebhookSettings   `yaml:"webhook"`
	RateLimit  RateLimitSettings `yaml:"rate_limit"`
}

// JWTSettings configure publish JWTs; with no file set JWT is off.
type JWTSettings struct {
	HMACSecretFile string        `yaml:"hmac_secret_file"`
	PublicKeyFile  string        `yaml:"public_key_file"`
	JWKSFile       string        `yaml:"jwks_file"`
	Issuer         string        `yaml:"issuer"`
	Audience       string        `yaml:"audience"`
	Leeway         time.Duration `yaml:"leeway"`
}

// WebhookSettings configure the publish webhook; with no URL it is off.
type WebhookSettings struct {
	URL               string        `yaml:"url"`
	SecretFile        string        `yaml:"secret_file"`
	Timeout           time.Duration `yaml:"timeout"`
	OnUnpublish       bool          `yaml:"on_unpublish"`
	UnpublishInFlight int           `yaml:"unpublish_in_flight"`
}

// RateLimitSettings configure the failure limiter; Failures 0 turns it off.
type RateLimitSettings struct {
	Failures     int           `yaml:"failures"`
	Window       time.Duration `yaml:"window"`
	MaxAddresses int           `yaml:"max_addresses"`
}

// Build reads the secret files named by s and returns the Chain. With an
// empty Settings the Chain allows everything (Enabled is false). reg may be
// nil; log may be nil.
func Build(s Settings, reg prometheus.Registerer, log *slog.Logger, protocols ...string) (*Chain, error) {
	cfg := Config{Logger: log, Metrics: NewMetrics(reg, protocols...)}
	if len(s.StaticKeys) > 0 {
		sk, err := NewStaticKeys(s.StaticKeys)
		if err != nil {
			return nil, err
		}
		cfg.StaticKeys = sk
	}
	if j := s.JWT; j.HMACSecretFile != "" || j.PublicKeyFile != "" || j.JWKSFile != "" {
		jc := JWTConfig{Issuer: j.Issuer, Audience: j.Audience, Leeway: j.Leeway}
		var err error
		if j.HMACSecretFile != "" {
			if jc.HMACSecret, err = ReadSecret(j.HMACSecretFile); err != nil {
				return nil, fmt.Errorf("jwt: %w", err)
			}
		}
		if j.PublicKeyFile != "" {
			f, err := ReadSecretFile(j.PublicKeyFile)
			if err != nil {
				return nil, fmt.Errorf("jwt: %w", err)
			}
			jc.PublicKeysPEM = f.Content
		}
		if j.JWKSFile != "" {
			f, err := ReadSecretFile(j.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("jwt: %w", err)
			}
			jc.JWKS = f.Content
		}
		if cfg.JWT, err = NewJWTVerifier(jc); err != nil {
			return nil, err
		}
	}
	if w := s.Webhook; w.URL != "" {
		wc := WebhookConfig{URL: w.URL, Timeout: w.Timeout, OnUnpublish: w.OnUnpublish,
			UnpublishInFlight: w.UnpublishInFlight, Logger: log, Traceparent: TraceparentFromContext}
		if w.SecretFile != "" {
			var err error
			if wc.Secret, err = ReadSecret(w.SecretFile); err != nil {
				return nil, fmt.Errorf("webhook: %w", err)
			}
		}
		wh, err := NewWebhook(wc)
		if err != nil {
			return nil, err
		}
		cfg.Webhook = wh
	}
	if r := s.RateLimit; r.Failures > 0 {
		cfg.Limiter = NewFailureLimiter(r.Failures, r.Window, r.MaxAddresses)
	}
	return New(cfg), nil
}

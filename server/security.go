package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/telemetry"
)

// minSharedSecret is the shortest CDN secret and admin token accepted.
const minSharedSecret = 16

// security holds the mechanisms of docs/security.md built from the
// configuration: the publish authenticator handed to every ingest protocol,
// the origin's playback token and CDN header checks, and the admin token.
// Secrets are read from their files once, here, and never logged.
type security struct {
	chain    *auth.Chain       // always built; enabled only when a mechanism is configured
	publish  *publishAuth      // what ingest calls; holds the current chain
	keyring  *playback.Keyring // nil when playback tokens are off
	reserved bool              // refuse publishing t/… and keys/…
	// credentialsRequired: static keys or JWT are on, so a publisher
	// without a key or token is refused (RTSP then challenges for one).
	credentialsRequired bool
	// tokensRequired: the origin refuses requests without a playback
	// token, and so are SRT and RTSP readers (readAuthorizer).
	tokensRequired bool
	origin         func(http.Handler) http.Handler
	admin          []byte // sha256 of the admin token; nil when the admin listener is open
}

// newSecurity builds the mechanisms configured in cfg.
func newSecurity(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger, tp trace.TracerProvider) (*security, error) {
	s := &security{}
	settings, err := cfg.Auth.PublishSettings()
	if err != nil {
		return nil, fmt.Errorf("auth.publish: %w", err)
	}
	if s.chain, err = auth.Build(settings, reg, log, ingestProtocols(cfg)...); err != nil {
		return nil, fmt.Errorf("auth.publish: %w", err)
	}
	s.publish = &publishAuth{tracer: tp.Tracer(telemetry.TracerName)}
	s.publish.chain.Store(s.chain)
	if s.chain.Enabled() {
		p := cfg.Auth.Publish
		s.credentialsRequired = len(settings.StaticKeys) > 0 || p.JWT.Enabled()
		log.Info("security: publish authentication on", "static_key_rules", len(settings.StaticKeys),
			"jwt", p.JWT.Enabled(), "webhook", p.Webhook.URL != "", "rate_limit_failures", p.RateLimit.Failures)
	}
	warnPlainWebhook(cfg, log)

	pm := playback.NewMetrics(reg)
	var wraps []func(http.Handler) http.Handler // outermost first
	tokens, cdn := cfg.Playback.Tokens, cfg.Playback.CDN
	if cdn.Enabled() {
		secrets, err := readSecretLines(cdn.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("playback.cdn.secret_file: %w", err)
		}
		// First, so that the client address header is trusted only on
		// requests the CDN vouched for.
		wraps = append(wraps, playback.RequireHeaderSecrets(cdn.Header, secrets, pm, "/healthz"))
		log.Info("security: origin serves only requests with the CDN secret", "header", http.CanonicalHeaderKey(cdn.Header), "secrets", len(secrets))
	}
	if tokens.Enabled() {
		keys, active, err := tokens.KeySettings()
		if err != nil {
			return nil, fmt.Errorf("playback.tokens.keys: %w", err)
		}
		if s.keyring, err = playback.LoadKeyring(keys, active); err != nil {
			return nil, fmt.Errorf("playback.tokens.keys: %w", err)
		}
		s.tokensRequired = tokens.Required
		pc := playback.Config{Keyring: s.keyring, Required: tokens.Required, Metrics: pm,
			// The origin's clock (DASH UTCTiming) is public.
			Exempt: func(p string) bool { return p == "/healthz" || p == "/time" }}
		if tokens.ClientIPHeader != "" {
			pc.ClientIP = playback.HeaderIP(tokens.ClientIPHeader)
		}
		wraps = append(wraps, playback.Middleware(pc))
		msg := "security: playback tokens: required; playlists, media and SRT/RTSP reads need a valid token"
		if !tokens.Required {
			msg = "security: playback tokens: accepted but not required; playlists and media are public (a token, when given, must be valid)"
		}
		log.Info(msg, "required", tokens.Required, "keys", strings.Join(s.keyring.KeyIDs(), ","),
			"active_key", active, "client_ip_header", tokens.ClientIPHeader)
	}
	s.reserved = tokens.Enabled() || cdn.Enabled()
	if len(wraps) > 0 {
		wraps = append([]func(http.Handler) http.Handler{refusalCORS(cfg.Origin.CORS.AllowedOrigins)}, wraps...)
		s.origin = func(h http.Handler) http.Handler {
			for i := len(wraps) - 1; i >= 0; i-- {
				h = wraps[i](h)
			}
			return h
		}
	}

	if f := cfg.Admin.BearerTokenFile; f != "" {
		token, err := auth.ReadSecret(f)
		if err != nil {
			return nil, fmt.Errorf("admin.bearer_token_file: %w", err)
		}
		if len(token) < minSharedSecret {
			return nil, fmt.Errorf("admin.bearer_token_file: the token has %d bytes, at least %d are needed", len(token), minSharedSecret)
		}
		sum := sha256.Sum256(token)
		s.admin = sum[:]
		log.Info("security: admin listener requires the bearer token (except /healthz and /readyz)")
	}
	return s, nil
}

// warnPlainWebhook warns when the publish webhook is a plain http:// URL
// to a host other than loopback: every publish's key or token, and its
// parameters, then cross the network in clear.
func warnPlainWebhook(cfg *config.Config, log *slog.Logger) {
	raw := cfg.Auth.Publish.Webhook.URL
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Scheme != "http" || loopbackHost(u.Hostname()) {
		return
	}
	log.Warn("security: the publish webhook is plain http:// to a non-loopback host: publishers' keys and tokens cross the network in clear; use https://",
		"key", "auth.publish.webhook.url", "url", raw)
}

// loopbackHost reports whether host (a URL's, without port) is "localhost"
// or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ingestProtocols are the protocols whose refusal series are created at zero.
func ingestProtocols(cfg *config.Config) []string {
	var out []string
	if cfg.RTMP.Address != "" {
		out = append(out, "rtmp")
	}
	if cfg.SRT.Address != "" {
		out = append(out, "srt")
	}
	if cfg.RTSP.Address != "" {
		out = append(out, "rtsp")
	}
	return out
}

// authenticator is what ingest protocols call at publish. It is always
// the same value, so that SIGHUP can swap the chain behind it; a chain with
// no mechanism configured allows everything.
func (s *security) authenticator() auth.Authenticator { return s.publish }

// publishAuth is the authenticator handed to ingest: the current chain
// (swapped by a reload), a span per decision, and the span's traceparent
// passed on to the webhook.
type publishAuth struct {
	chain  atomic.Pointer[auth.Chain]
	tracer trace.Tracer
}

// AuthorizePublish implements auth.Authenticator.
func (p *publishAuth) AuthorizePublish(ctx context.Context, req auth.PublishRequest) error {
	ctx, span := p.tracer.Start(ctx, "authorize publish", trace.WithAttributes(
		attribute.String("headwater.stream", req.Stream), attribute.String("headwater.protocol", req.Protocol)))
	defer span.End()
	carrier := propagation.MapCarrier{}
	telemetry.Propagator().Inject(ctx, carrier)
	if tp := carrier.Get("traceparent"); tp != "" {
		ctx = auth.WithTraceparent(ctx, tp)
	}
	err := p.chain.Load().AuthorizePublish(ctx, req)
	if err != nil {
		span.SetStatus(codes.Error, string(auth.ReasonOf(err)))
	}
	return err
}

// Unpublished implements auth.Authenticator.
func (p *publishAuth) Unpublished(ctx context.Context, req auth.PublishRequest) {
	p.chain.Load().Unpublished(ctx, req)
}

// buildPublishAuth builds the chain of a new configuration (reading its
// secret files) without using it: Reload swaps it in with swapPublishAuth
// once every other component of the reload is built too, or closes it.
func buildPublishAuth(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*auth.Chain, error) {
	settings, err := cfg.Auth.PublishSettings()
	if err != nil {
		return nil, fmt.Errorf("auth.publish: %w", err)
	}
	chain, err := auth.Build(settings, reg, log, ingestProtocols(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("auth.publish: %w", err)
	}
	return chain, nil
}

// swapPublishAuth makes chain the one publishes are checked with from now
// on; publishes already authorised are not affected.
func (s *security) swapPublishAuth(chain *auth.Chain) {
	old := s.publish.chain.Swap(chain)
	s.chain = chain
	old.Close()
}

// readAuthorizer is the check of SRT (m=request) and RTSP (DESCRIBE,
// SETUP) readers; nil, letting every reader in, when playback tokens are
// off. It applies the origin's rules: without a token a reader passes
// unless tokens are required, and a token, when given, must be valid. The
// token must cover the stream's directory, "/<stream>/", which the
// stream's HLS and DASH URLs share, so that one token signed for the
// stream (headwater token issue) plays it over every protocol. IP-bound
// tokens are checked against the reader's own address:
// client_ip_header does not apply, SRT and RTSP do not come through the CDN.
func (s *security) readAuthorizer() ingest.ReadAuthorizer {
	if s.keyring == nil {
		return nil
	}
	kr, required := s.keyring, s.tokensRequired
	return func(stream, token string, ip netip.Addr) error {
		if token == "" {
			if !required {
				return nil
			}
			return &ingest.ReadRefusal{Reason: string(playback.ReasonMissingToken), Err: errNoPlaybackToken}
		}
		if _, err := kr.VerifyClaims(token, playback.StreamPath(stream), ip, time.Now()); err != nil {
			return &ingest.ReadRefusal{Reason: string(playback.ReasonOf(err)), Err: err}
		}
		return nil
	}
}

var errNoPlaybackToken = errors.New("no playback token")

// publisher wraps the registry for ingest protocols: with playback
// protection on, names starting with "t/" or "keys/" are refused, as their
// origin paths would be taken for tokens or HLS key files.
func (s *security) publisher(r *media.Registry) guardedRegistry {
	return guardedRegistry{Registry: r, reserved: s.reserved}
}

// wrapOrigin adds the CDN header check and the playback token check in
// front of the origin handler (in that order), when configured.
func (s *security) wrapOrigin(h http.Handler) http.Handler {
	if s.origin == nil {
		return h
	}
	return s.origin(h)
}

// wrapAdmin requires the admin token on every path but /healthz and
// /readyz, when configured.
func (s *security) wrapAdmin(h http.Handler) http.Handler {
	if s.admin == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		if tok, ok := adminCredential(r); ok {
			sum := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(sum[:], s.admin) == 1 {
				h.ServeHTTP(w, r)
				return
			}
		}
		hd := w.Header()
		hd["Www-Authenticate"] = []string{`Bearer realm="headwater admin"`, `Basic realm="headwater admin", charset="UTF-8"`}
		hd.Set("Cache-Control", "no-store")
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "unauthorized\n")
	})
}

// adminCredential returns the token of "Authorization: Bearer <token>", or
// the password of HTTP Basic (what a browser sends for the preview page).
func adminCredential(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	if strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(rest), true
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, true
	}
	return "", false
}

// close waits for the webhook notifications in flight.
func (s *security) close() { s.publish.chain.Load().Close() }

// refusalCORS lets a browser player read the origin's refusals (403 from the
// token or CDN checks, which run before the origin adds its CORS headers),
// and their X-Headwater-Token reason ("expired": fetch a new URL). Headers
// the origin sets on the responses it serves replace these.
func refusalCORS(allowed []string) func(http.Handler) http.Handler {
	any := false
	set := map[string]bool{}
	for _, o := range allowed {
		any = any || o == "*"
		set[o] = true
	}
	return func(next http.Handler) http.Handler {
		if len(allowed) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			switch o := r.Header.Get("Origin"); {
			case any:
				hd["Access-Control-Allow-Origin"] = []string{"*"}
				hd["Access-Control-Expose-Headers"] = []string{"X-Headwater-Token"}
			case set[o]:
				hd["Access-Control-Allow-Origin"] = []string{o}
				hd["Access-Control-Expose-Headers"] = []string{"X-Headwater-Token"}
				hd["Vary"] = []string{"Origin"}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// readSecretLines reads the non-empty lines of a secret file
// (auth.ReadSecretFile), each one secret of at least minSharedSecret bytes.
func readSecretLines(file string) ([]string, error) {
	f, err := auth.ReadSecretFile(file)
	if err != nil {
		return nil, err
	}
	lines, err := f.Lines()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for i, line := range lines {
		if len(line) < minSharedSecret {
			return nil, fmt.Errorf("secret %d of %s: a secret needs at least %d bytes", i+1, file, minSharedSecret)
		}
		out = append(out, string(line))
	}
	return out, nil
}

// guardedRegistry is the registry as ingest protocols see it: Publish (and
// the early CheckName of RTMP) refuse reserved names when playback
// protection is on.
type guardedRegistry struct {
	*media.Registry
	reserved bool
	cl       *clustering // claims the placement in a cluster; nil on one node
}

// CheckName refuses names whose first element is reserved by the origin,
// and names colliding with a live stream's (media.Registry.CheckName).
func (g guardedRegistry) CheckName(name string) error {
	if g.reserved && config.ReservedStreamName(name) {
		return fmt.Errorf("%w: %q: the first path elements t and keys are reserved for playback tokens and HLS keys", media.ErrInvalidName, name)
	}
	// Names that collide with a live stream's URLs (media.ErrNameCollision),
	// here or on another node of the cluster.
	if err := g.Registry.CheckName(name); err != nil {
		return err
	}
	return g.cl.checkName(name)
}

// Publish implements the ingest protocols' Publisher.
func (g guardedRegistry) Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	if err := g.CheckName(name); err != nil {
		return nil, err
	}
	if g.cl != nil {
		return g.cl.publish(g.Registry, name, info, tracks)
	}
	return g.Registry.Publish(name, info, tracks)
}

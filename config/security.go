package config

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
)

// The security sections (docs/security.md). Every mechanism is off by
// default. Secrets never appear in the configuration itself: keys ending in
// _file name a file whose content (surrounding whitespace trimmed) is the
// secret, so the configuration, its environment variables and the values
// logged on reload (see [Diff]) hold file paths and key hashes only.

// AuthConfig configures publish authentication.
type AuthConfig struct {
	// Publish configures the checks made before a stream is published.
	Publish PublishAuthConfig `yaml:"publish" doc:"Checks made before a publish is accepted (any ingest protocol)."`
}

// PublishAuthConfig configures publish authentication: static keys and JWT
// are alternative credentials, the webhook must allow as well.
type PublishAuthConfig struct {
	// StaticKeys are "<stream>=sha256:<hex>" entries; a stream ending in "*"
	// is a prefix ("live/team-*"). Repeat an entry to accept several keys.
	// It defaults to [] (no static keys).
	StaticKeys []string `yaml:"static_keys" doc:"Static stream keys: \"live/studio1=sha256:<hex>\" or \"live/team-*=sha256:<hex>\" (prefix); hashes from 'headwater auth hash-key'; repeat an entry for several keys."`
	// JWT configures publish tokens.
	JWT JWTAuthConfig `yaml:"jwt" doc:"JWT publish tokens (off unless a key file is set)."`
	// Webhook configures the HTTP authorisation hook.
	Webhook WebhookAuthConfig `yaml:"webhook" doc:"HTTP webhook that must allow each publish (off unless url is set)."`
	// RateLimit throttles addresses that keep failing.
	RateLimit RateLimitAuthConfig `yaml:"rate_limit" doc:"Refuse addresses that fail authentication too often (applies when a mechanism is on)."`
}

// JWTAuthConfig configures JWT publish tokens; with no file set JWT is off.
type JWTAuthConfig struct {
	// HMACSecretFile holds the HS256/384/512 secret (at least 32 bytes).
	HMACSecretFile string `yaml:"hmac_secret_file" doc:"File holding the HS256/HS384/HS512 secret (>= 32 bytes)."`
	// PublicKeyFile holds PEM public keys (RSA >= 2048 bits, EC P-256/384/521).
	PublicKeyFile string `yaml:"public_key_file" doc:"PEM file of RSA (>= 2048 bits) or EC public keys (RS*, PS*, ES*)."`
	// JWKSFile holds a JSON Web Key Set; a token's kid selects the key.
	JWKSFile string `yaml:"jwks_file" doc:"JSON Web Key Set file (RSA and EC keys, chosen by the token's kid)."`
	// Issuer, when set, must equal the token's iss.
	Issuer string `yaml:"issuer" doc:"When set, the token's iss must equal it."`
	// Audience, when set, must be one of the token's aud.
	Audience string `yaml:"audience" doc:"When set, the token's aud must contain it."`
	// Leeway is the clock skew allowed on exp and nbf. It defaults to 10s.
	Leeway Duration `yaml:"leeway" doc:"Clock skew allowed on exp and nbf."`
}

// Enabled reports whether a JWT key source is configured.
func (j JWTAuthConfig) Enabled() bool {
	return j.HMACSecretFile != "" || j.PublicKeyFile != "" || j.JWKSFile != ""
}

// WebhookAuthConfig configures the publish webhook; with no URL it is off.
type WebhookAuthConfig struct {
	// URL receives a signed JSON POST per publish; 2xx allows it.
	URL string `yaml:"url" doc:"http(s) URL POSTed before each publish; a 2xx answer allows it. No credentials in the URL (it is logged)."`
	// SecretFile holds the HMAC-SHA256 signing secret.
	SecretFile string `yaml:"secret_file" doc:"File holding the secret signing the requests (X-Headwater-Signature)."`
	// Timeout bounds each request. It defaults to 2s.
	Timeout Duration `yaml:"timeout" doc:"Time allowed for the webhook's answer; no answer refuses the publish."`
	// OnUnpublish also POSTs an "unpublish" event when a publish ends.
	OnUnpublish bool `yaml:"on_unpublish" doc:"Also POST an \"unpublish\" event when a publish ends."`
	// UnpublishInFlight bounds the unpublish notifications in flight.
	// It defaults to 8.
	UnpublishInFlight int `yaml:"unpublish_in_flight" doc:"Unpublish notifications in flight at most; more are dropped (>= 1)."`
}

// RateLimitAuthConfig configures the failure limiter.
type RateLimitAuthConfig struct {
	// Failures is the failed attempts allowed per address per Window; 0
	// turns the limiter off. It defaults to 10.
	Failures int `yaml:"failures" doc:"Failed attempts allowed per address (IPv6: per /64) per window; 0 = off."`
	// Window is the time in which Failures attempts come back. It
	// defaults to 1m.
	Window Duration `yaml:"window" doc:"Time over which the failure allowance comes back."`
	// MaxAddresses bounds the addresses remembered. It defaults to 10000.
	MaxAddresses int `yaml:"max_addresses" doc:"Addresses remembered at most (least recently seen forgotten first)."`
}

// PlaybackConfig guards the origin.
type PlaybackConfig struct {
	// Tokens configures playback tokens (/t/<token>/...).
	Tokens PlaybackTokensConfig `yaml:"tokens" doc:"Signed playback tokens in the path, /t/<token>/live/key/index.m3u8."`
	// CDN configures the shared-secret header of a CDN in front of the origin.
	CDN PlaybackCDNConfig `yaml:"cdn" doc:"Serve only a CDN that sends a shared secret header (off unless secret_file is set)."`
}

// PlaybackTokensConfig configures playback tokens.
type PlaybackTokensConfig struct {
	// Required refuses origin requests without a token (/healthz
	// excepted), and SRT and RTSP readers without one.
	Required bool `yaml:"required" doc:"Refuse origin requests (/healthz excepted) and SRT and RTSP readers without a valid token; needs keys."`
	// Keys are "<key id>=<secret file>" entries; tokens are verified with
	// any of them. It defaults to [] (tokens off).
	Keys []string `yaml:"keys" doc:"Token keys, \"<id>=<secret file>\" (id: 1-16 of [A-Za-z0-9_-]; secret >= 32 bytes, 'headwater token secret')."`
	// ActiveKey is the id of the key signing new tokens; it may be left
	// empty when there is one key.
	ActiveKey string `yaml:"active_key" doc:"Id of the key signing new tokens; \"\" when there is only one key."`
	// ClientIPHeader is the header the viewer's address is read from for
	// IP-bound tokens (behind a CDN); "" uses the connection's address.
	ClientIPHeader string `yaml:"client_ip_header" doc:"Header carrying the viewer's address for IP-bound tokens (CF-Connecting-IP, X-Forwarded-For...); needs cdn.secret_file."`
}

// Enabled reports whether token keys are configured.
func (p PlaybackTokensConfig) Enabled() bool { return len(p.Keys) > 0 }

// PlaybackCDNConfig configures the CDN shared secret.
type PlaybackCDNConfig struct {
	// Header carries the secret. It defaults to X-Headwater-CDN-Secret.
	Header string `yaml:"header" doc:"Request header carrying the CDN's secret."`
	// SecretFile holds the accepted secrets, one per line.
	SecretFile string `yaml:"secret_file" doc:"File of accepted secrets, one per line (two during a rotation)."`
}

// Enabled reports whether the CDN secret check is on.
func (p PlaybackCDNConfig) Enabled() bool { return p.SecretFile != "" }

func defaultAuth() AuthConfig {
	return AuthConfig{Publish: PublishAuthConfig{
		StaticKeys: []string{},
		JWT:        JWTAuthConfig{Leeway: Duration(auth.DefaultJWTLeeway)},
		Webhook: WebhookAuthConfig{
			Timeout:           Duration(auth.DefaultWebhookTimeout),
			UnpublishInFlight: auth.DefaultUnpublishInFlight,
		},
		RateLimit: RateLimitAuthConfig{
			Failures:     auth.DefaultRateLimitFailures,
			Window:       Duration(auth.DefaultRateLimitWindow),
			MaxAddresses: auth.DefaultMaxAddresses,
		},
	}}
}

func defaultPlayback() PlaybackConfig {
	return PlaybackConfig{
		Tokens: PlaybackTokensConfig{Keys: []string{}},
		CDN:    PlaybackCDNConfig{Header: playback.DefaultCDNHeader},
	}
}

// PublishSettings converts the auth.publish section into the settings of
// [auth.Build]. It fails only when the section does not validate.
func (a AuthConfig) PublishSettings() (auth.Settings, error) {
	p := a.Publish
	rules, err := ParseStaticKeys(p.StaticKeys)
	if err != nil {
		return auth.Settings{}, err
	}
	leeway := p.JWT.Leeway.Duration()
	if leeway == 0 {
		leeway = -1 // auth: negative is none, 0 its default
	}
	return auth.Settings{
		StaticKeys: rules,
		JWT: auth.JWTSettings{
			HMACSecretFile: p.JWT.HMACSecretFile, PublicKeyFile: p.JWT.PublicKeyFile, JWKSFile: p.JWT.JWKSFile,
			Issuer: p.JWT.Issuer, Audience: p.JWT.Audience, Leeway: leeway,
		},
		Webhook: auth.WebhookSettings{
			URL: p.Webhook.URL, SecretFile: p.Webhook.SecretFile, Timeout: p.Webhook.Timeout.Duration(),
			OnUnpublish: p.Webhook.OnUnpublish, UnpublishInFlight: p.Webhook.UnpublishInFlight,
		},
		RateLimit: auth.RateLimitSettings{
			Failures: p.RateLimit.Failures, Window: p.RateLimit.Window.Duration(), MaxAddresses: p.RateLimit.MaxAddresses,
		},
	}, nil
}

// Enabled reports whether any publish authentication mechanism is on.
func (a AuthConfig) Enabled() bool {
	p := a.Publish
	return len(p.StaticKeys) > 0 || p.JWT.Enabled() || p.Webhook.URL != ""
}

// ParseStaticKeys turns auth.publish.static_keys entries into key rules:
// "<stream>=sha256:<hex>" covers one stream, "<prefix>*=sha256:<hex>" every
// stream starting with prefix. Entries naming the same stream (or prefix)
// form one rule accepting each of their keys.
func ParseStaticKeys(entries []string) ([]auth.KeyRule, error) {
	var rules []auth.KeyRule
	index := map[string]int{} // "=stream" or "*prefix" -> rule
	for i, e := range entries {
		name, hash, ok := strings.Cut(strings.TrimSpace(e), "=")
		name, hash = strings.TrimSpace(name), strings.TrimSpace(hash)
		if !ok || name == "" || hash == "" {
			return nil, fmt.Errorf("item %d: must be \"<stream>=sha256:<hex>\" or \"<prefix>*=sha256:<hex>\"", i+1)
		}
		if _, err := auth.ParseKeyHash(hash); err != nil {
			return nil, fmt.Errorf("item %d (%s): %v", i+1, name, err)
		}
		rule := auth.KeyRule{Stream: name}
		id := "=" + name
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			if prefix == "" || strings.Contains(prefix, "*") {
				return nil, fmt.Errorf("item %d: prefix %q: write a non-empty prefix before a single final '*', e.g. \"live/*\"", i+1, name)
			}
			rule, id = auth.KeyRule{Prefix: prefix}, "*"+prefix
		} else if strings.Contains(name, "*") {
			return nil, fmt.Errorf("item %d: stream %q: '*' is only allowed at the end (a prefix)", i+1, name)
		}
		if j, seen := index[id]; seen {
			rules[j].Hashes = append(rules[j].Hashes, hash)
			continue
		}
		rule.Hashes = []string{hash}
		index[id] = len(rules)
		rules = append(rules, rule)
	}
	return rules, nil
}

// KeySettings converts playback.tokens.keys into key settings for
// [playback.LoadKeyring], and returns the active key id (the only key's
// when active_key is empty).
func (p PlaybackTokensConfig) KeySettings() ([]playback.KeySettings, string, error) {
	var out []playback.KeySettings
	seen := map[string]bool{}
	for i, e := range p.Keys {
		id, file, ok := strings.Cut(strings.TrimSpace(e), "=")
		id, file = strings.TrimSpace(id), strings.TrimSpace(file)
		if !ok || id == "" || file == "" {
			return nil, "", fmt.Errorf("item %d: must be \"<key id>=<secret file>\"", i+1)
		}
		if !playback.ValidKeyID(id) {
			return nil, "", fmt.Errorf("item %d: key id %q: 1 to %d characters from [A-Za-z0-9_-]", i+1, id, playback.MaxKeyIDLength)
		}
		if seen[id] {
			return nil, "", fmt.Errorf("item %d: key id %q listed twice", i+1, id)
		}
		seen[id] = true
		out = append(out, playback.KeySettings{ID: id, SecretFile: file})
	}
	active := p.ActiveKey
	switch {
	case len(out) == 0 && active != "":
		return nil, "", fmt.Errorf("active_key %q is set but there are no keys", active)
	case len(out) == 0:
		return nil, "", nil
	case active == "" && len(out) == 1:
		active = out[0].ID
	case active == "":
		return nil, "", fmt.Errorf("active_key must name the key signing new tokens when there are several keys")
	case !seen[active]:
		return nil, "", fmt.Errorf("active_key %q is not one of the keys", active)
	}
	return out, active, nil
}

// SecretFile is a file named by the configuration whose content is a
// secret (Public false) or key material a reload must notice a change of
// (Public true: JWT public keys, JWKS, TLS certificates).
type SecretFile struct {
	Key    string // the configuration key naming it
	Path   string
	Public bool // public key material: readable by others on purpose
}

// SecretFiles lists the files c names that hold secrets or key material,
// section by section; "" paths are left out. The server checks their
// permissions at start and compares their contents on reload.
func (c *Config) SecretFiles() []SecretFile {
	var out []SecretFile
	add := func(key, path string, public bool) {
		if path != "" {
			out = append(out, SecretFile{Key: key, Path: path, Public: public})
		}
	}
	add("rtmp.tls_cert", c.RTMP.TLSCert, true)
	add("rtmp.tls_key", c.RTMP.TLSKey, false)
	add("srt.passphrase_file", c.SRT.PassphraseFile, false)
	for _, e := range c.SRT.PrefixPassphraseFiles {
		_, file, _ := strings.Cut(e, "=")
		add("srt.prefix_passphrase_files", file, false)
	}
	add("origin.tls_cert", c.Origin.TLSCert, true)
	add("origin.tls_key", c.Origin.TLSKey, false)
	p := c.Auth.Publish
	add("auth.publish.jwt.hmac_secret_file", p.JWT.HMACSecretFile, false)
	add("auth.publish.jwt.public_key_file", p.JWT.PublicKeyFile, true)
	add("auth.publish.jwt.jwks_file", p.JWT.JWKSFile, true)
	add("auth.publish.webhook.secret_file", p.Webhook.SecretFile, false)
	for _, e := range c.Playback.Tokens.Keys {
		_, file, _ := strings.Cut(e, "=")
		add("playback.tokens.keys", strings.TrimSpace(file), false)
	}
	add("playback.cdn.secret_file", c.Playback.CDN.SecretFile, false)
	add("admin.bearer_token_file", c.Admin.BearerTokenFile, false)
	add("admin.tls_cert", c.Admin.TLSCert, true)
	add("admin.tls_key", c.Admin.TLSKey, false)
	return out
}

// validHeaderName reports whether s is an HTTP header field name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validateSecurity checks the auth, playback and admin security keys.
func (c *Config) validateSecurity(v *validator) {
	p := c.Auth.Publish
	if _, err := ParseStaticKeys(p.StaticKeys); err != nil {
		v.add("auth.publish.static_keys", "%v", err)
	}
	v.file("auth.publish.jwt.hmac_secret_file", p.JWT.HMACSecretFile)
	v.file("auth.publish.jwt.public_key_file", p.JWT.PublicKeyFile)
	v.file("auth.publish.jwt.jwks_file", p.JWT.JWKSFile)
	v.notNegative("auth.publish.jwt.leeway", p.JWT.Leeway)
	if p.Webhook.URL != "" {
		u, err := url.Parse(p.Webhook.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			v.add("auth.publish.webhook.url", "must be an absolute http:// or https:// URL")
		case u.User != nil:
			v.add("auth.publish.webhook.url", "must not contain credentials (user:password@): the URL is logged; sign requests with secret_file instead")
		}
	}
	v.file("auth.publish.webhook.secret_file", p.Webhook.SecretFile)
	v.positive("auth.publish.webhook.timeout", p.Webhook.Timeout)
	v.atLeast("auth.publish.webhook.unpublish_in_flight", p.Webhook.UnpublishInFlight, 1)
	v.atLeast("auth.publish.rate_limit.failures", p.RateLimit.Failures, 0)
	v.positive("auth.publish.rate_limit.window", p.RateLimit.Window)
	v.atLeast("auth.publish.rate_limit.max_addresses", p.RateLimit.MaxAddresses, 1)

	t := c.Playback.Tokens
	keys, _, err := t.KeySettings()
	if err != nil {
		path := "playback.tokens.keys"
		if strings.HasPrefix(err.Error(), "active_key") {
			path = "playback.tokens.active_key"
		}
		v.add(path, "%v", err)
	}
	for _, k := range keys {
		v.file("playback.tokens.keys", k.SecretFile)
	}
	if t.Required && len(t.Keys) == 0 {
		v.add("playback.tokens.required", "needs playback.tokens.keys: tokens cannot be verified without a key")
	}
	if h := t.ClientIPHeader; h != "" {
		switch {
		case !validHeaderName(h):
			v.add("playback.tokens.client_ip_header", "%q is not a header name", h)
		case !c.Playback.CDN.Enabled():
			v.add("playback.tokens.client_ip_header", "needs playback.cdn.secret_file: anyone can send %s, only the CDN secret check makes it trustworthy", http.CanonicalHeaderKey(h))
		}
	}
	cdn := c.Playback.CDN
	if !validHeaderName(cdn.Header) {
		v.add("playback.cdn.header", "%q is not a header name", cdn.Header)
	}
	v.file("playback.cdn.secret_file", cdn.SecretFile)
	if c.Playback.Tokens.Enabled() || cdn.Enabled() {
		if app := c.RTMP.App; reservedFirstElement(app) {
			v.add("rtmp.app", "%q is reserved when playback tokens or the CDN secret are on (/t/<token>/... and /keys/... paths)", app)
		}
	}

	v.file("admin.bearer_token_file", c.Admin.BearerTokenFile)
	v.atLeast("admin.max_connections", c.Admin.MaxConnections, 0)
	v.tlsPair("admin", c.Admin.TLSCert, c.Admin.TLSKey)

	r := c.RTMP
	v.atLeast("rtmp.max_connections_per_minute", r.MaxConnectionsPerMinute, 0)
	v.address("rtmp.tls_address", r.TLSAddress, true)
	v.tlsPair("rtmp", r.TLSCert, r.TLSKey)
	switch {
	case r.TLSAddress != "" && (r.TLSCert == "" || r.TLSKey == ""):
		v.add("rtmp.tls_address", "needs rtmp.tls_cert and rtmp.tls_key")
	case r.TLSAddress != "" && r.Address == "":
		v.add("rtmp.tls_address", "RTMPS runs beside RTMP: set rtmp.address too (a loopback address keeps plain RTMP private)")
	}
}

// tlsPair checks the <section>.tls_cert and <section>.tls_key keys: set
// together, files that exist.
func (v *validator) tlsPair(section, cert, key string) {
	switch {
	case cert != "" && key == "":
		v.add(section+".tls_key", "must be set when %s.tls_cert is set", section)
	case cert == "" && key != "":
		v.add(section+".tls_cert", "must be set when %s.tls_key is set", section)
	}
	v.file(section+".tls_cert", cert)
	v.file(section+".tls_key", key)
}

// reservedFirstElement reports whether name is a first path element the
// origin reserves when playback protection is on: "t" (tokens) and "keys"
// (HLS key files).
func reservedFirstElement(name string) bool { return name == "t" || name == "keys" }

// ReservedStreamName reports whether a stream name starts with a path
// element reserved by playback tokens ("t/…", "keys/…"). Such streams are
// refused at publish when playback tokens or the CDN secret are on.
func ReservedStreamName(name string) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(name, "/"), "/")
	return reservedFirstElement(first)
}

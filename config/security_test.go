package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
)

var (
	hashA = auth.HashKey("key-a")
	hashB = auth.HashKey("key-b")
	hashC = auth.HashKey("key-c")
)

// securityFile sets every security key that names a file.
const securityFile = `auth:
  publish:
    static_keys: ["live/studio1=HASHA", "live/team-*=HASHB", "live/studio1=HASHC"]
    jwt:
      hmac_secret_file: jwt.secret
      public_key_file: jwt.pem
      jwks_file: jwks.json
    webhook:
      url: http://127.0.0.1:9/hook
      secret_file: webhook.secret
playback:
  tokens:
    required: true
    keys: ["k1=k1.secret", "k2=k2.secret"]
    active_key: k2
    client_ip_header: CF-Connecting-IP
  cdn:
    secret_file: cdn.secret
admin:
  bearer_token_file: admin.token
`

func TestSecurityKeysFromFile(t *testing.T) {
	file := strings.NewReplacer("HASHA", hashA, "HASHB", hashB, "HASHC", hashC).Replace(securityFile)
	files := []string{"jwt.secret", "jwt.pem", "jwks.json", "webhook.secret", "k1.secret", "k2.secret", "cdn.secret", "admin.token"}

	_, err := loadIn(t, file, nil)
	var got []string
	for _, e := range errorTexts(err) {
		got = append(got, e[strings.Index(e, ": ")+2:]) // without "headwater.yaml:N"
	}
	want := []string{
		`auth.publish.jwt.hmac_secret_file: file "jwt.secret" does not exist`,
		`auth.publish.jwt.public_key_file: file "jwt.pem" does not exist`,
		`auth.publish.jwt.jwks_file: file "jwks.json" does not exist`,
		`auth.publish.webhook.secret_file: file "webhook.secret" does not exist`,
		`playback.tokens.keys: file "k1.secret" does not exist`,
		`playback.tokens.keys: file "k2.secret" does not exist`,
		`playback.cdn.secret_file: file "cdn.secret" does not exist`,
		`admin.bearer_token_file: file "admin.token" does not exist`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("missing files:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range files {
		writeFile(t, ".", f, "x")
	}
	c, err := Load("headwater.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Auth.Publish
	if p.JWT.HMACSecretFile != "jwt.secret" || p.Webhook.SecretFile != "webhook.secret" || !c.Playback.Tokens.Required ||
		c.Playback.CDN.SecretFile != "cdn.secret" || c.Admin.BearerTokenFile != "admin.token" || !c.Auth.Enabled() {
		t.Errorf("loaded %+v", c)
	}

	s, err := c.Auth.PublishSettings()
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []auth.KeyRule{{Stream: "live/studio1", Hashes: []string{hashA, hashC}}, {Prefix: "live/team-", Hashes: []string{hashB}}}
	if !reflect.DeepEqual(s.StaticKeys, wantRules) {
		t.Errorf("rules %+v, want %+v", s.StaticKeys, wantRules)
	}
	if s.JWT.Leeway != 10*time.Second || s.Webhook.Timeout != 2*time.Second || s.RateLimit.Failures != 10 || s.RateLimit.Window != time.Minute {
		t.Errorf("settings %+v", s)
	}
	keys, active, err := c.Playback.Tokens.KeySettings()
	wantKeys := []playback.KeySettings{{ID: "k1", SecretFile: "k1.secret"}, {ID: "k2", SecretFile: "k2.secret"}}
	if err != nil || active != "k2" || !reflect.DeepEqual(keys, wantKeys) {
		t.Errorf("KeySettings = %+v %q %v", keys, active, err)
	}

	// The values a reload would log are file paths and hashes, never a
	// file's content.
	for _, ch := range Diff(Default(), c) {
		if strings.Contains(ch.New, "x\n") {
			t.Errorf("Diff %+v", ch)
		}
	}
}

func TestSecurityDefaultsOff(t *testing.T) {
	c := Default()
	if c.Auth.Enabled() || c.Playback.Tokens.Enabled() || c.Playback.CDN.Enabled() || c.Admin.BearerTokenFile != "" {
		t.Fatalf("security on by default: %+v %+v", c.Auth, c.Playback)
	}
	s, err := c.Auth.PublishSettings()
	if err != nil || len(s.StaticKeys) != 0 || s.Webhook.URL != "" || s.JWT.HMACSecretFile != "" {
		t.Fatalf("PublishSettings = %+v, %v", s, err)
	}
	c.Auth.Publish.JWT.Leeway = 0
	if s, _ := c.Auth.PublishSettings(); s.JWT.Leeway >= 0 {
		t.Errorf("leeway 0s maps to %s, want a negative value (none)", s.JWT.Leeway)
	}
}

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{
			name:   "static key without hash",
			mutate: func(c *Config) { c.Auth.Publish.StaticKeys = []string{"live/a"} },
			want:   []string{`auth.publish.static_keys: item 1: must be "<stream>=sha256:<hex>" or "<prefix>*=sha256:<hex>"`},
		},
		{
			name:   "static key with a plain key",
			mutate: func(c *Config) { c.Auth.Publish.StaticKeys = []string{"live/a=" + hashA, "live/b=hunter2"} },
			want:   []string{`auth.publish.static_keys: item 2 (live/b): key hash must start with "sha256:" (use "headwater auth hash-key")`},
		},
		{
			name:   "star alone",
			mutate: func(c *Config) { c.Auth.Publish.StaticKeys = []string{"*=" + hashA} },
			want:   []string{`auth.publish.static_keys: item 1: prefix "*": write a non-empty prefix before a single final '*', e.g. "live/*"`},
		},
		{
			name:   "star inside",
			mutate: func(c *Config) { c.Auth.Publish.StaticKeys = []string{"live/*/x=" + hashA} },
			want:   []string{`auth.publish.static_keys: item 1: stream "live/*/x": '*' is only allowed at the end (a prefix)`},
		},
		{
			name: "webhook",
			mutate: func(c *Config) {
				c.Auth.Publish.Webhook.URL = "https://user:pw@auth.example/hook"
				c.Auth.Publish.Webhook.Timeout = 0
			},
			want: []string{
				`auth.publish.webhook.url: must not contain credentials (user:password@): the URL is logged; sign requests with secret_file instead`,
				`auth.publish.webhook.timeout: must be greater than 0, got 0s`,
			},
		},
		{
			name:   "webhook not http",
			mutate: func(c *Config) { c.Auth.Publish.Webhook.URL = "auth.example/hook" },
			want:   []string{`auth.publish.webhook.url: must be an absolute http:// or https:// URL`},
		},
		{
			name: "rate limit and leeway",
			mutate: func(c *Config) {
				c.Auth.Publish.RateLimit = RateLimitAuthConfig{Failures: -1, Window: 0, MaxAddresses: 0}
				c.Auth.Publish.JWT.Leeway = Duration(-time.Second)
			},
			want: []string{
				`auth.publish.jwt.leeway: must not be negative, got -1s`,
				`auth.publish.rate_limit.failures: must be at least 0, got -1`,
				`auth.publish.rate_limit.window: must be greater than 0, got 0s`,
				`auth.publish.rate_limit.max_addresses: must be at least 1, got 0`,
			},
		},
		{
			name: "required without keys, ip header without cdn",
			mutate: func(c *Config) {
				c.Playback.Tokens.Required = true
				c.Playback.Tokens.ClientIPHeader = "X-Forwarded-For"
			},
			want: []string{
				`playback.tokens.required: needs playback.tokens.keys: tokens cannot be verified without a key`,
				`playback.tokens.client_ip_header: needs playback.cdn.secret_file: anyone can send X-Forwarded-For, only the CDN secret check makes it trustworthy`,
			},
		},
		{
			name:   "bad key id",
			mutate: func(c *Config) { c.Playback.Tokens.Keys = []string{"k.1=/dev/null"} },
			want:   []string{`playback.tokens.keys: item 1: key id "k.1": 1 to 16 characters from [A-Za-z0-9_-]`},
		},
		{
			name:   "duplicate key id",
			mutate: func(c *Config) { c.Playback.Tokens.Keys = []string{"k1=/dev/null", "k1=/dev/zero"} },
			want:   []string{`playback.tokens.keys: item 2: key id "k1" listed twice`},
		},
		{
			name: "active key needed",
			mutate: func(c *Config) {
				c.Playback.Tokens.Keys = []string{"k1=/dev/null", "k2=/dev/null"}
			},
			want: []string{`playback.tokens.active_key: active_key must name the key signing new tokens when there are several keys`},
		},
		{
			name:   "active key unknown",
			mutate: func(c *Config) { c.Playback.Tokens.Keys, c.Playback.Tokens.ActiveKey = []string{"k1=/dev/null"}, "k9" },
			want:   []string{`playback.tokens.active_key: active_key "k9" is not one of the keys`},
		},
		{
			name:   "active key without keys",
			mutate: func(c *Config) { c.Playback.Tokens.ActiveKey = "k1" },
			want:   []string{`playback.tokens.active_key: active_key "k1" is set but there are no keys`},
		},
		{
			name: "reserved app",
			mutate: func(c *Config) {
				c.Playback.Tokens.Keys = []string{"k1=/dev/null"}
				c.RTMP.App = "t"
			},
			want: []string{`rtmp.app: "t" is reserved when playback tokens or the CDN secret are on (/t/<token>/... and /keys/... paths)`},
		},
		{
			name:   "bad cdn header",
			mutate: func(c *Config) { c.Playback.CDN.Header = "X Secret" },
			want:   []string{`playback.cdn.header: "X Secret" is not a header name`},
		},
		{
			name: "rtmps and admin TLS",
			mutate: func(c *Config) {
				c.RTMP.TLSAddress = ":1936"
				c.Admin.TLSCert = "/dev/null"
				c.Admin.MaxConnections = -1
				c.RTMP.MaxConnectionsPerMinute = -1
			},
			want: []string{
				`admin.max_connections: must be at least 0, got -1`,
				`admin.tls_key: must be set when admin.tls_cert is set`,
				`rtmp.max_connections_per_minute: must be at least 0, got -1`,
				`rtmp.tls_address: needs rtmp.tls_cert and rtmp.tls_key`,
			},
		},
		{
			name: "rtmps without rtmp, on the rtmp port",
			mutate: func(c *Config) {
				c.RTMP.TLSAddress, c.RTMP.TLSCert, c.RTMP.TLSKey = ":1935", "/dev/null", "/dev/null"
			},
			want: []string{`rtmp.tls_address: ":1935" conflicts with rtmp.address (":1935"); each listener needs its own address`},
		},
		{
			name: "rtmps alone",
			mutate: func(c *Config) {
				c.RTMP.Address = ""
				c.RTMP.TLSAddress, c.RTMP.TLSCert, c.RTMP.TLSKey = ":1936", "/dev/null", "/dev/null"
			},
			want: []string{`rtmp.tls_address: RTMPS runs beside RTMP: set rtmp.address too (a loopback address keeps plain RTMP private)`},
		},
		{
			name:   "reserved app is fine without playback protection",
			mutate: func(c *Config) { c.RTMP.App = "keys" },
		},
		{
			name:   "encryption without tokens or CDN secret",
			mutate: func(c *Config) { c.HLS.Encryption.Enabled = true },
			want: []string{`hls.encryption.enabled: needs playback.tokens.keys or playback.cdn.secret_file: ` +
				`keys are served only to requests with a valid playback token or the CDN secret, ` +
				`so without either no player could decrypt (and serving keys to anyone would make encryption pointless)`},
		},
		{
			name: "encryption with tokens",
			mutate: func(c *Config) {
				c.HLS.Encryption.Enabled = true
				c.Playback.Tokens.Keys, c.Playback.Tokens.Required = []string{"k1=/dev/null"}, true
			},
		},
		{
			name: "encryption with tokens not required (only keys need a token)",
			mutate: func(c *Config) {
				c.HLS.Encryption.Enabled = true
				c.Playback.Tokens.Keys = []string{"k1=/dev/null"}
			},
		},
		{
			name: "encryption behind a CDN",
			mutate: func(c *Config) {
				c.HLS.Encryption.Enabled = true
				c.Playback.CDN.SecretFile = "/dev/null"
			},
		},
		{
			name: "encryption keys are checked when off",
			mutate: func(c *Config) {
				c.HLS.Encryption = HLSEncryptionConfig{Prefixes: []string{"live/ok-", "", "live/*"}, RotateSegments: -1, CacheBytes: 1000}
			},
			want: []string{
				`hls.encryption.prefixes: item 2: "" is not the start of a stream name (letters, digits, '_', '.', '-' and '/')`,
				`hls.encryption.prefixes: item 3: "live/*" is not the start of a stream name (letters, digits, '_', '.', '-' and '/')`,
				`hls.encryption.rotate_segments: must be at least 0, got -1`,
				`hls.encryption.cache_bytes: must be at least 1048576, got 1000`,
			},
		},
		{
			name:   "one key per stream",
			mutate: func(c *Config) { c.HLS.Encryption.RotateSegments = 0 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			got := errorTexts(c.Validate())
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestSecurityEnv(t *testing.T) {
	c, err := Load("", []string{
		"HEADWATER_AUTH_PUBLISH_STATIC_KEYS=live/a=" + hashA + ", live/b-*=" + hashB,
		"HEADWATER_PLAYBACK_TOKENS_KEYS=k1=/dev/null",
		"HEADWATER_ADMIN_BEARER_TOKEN_FILE=/dev/null",
	})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParseStaticKeys(c.Auth.Publish.StaticKeys)
	want := []auth.KeyRule{{Stream: "live/a", Hashes: []string{hashA}}, {Prefix: "live/b-", Hashes: []string{hashB}}}
	if err != nil || !reflect.DeepEqual(rules, want) {
		t.Errorf("rules %+v %v", rules, err)
	}
	if _, active, _ := c.Playback.Tokens.KeySettings(); active != "k1" {
		t.Errorf("active key %q, want the only key", active)
	}
}

func TestReservedStreamName(t *testing.T) {
	for name, want := range map[string]bool{
		"t/x": true, "keys/live/a": true, "/t/x": true, "t": true,
		"live/t": false, "tv/x": false, "keysx/a": false, "live/keys": false,
	} {
		if got := ReservedStreamName(name); got != want {
			t.Errorf("ReservedStreamName(%q) = %v", name, got)
		}
	}
}

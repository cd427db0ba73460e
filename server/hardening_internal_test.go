package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/transcoder"
)

// hardenedConfig is a configuration on loopback port-0 listeners with
// only the origin and the admin listener.
func hardenedConfig() *config.Config {
	cfg := config.Default()
	cfg.RTMP.Address, cfg.SRT.Address, cfg.RTSP.Address = "", "", ""
	cfg.Origin.Address = "127.0.0.1:0"
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Shutdown.Drain = 0
	return cfg
}

// newLogged builds a server (not started) logging into a buffer.
func newLogged(t *testing.T, cfg *config.Config) (*Server, *testpeer.LogBuffer) {
	t.Helper()
	logs := &testpeer.LogBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.abr.close(); s.sec.close() })
	return s, logs
}

// secretFile writes content to a new file of mode perm.
func secretFile(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // not masked by the umask
		t.Fatal(err)
	}
	return p
}

func authorize(s *Server, stream, key string) error {
	return s.sec.authenticator().AuthorizePublish(context.Background(),
		auth.PublishRequest{Protocol: "rtmp", Stream: stream, RemoteAddr: "192.0.2.7:5000", Key: key})
}

func authorizeJWT(s *Server, stream, token string) error {
	return s.sec.authenticator().AuthorizePublish(context.Background(),
		auth.PublishRequest{Protocol: "rtmp", Stream: stream, RemoteAddr: "192.0.2.7:5000", Params: map[string]string{"token": token}})
}

// TestReloadAllOrNothing reloads a configuration changing the publish keys
// and adding a ladder whose encoder ffmpeg lacks: the reload must fail and
// leave the old keys in effect.
func TestReloadAllOrNothing(t *testing.T) {
	testpeer.RequireBinary(t, "install it (apt-get install -y ffmpeg)", "ffmpeg")
	const oldKey, newKey = "the-old-studio-key-0123456789", "the-new-studio-key-0123456789"
	cfg := hardenedConfig()
	cfg.Transcoder.Enabled = true
	cfg.Auth.Publish.StaticKeys = []string{"live/a=" + auth.HashKey(oldKey)}
	cfg.Auth.Publish.RateLimit.Failures = 0
	s, _ := newLogged(t, cfg)

	next := hardenedConfig()
	next.Transcoder.Enabled = true
	next.Auth.Publish.StaticKeys = []string{"live/a=" + auth.HashKey(newKey)}
	next.Auth.Publish.RateLimit.Failures = 0
	next.Transcoder.Ladder = []string{"720p=720:2500k:libheadwater_no_such_encoder"}
	if _, err := s.Reload(next); err == nil || !strings.Contains(err.Error(), "libheadwater_no_such_encoder") {
		t.Fatalf("Reload = %v, want the encoder check's error", err)
	}
	if err := authorize(s, "live/a", oldKey); err != nil {
		t.Errorf("old key refused after a refused reload: %v", err)
	}
	if err := authorize(s, "live/a", newKey); err == nil {
		t.Error("new key accepted after a refused reload")
	}
	if got := s.cfg.Auth.Publish.StaticKeys; !slices.Equal(got, cfg.Auth.Publish.StaticKeys) {
		t.Errorf("running configuration changed: static_keys %v", got)
	}
}

// TestReloadRotatedSecret rotates the JWT secret in place (same path, new
// content): the reload must apply it, and a reload of the same files
// again finds no change. A rotated playback key (not reloadable) is
// reported as needing a restart.
func TestReloadRotatedSecret(t *testing.T) {
	oldSecret, newSecret := strings.Repeat("o", 40), strings.Repeat("n", 40)
	jwtFile := secretFile(t, "jwt.secret", oldSecret, 0o600)
	keyFile := secretFile(t, "playback.key", strings.Repeat("k", 40), 0o600)
	configure := func() *config.Config {
		cfg := hardenedConfig()
		cfg.Auth.Publish.JWT.HMACSecretFile = jwtFile
		cfg.Auth.Publish.RateLimit.Failures = 0
		cfg.Playback.Tokens.Keys = []string{"k1=" + keyFile}
		return cfg
	}
	s, _ := newLogged(t, configure())

	token := func(secret string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"stream": "live/a", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if err := authorizeJWT(s, "live/a", token(oldSecret)); err != nil {
		t.Fatalf("token of the running secret refused: %v", err)
	}
	for name, content := range map[string]string{jwtFile: newSecret, keyFile: strings.Repeat("m", 40)} {
		if err := os.WriteFile(name, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Reload(configure())
	if err != nil {
		t.Fatal(err)
	}
	keys := func(cs []config.Change) (out []string) {
		for _, c := range cs {
			out = append(out, c.Key)
		}
		return out
	}
	if got := keys(res.Applied); !slices.Equal(got, []string{"auth.publish.jwt.hmac_secret_file"}) {
		t.Errorf("applied %v, want the rotated JWT secret", got)
	}
	if got := keys(res.NeedRestart); !slices.Equal(got, []string{"playback.tokens.keys"}) {
		t.Errorf("need restart %v, want the rotated playback key", got)
	}
	if err := authorizeJWT(s, "live/a", token(newSecret)); err != nil {
		t.Errorf("token of the rotated secret refused: %v", err)
	}
	if err := authorizeJWT(s, "live/a", token(oldSecret)); err == nil {
		t.Error("token of the old secret still accepted")
	}
	res, err = s.Reload(configure())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || !slices.Equal(keys(res.NeedRestart), []string{"playback.tokens.keys"}) {
		t.Errorf("second reload: applied %v, need restart %v", keys(res.Applied), keys(res.NeedRestart))
	}
}

// TestStartupSecurityLog checks what the start-up log says about optional
// playback tokens, a plain http:// webhook and secret files others can read.
func TestStartupSecurityLog(t *testing.T) {
	cfg := hardenedConfig()
	loose := secretFile(t, "playback.key", strings.Repeat("k", 40), 0o644)
	tight := secretFile(t, "webhook.secret", strings.Repeat("w", 40), 0o600)
	cfg.Playback.Tokens.Keys = []string{"k1=" + loose}
	cfg.Auth.Publish.Webhook.URL = "http://auth.example:8000/publish"
	cfg.Auth.Publish.Webhook.SecretFile = tight
	_, logs := newLogged(t, cfg)
	out := logs.String()
	for _, want := range []string{
		`"msg":"security: playback tokens: accepted but not required; playlists and media are public`,
		`"msg":"security: the publish webhook is plain http:// to a non-loopback host`,
		`"key":"auth.publish.webhook.url"`,
		`"msg":"security: secret file readable by group or others; chmod 600 it","key":"playback.tokens.keys","file":"` + loose + `","mode":"-rw-r--r--"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"playback tokens on", tight} {
		if strings.Contains(out, unwanted) {
			t.Errorf("log has %q:\n%s", unwanted, out)
		}
	}

	cfg = hardenedConfig()
	cfg.Playback.Tokens.Keys = []string{"k1=" + secretFile(t, "k2", strings.Repeat("k", 40), 0o600)}
	cfg.Playback.Tokens.Required = true
	cfg.Auth.Publish.Webhook.URL = "http://127.0.0.1:8000/publish"
	_, logs = newLogged(t, cfg)
	out = logs.String()
	if !strings.Contains(out, `"msg":"security: playback tokens: required; playlists, media and SRT/RTSP reads need a valid token"`) {
		t.Errorf("log lacks the required tokens line:\n%s", out)
	}
	if strings.Contains(out, "plain http://") || strings.Contains(out, "readable by group") {
		t.Errorf("warnings for a loopback webhook or a private file:\n%s", out)
	}
}

// TestAdminMutationsNeedLoopbackOrToken sends DELETE /api/v1/streams/...
// from a client that is not loopback and from loopback, with and without
// the admin token.
func TestAdminMutationsNeedLoopbackOrToken(t *testing.T) {
	const token = "an-admin-token-0123456789"
	do := func(h http.Handler, method, remote, bearer string) int {
		r := httptest.NewRequest(method, "/api/v1/streams/live/nobody", nil)
		r.RemoteAddr = remote
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	const remote, v6remote, loop, v6loop = "192.0.2.10:40000", "[2001:db8::1]:40000", "127.0.0.1:40000", "[::1]:40000"

	open, _ := newLogged(t, hardenedConfig())
	h := open.admin.Handler
	for _, addr := range []string{remote, v6remote} {
		if got := do(h, http.MethodDelete, addr, ""); got != http.StatusForbidden {
			t.Errorf("no token configured: DELETE from %s = %d, want 403", addr, got)
		}
		if got := do(h, http.MethodGet, addr, ""); got != http.StatusNotFound {
			t.Errorf("no token configured: GET from %s = %d, want 404 (open, no such stream)", addr, got)
		}
	}
	for _, addr := range []string{loop, v6loop} {
		if got := do(h, http.MethodDelete, addr, ""); got != http.StatusNotFound {
			t.Errorf("no token configured: DELETE from %s = %d, want 404 (allowed, no such stream)", addr, got)
		}
	}

	cfg := hardenedConfig()
	cfg.Admin.BearerTokenFile = secretFile(t, "admin.token", token, 0o600)
	guarded, _ := newLogged(t, cfg)
	h = guarded.admin.Handler
	if got := do(h, http.MethodDelete, remote, ""); got != http.StatusUnauthorized {
		t.Errorf("token configured: DELETE without it = %d, want 401", got)
	}
	for _, addr := range []string{remote, loop} {
		if got := do(h, http.MethodDelete, addr, token); got != http.StatusNotFound {
			t.Errorf("token configured: DELETE from %s with it = %d, want 404 (allowed, no such stream)", addr, got)
		}
	}
}

// TestAdminInsecureRemoteMutations checks the opt-in letting remote
// clients mutate without a token.
func TestAdminInsecureRemoteMutations(t *testing.T) {
	cfg := hardenedConfig()
	cfg.Admin.InsecureRemoteMutations = true
	s, _ := newLogged(t, cfg)
	r := httptest.NewRequest(http.MethodDelete, "/api/v1/streams/live/nobody", nil)
	r.RemoteAddr = "192.0.2.10:40000"
	w := httptest.NewRecorder()
	s.admin.Handler.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("DELETE with admin.insecure_remote_mutations = %d, want 404", w.Code)
	}
}

// TestAdminProbesBeyondMaxConnections holds every regular admin connection
// open and checks that a health probe on a new connection is answered,
// and that other paths on the probe reserve are refused.
func TestAdminProbesBeyondMaxConnections(t *testing.T) {
	cfg := hardenedConfig()
	cfg.Admin.MaxConnections = 2
	s, logs := newLogged(t, cfg)
	testpeer.Serve(t, s, logs)
	addr := s.AdminAddr().String()
	// Two idle keep-alive connections take the regular slots.
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/readyz", "/healthz"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("probe %s with every regular connection taken: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("probe %s = %d", path, resp.StatusCode)
		}
	}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/metrics on the probe reserve = %d, want 503", resp.StatusCode)
	}
}

// TestOriginNoCORS checks that origin.cors.allowed_origins: [] sends no
// CORS headers, as documented, and that the default allows any origin.
func TestOriginNoCORS(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		want    string
	}{{[]string{}, ""}, {nil, ""}, {[]string{"*"}, "*"}} {
		cfg := hardenedConfig()
		cfg.Origin.CORS.AllowedOrigins = tc.allowed
		h := origin.NewHandler(originConfig(cfg), store.New(storeConfig(cfg)), nil, nil)
		r := httptest.NewRequest(http.MethodGet, "/live/a/index.m3u8", nil)
		r.Header.Set("Origin", "https://player.example")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != tc.want {
			t.Errorf("allowed_origins %#v: Access-Control-Allow-Origin %q, want %q", tc.allowed, got, tc.want)
		}
	}
}

// closeRecorder is a job executor recording Close.
type closeRecorder struct {
	jobExecutor
	closed bool
}

func (c *closeRecorder) Close() { c.closed = true; c.jobExecutor.Close() }

// TestNewClosesExecutorOnError fails a builder after the ABR's (the RTMP
// listener's certificate does not parse): New must close the executor.
func TestNewClosesExecutorOnError(t *testing.T) {
	testpeer.RequireBinary(t, "install it (apt-get install -y ffmpeg)", "ffmpeg")
	cfg := hardenedConfig()
	cfg.Transcoder.Enabled = true
	cfg.RTMP.Address = "127.0.0.1:0"
	cfg.RTMP.TLSAddress = "127.0.0.1:0"
	cfg.RTMP.TLSCert = secretFile(t, "cert.pem", "not a certificate", 0o600)
	cfg.RTMP.TLSKey = secretFile(t, "key.pem", "not a key", 0o600)
	var rec *closeRecorder
	newExec := func(pc transcoder.PoolConfig, m *transcoder.Metrics, log *slog.Logger) jobExecutor {
		rec = &closeRecorder{jobExecutor: newLocalPool(pc, m, log)}
		return rec
	}
	_, err := New(cfg, nil, func(s *Server) { s.newExec = newExec })
	if err == nil || !strings.Contains(err.Error(), "rtmp") {
		t.Fatalf("New = %v, want the RTMPS certificate's error", err)
	}
	if rec == nil || !rec.closed {
		t.Error("New failed after building the ABR executor and left it open")
	}
}

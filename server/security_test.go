package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// Secrets of the security tests: distinctive, so that a leak into the logs
// cannot go unnoticed.
const (
	studioKey     = "STATICKEY-6c1f0e9a3b7d4c2e8f5a1b9d0c3e7f2a"
	jwtSecret     = "JWTSECRET-2b8e4f1a9c3d7e5f0a6b2c8d4e1f7a3b"
	webhookSecret = "WEBHOOKSECRET-9d3c7b1e5f2a8c4d0e6f3a9b7c1d5e"
	tokenSecret   = "PLAYBACKSECRET-4a7c1e9b3d5f8a2c6e0b4d8f1a3c5e"
	cdnSecret     = "CDNSECRET-8f2d6a0c4e9b1d7f3a5c8e2b6d0f4a"
	adminToken    = "ADMINTOKEN-1e5a9c3f7b2d6e0a4c8f1b5d9e3a7c"
)

// writeSecret writes a secret file (with a trailing newline, as editors
// do) and returns its path.
func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// refusals are the two counters a refused publish moves.
type refusals struct{ ingest, auth float64 }

func readRefusals(t *testing.T, s *testServer, protocol string, reason auth.Reason) refusals {
	t.Helper()
	return refusals{
		ingest: testpeer.MetricSum(t, s.Metrics(), "headwater_ingest_errors_total", "protocol", protocol, "reason", "unauthorized"),
		auth:   testpeer.MetricSum(t, s.Metrics(), "headwater_auth_refusals_total", "protocol", protocol, "reason", string(reason)),
	}
}

// expectPublished publishes with p, which must get its stream live and end
// without an error.
func expectPublished(t *testing.T, s *testServer, name string, p *testpeer.Process) {
	t.Helper()
	testpeer.WaitFor(t, 10*time.Second, name+" live", func() bool {
		_, live := s.Registry().Get(name)
		return live
	})
	if err := p.Wait(t, 15*time.Second); err != nil {
		t.Fatalf("publisher of %s failed: %v\n%s", name, err, p.Stderr.String())
	}
}

// expectRefused checks that p is refused: it exits with an error, the stream
// never goes live, and both refusal counters moved by one.
func expectRefused(t *testing.T, s *testServer, name, protocol string, reason auth.Reason, before refusals, p *testpeer.Process) {
	t.Helper()
	if err := p.Wait(t, 15*time.Second); err == nil {
		t.Errorf("publisher of %s was not refused:\n%s", name, p.Stderr.String())
	}
	if _, live := s.Registry().Get(name); live {
		t.Errorf("%s is live", name)
	}
	want := refusals{before.ingest + 1, before.auth + 1}
	testpeer.WaitFor(t, 5*time.Second, fmt.Sprintf("refusal counters %+v", want), func() bool {
		return readRefusals(t, s, protocol, reason) == want
	})
}

func publishJWT(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// srtURL is the URL of an SRT publish with extra streamid keys.
func srtPublishURL(s *testServer, name, extra string) string {
	return fmt.Sprintf("srt://%s?streamid=#!::r=%s,m=publish%s&latency=200000", s.SRTAddr(), name, extra)
}

// noOtherListeners keeps the tests off the default SRT and RTSP ports.
func noOtherListeners(c *config.Config) {
	c.SRT.Address = ""
	c.RTSP.Address = ""
}

// TestPublishAuthStaticKeysAndJWT publishes with ffmpeg over RTMP (and SRT
// and RTSP) with the right key, a wrong key, no key, a JWT and an expired
// JWT.
func TestPublishAuthStaticKeysAndJWT(t *testing.T) {
	jwtFile := writeSecret(t, "jwt.secret", jwtSecret)
	settings := func(c *config.Config) {
		c.Auth.Publish.StaticKeys = []string{"live/studio1=" + auth.HashKey(studioKey), "live/team-*=" + auth.HashKey(studioKey)}
		c.Auth.Publish.JWT.HMACSecretFile = jwtFile
		c.Auth.Publish.JWT.Leeway = config.Duration(time.Second)
		c.Auth.Publish.RateLimit.Failures = 0 // this test fails on purpose, from one address
	}
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.SRT.Address = "127.0.0.1:0"
		c.RTSP.Address = "127.0.0.1:0"
		c.RTSP.UDPRTPAddress, c.RTSP.UDPRTCPAddress = "", ""
		settings(c)
	})
	const dur = 1500 * time.Millisecond

	t.Run("right key", func(t *testing.T) {
		before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
		expectPublished(t, s, "live/studio1", testpeer.PublishRTMP(t, s.rtmpURL("studio1?key="+studioKey), dur, 30))
		if got := readRefusals(t, s, "rtmp", auth.ReasonBadKey); got != before {
			t.Errorf("refusals moved: %+v -> %+v", before, got)
		}
	})
	t.Run("reload swaps the keys", func(t *testing.T) {
		const newKey = "a-brand-new-studio-key-0123456789"
		next := config.Default()
		settings(next)
		next.Auth.Publish.StaticKeys = []string{"live/reloaded=" + auth.HashKey(newKey)}
		res, err := s.Reload(next)
		if err != nil {
			t.Fatal(err)
		}
		applied := false
		for _, c := range res.Applied {
			applied = applied || c.Key == "auth.publish.static_keys"
		}
		if !applied {
			t.Fatalf("static keys not applied: %+v", res)
		}
		before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
		expectRefused(t, s, "live/reloaded", "rtmp", auth.ReasonBadKey, before,
			testpeer.PublishRTMP(t, s.rtmpURL("reloaded?key="+studioKey), dur, 30))
		expectPublished(t, s, "live/reloaded", testpeer.PublishRTMP(t, s.rtmpURL("reloaded?key="+newKey), dur, 30))
		back := config.Default()
		settings(back)
		if _, err := s.Reload(back); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("prefix rule", func(t *testing.T) {
		expectPublished(t, s, "live/team-blue", testpeer.PublishRTMP(t, s.rtmpURL("team-blue?key="+studioKey), dur, 30))
	})
	t.Run("wrong key", func(t *testing.T) {
		before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
		expectRefused(t, s, "live/studio1", "rtmp", auth.ReasonBadKey, before,
			testpeer.PublishRTMP(t, s.rtmpURL("studio1?key=not-"+studioKey), dur, 30))
	})
	t.Run("key of another stream", func(t *testing.T) {
		before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
		expectRefused(t, s, "live/other", "rtmp", auth.ReasonBadKey, before,
			testpeer.PublishRTMP(t, s.rtmpURL("other?key="+studioKey), dur, 30))
	})
	t.Run("no key", func(t *testing.T) {
		before := readRefusals(t, s, "rtmp", auth.ReasonMissingCredentials)
		expectRefused(t, s, "live/studio1", "rtmp", auth.ReasonMissingCredentials, before,
			testpeer.PublishRTMP(t, s.rtmpURL("studio1"), dur, 30))
	})
	t.Run("JWT", func(t *testing.T) {
		tok := publishJWT(t, jwt.MapClaims{"stream": "live/jwtcam", "exp": time.Now().Add(time.Minute).Unix()})
		expectPublished(t, s, "live/jwtcam", testpeer.PublishRTMP(t, s.rtmpURL("jwtcam?token="+tok), dur, 30))
	})
	t.Run("expired JWT", func(t *testing.T) {
		tok := publishJWT(t, jwt.MapClaims{"stream": "live/jwtcam", "exp": time.Now().Add(-time.Minute).Unix()})
		before := readRefusals(t, s, "rtmp", auth.ReasonExpired)
		expectRefused(t, s, "live/jwtcam", "rtmp", auth.ReasonExpired, before,
			testpeer.PublishRTMP(t, s.rtmpURL("jwtcam?token="+tok), dur, 30))
	})
	t.Run("JWT for another stream", func(t *testing.T) {
		tok := publishJWT(t, jwt.MapClaims{"stream": "live/jwtcam", "exp": time.Now().Add(time.Minute).Unix()})
		before := readRefusals(t, s, "rtmp", auth.ReasonWrongStream)
		expectRefused(t, s, "live/elsewhere", "rtmp", auth.ReasonWrongStream, before,
			testpeer.PublishRTMP(t, s.rtmpURL("elsewhere?token="+tok), dur, 30))
	})
	t.Run("SRT key", func(t *testing.T) {
		expectPublished(t, s, "live/studio1", ffmpegSource(t, dur, x264, aac, "-f", "mpegts",
			srtPublishURL(s, "live/studio1", ",key="+studioKey)))
		before := readRefusals(t, s, "srt", auth.ReasonBadKey)
		expectRefused(t, s, "live/studio1", "srt", auth.ReasonBadKey, before, ffmpegSource(t, dur, x264, aac, "-f", "mpegts",
			srtPublishURL(s, "live/studio1", ",key=nope")))
	})
	t.Run("RTSP password", func(t *testing.T) {
		url := fmt.Sprintf("rtsp://publisher:%s@%s/live/studio1", studioKey, s.RTSPAddr())
		expectPublished(t, s, "live/studio1", ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", url))
		before := readRefusals(t, s, "rtsp", auth.ReasonBadKey)
		url = fmt.Sprintf("rtsp://publisher:wrong@%s/live/studio1", s.RTSPAddr())
		expectRefused(t, s, "live/studio1", "rtsp", auth.ReasonBadKey, before, ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", url))
	})
	if logs := s.logs.String(); strings.Contains(logs, studioKey) || strings.Contains(logs, jwtSecret) {
		t.Errorf("a secret is in the logs:\n%s", logs)
	}
}

// webhookReceiver is a publish webhook answering by stream name.
type webhookReceiver struct {
	t      *testing.T
	secret []byte

	mu     sync.Mutex
	events []auth.WebhookEvent
}

func (wr *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := auth.VerifyWebhook(wr.secret, r.Header, body, time.Now(), 0); err != nil {
		wr.t.Errorf("webhook signature: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev auth.WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		wr.t.Errorf("webhook body: %v", err)
	}
	wr.mu.Lock()
	wr.events = append(wr.events, ev)
	wr.mu.Unlock()
	if ev.Action != auth.ActionPublish {
		return
	}
	switch ev.Stream {
	case "live/deny":
		w.WriteHeader(http.StatusForbidden)
	case "live/broken":
		w.WriteHeader(http.StatusInternalServerError)
	case "live/slow":
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}
}

func (wr *webhookReceiver) seen(action, stream string) []auth.WebhookEvent {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	var out []auth.WebhookEvent
	for _, ev := range wr.events {
		if ev.Action == action && ev.Stream == stream {
			out = append(out, ev)
		}
	}
	return out
}

func TestPublishAuthWebhook(t *testing.T) {
	wr := &webhookReceiver{t: t, secret: []byte(webhookSecret)}
	hook := httptestServer(t, wr)
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.Auth.Publish.Webhook.URL = hook + "/publish"
		c.Auth.Publish.Webhook.SecretFile = writeSecret(t, "webhook.secret", webhookSecret)
		c.Auth.Publish.Webhook.Timeout = config.Duration(time.Second)
		c.Auth.Publish.Webhook.OnUnpublish = true
	})
	const dur = 1500 * time.Millisecond

	t.Run("allow", func(t *testing.T) {
		expectPublished(t, s, "live/allow", testpeer.PublishRTMP(t, s.rtmpURL("allow?token=abc&room=7"), dur, 30))
		ev := wr.seen(auth.ActionPublish, "live/allow")
		if len(ev) != 1 || ev[0].Protocol != "rtmp" || ev[0].Params["room"] != "7" || ev[0].Params["token"] != "abc" || ev[0].RequestID == "" {
			t.Fatalf("publish events %+v", ev)
		}
		testpeer.WaitFor(t, 5*time.Second, "the unpublish notification", func() bool {
			un := wr.seen(auth.ActionUnpublish, "live/allow")
			return len(un) == 1 && un[0].RequestID == ev[0].RequestID
		})
	})
	for _, tc := range []struct {
		stream string
		reason auth.Reason
	}{
		{"deny", auth.ReasonWebhookDenied},
		{"broken", auth.ReasonWebhookUnavailable},
		{"slow", auth.ReasonWebhookUnavailable},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			before := readRefusals(t, s, "rtmp", tc.reason)
			expectRefused(t, s, "live/"+tc.stream, "rtmp", tc.reason, before, testpeer.PublishRTMP(t, s.rtmpURL(tc.stream), dur, 30))
			if n := len(wr.seen(auth.ActionPublish, "live/"+tc.stream)); n != 1 {
				t.Errorf("%d webhook calls", n)
			}
			if n := len(wr.seen(auth.ActionUnpublish, "live/"+tc.stream)); n != 0 {
				t.Errorf("unpublish of a refused publish")
			}
		})
	}
}

// httptestServer serves h on loopback and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// tokenServer is a server with playback tokens required, the stream
// live/tok published and ended (its playlists stay readable, with ENDLIST).
func tokenServer(t *testing.T, mutate func(*config.Config)) (*testServer, *playback.Keyring) {
	t.Helper()
	keyFile := writeSecret(t, "k1.secret", tokenSecret)
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.Playback.Tokens.Keys = []string{"k1=" + keyFile}
		c.Playback.Tokens.Required = true
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		if mutate != nil {
			mutate(c)
		}
	})
	kr, err := playback.LoadKeyring([]playback.KeySettings{{ID: "k1", SecretFile: keyFile}}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	return s, kr
}

func TestPlaybackTokens(t *testing.T) {
	s, kr := tokenServer(t, nil)
	expectPublished(t, s, "live/tok", testpeer.PublishRTMP(t, s.rtmpURL("tok"), 3*time.Second, 30))
	base := s.originURL("")
	refused := func(reason playback.Reason) float64 {
		return testpeer.MetricSum(t, s.Metrics(), "headwater_playback_refusals_total", "reason", string(reason))
	}
	expect403 := func(t *testing.T, url string, reason playback.Reason) {
		t.Helper()
		before := refused(reason)
		r := get(t, url)
		if r.status != http.StatusForbidden || r.header.Get("X-Headwater-Token") != string(reason) || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d %v, want 403 %s", url, r.status, r.header, reason)
		}
		if got := refused(reason); got != before+1 {
			t.Errorf("headwater_playback_refusals_total{reason=%q} %v -> %v", reason, before, got)
		}
	}

	t.Run("valid token plays", func(t *testing.T) {
		url, err := kr.IssueURL(base, "live/tok", 5*time.Minute, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(url, "/t/") || !strings.HasSuffix(url, "/live/tok/index.m3u8") {
			t.Fatalf("URL %s", url)
		}
		out, err := exec.Command("ffprobe", "-hide_banner", "-loglevel", "error",
			"-show_entries", "stream=codec_name", "-of", "csv=p=0", url).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
		}
		if got := string(out); !strings.Contains(got, "h264") || !strings.Contains(got, "aac") {
			t.Errorf("ffprobe found %q", got)
		}
		// Every response through the token is cacheable no longer than it.
		r := get(t, url)
		if r.status != http.StatusOK || !strings.Contains(r.header.Get("Access-Control-Allow-Origin"), "*") {
			t.Errorf("GET %s: %d %v", url, r.status, r.header)
		}
	})
	t.Run("expired", func(t *testing.T) {
		tok, err := kr.Sign("/live/tok/", time.Now().Add(-time.Minute), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		expect403(t, base+"/t/"+tok+"/live/tok/index.m3u8", playback.ReasonExpired)
	})
	t.Run("another stream", func(t *testing.T) {
		url, _ := kr.IssueURL(base, "live/other", time.Minute, netip.Addr{})
		expect403(t, strings.Replace(url, "/live/other/", "/live/tok/", 1), playback.ReasonWrongPath)
	})
	t.Run("tampered", func(t *testing.T) {
		url, _ := kr.IssueURL(base, "live/tok", time.Minute, netip.Addr{})
		i := strings.Index(url, "/t/") + len("/t/") + 10
		c := byte('A')
		if url[i] == 'A' {
			c = 'B'
		}
		expect403(t, url[:i]+string(c)+url[i+1:], playback.ReasonBadSignature)
	})
	t.Run("other key", func(t *testing.T) {
		other, err := playback.NewKeyring(map[string][]byte{"k1": []byte(strings.Repeat("x", 32))}, "k1")
		if err != nil {
			t.Fatal(err)
		}
		url, _ := other.IssueURL(base, "live/tok", time.Minute, netip.Addr{})
		expect403(t, url, playback.ReasonBadSignature)
	})
	t.Run("no token", func(t *testing.T) {
		expect403(t, base+"/live/tok/index.m3u8", playback.ReasonMissingToken)
		for _, open := range []string{"/healthz", "/time"} {
			if r := get(t, base+open); r.status != http.StatusOK {
				t.Errorf("%s: %d", open, r.status)
			}
		}
	})
	t.Run("refusals readable by browsers", func(t *testing.T) {
		r := get(t, base+"/live/tok/index.m3u8")
		if r.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Headwater-Token") {
			t.Errorf("403 without CORS headers: %v", r.header)
		}
	})
}

// getWith GETs url with extra headers.
func getWith(t *testing.T, url string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestPlaybackCDNSecret(t *testing.T) {
	rotated := "OLDCDNSECRET-0123456789abcdef"
	cdnFile := writeSecret(t, "cdn.secret", cdnSecret+"\n"+rotated)
	s, kr := tokenServer(t, func(c *config.Config) {
		c.Playback.Tokens.Required = false // the CDN edge checks tokens
		c.Playback.Tokens.ClientIPHeader = "CF-Connecting-IP"
		c.Playback.CDN.SecretFile = cdnFile
	})
	base := s.originURL("")
	cdn := func(extra ...string) map[string]string {
		h := map[string]string{"X-Headwater-CDN-Secret": cdnSecret}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	// Nothing is live: a request the checks let through gets the origin's 404.
	for _, tc := range []struct {
		name   string
		path   string
		header map[string]string
		status int
		reason string
	}{
		{"no header", "/live/x/index.m3u8", nil, 403, "cdn_header"},
		{"wrong secret", "/live/x/index.m3u8", map[string]string{"X-Headwater-CDN-Secret": "nope"}, 403, "cdn_header"},
		{"secret", "/live/x/index.m3u8", cdn(), 404, ""},
		{"rotated secret", "/live/x/index.m3u8", map[string]string{"X-Headwater-CDN-Secret": rotated}, 404, ""},
		{"healthz open", "/healthz", nil, 200, ""},
		{"token bound to the viewer", "/t/" + sign(t, kr, "/live/x/", "203.0.113.7") + "/live/x/index.m3u8", cdn("CF-Connecting-IP", "203.0.113.7"), 404, ""},
		{"token bound to another viewer", "/t/" + sign(t, kr, "/live/x/", "203.0.113.7") + "/live/x/index.m3u8", cdn("CF-Connecting-IP", "198.51.100.1"), 403, "wrong_ip"},
		{"token without the CDN", "/t/" + sign(t, kr, "/live/x/", "203.0.113.7") + "/live/x/index.m3u8", map[string]string{"CF-Connecting-IP": "203.0.113.7"}, 403, "cdn_header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := getWith(t, base+tc.path, tc.header)
			if r.status != tc.status || r.header.Get("X-Headwater-Token") != tc.reason {
				t.Errorf("GET %s: %d %q, want %d %q", tc.path, r.status, r.header.Get("X-Headwater-Token"), tc.status, tc.reason)
			}
		})
	}
}

func sign(t *testing.T, kr *playback.Keyring, prefix, ip string) string {
	t.Helper()
	tok, err := kr.Sign(prefix, time.Now().Add(time.Minute), netip.MustParseAddr(ip))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAdminBearerToken(t *testing.T) {
	tokenFile := writeSecret(t, "admin.token", adminToken)
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.Admin.BearerTokenFile = tokenFile
	})
	for _, tc := range []struct {
		path   string
		header map[string]string
		status int
	}{
		{"/metrics", nil, 401},
		{"/metrics", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"/metrics", map[string]string{"Authorization": "Bearer " + adminToken}, 200},
		{"/metrics", map[string]string{"Authorization": "bearer " + adminToken}, 200},
		{"/api/v1/streams", nil, 401},
		{"/api/v1/streams", map[string]string{"Authorization": "Bearer " + adminToken}, 200},
		{"/", nil, 401},
		{"/preview/app.js", nil, 401},
		{"/", map[string]string{"Authorization": "Basic " + basic("viewer", adminToken)}, 200},
		{"/", map[string]string{"Authorization": "Basic " + basic("viewer", "wrong")}, 401},
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/healthz/../metrics", nil, 401},
	} {
		t.Run(fmt.Sprintf("%s %v", tc.path, tc.header != nil), func(t *testing.T) {
			r := getWith(t, s.adminURL(tc.path), tc.header)
			if r.status != tc.status {
				t.Fatalf("GET %s: %d, want %d", tc.path, r.status, tc.status)
			}
			if r.status == 401 && (len(r.header.Values("WWW-Authenticate")) != 2 || r.header.Get("Cache-Control") != "no-store") {
				t.Errorf("401 headers %v", r.header)
			}
		})
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestNoSecretInLogs runs a session with every secret configured, at debug
// level, and checks that no secret value (nor a token) appears in a log line.
func TestNoSecretInLogs(t *testing.T) {
	wr := &webhookReceiver{t: t, secret: []byte(webhookSecret)}
	hook := httptestServer(t, wr)
	keyFile := writeSecret(t, "k1.secret", tokenSecret)
	s := startServer(t, func(c *config.Config) {
		noOtherListeners(c)
		c.SRT.Address = "127.0.0.1:0"
		c.Log.Level = "debug"
		c.Auth.Publish.StaticKeys = []string{"live/studio1=" + auth.HashKey(studioKey)}
		c.Auth.Publish.JWT.HMACSecretFile = writeSecret(t, "jwt.secret", jwtSecret)
		c.Auth.Publish.Webhook.URL = hook + "/publish"
		c.Auth.Publish.Webhook.SecretFile = writeSecret(t, "webhook.secret", webhookSecret)
		c.Auth.Publish.Webhook.OnUnpublish = true
		c.Playback.Tokens.Keys = []string{"k1=" + keyFile}
		c.Playback.Tokens.Required = true
		c.Playback.CDN.SecretFile = writeSecret(t, "cdn.secret", cdnSecret)
		c.Admin.BearerTokenFile = writeSecret(t, "admin.token", adminToken)
	})
	const dur = 1500 * time.Millisecond
	jwtToken := publishJWT(t, jwt.MapClaims{"stream": "live/jwtcam", "exp": time.Now().Add(time.Minute).Unix()})

	expectPublished(t, s, "live/studio1", testpeer.PublishRTMP(t, s.rtmpURL("studio1?key="+studioKey), 3*time.Second, 30))
	expectPublished(t, s, "live/jwtcam", testpeer.PublishRTMP(t, s.rtmpURL("jwtcam?token="+jwtToken), dur, 30))
	before := readRefusals(t, s, "rtmp", auth.ReasonBadKey)
	expectRefused(t, s, "live/studio1", "rtmp", auth.ReasonBadKey, before, testpeer.PublishRTMP(t, s.rtmpURL("studio1?key=x"+studioKey), dur, 30))
	expectPublished(t, s, "live/srtcam", ffmpegSource(t, dur, x264, aac, "-f", "mpegts", srtPublishURL(s, "live/srtcam", ",token="+
		publishJWT(t, jwt.MapClaims{"stream": "live/srtcam", "exp": time.Now().Add(time.Minute).Unix()}))))
	// A malformed streamid carrying a key is logged without it.
	_ = ffmpegSource(t, dur, x264, aac, "-f", "mpegts", srtPublishURL(s, "live/srtcam", ",key="+studioKey+",m=bogus")).Wait(t, 15*time.Second)

	kr, err := playback.LoadKeyring([]playback.KeySettings{{ID: "k1", SecretFile: keyFile}}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	url, err := kr.IssueURL(s.originURL(""), "live/studio1", time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-hide_banner", "-loglevel", "error",
		"-headers", "X-Headwater-CDN-Secret: "+cdnSecret+"\r\n",
		"-show_entries", "stream=codec_name", "-of", "csv=p=0", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "h264") {
		t.Fatalf("ffprobe through the CDN secret and a token: %v\n%s", err, out)
	}
	playToken := strings.Split(strings.TrimPrefix(url, s.originURL("")+"/t/"), "/")[0]
	if r := getWith(t, s.originURL("/live/studio1/index.m3u8"), map[string]string{"X-Headwater-CDN-Secret": cdnSecret}); r.status != 403 {
		t.Errorf("no token: %d", r.status)
	}
	if r := getWith(t, s.adminURL("/api/v1/streams"), map[string]string{"Authorization": "Bearer " + adminToken}); r.status != 200 {
		t.Errorf("admin API: %d", r.status)
	}
	if r := getWith(t, s.adminURL("/metrics"), map[string]string{"Authorization": "Bearer " + adminToken + "x"}); r.status != 401 {
		t.Errorf("admin with a wrong token: %d", r.status)
	}
	testpeer.WaitFor(t, 5*time.Second, "the unpublish notifications", func() bool {
		return len(wr.seen(auth.ActionUnpublish, "live/studio1")) == 1 && len(wr.seen(auth.ActionUnpublish, "live/jwtcam")) == 1
	})

	logs := s.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "auth: publish refused") {
		t.Fatalf("the logs lack debug lines or the refusal:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"static key": studioKey, "JWT secret": jwtSecret, "JWT": jwtToken, "webhook secret": webhookSecret,
		"playback secret": tokenSecret, "playback token": playToken, "CDN secret": cdnSecret, "admin token": adminToken,
	} {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("the %s is in a log line: %s", name, line)
			}
		}
	}
}

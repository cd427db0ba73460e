package cli

import (
	"bytes"
	"context"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/server"
)

// runIn runs the command with stdin.
func runIn(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := NewRootCommand(&stdout, &stderr, "")
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return stdout.String(), stderr.String(), err
}

func TestAuthHashKey(t *testing.T) {
	out, _, err := run(t, "auth", "hash-key")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "key:  ") || !strings.HasPrefix(lines[1], "hash: sha256:") {
		t.Fatalf("output %q", out)
	}
	key, hash := strings.TrimPrefix(lines[0], "key:  "), strings.TrimPrefix(lines[1], "hash: ")
	if len(key) != 43 || hash != auth.HashKey(key) {
		t.Errorf("key %q hash %q", key, hash)
	}
	again, _, _ := run(t, "auth", "hash-key")
	if again == out {
		t.Error("two generated keys are equal")
	}

	out, stderr, err := runIn(t, key+"\n", "auth", "hash-key", "--stdin", "--stream", "live/studio1")
	if err != nil || out != hash+"\n" {
		t.Fatalf("--stdin: %q %v", out, err)
	}
	if !strings.Contains(stderr, `"live/studio1=`+hash+`"`) {
		t.Errorf("--stream: %q", stderr)
	}
	if _, stderr, _ := runIn(t, "short", "auth", "hash-key", "--stdin"); !strings.Contains(stderr, "warning") {
		t.Errorf("no warning for a short key: %q", stderr)
	}
	if _, _, err := runIn(t, "\n", "auth", "hash-key", "--stdin"); err == nil {
		t.Error("empty key accepted")
	}

	// The printed hash configures a key the publish chain accepts.
	c := config.Default()
	c.Auth.Publish.StaticKeys = []string{"live/studio1=" + hash}
	s, err := c.Auth.PublishSettings()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := auth.Build(s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := auth.PublishRequest{Protocol: "rtmp", Stream: "live/studio1", RemoteAddr: "192.0.2.1:1", Params: map[string]string{"key": key}}
	if err := chain.AuthorizePublish(context.Background(), req); err != nil {
		t.Errorf("generated key refused: %v", err)
	}
}

func TestTokenSecret(t *testing.T) {
	out, _, err := run(t, "token", "secret")
	if s := strings.TrimSpace(out); err != nil || len(s) < playback.MinSecretLength {
		t.Fatalf("token secret: %q %v", out, err)
	}
}

// tokenConfig writes a configuration with one playback key and returns its
// path and the key's secret file.
func tokenConfig(t *testing.T, extra string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "k1.secret")
	if err := os.WriteFile(secret, []byte(playback.GenerateSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "headwater.yaml")
	content := "playback:\n  tokens:\n    keys: [\"k1=" + secret + "\"]\n" + extra
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, secret
}

func TestTokenIssue(t *testing.T) {
	file, secret := tokenConfig(t, "origin:\n  address: \"127.0.0.1:8081\"\n")
	kr, err := playback.LoadKeyring([]playback.KeySettings{{ID: "k1", SecretFile: secret}}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "token", "issue", "--config", file, "--stream", "live/studio1", "--ttl", "2m", "--ip", "203.0.113.9")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(strings.TrimSpace(out))
	if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:8081" {
		t.Fatalf("URL %q", out)
	}
	tok, rest, ok := playback.SplitTokenPath(u.Path)
	if !ok || rest != "/live/studio1/index.m3u8" {
		t.Fatalf("path %q", u.Path)
	}
	c, err := kr.VerifyClaims(tok, rest, netip.MustParseAddr("203.0.113.9"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c.Expires); d < 110*time.Second || d > 2*time.Minute {
		t.Errorf("expires in %s, want 2m", d)
	}
	if kr.Verify(tok, rest, netip.MustParseAddr("203.0.113.10"), time.Now()) == nil {
		t.Error("the token is not bound to --ip")
	}

	out, _, err = run(t, "token", "issue", "--config", file, "--stream", "live/x", "--base", "https://cdn.example.com/")
	if err != nil || !strings.HasPrefix(out, "https://cdn.example.com/t/") || !strings.HasSuffix(out, "/live/x/index.m3u8\n") {
		t.Errorf("--base: %q %v", out, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "issue", "--stream", "live/x"}, "playback.tokens.keys is empty"},
		{[]string{"token", "issue", "--config", file}, `"stream" not set`},
		{[]string{"token", "issue", "--config", file, "--stream", "live/x", "--ttl", "-1s"}, "--ttl must be positive"},
		{[]string{"token", "issue", "--config", file, "--stream", "live/x", "--ip", "me"}, "--ip"},
		{[]string{"token", "issue", "--config", file, "--stream", "live/x", "--key", "k9"}, `"k9"`},
		{[]string{"token", "issue", "--config", file, "--stream", "../x"}, "--stream"},
	} {
		if _, _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestTokenIssuePlays runs a server requiring tokens, publishes with
// ffmpeg, and plays the URL `headwater token issue` prints with ffprobe.
func TestTokenIssuePlays(t *testing.T) {
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found", bin)
		}
	}
	file, _ := tokenConfig(t, "    required: true\n")
	cfg, err := config.Load(file, nil,
		config.Override{Path: "rtmp.address", Value: "127.0.0.1:0"},
		config.Override{Path: "origin.address", Value: "127.0.0.1:0"},
		config.Override{Path: "admin.address", Value: ""},
		config.Override{Path: "srt.address", Value: ""},
		config.Override{Path: "rtsp.address", Value: ""},
		config.Override{Path: "segmenter.segment_duration", Value: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	pub := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-t", "2.5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac",
		"-f", "flv", "rtmp://"+srv.RTMPAddr().String()+"/live/cli")
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("publish: %v\n%s", err, out)
	}

	out, _, err := run(t, "token", "issue", "--config", file, "--stream", "live/cli", "--base", "http://"+srv.OriginAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	playURL := strings.TrimSpace(out)
	probe, err := exec.Command("ffprobe", "-hide_banner", "-loglevel", "error",
		"-show_entries", "stream=codec_name", "-of", "csv=p=0", playURL).CombinedOutput()
	if err != nil || !strings.Contains(string(probe), "h264") || !strings.Contains(string(probe), "aac") {
		t.Fatalf("ffprobe %s: %v\n%s", playURL, err, probe)
	}
	if code, _ := httpGet("http://" + srv.OriginAddr().String() + "/live/cli/index.m3u8"); code != 403 {
		t.Errorf("without a token: %d, want 403", code)
	}
}

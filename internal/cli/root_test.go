package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := NewRootCommand(&stdout, &stderr, "")
	cmd.SetArgs(args)
	err := cmd.Execute()
	return stdout.String(), stderr.String(), err
}

func TestConfigDefaultsRoundTrip(t *testing.T) {
	out, _, err := run(t, "config", "defaults")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rtmp:", `address: ":1935"`, "part_duration: 200ms", `address: ":8080"`, `address: ":9090"`} {
		if !strings.Contains(out, want) {
			t.Errorf("defaults lack %q:\n%s", want, out)
		}
	}
	file := filepath.Join(t.TempDir(), "headwater.yaml")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	checked, _, err := run(t, "config", "check", file)
	if err != nil {
		t.Fatalf("config check of the defaults: %v", err)
	}
	if !strings.Contains(checked, "segment_duration: 2s") {
		t.Errorf("effective config:\n%s", checked)
	}
}

func TestConfigCheckRejectsBadFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "rtmp:\n  adress: \":1935\"\nsegmenter:\n  part_duration: soon\n"
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "config", "check", file)
	if err == nil {
		t.Fatal("bad file accepted")
	}
	for _, want := range []string{"bad.yaml", "rtmp.adress", "segmenter.part_duration"} {
		if !strings.Contains(err.Error()+stderr, want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}

func TestServeRejectsBadFlag(t *testing.T) {
	_, _, err := run(t, "serve", "--rtmp-address", "not an address")
	if err == nil || !strings.Contains(err.Error(), "--rtmp-address") {
		t.Fatalf("serve with a bad flag: %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "headwater ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

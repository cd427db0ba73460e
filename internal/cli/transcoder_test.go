package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func TestBuildForkServer(t *testing.T) {
	testpeer.RequireBinary(t, "the fork server library is compiled with cc: apt-get install -y gcc; ./scripts/test.sh installs it", "cc")
	dir := t.TempDir()
	out, _, err := run(t, "transcoder", "build-fork-server", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(out)
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".so") {
		t.Fatalf("printed %q", out)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), "\x7fELF") {
		t.Fatalf("%s is not an ELF library: %v", path, err)
	}
	// A second run reuses it.
	again, _, err := run(t, "transcoder", "build-fork-server", "--dir", dir)
	if err != nil || again != out {
		t.Fatalf("second run: %q, %v", again, err)
	}
}

func TestBuildForkServerNoCompiler(t *testing.T) {
	t.Setenv("CC", "/nonexistent/cc")
	_, _, err := run(t, "transcoder", "build-fork-server", "--dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cc") {
		t.Fatalf("err = %v", err)
	}
}

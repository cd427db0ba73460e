package testpeer

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// findTool returns the first of names found in PATH or, for names without
// a slash, in one of dirs.
func findTool(names []string, dirs ...string) (string, bool) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, true
			}
		}
	}
	return "", false
}

// ChromiumNames are the executables Chromium or Chrome is installed as, in
// the order scripts/test.sh looks for them.
var ChromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the headless browser the tests play pages in: $CHROMIUM
// when set, or the first of ChromiumNames in PATH. It fails t otherwise.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
		t.Fatalf("CHROMIUM=%s is not an executable", p)
	}
	if p, ok := findTool(ChromiumNames); ok {
		return p
	}
	t.Fatalf("chromium not found in PATH (looked for %v): apt-get install -y chromium, or set CHROMIUM; %s",
		ChromiumNames, installHint)
	return ""
}

// Nginx returns the nginx executable, in PATH or in /usr/sbin or
// /usr/local/sbin (not in a user's PATH on Debian). It fails t otherwise.
func Nginx(t testing.TB) string {
	t.Helper()
	if p, ok := findTool([]string{"nginx"}, "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"); ok {
		return p
	}
	t.Fatalf("nginx not found in PATH or /usr/sbin: apt-get install -y nginx-light; %s", installHint)
	return ""
}

// Node returns the node executable. It fails t without it.
func Node(t testing.TB) string {
	t.Helper()
	if p, ok := findTool([]string{"node", "nodejs"}); ok {
		return p
	}
	t.Fatalf("node not found in PATH: apt-get install -y nodejs; %s", installHint)
	return ""
}

// RepoRoot returns the repository root: the directory above the test's
// working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = up
	}
}

// PlayersDir is where scripts/test.sh installs the npm players the browser
// tests load (scripts/players/package.json), relative to the repository
// root.
const PlayersDir = ".cache/players"

// PlayerFile returns the file rel (such as
// "shaka-player/dist/shaka-player.compiled.js") of the npm players that
// scripts/test.sh installs under PlayersDir, or $env when set. It fails t
// when the file is missing.
func PlayerFile(t testing.TB, env, rel string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	p := filepath.Join(RepoRoot(t), PlayersDir, "node_modules", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found: run ./scripts/test.sh, which installs the players of scripts/players/package.json "+
			"with npm into %s (or set %s)", p, PlayersDir, env)
	}
	return p
}

// RequireLinux fails t unless it runs on Linux: for tests of /proc,
// process groups and other things that Linux always has.
func RequireLinux(t testing.TB, what string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Fatalf("%s needs Linux (%s); the test suite runs on Linux", what, runtime.GOOS)
	}
}

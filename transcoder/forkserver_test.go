package transcoder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// needForkServer builds the fork server library into the test binary's
// private directory; a missing ffmpeg or C compiler fails the test.
func needForkServer(t testing.TB) string {
	t.Helper()
	needFFmpeg(t)
	requireCC(t)
	lib, err := ForkServerLibrary(context.Background(), forkServerTestDir(t))
	if err != nil {
		t.Fatalf("fork server library: %v", err)
	}
	return lib
}

// requireCC fails t unless the C compiler the fork server is built with
// ($CC, else cc) is installed.
func requireCC(t testing.TB) {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	testpeer.RequireBinary(t, "the fork server library is compiled with $CC or cc: apt-get install gcc", cc)
}

var (
	forkServerDirMu sync.Mutex
	forkServerDir   string // removed by TestMain
)

// forkServerTestDir is the test binary's private library directory (built
// once per binary).
func forkServerTestDir(t testing.TB) string {
	t.Helper()
	forkServerDirMu.Lock()
	defer forkServerDirMu.Unlock()
	if forkServerDir == "" {
		d, err := os.MkdirTemp("", "transcoder-forkserver-")
		if err != nil {
			t.Fatal(err)
		}
		forkServerDir = d
	}
	return forkServerDir
}

// TestForkServerLibraryRefusesUnsafeDir checks the library directory is
// private before anything is built in it or loaded from it: owned by the
// user, not writable by group or other users, not a symlink; a missing one
// is created 0700 and a readable one tightened to 0700.
func TestForkServerLibraryRefusesUnsafeDir(t *testing.T) {
	requireCC(t)
	ctx := context.Background()
	base := t.TempDir()
	mkdir := func(name string, perm os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, perm); err != nil {
			t.Fatal(err)
		}
		return d
	}
	real := mkdir("real", 0o700)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{
		"mode 0777": mkdir("open", 0o777),
		"mode 0770": mkdir("group", 0o770),
		"mode 0703": mkdir("other", 0o703),
		"symlink":   link,
	}
	if os.Getuid() == 0 {
		d := mkdir("someone-else", 0o700)
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		dirs["owned by uid 65534"] = d
	} else {
		dirs["owned by root"] = "/"
	}
	// No HOME nor XDG_CACHE_HOME: the fallback in the temporary directory,
	// created there beforehand by someone else.
	tmp := t.TempDir()
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("TMPDIR", tmp)
	shared := filepath.Join(tmp, "headwater-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	dirs["default, shared temporary directory"] = ""
	for what, dir := range dirs {
		lib, err := ForkServerLibrary(ctx, dir)
		if err == nil || !strings.Contains(err.Error(), "fork server: library directory") {
			t.Errorf("%s: library %q, err %v; want it refused", what, lib, err)
		}
	}
	for _, d := range []string{real, dirs["mode 0777"], dirs["mode 0770"], dirs["mode 0703"], shared} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s: %d files written into a refused directory", d, len(ents))
		}
	}

	// Readable but not writable by others (what an earlier Headwater made):
	// tightened, then used.
	for _, perm := range []os.FileMode{0o755, 0o750, 0o705} {
		d := mkdir(fmt.Sprintf("readable-%o", perm), perm)
		if _, err := ForkServerLibrary(ctx, d); err != nil {
			t.Errorf("mode %#o: %v; want it tightened and used", perm, err)
		}
		if st, err := os.Lstat(d); err != nil || st.Mode() != os.ModeDir|0o700 {
			t.Errorf("mode %#o: now %v, %v; want 0700", perm, st.Mode(), err)
		}
	}

	// A missing directory is created private (its parents too).
	missing := filepath.Join(t.TempDir(), "cache", "headwater")
	if _, err := ForkServerLibrary(ctx, missing); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{missing, filepath.Dir(missing)} {
		if st, err := os.Lstat(d); err != nil || st.Mode() != os.ModeDir|0o700 {
			t.Errorf("%s: %v, %v; want a 0700 directory", d, st.Mode(), err)
		}
	}
}

// TestForkServerLibraryTampered replaces the built library with another
// one: it is neither preloaded nor returned again, but rebuilt.
func TestForkServerLibraryTampered(t *testing.T) {
	needFFmpeg(t)
	requireCC(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "lib")
	lib, err := ForkServerLibrary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	// The replacement leaves a mark when it is loaded.
	marker := filepath.Join(t.TempDir(), "loaded")
	src := filepath.Join(t.TempDir(), "evil.c")
	code := "#include <fcntl.h>\n#include <unistd.h>\n" +
		"__attribute__((constructor)) static void evil(void) { close(open(" + strconv.Quote(marker) + ", O_CREAT | O_WRONLY, 0600)); }\n"
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(t.TempDir(), "evil.so")
	if out, err := exec.Command("cc", "-fPIC", "-shared", "-o", evil, src).CombinedOutput(); err != nil {
		t.Fatalf("compiling the replacement: %v: %s", err, out)
	}
	evilBytes, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, evilBytes, 0o755); err != nil {
		t.Fatal(err)
	}
	if fs, err := startForkServer("ffmpeg", lib, 10*time.Second); err == nil {
		fs.close()
		t.Error("a fork server started with the replaced library")
	} else if !strings.Contains(err.Error(), "fork server") {
		t.Errorf("err = %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the replaced library was preloaded")
	}

	again, err := ForkServerLibrary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(again); err != nil || bytes.Equal(b, evilBytes) {
		t.Fatalf("%s: the replaced library returned again (%v)", again, err)
	}
	fs, err := startForkServer("ffmpeg", again, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fs.close()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the replaced library was preloaded")
	}

	// A symlink in its place is refused too.
	if err := os.Remove(again); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(evil, again); err != nil {
		t.Fatal(err)
	}
	if fs, err := startForkServer("ffmpeg", again, 10*time.Second); err == nil {
		fs.close()
		t.Error("a fork server started with a symlinked library")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the symlinked library was preloaded")
	}
}

func TestForkServerLibraryIsBuiltOnce(t *testing.T) {
	lib := needForkServer(t)
	st, err := os.Stat(lib)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ForkServerLibrary(context.Background(), forkServerTestDir(t))
	if err != nil || again != lib {
		t.Fatalf("second build: %q, %v; want %q", again, err, lib)
	}
	st2, _ := os.Stat(lib)
	if !st2.ModTime().Equal(st.ModTime()) {
		t.Error("the library was rebuilt")
	}
}

func TestForkServerLibraryBadCompiler(t *testing.T) {
	t.Setenv("CC", "/nonexistent/cc")
	_, err := ForkServerLibrary(context.Background(), filepath.Join(t.TempDir(), "lib"))
	if err == nil || !strings.Contains(err.Error(), "compiling with /nonexistent/cc") {
		t.Fatalf("err = %v", err)
	}
}

// forkRun forks ffmpeg with args and returns its stdout, stderr and exit.
func forkRun(t *testing.T, fs *forkServer, args ...string) (string, string, *forkChild) {
	t.Helper()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	pid, c, err := fs.spawn(args, devnull, outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Fatalf("pid %d", pid)
	}
	out, _ := io.ReadAll(outR)
	serr, _ := io.ReadAll(errR)
	outR.Close()
	errR.Close()
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit reported")
	}
	return string(out), string(serr), c
}

func TestForkServerRunsFFmpeg(t *testing.T) {
	lib := needForkServer(t)
	before := len(childProcs())
	fs, err := startForkServer("ffmpeg", lib, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The descriptor the library was preloaded from is closed.
	fds, _ := os.ReadDir("/proc/" + strconv.Itoa(fs.cmd.Process.Pid) + "/fd")
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/" + strconv.Itoa(fs.cmd.Process.Pid) + "/fd/" + fd.Name()); target == lib {
			t.Errorf("the fork server keeps descriptor %s on its library", fd.Name())
		}
	}
	out, _, c := forkRun(t, fs, "-hide_banner", "-version")
	if !strings.HasPrefix(out, "ffmpeg version") || c.status != 0 || c.err != nil {
		t.Fatalf("status %v err %v out %q", c.status, c.err, out)
	}
	// A real transcode through pipes: frames out, CPU reported.
	out, serr, c := forkRun(t, fs, "-hide_banner", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30:duration=1",
		"-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", "pipe:1")
	if c.status != 0 || len(out) < 10000 || c.cpu <= 0 {
		t.Fatalf("status %v, %d bytes out, cpu %v: %s", c.status, len(out), c.cpu, serr)
	}
	// A failing run: its exit status and stderr come back.
	_, serr, c = forkRun(t, fs, "-hide_banner", "-no-such-option")
	if c.status.ExitStatus() == 0 || !strings.Contains(serr, "no-such-option") {
		t.Fatalf("status %v stderr %q", c.status, serr)
	}
	if e := (&forkExitError{c.status}).Error(); !strings.HasPrefix(e, "exit status ") {
		t.Errorf("error %q", e)
	}
	// Descriptors are checked: a request with the wrong count is refused
	// and the server goes on.
	if _, _, err := fs.conn.WriteMsgUnix([]byte("ffmpeg\x00"), nil, nil); err != nil {
		t.Fatal(err)
	}
	r := <-fs.replies
	if r.pid != 0 || r.errno != syscall.EINVAL {
		t.Fatalf("reply %+v", r)
	}
	if out, _, _ := forkRun(t, fs, "-version"); !strings.HasPrefix(out, "ffmpeg version") {
		t.Fatal("server did not survive a bad request")
	}
	fs.close()
	testpeer.WaitFor(t, 10*time.Second, "fork server to exit", func() bool { return len(childProcs()) <= before })
}

func TestForkServerDeathEndsChildren(t *testing.T) {
	lib := needForkServer(t)
	before := len(childProcs())
	fs, err := startForkServer("ffmpeg", lib, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, w, _ := os.Pipe()
	defer w.Close()
	outR, outW, _ := os.Pipe()
	defer outR.Close()
	_, c, err := fs.spawn([]string{"-hide_banner", "-f", "mpegts", "-i", "pipe:0", "-f", "null", "-"}, in, outW, outW)
	in.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	fs.kill() // the child blocks on its input meanwhile
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("child not reported gone")
	}
	if c.err == nil {
		t.Error("no error for a child of a dead server")
	}
	<-fs.done
	if _, _, err := fs.spawn([]string{"-version"}, in, outW, outW); err == nil {
		t.Error("spawn on a dead server succeeded")
	}
	testpeer.WaitFor(t, 10*time.Second, "children to die with the server", func() bool { return len(childProcs()) <= before })
}

func TestForkServerNotPreloadable(t *testing.T) {
	needFFmpeg(t)
	// A "library" that is not one, under a name with its hash: the dynamic
	// linker ignores it, ffmpeg runs its usual main, and the start fails
	// with a reason.
	dir := t.TempDir()
	content := []byte("not an ELF file")
	sum := sha256.Sum256(content)
	bogus := filepath.Join(dir, "bogus-"+hex.EncodeToString(sum[:])+".so")
	if err := os.WriteFile(bogus, content, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := startForkServer("ffmpeg", bogus, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not start as a fork server") {
		t.Fatalf("err = %v", err)
	}
	// Without the hash in its name it is not even tried.
	plain := filepath.Join(dir, "bogus.so")
	if err := os.WriteFile(plain, content, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = startForkServer("ffmpeg", plain, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no content hash in its name") {
		t.Fatalf("err = %v", err)
	}
}

// TestRunnerForksAndRecovers runs jobs through a runner using the fork
// server, kills the server, and checks the runner restarts it and keeps
// running jobs.
func TestRunnerForksAndRecovers(t *testing.T) {
	needForkServer(t)
	fx := tinyFixture(t)
	lad := tinyLadder()
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	before := len(childProcs())
	goroutines := runtime.NumGoroutine()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := NewFFmpegRunner(FFmpegConfig{Warm: 1, Prewarm: []Ladder{lad}, ForkServer: ForkServerOn,
		ForkServerDir: forkServerTestDir(t)}, m, testLogger(t))
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if !r.Forking() || testutil.ToFloat64(m.forkServer) != 1 {
		t.Fatal("not forking")
	}
	testpeer.WaitFor(t, 20*time.Second, "warm process", r.Ready)
	gop := fx.gops()[0]
	for i := 0; i < 3; i++ {
		outs, st, err := r.Run(context.Background(), jobFor(gop, lad))
		if err != nil {
			t.Fatalf("run %d: %v (%s)", i, err, st.Stderr)
		}
		if len(outs) != len(lad) || len(outs[0].Frames) != len(gop) || st.CPU <= 0 {
			t.Fatalf("run %d: %d outputs, %d frames of %d, cpu %v", i, len(outs), len(outs[0].Frames), len(gop), st.CPU)
		}
	}
	r.fsMu.Lock()
	old := r.fs
	r.fsMu.Unlock()
	old.kill()
	<-old.done
	// The warm process died with the server: the next job may start cold
	// (or executed while the server restarts), and still succeeds.
	testpeer.WaitFor(t, 20*time.Second, "fork server restarted", func() bool {
		_, _, err := r.Run(context.Background(), jobFor(gop, lad))
		return err == nil && r.Forking()
	})
	if testutil.ToFloat64(m.forkServerRestarts) < 1 {
		t.Error("restart not counted")
	}
	r.Close()
	if r.Forking() {
		t.Error("still forking after Close")
	}
	testpeer.WaitFor(t, 10*time.Second, "processes to exit", func() bool { return len(childProcs()) <= before })
	testpeer.WaitFor(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

func TestRunnerForkServerModes(t *testing.T) {
	needFFmpeg(t)
	t.Setenv("CC", "/nonexistent/cc")
	dir := filepath.Join(t.TempDir(), "lib")
	r := NewFFmpegRunner(FFmpegConfig{Warm: -1, ForkServer: ForkServerOn, ForkServerDir: dir}, nil, testLogger(t))
	if err := r.Start(); err == nil || !strings.Contains(err.Error(), "compiling with /nonexistent/cc") {
		t.Fatalf("on without a compiler: %v", err)
	}
	r.Close()
	r = NewFFmpegRunner(FFmpegConfig{Warm: -1, ForkServer: ForkServerAuto, ForkServerDir: dir}, nil, testLogger(t))
	if err := r.Start(); err != nil {
		t.Fatalf("auto without a compiler: %v", err)
	}
	if r.Forking() {
		t.Error("forking without a library")
	}
	r.Close()
	if _, err := ParseForkServerMode("sometimes"); err == nil {
		t.Error("bad mode accepted")
	}
}

func TestForkServerRefusesWrapperScript(t *testing.T) {
	lib := needForkServer(t)
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	// A wrapper script: the preload lands in the shell, which would fork
	// shells. The start checks the forked program is ffmpeg.
	wrapper := t.TempDir() + "/ffmpeg"
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+ff+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := len(childProcs())
	_, err = startForkServer(wrapper, lib, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "not ffmpeg") {
		t.Fatalf("err = %v", err)
	}
	testpeer.WaitFor(t, 10*time.Second, "processes to exit", func() bool { return len(childProcs()) <= before })
}

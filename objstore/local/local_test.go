package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/headwater-live/headwater/objstore"
)

func newBackend(t *testing.T) (*Backend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rec")
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b, dir
}

func put(t *testing.T, b *Backend, key, data string) {
	t.Helper()
	if err := b.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), "video/mp4"); err != nil {
		t.Fatal(err)
	}
}

func listKeys(t *testing.T, b *Backend, prefix string) []string {
	t.Helper()
	var keys []string
	err := b.List(t.Context(), prefix, func(i objstore.Info) error {
		keys = append(keys, fmt.Sprintf("%s:%d", i.Key, i.Size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// dirFiles returns every file and directory under dir, relative, sorted.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			if d.IsDir() {
				rel += "/"
			}
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutGetStatDelete(t *testing.T) {
	b, dir := newBackend(t)
	ctx := t.Context()
	put(t, b, "live/cam1/s1/720p/seg1.m4s", "segment one")
	put(t, b, "live/cam1/s1/720p/seg1.m4s", "segment 1, again")

	rc, info, err := b.Get(ctx, "live/cam1/s1/720p/seg1.m4s")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "segment 1, again" || info.Key != "live/cam1/s1/720p/seg1.m4s" || info.Size != 16 {
		t.Fatalf("Get = %q, %+v", got, info)
	}
	st, err := b.Stat(ctx, "live/cam1/s1/720p/seg1.m4s")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != 16 || !st.Modified.Equal(info.Modified) {
		t.Fatalf("Stat = %+v, Get's info %+v", st, info)
	}
	if want := []string{"live/", "live/cam1/", "live/cam1/s1/", "live/cam1/s1/720p/", "live/cam1/s1/720p/seg1.m4s"}; !equal(dirFiles(t, dir), want) {
		t.Fatalf("files %v, want %v (no temporary file left)", dirFiles(t, dir), want)
	}

	for _, key := range []string{"live/cam1/s1/720p/seg2.m4s", "live/cam1", "live/cam1/s1/720p/seg1.m4s/x"} {
		if _, _, err := b.Get(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", key, err)
		}
	}
	_, _, err = b.Get(ctx, "live/cam1/s1/720p/seg2.m4s")
	if want := "dir get live/cam1/s1/720p/seg2.m4s: objstore: object not found (no such file or directory)"; err.Error() != want {
		t.Errorf("Get error %q, want %q", err, want)
	}

	// Deleting the only object removes the directories it leaves empty;
	// a missing key or a directory's is not an error.
	put(t, b, "live/other.txt", "x")
	for _, key := range []string{"live/cam1/s1/720p/seg1.m4s", "live/cam1/s1/720p/seg1.m4s", "live/nothing", "live"} {
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%s) = %v", key, err)
		}
	}
	if want := []string{"live/", "live/other.txt"}; !equal(dirFiles(t, dir), want) {
		t.Fatalf("after Delete: files %v, want %v", dirFiles(t, dir), want)
	}
	if got := b.String(); got != "dir "+dir {
		t.Errorf("String() = %q", got)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestPutShortBody(t *testing.T) {
	b, dir := newBackend(t)
	err := b.Put(t.Context(), "a/b", strings.NewReader("abc"), 4, "")
	if err == nil || err.Error() != "dir put a/b: body has 3 bytes, want 4" {
		t.Fatalf("Put with a short body = %v", err)
	}
	if want := []string{"a/"}; !equal(dirFiles(t, dir), want) {
		t.Fatalf("files %v, want %v: the temporary file removed", dirFiles(t, dir), want)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Put(ctx, "a/b", strings.NewReader("abc"), 3, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with an ended context = %v", err)
	}
}

func TestKeySafety(t *testing.T) {
	b, dir := newBackend(t)
	ctx := t.Context()
	for _, tc := range []struct {
		key  string
		want string // ValidateKey's error, "" for a valid key
	}{
		{"live/cam1/seg1.m4s", ""},
		{"a", ""},
		{".hidden/..x/x..", ""},
		{"live/caméra/index.json", ""},
		{"", `invalid object key "": length 0 not in 1..1024`},
		{strings.Repeat("a", 1025), `invalid object key "` + strings.Repeat("a", 1025) + `": length 1025 not in 1..1024`},
		{"..", `invalid object key "..": a ".." element`},
		{"../etc/passwd", `invalid object key "../etc/passwd": a ".." element`},
		{"live/../../x", `invalid object key "live/../../x": a ".." element`},
		{"live/..", `invalid object key "live/..": a ".." element`},
		{"./x", `invalid object key "./x": a "." element`},
		{"/etc/passwd", `invalid object key "/etc/passwd": an absolute path`},
		{"live//x", `invalid object key "live//x": an empty element`},
		{"live/", `invalid object key "live/": an empty element`},
		{"live\\..\\x", `invalid object key "live\\..\\x": character '\\' at 4`},
		{"a\x00b", `invalid object key "a\x00b": character '\x00' at 1`},
		{"a\xffb", `invalid object key "a\xffb": not valid UTF-8`},
		{"x/.objstore-tmp-1", `invalid object key "x/.objstore-tmp-1": element ".objstore-tmp-1" is reserved for temporary files`},
	} {
		err := ValidateKey(tc.key)
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
			t.Errorf("ValidateKey(%q) = %v, want %q", tc.key, err, tc.want)
			continue
		}
		if tc.want == "" {
			continue
		}
		ops := map[string]error{
			"put":    b.Put(ctx, tc.key, strings.NewReader("x"), 1, ""),
			"delete": b.Delete(ctx, tc.key),
		}
		_, _, ops["get"] = b.Get(ctx, tc.key)
		_, ops["stat"] = b.Stat(ctx, tc.key)
		for op, err := range ops {
			if want := "dir " + op + " " + tc.key + ": " + tc.want; fmt.Sprint(err) != want || !errors.Is(err, ErrInvalidKey) {
				t.Errorf("%s(%q) = %v, want %q", op, tc.key, err, want)
			}
		}
	}
	for _, p := range []string{"..", "../", "../x", "/", "/x", "a//", "a/../b"} {
		err := b.List(ctx, p, func(objstore.Info) error { return nil })
		if !errors.Is(err, ErrInvalidKey) || !strings.HasPrefix(err.Error(), "dir list "+p+": prefix: invalid object key") {
			t.Errorf("List(%q) = %v, want an invalid prefix", p, err)
		}
	}
	if got := dirFiles(t, dir); len(got) != 0 {
		t.Fatalf("files %v after invalid keys", got)
	}
	if got := dirFiles(t, filepath.Dir(dir)); !equal(got, []string{"rec/"}) {
		t.Fatalf("files beside the directory: %v", got)
	}
}

func TestListOrder(t *testing.T) {
	b, dir := newBackend(t)
	for _, k := range []string{"a/b", "a.txt", "a-b", "a/a/z", "a0", "b", "live/cam1/s2/x", "live/cam1/s1/y", "live/cam10/z", "live/cam1.json"} {
		put(t, b, k, k)
	}
	// A temporary file and a symbolic link are not objects.
	if err := os.WriteFile(filepath.Join(dir, "a", tmpPrefix+"x"), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "b"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-b:3", "a.txt:5", "a/a/z:5", "a/b:3", "a0:2", "b:1", "live/cam1.json:14", "live/cam1/s1/y:14", "live/cam1/s2/x:14", "live/cam10/z:12"}},
		{"a", []string{"a-b:3", "a.txt:5", "a/a/z:5", "a/b:3", "a0:2"}},
		{"a/", []string{"a/a/z:5", "a/b:3"}},
		{"live/cam1", []string{"live/cam1.json:14", "live/cam1/s1/y:14", "live/cam1/s2/x:14", "live/cam10/z:12"}},
		{"live/cam1/", []string{"live/cam1/s1/y:14", "live/cam1/s2/x:14"}},
		{"live/cam1/s2/x", []string{"live/cam1/s2/x:14"}},
		{"live/cam2/", nil},
		{"nothing/at/all", nil},
		{"b/", nil},
	} {
		if got := listKeys(t, b, tc.prefix); !equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	var seen []string
	err := b.List(t.Context(), "", func(i objstore.Info) error {
		seen = append(seen, i.Key)
		if len(seen) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !equal(seen, []string{"a-b", "a.txt", "a/a/z"}) {
		t.Fatalf("List stopped: %v after %v", err, seen)
	}
}

func TestPutFile(t *testing.T) {
	b, dir := newBackend(t)
	src := filepath.Join(t.TempDir(), "spooled")
	if err := os.WriteFile(src, []byte("renamed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.PutFile(t.Context(), "x/y/seg.m4s", src); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "x/y/seg.m4s"), "renamed")
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source after PutFile: %v", err)
	}

	// Across file systems (tmpfs /dev/shm to the test's temporary
	// directory) the rename fails with EXDEV and the file is copied.
	shm, err := os.MkdirTemp("/dev/shm", "objstore-local-test-")
	if err != nil {
		t.Fatalf("this test needs /dev/shm (a tmpfs, another file system than %s): %v", os.TempDir(), err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	var a, c syscall.Stat_t
	if err := syscall.Stat(shm, &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(dir, &c); err != nil {
		t.Fatal(err)
	}
	if a.Dev == c.Dev {
		t.Fatalf("/dev/shm and %s are one file system: the test needs two (set TMPDIR to a directory on disk)", dir)
	}
	src = filepath.Join(shm, "spooled")
	if err := os.WriteFile(src, []byte("copied across"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.PutFile(t.Context(), "x/y/seg.m4s", src); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "x/y/seg.m4s"), "copied across")
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source after a copying PutFile: %v", err)
	}
	if want := []string{"x/", "x/y/", "x/y/seg.m4s"}; !equal(dirFiles(t, dir), want) {
		t.Fatalf("files %v, want %v", dirFiles(t, dir), want)
	}

	// A missing source fails and stores nothing.
	err = b.PutFile(t.Context(), "x/z", filepath.Join(shm, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "dir put file x/z: open ") {
		t.Fatalf("PutFile of a missing file = %v", err)
	}

	// PutSyncedFile renames (or copies) the same way, and fails alike.
	for i, from := range []string{t.TempDir(), shm} {
		src = filepath.Join(from, "synced")
		if err := os.WriteFile(src, []byte("synced already"), 0o644); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("x/s/%d.m4s", i)
		if err := b.PutSyncedFile(t.Context(), key, src); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, key), "synced already")
		if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("source after PutSyncedFile: %v", err)
		}
	}
	if err := b.PutSyncedFile(t.Context(), "x/z", filepath.Join(shm, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("PutSyncedFile of a missing file = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x/z")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("x/z after a failed PutSyncedFile: %v", err)
	}
}

func checkFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %q, want %q", path, got, want)
	}
}

func TestCheck(t *testing.T) {
	base := t.TempDir()
	check := func(dir string) error {
		t.Helper()
		b, err := New(dir)
		if err != nil {
			t.Fatal(err)
		}
		return b.Check(t.Context())
	}

	// Created when missing, with its parents; the probe file is removed.
	dir := filepath.Join(base, "new", "rec")
	if err := check(dir); err != nil {
		t.Fatal(err)
	}
	if got := dirFiles(t, dir); len(got) != 0 {
		t.Fatalf("Check left %v", got)
	}

	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := check(file); fmt.Sprint(err) != "recording dir "+file+": not a directory" {
		t.Errorf("Check of a file = %v", err)
	}
	under := filepath.Join(file, "rec")
	if err := check(under); fmt.Sprint(err) != "recording dir "+under+": cannot create: not a directory" ||
		!errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Check under a file = %v", err)
	}

	ro := filepath.Join(base, "readonly")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	want := denyWrites(t, ro)
	err := check(ro)
	if fmt.Sprint(err) != "recording dir "+ro+": not writable: "+want.Error() || !errors.Is(err, want) {
		t.Errorf("Check of a read-only directory = %v, want not writable: %v", err, want)
	}
	if _, err := New(""); fmt.Sprint(err) != "recording dir: empty path" {
		t.Errorf("New(\"\") = %v", err)
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (chattr +i), which
// golang.org/x/sys/unix does not define.
const fsImmutableFL = 0x10

// denyWrites makes the directory dir refuse new files until the test
// ends, and returns the error creating one then fails with: for root,
// whom permissions do not stop, by the file system's immutable flag
// (EPERM); for others by mode 0555 (EACCES).
func denyWrites(t *testing.T, dir string) error {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Error(err)
			}
		})
		return syscall.EACCES
	}
	setFlags := func(on bool) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		if on {
			flags |= fsImmutableFL
		} else {
			flags &^= fsImmutableFL
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags)
	}
	if err := setFlags(true); err != nil {
		t.Fatalf("setting the immutable flag on %s (the test runs as root, whom modes do not stop; "+
			"it needs a file system with chattr +i, such as ext4, for TMPDIR): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := setFlags(false); err != nil {
			t.Errorf("clearing the immutable flag of %s: %v", dir, err)
		}
	})
	return syscall.EPERM
}

func TestConcurrentPutDelete(t *testing.T) {
	// Delete removes directories left empty while Puts create files in
	// them: every Put still lands.
	b, dir := newBackend(t)
	ctx := t.Context()
	const n = 200
	errs := make(chan error, 2)
	go func() {
		for i := range n {
			if err := b.Put(ctx, fmt.Sprintf("d/e/f%d", i), bytes.NewReader([]byte("x")), 1, ""); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	go func() {
		for i := range n {
			if err := b.Delete(ctx, fmt.Sprintf("d/e/f%d", i)); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := b.Delete(ctx, fmt.Sprintf("d/e/f%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := dirFiles(t, dir); len(got) != 0 {
		t.Fatalf("files left: %v", got)
	}
}

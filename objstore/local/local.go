// Package local is the objstore backend that keeps objects as files in a
// local directory: the key "live/cam1/seg1.m4s" is the file
// <dir>/live/cam1/seg1.m4s. Writes are crash-safe: an object is written
// to a temporary file in its directory, synced, renamed into place and
// the directory synced, so after a crash a key holds either its old or
// its new content, never a torn one.
//
// Temporary files are named ".objstore-tmp-*"; List leaves them out and
// ValidateKey rejects keys that would collide with them. A process killed
// in the middle of a Put may leave one behind; it is never listed.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/headwater-live/headwater/objstore"
)

// Backend stores objects as files under a directory. It is safe for
// concurrent use, also by several Backends on the same directory.
type Backend struct {
	dir  string // as given, for messages
	root string // absolute
}

var (
	_ objstore.Backend          = (*Backend)(nil)
	_ objstore.SyncedFilePutter = (*Backend)(nil)
)

// New returns the backend of dir, which need not exist yet: Check creates
// it, and Put creates the directories a key needs. It fails only for an
// empty path or one that cannot be made absolute.
func New(dir string) (*Backend, error) {
	if dir == "" {
		return nil, errors.New("recording dir: empty path")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("recording dir %s: %w", dir, err)
	}
	return &Backend{dir: dir, root: root}, nil
}

// String names the backend: "dir <dir as given to New>".
func (b *Backend) String() string { return "dir " + b.dir }

// path returns the file of key, or an error wrapping ErrInvalidKey.
func (b *Backend) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

// Check makes sure the directory exists (creating it if need be) and that
// a file can be created in it and removed again. Its errors name the
// directory and the reason: "recording dir /x: not writable: permission
// denied", "recording dir /x: not a directory", "recording dir /x: cannot
// create: ...".
func (b *Backend) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recording dir %s: %w", b.dir, err)
	}
	if st, err := os.Stat(b.root); err == nil && !st.IsDir() {
		return fmt.Errorf("recording dir %s: not a directory", b.dir)
	}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		return fmt.Errorf("recording dir %s: cannot create: %w", b.dir, cause(err))
	}
	f, name, err := createTemp(b.root)
	if err != nil {
		return fmt.Errorf("recording dir %s: not writable: %w", b.dir, cause(err))
	}
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("recording dir %s: cannot remove a file: %w", b.dir, cause(err))
	}
	return nil
}

// cause strips the path from a *fs.PathError (the messages name the
// directory already), leaving "permission denied" and the like.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Put writes size bytes of body to a temporary file beside key's file,
// syncs it, renames it into place and syncs the directory. A size below
// zero means unknown: whatever body holds is written. contentType is not
// kept.
func (b *Backend) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	p, err := b.path(key)
	if err != nil {
		return fmt.Errorf("dir put %s: %w", key, err)
	}
	if err := b.put(ctx, p, body, size); err != nil {
		return fmt.Errorf("dir put %s: %w", key, err)
	}
	return nil
}

// put writes body to the file p crash-safely.
func (b *Backend) put(ctx context.Context, p string, body io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	f, tmp, err := b.createIn(dir)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, ctxReader{ctx, body})
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("body has %d bytes, want %d", n, size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		committed = true
		return fmt.Errorf("rename into place: %w", err)
	}
	committed = true
	return syncDir(dir)
}

// PutFile moves the file at path to key: a rename (after syncing the
// file) when both are on one file system, else a crash-safe copy after
// which path is removed. On failure path is left as it was.
func (b *Backend) PutFile(ctx context.Context, key, path string) error {
	return b.putFile(ctx, key, path, true)
}

// PutSyncedFile is PutFile of a file already durable: it is renamed into
// place without being synced first (the directory still is, after the
// rename).
func (b *Backend) PutSyncedFile(ctx context.Context, key, path string) error {
	return b.putFile(ctx, key, path, false)
}

// putFile is PutFile, syncing the file before its rename when sync is set.
func (b *Backend) putFile(ctx context.Context, key, path string, sync bool) error {
	p, err := b.path(key)
	if err != nil {
		return fmt.Errorf("dir put file %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir put file %s: %w", key, err)
	}
	if sync {
		if err := syncFile(path); err != nil {
			return fmt.Errorf("dir put file %s: %w", key, err)
		}
	}
	dir := filepath.Dir(p)
	err = b.withDir(dir, func() error { return os.Rename(path, p) })
	if errors.Is(err, syscall.EXDEV) {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("dir put file %s: %w", key, err)
		}
		defer f.Close()
		if err := b.put(ctx, p, f, -1); err != nil {
			return fmt.Errorf("dir put file %s: copy from %s: %w", key, path, err)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("dir put file %s: remove %s after copying it: %w", key, path, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("dir put file %s: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("dir put file %s: %w", key, err)
	}
	return nil
}

// syncFile syncs the file at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// createIn creates a new temporary file in dir, creating dir first.
func (b *Backend) createIn(dir string) (*os.File, string, error) {
	var f *os.File
	var name string
	err := b.withDir(dir, func() error {
		var err error
		f, name, err = createTemp(dir)
		return err
	})
	return f, name, err
}

// withDir creates dir (each new directory synced into its parent) and
// runs op, again when op fails because a concurrent Delete removed the
// directory, now empty, in between.
func (b *Backend) withDir(dir string, op func() error) error {
	var err error
	for range 5 {
		if err = b.mkdirAll(dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if err = op(); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

// mkdirAll creates dir and its missing parents under the root, syncing
// the parent of each directory it creates so that they survive a crash.
func (b *Backend) mkdirAll(dir string) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if dir != b.root {
		if err := b.mkdirAll(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// createTemp creates a new file named tmpPrefix+<random> in dir, with the
// mode 0644 less the umask.
func createTemp(dir string) (*os.File, string, error) {
	for {
		name := filepath.Join(dir, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
}

// syncDir syncs the directory dir, making the renames and creations in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// ctxReader is a reader that fails once ctx has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader unless ctx has ended.
func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get opens the file of key. The error wraps objstore.ErrNotFound when
// there is none (or key names a directory).
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, objstore.Info, error) {
	p, err := b.path(key)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, objstore.Info{}, fmt.Errorf("dir get %s: %w", key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, objstore.Info{}, fmt.Errorf("dir get %s: %w", key, notFound(err))
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = objstore.ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, objstore.Info{}, fmt.Errorf("dir get %s: %w", key, err)
	}
	return f, objstore.Info{Key: key, Size: st.Size(), Modified: st.ModTime()}, nil
}

// notFound turns the error of a missing file (or of a file where a
// directory of the key's path should be) into one wrapping
// objstore.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%w)", objstore.ErrNotFound, cause(err))
	}
	return err
}

// Stat describes the file of key.
func (b *Backend) Stat(ctx context.Context, key string) (objstore.Info, error) {
	p, err := b.path(key)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return objstore.Info{}, fmt.Errorf("dir stat %s: %w", key, err)
	}
	st, err := os.Stat(p)
	if err == nil && st.IsDir() {
		err = objstore.ErrNotFound
	}
	if err != nil {
		return objstore.Info{}, fmt.Errorf("dir stat %s: %w", key, notFound(err))
	}
	return objstore.Info{Key: key, Size: st.Size(), Modified: st.ModTime()}, nil
}

// List calls fn for every regular file whose key starts with prefix, in
// lexical key order ("a.txt" before "a/b": keys are compared as strings,
// not walked directory by directory). Symbolic links and temporary files
// are left out.
func (b *Backend) List(ctx context.Context, prefix string, fn func(objstore.Info) error) error {
	if err := ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("dir list %s: %w", prefix, err)
	}
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	if err := b.list(ctx, start, prefix, fn); err != nil {
		return fmt.Errorf("dir list %s: %w", prefix, err)
	}
	return nil
}

// listItem is a directory entry met by list.
type listItem struct {
	key   string // the entry's key
	order string // what it sorts by: key, plus "/" for a directory
	dir   bool
}

// list lists the keys under the directory of key rel ("" for the root)
// that start with prefix.
func (b *Backend) list(ctx context.Context, rel, prefix string, fn func(objstore.Info) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(b.root, filepath.FromSlash(rel))
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	items := make([]listItem, 0, len(ents))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		key := e.Name()
		if rel != "" {
			key = rel + "/" + key
		}
		switch {
		case e.IsDir():
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				items = append(items, listItem{key: key, order: key + "/", dir: true})
			}
		case e.Type().IsRegular():
			if strings.HasPrefix(key, prefix) {
				items = append(items, listItem{key: key, order: key})
			}
		}
	}
	slices.SortFunc(items, func(a, b listItem) int { return strings.Compare(a.order, b.order) })
	for _, it := range items {
		if it.dir {
			if err := b.list(ctx, it.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		st, err := os.Stat(filepath.Join(b.root, filepath.FromSlash(it.key)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return err
		}
		if err := fn(objstore.Info{Key: it.key, Size: st.Size(), Modified: st.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the file of key, then each parent directory up to the
// root that this left empty. A missing file, or a key naming a
// directory, is not an error (and removes nothing).
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.path(key)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("dir delete %s: %w", key, err)
	}
	if st, err := os.Lstat(p); err != nil || st.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("dir delete %s: %w", key, err)
	}
	for dir := filepath.Dir(p); dir != b.root && strings.HasPrefix(dir, b.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break // not empty (or gone): the directories above are not empty either
		}
	}
	return nil
}

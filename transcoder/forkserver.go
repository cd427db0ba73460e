package transcoder

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// forkServerSource is the preload library that turns an ffmpeg process
// into a fork server (see forkserver/forkserver.c for the protocol).
//
//go:embed forkserver/forkserver.c
var forkServerSource []byte

// forkServerProtocol is the protocol version the library speaks.
const forkServerProtocol = 1

// Message kinds of the fork server protocol.
const (
	fsHello   = 1
	fsSpawned = 2
	fsExited  = 3
)

// fsMsgSize is the size of struct hw_msg.
const fsMsgSize = 40

// ForkServerLibrary returns the fork server's preload library, compiled
// into dir (the user cache directory's headwater/ when empty) by the C
// compiler ($CC, else cc) the first time, and reused while its source does
// not change. dir must be private to the user (owned by them, no group or
// other permissions, not a symlink) and is created 0700 when missing. The
// library's name carries the SHA-256 of its content, checked before it is
// returned and before every start of a fork server: a library whose content
// does not match is removed and rebuilt here, and never preloaded.
func ForkServerLibrary(ctx context.Context, dir string) (string, error) {
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("fork server: needs Linux, not %s", runtime.GOOS)
	}
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			d = filepath.Join(os.TempDir(), "headwater-"+strconv.Itoa(os.Geteuid()))
		} else {
			d = filepath.Join(d, "headwater")
		}
		dir = d
	}
	if err := privateDir(dir); err != nil {
		return "", fmt.Errorf("fork server: library directory %s: %w", dir, err)
	}
	prefix := libraryPrefix()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("fork server: %w", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !strings.HasSuffix(e.Name(), ".so") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := openLibrary(path)
		if err == nil {
			f.Close()
			return path, nil
		}
		// Changed since it was built: rebuilt below.
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("fork server: removing a library that failed its check: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return "", fmt.Errorf("fork server: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "forkserver.c"), forkServerSource, 0o600); err != nil {
		return "", fmt.Errorf("fork server: %w", err)
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	cmd := exec.CommandContext(ctx, cc, "-O2", "-fPIC", "-shared", "-o", "forkserver.so", "forkserver.c", "-ldl")
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fork server: compiling with %s: %w: %s", cc, err, bytes.TrimSpace(b))
	}
	out := filepath.Join(tmp, "forkserver.so")
	sum, err := fileSHA256(out)
	if err != nil {
		return "", fmt.Errorf("fork server: %w", err)
	}
	path := filepath.Join(dir, prefix+sum+".so")
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("fork server: %w", err)
	}
	return path, nil
}

// libraryPrefix starts the name of the library built from this source for
// this architecture: forkserver-<arch>-<source hash>-<library hash>.so.
func libraryPrefix() string {
	sum := sha256.Sum256(forkServerSource)
	return fmt.Sprintf("forkserver-%s-%s-", runtime.GOARCH, hex.EncodeToString(sum[:8]))
}

// privateDir makes sure dir is a directory private to the user: not a
// symlink, owned by the effective uid, mode 0700. A missing one is created
// (parents too) 0700. One of ours that others may read but not write (the
// 0755 an earlier Headwater or a test's temporary directory has) is
// tightened to 0700: nobody else can have put a file in it. One that group
// or other users may write to is refused, since anything in it may have
// been planted.
func privateDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		st, err = os.Lstat(dir)
	}
	if err != nil {
		return err
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return errors.New("is a symlink: want a directory of its own")
	case !st.IsDir():
		return errors.New("is not a directory")
	}
	if err := ownedByUs(st); err != nil {
		return err
	}
	perm := st.Mode().Perm()
	switch {
	case perm&0o022 != 0:
		return fmt.Errorf("mode %#o lets group or other users write to it: want 0700 (check its files, then chmod 0700 %s)", perm, dir)
	case perm&0o077 != 0:
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("mode %#o: tightening to 0700: %w", perm, err)
		}
	}
	return nil
}

// ownedByUs checks that a file belongs to the effective uid.
func ownedByUs(st fs.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner information")
	}
	if uid := os.Geteuid(); int(sys.Uid) != uid {
		return fmt.Errorf("owned by uid %d, not by uid %d", sys.Uid, uid)
	}
	return nil
}

// openLibrary opens a library built by ForkServerLibrary after checking it:
// a regular file (not a symlink) of the user's that no one else may
// write, whose SHA-256 is the one in its name. The open file is what gets
// preloaded, so that the file checked is the file loaded.
func openLibrary(path string) (*os.File, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("library %s is not a regular file (%v)", path, st.Mode().Type())
	}
	if err := ownedByUs(st); err != nil {
		return nil, fmt.Errorf("library %s: %w", path, err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("library %s: mode %#o lets others write it", path, st.Mode().Perm())
	}
	base := strings.TrimSuffix(filepath.Base(path), ".so")
	want := base[strings.LastIndexByte(base, '-')+1:]
	if len(want) != sha256.Size*2 {
		return nil, fmt.Errorf("library %s: no content hash in its name (not built by ForkServerLibrary)", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	fst, err := f.Stat()
	if err == nil && !os.SameFile(st, fst) {
		err = fmt.Errorf("library %s changed while checked", path)
	}
	if err == nil {
		h := sha256.New()
		if _, err = io.Copy(h, f); err == nil {
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				err = fmt.Errorf("library %s: content hash %s does not match its name: changed since it was built, not preloaded", path, got)
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// forkServer is an ffmpeg process, preloaded with the fork server library,
// that forks the runner's ffmpeg processes: each starts with its libraries
// already loaded and relocated.
type forkServer struct {
	cmd    *exec.Cmd
	conn   *net.UnixConn
	stderr *tailBuffer

	reqMu   sync.Mutex      // one spawn request in flight
	replies chan spawnReply // the server's answer to it

	mu       sync.Mutex
	children map[int]*forkChild
	done     chan struct{} // closed once the server is gone
	err      error         // why, once done is closed
	exited   chan struct{} // closed once its process was waited for
}

// forkChild is a process forked by the server, known until it exits.
type forkChild struct {
	exited chan struct{}
	status syscall.WaitStatus
	cpu    time.Duration
	err    error // the server died before reporting the exit
}

type spawnReply struct {
	pid   int
	child *forkChild
	errno syscall.Errno
}

// errForkServerGone is the error of the processes of a fork server that
// died before they exited (they die with it).
var errForkServerGone = errors.New("fork server exited")

// forkExitError is a forked process's unsuccessful exit, worded as
// os/exec words it.
type forkExitError struct{ status syscall.WaitStatus }

func (e *forkExitError) Error() string {
	switch {
	case e.status.Exited():
		return "exit status " + strconv.Itoa(e.status.ExitStatus())
	case e.status.Signaled():
		return "signal: " + e.status.Signal().String()
	}
	return fmt.Sprintf("wait status %#x", int(e.status))
}

// startForkServer starts ffmpeg as a fork server with the preload library
// lib (checked by openLibrary first) and waits for it to be ready.
func startForkServer(ffmpeg, lib string, timeout time.Duration) (*forkServer, error) {
	libFile, err := openLibrary(lib)
	if err != nil {
		return nil, fmt.Errorf("fork server: %w", err)
	}
	defer libFile.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fork server: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "forkserver")
	theirs := os.NewFile(uintptr(fds[1]), "forkserver-child")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("fork server: %w", err)
	}
	conn := c.(*net.UnixConn)

	s := &forkServer{
		conn:     conn,
		stderr:   &tailBuffer{limit: 4 << 10},
		replies:  make(chan spawnReply, 1),
		children: make(map[int]*forkChild),
		done:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	cmd := exec.Command(ffmpeg)
	// The dynamic linker loads the checked file through its descriptor (4),
	// not the path, which the library closes (HEADWATER_FORKSERVER_LIBFD).
	cmd.Env = append(os.Environ(), "LD_PRELOAD=/proc/self/fd/4", "LD_BIND_NOW=1",
		"HEADWATER_FORKSERVER_FD=3", "HEADWATER_FORKSERVER_LIBFD=4")
	cmd.ExtraFiles = []*os.File{theirs, libFile}
	cmd.Stderr = s.stderr
	cmd.SysProcAttr = procAttr()
	s.cmd = cmd
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("fork server: %w", err)
	}
	theirs.Close()
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	var b [fsMsgSize]byte
	n, err := conn.Read(b[:])
	_ = conn.SetReadDeadline(time.Time{})
	if err == nil && (n != fsMsgSize || binary.NativeEndian.Uint32(b[0:]) != fsHello) {
		err = errors.New("unexpected greeting")
	}
	if err == nil && binary.NativeEndian.Uint32(b[8:]) != forkServerProtocol {
		err = fmt.Errorf("protocol %d, want %d", binary.NativeEndian.Uint32(b[8:]), forkServerProtocol)
	}
	if err != nil {
		s.kill()
		<-s.exited
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || err.Error() == "EOF" {
			err = errors.New("ffmpeg did not start as a fork server (is it statically linked?)")
		}
		return nil, fmt.Errorf("fork server: %w: %s", err, s.stderr.String())
	}
	go s.readLoop()
	if err := s.check(timeout); err != nil {
		s.close()
		return nil, fmt.Errorf("fork server: %w", err)
	}
	return s, nil
}

// check forks "ffmpeg -version": the preloaded program must be ffmpeg
// itself, not a wrapper script's shell (which would fork shells).
func (s *forkServer) check(timeout time.Duration) error {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer outR.Close()
	_, child, err := s.spawn([]string{"-hide_banner", "-version"}, devnull, outW, outW)
	outW.Close()
	if err != nil {
		return err
	}
	_ = outR.SetReadDeadline(time.Now().Add(timeout))
	head := make([]byte, 64)
	n, _ := io.ReadFull(outR, head)
	_, _ = io.Copy(io.Discard, outR)
	select {
	case <-child.exited:
	case <-time.After(timeout):
		return errors.New("ffmpeg -version did not exit")
	}
	if !bytes.HasPrefix(head[:n], []byte("ffmpeg version")) {
		return fmt.Errorf("the preloaded program is not ffmpeg (a wrapper script?): -version printed %q", head[:n])
	}
	return nil
}

// readLoop dispatches the server's messages until it is gone.
func (s *forkServer) readLoop() {
	var b [fsMsgSize]byte
	var err error
	for {
		var n int
		n, err = s.conn.Read(b[:])
		if err != nil {
			break
		}
		if n != fsMsgSize {
			err = fmt.Errorf("short message (%d bytes)", n)
			break
		}
		kind := binary.NativeEndian.Uint32(b[0:])
		pid := int(int32(binary.NativeEndian.Uint32(b[4:])))
		status := int32(binary.NativeEndian.Uint32(b[8:]))
		switch kind {
		case fsSpawned:
			r := spawnReply{pid: pid}
			if pid > 0 {
				r.child = &forkChild{exited: make(chan struct{})}
				s.mu.Lock()
				s.children[pid] = r.child
				s.mu.Unlock()
			} else {
				r.errno = syscall.Errno(status)
			}
			s.replies <- r
		case fsExited:
			s.mu.Lock()
			c := s.children[pid]
			delete(s.children, pid)
			s.mu.Unlock()
			if c != nil {
				c.status = syscall.WaitStatus(status)
				user := int64(binary.NativeEndian.Uint64(b[16:]))
				sys := int64(binary.NativeEndian.Uint64(b[24:]))
				c.cpu = time.Duration(user+sys) * time.Microsecond
				close(c.exited)
			}
		default:
			err = fmt.Errorf("unknown message kind %d", kind)
		}
		if err != nil {
			break
		}
	}
	s.kill()
	<-s.exited
	s.mu.Lock()
	s.err = fmt.Errorf("%w: %v", errForkServerGone, err)
	if tail := s.stderr.String(); tail != "" {
		s.err = fmt.Errorf("%w: %s", s.err, tail)
	}
	for pid, c := range s.children {
		c.err = s.err
		close(c.exited)
		delete(s.children, pid)
	}
	s.mu.Unlock()
	close(s.done)
}

// alive reports whether the server still serves.
func (s *forkServer) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// spawn forks a process running ffmpeg with args and the given standard
// descriptors (which the caller still owns and closes).
func (s *forkServer) spawn(args []string, stdin, stdout, stderr *os.File) (int, *forkChild, error) {
	var req bytes.Buffer
	req.WriteString("ffmpeg")
	req.WriteByte(0)
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return 0, nil, fmt.Errorf("fork server: argument %q holds a NUL", a)
		}
		req.WriteString(a)
		req.WriteByte(0)
	}
	rights := syscall.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if !s.alive() {
		return 0, nil, s.err
	}
	if _, _, err := s.conn.WriteMsgUnix(req.Bytes(), rights, nil); err != nil {
		return 0, nil, fmt.Errorf("fork server: %w", err)
	}
	runtime.KeepAlive(stdin)
	runtime.KeepAlive(stdout)
	runtime.KeepAlive(stderr)
	select {
	case r := <-s.replies:
		if r.pid <= 0 {
			return 0, nil, fmt.Errorf("fork server: fork: %w", r.errno)
		}
		return r.pid, r.child, nil
	case <-s.done:
		return 0, nil, s.err
	}
}

// kill ends the server; its children die with it.
func (s *forkServer) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
}

// close ends the server and waits for it.
func (s *forkServer) close() {
	s.conn.Close()
	<-s.done
}

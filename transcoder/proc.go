package transcoder

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one ffmpeg process started for a template, executed or forked
// from the fork server.
type proc struct {
	tmpl    Template
	pid     int
	stdin   *os.File // write end of the process's stdin
	stdout  *os.File // read end of its stdout
	stderr  *tailBuffer
	spawned time.Time

	ready   chan struct{} // closed once blocked reading stdin (or given up checking)
	readyAt time.Time
	exited  chan struct{} // closed once it was waited for and its stderr read
	waitErr error
	cpuTime time.Duration // user+system CPU, once exited
	killed  bool
	mu      sync.Mutex
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	total int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// kill ends the process (and anything it started) with SIGKILL.
func (p *proc) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) isReady() bool {
	select {
	case <-p.ready:
		return p.alive()
	default:
		return false
	}
}

// cpu is the process's CPU time, once it exited.
func (p *proc) cpu() time.Duration {
	select {
	case <-p.exited:
		return p.cpuTime
	default:
		return 0
	}
}

// readSyscall is the number of read(2) on this architecture, as
// /proc/<pid>/syscall shows it; "" when not known.
func readSyscall() string {
	switch runtime.GOARCH {
	case "amd64":
		return "0"
	case "arm64", "riscv64":
		return "63"
	case "386", "arm":
		return "3"
	}
	return ""
}

// blockedOnStdin reports whether pid is blocked in read(0, ...): ffmpeg has
// loaded its libraries, parsed its options and waits for its input. ok is
// false when the system does not tell.
func blockedOnStdin(pid int) (blocked, ok bool) {
	if nr := readSyscall(); nr != "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		if err == nil {
			f := strings.Fields(string(b))
			return len(f) >= 2 && f[0] == nr && f[1] == "0x0", true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	if err != nil || len(b) == 0 || string(b) == "0" {
		return false, false
	}
	return strings.Contains(string(b), "pipe"), true
}

// watchReady closes p.ready once the process blocks on its input.
func (p *proc) watchReady() {
	defer close(p.ready)
	pid := p.pid
	start := time.Now()
	for {
		select {
		case <-p.exited:
			return
		default:
		}
		blocked, ok := blockedOnStdin(pid)
		el := time.Since(start)
		if blocked || (!ok && el > 300*time.Millisecond) || el > 10*time.Second {
			p.readyAt = time.Now()
			return
		}
		switch {
		case el < 100*time.Millisecond:
			time.Sleep(500 * time.Microsecond)
		case el < 2*time.Second:
			time.Sleep(2 * time.Millisecond)
		default:
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// spawn starts ffmpeg for a template: forked from fs when not nil, else
// executed from path. The process blocks reading stdin until a job is
// written to it.
func spawn(path string, fs *forkServer, t Template, stderrLimit int) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p := &proc{
		tmpl:   t,
		stdin:  inW,
		stdout: outR,
		stderr: &tailBuffer{limit: stderrLimit},
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	p.spawned = time.Now()
	if fs != nil {
		err = p.fork(fs, inR, outW)
	} else {
		err = p.exec(path, inR, outW)
	}
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	go p.watchReady()
	return p, nil
}

// exec starts the process by executing path.
func (p *proc) exec(path string, stdin, stdout *os.File) error {
	cmd := exec.Command(path, p.tmpl.Args...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		if cmd.ProcessState != nil {
			p.cpuTime = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		close(p.exited)
	}()
	return nil
}

// fork starts the process from the fork server.
func (p *proc) fork(fs *forkServer, stdin, stdout *os.File) error {
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	pid, child, err := fs.spawn(p.tmpl.Args, stdin, stdout, errW)
	errW.Close()
	if err != nil {
		errR.Close()
		return err
	}
	p.pid = pid
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(p.stderr, errR)
		errR.Close()
		close(copied)
	}()
	go func() {
		<-child.exited
		if child.err == nil {
			<-copied // the process's stderr is complete
		}
		switch {
		case child.err != nil:
			p.waitErr = child.err
		case child.status != 0:
			p.waitErr = &forkExitError{child.status}
		}
		p.cpuTime = child.cpu
		close(p.exited)
	}()
	return nil
}

// release closes the parent's ends of the pipes of a process not used.
func (p *proc) release() {
	p.kill()
	<-p.exited
	p.stdin.Close()
	p.stdout.Close()
}

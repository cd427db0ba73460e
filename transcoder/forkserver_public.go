package transcoder

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ForkServer is a fork server of its own, for other ffmpeg users than the
// GOP pool (posters and sprites, package thumbnail): every process it
// starts is forked from one ffmpeg whose libraries are loaded and relocated
// once, which saves most of an ffmpeg's start-up CPU (about 60 ms here).
type ForkServer struct {
	s *forkServer
}

// StartForkServer builds (or reuses) the fork server library in dir (""
// for the user cache directory, as transcoder.fork_server_dir) and starts
// ffmpeg as a fork server with it.
func StartForkServer(ctx context.Context, ffmpeg, dir string) (*ForkServer, error) {
	lib, err := ForkServerLibrary(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("fork server: %w", err)
	}
	s, err := startForkServer(ffmpeg, lib, forkServerStartTimeout)
	if err != nil {
		return nil, err
	}
	return &ForkServer{s: s}, nil
}

// Start forks a process running ffmpeg with args and the given standard
// descriptors (the caller keeps and closes its copies).
func (f *ForkServer) Start(args []string, stdin, stdout, stderr *os.File) (*ForkedProcess, error) {
	pid, child, err := f.s.spawn(args, stdin, stdout, stderr)
	if err != nil {
		return nil, err
	}
	return &ForkedProcess{pid: pid, child: child}, nil
}

// Alive reports whether the fork server still serves.
func (f *ForkServer) Alive() bool { return f.s.alive() }

// Close ends the fork server and waits for it; the processes it forked
// die with it.
func (f *ForkServer) Close() {
	f.s.kill()
	f.s.close()
}

// ForkedProcess is a process started by a ForkServer.
type ForkedProcess struct {
	pid   int
	child *forkChild
}

// Pid is the process id.
func (p *ForkedProcess) Pid() int { return p.pid }

// Wait waits for the process to exit: nil for status 0, else how it ended.
func (p *ForkedProcess) Wait() error {
	<-p.child.exited
	switch {
	case p.child.err != nil:
		return p.child.err
	case p.child.status != 0:
		return &forkExitError{p.child.status}
	}
	return nil
}

// CPU is the process's user and system CPU time, once Wait returned.
func (p *ForkedProcess) CPU() time.Duration { return p.child.cpu }

// Kill ends the process (and its process group) with SIGKILL; it does
// nothing once the process has exited and been reaped, so it never hits
// a reused pid.
func (p *ForkedProcess) Kill() {
	select {
	case <-p.child.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}

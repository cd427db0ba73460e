package thumbnail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Starter starts ffmpeg processes. The default executes Config.FFmpeg;
// another can fork them from a process whose libraries are already
// loaded (the transcoder's fork server).
type Starter interface {
	// StartFFmpeg starts ffmpeg with args (the program name left out)
	// and the given standard input, output and error, which the caller
	// closes once it returns.
	StartFFmpeg(args []string, stdin, stdout, stderr *os.File) (Process, error)
}

// Process is an ffmpeg process started by a Starter.
type Process interface {
	// Wait waits for the process to exit: nil for exit status 0, else
	// an error saying how it ended. It is called once.
	Wait() error
	// Kill ends the process (and any process it started) with SIGKILL.
	// It may be called at any time, also after the process exited, and
	// from another goroutine than Wait's.
	Kill()
}

// execStarter executes ffmpeg, in a process group of its own.
type execStarter struct{ path string }

// StartFFmpeg implements Starter.
func (e execStarter) StartFFmpeg(args []string, stdin, stdout, stderr *os.File) (Process, error) {
	cmd := exec.Command(e.path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &execProcess{cmd: cmd, exited: make(chan struct{})}, nil
}

// execProcess is a process started by execStarter.
type execProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once waited for: its pid may be reused
}

// Wait implements Process.
func (p *execProcess) Wait() error {
	defer close(p.exited)
	return p.cmd.Wait()
}

// Kill implements Process: the process group, unless it was waited for.
func (p *execProcess) Kill() {
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// pipeDrain bounds the wait for a pipe's other end to close after the
// process exited (a process it started could hold it), and for the copy
// of the input to end.
const pipeDrain = 2 * time.Second

// run runs ffmpeg with args: in is copied to its stdin, its stdout is
// given to read (which reads it to its end or fails) and its stderr's
// tail is kept for its error. When ctx ends, or read fails, the process
// is killed. The error says why it failed: ctx's end, read's error, or
// ffmpeg's exit with the tail of its stderr (read's errNoPicture comes
// with that tail too). run returns once the process was waited for; if
// in's Read blocks, its copy goroutine ends when the Read returns.
func (m *Maker) run(ctx context.Context, args []string, in io.Reader, read func(io.Reader) error) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting ffmpeg: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return fmt.Errorf("starting ffmpeg: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return fmt.Errorf("starting ffmpeg: %w", err)
	}
	p, err := m.starter.StartFFmpeg(args, inR, outW, errW)
	closeAll(inR, outW, errW) // the process has its own copies
	if err != nil {
		closeAll(inW, outR, errR)
		return fmt.Errorf("ffmpeg: %w", err)
	}

	stderr := &tail{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(stderr, errR)
	}()
	var closeIn sync.Once
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		_, _ = io.Copy(inW, in) // fails once the process is gone
		closeIn.Do(func() { inW.Close() })
	}()
	exited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			p.Kill()
		case <-exited:
		}
	}()

	readErr := read(outR)
	if readErr != nil {
		p.Kill() // its output is of no use any more
	}
	_, _ = io.Copy(io.Discard, outR) // up to its exit
	waitErr := p.Wait()
	close(exited)
	closeIn.Do(func() { inW.Close() }) // a copy blocked writing ends
	outR.Close()
	late := make(chan struct{})
	timer := time.AfterFunc(pipeDrain, func() { close(late) })
	defer timer.Stop()
	select {
	case <-copied:
	case <-late:
	}
	errR.Close()
	select {
	case <-fed:
	case <-late:
	}

	switch {
	case ctx.Err() != nil && (readErr != nil || waitErr != nil):
		return fmt.Errorf("ffmpeg did not finish: %w", context.Cause(ctx))
	case readErr != nil && !errors.Is(readErr, errNoPicture):
		return readErr
	case waitErr != nil:
		if s := stderr.String(); s != "" {
			return fmt.Errorf("ffmpeg: %w: %s", waitErr, s)
		}
		return fmt.Errorf("ffmpeg: %w", waitErr)
	case readErr != nil:
		if s := stderr.String(); s != "" {
			return fmt.Errorf("%w: %s", readErr, s)
		}
		return readErr
	}
	return nil
}

// closeAll closes files, ignoring their errors (pipe ends being let go).
func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

package testpeer

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Process is a command started by StartProcess.
type Process struct {
	// Cmd is the running command.
	Cmd *exec.Cmd
	// Stderr collects the command's standard error.
	Stderr *LogBuffer

	done chan error // Cmd.Wait's result, put back by whoever reads it
}

// StartProcess starts name with args, keeping its standard error. When the
// test ends the process is killed and waited for, and its standard error
// is logged if the test failed.
func StartProcess(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(name, args...), Stderr: &LogBuffer{}, done: make(chan error, 1)}
	p.Cmd.Stderr = p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.Cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Kill()
		err := <-p.done
		if t.Failed() {
			t.Logf("%s ended: %v", filepath.Base(name), err)
			t.Logf("%s stderr:\n%s", filepath.Base(name), p.Stderr.String())
		}
	})
	return p
}

// Wait returns the process's exit error once it ends, or fails t after
// timeout. It may be called more than once.
func (p *Process) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %s", filepath.Base(p.Cmd.Path), timeout)
		return nil
	}
}

// Exited reports, without waiting, whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// PublishRTMP starts ffmpeg publishing, in real time for dur, a 640x360
// testsrc2 at 30 fps as H.264 (ultrafast, zerolatency, 800 kb/s, a key
// frame every gop frames) and a 440 Hz sine as AAC (96 kb/s) to the RTMP
// url; extra are more output arguments.
func PublishRTMP(t testing.TB, url string, dur time.Duration, gop int, extra ...string) *Process {
	t.Helper()
	return PublishPattern(t, url, "testsrc2=size=640x360:rate=30", "800k", dur, gop, extra...)
}

// PublishPattern is PublishRTMP with another lavfi video source (such as
// "testsrc=size=1280x720:rate=30") and video bitrate (such as "1500k").
func PublishPattern(t testing.TB, url, video, bitrate string, dur time.Duration, gop int, extra ...string) *Process {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", video,
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.FormatFloat(dur.Seconds(), 'f', 3, 64),
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0", "-b:v", bitrate,
		"-c:a", "aac", "-b:a", "96k"}
	args = append(args, extra...)
	args = append(args, "-f", "flv", url)
	return StartProcess(t, "ffmpeg", args...)
}

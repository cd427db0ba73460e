package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var bitrateRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?[kKmM]?$`)

// samplePath is where the sample FLV for a bitrate is cached.
func samplePath(bitrate string) string {
	return filepath.Join(os.TempDir(), "hwload-sample-"+bitrate+".flv")
}

// ensureSample returns the cached 20 s 720p30 H.264/AAC sample FLV at
// bitrate (an ffmpeg bitrate such as 2M or 800k), encoding it once. A key
// frame every 60 frames (2 s, no scene-cut key frames) matches Headwater's
// default segment duration. Publishing the sample with -c copy then costs
// the load generator almost no CPU.
func ensureSample(ctx context.Context, ffmpeg, bitrate string, log io.Writer) (string, error) {
	if !bitrateRE.MatchString(bitrate) {
		return "", fmt.Errorf("bitrate %q: want a number with an optional k or M suffix, e.g. 2M", bitrate)
	}
	path := samplePath(bitrate)
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return path, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "hwload-sample-*.flv.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	fmt.Fprintf(log, "hwload: encoding the %s sample once into %s (about 10 s)\n", bitrate, path)
	cmd := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-t", "20",
		"-c:v", "libx264", "-preset", "veryfast",
		"-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
		"-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "128k",
		"-f", "flv", tmp.Name())
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("encoding the sample: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// publisher is one `ffmpeg -re -stream_loop -1 -c copy` RTMP publisher.
type publisher struct {
	url    string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // of Wait, valid after done
	stderr *tailBuffer
}

// publisherSet runs the publishers and stops them all.
type publisherSet struct {
	list     []*publisher
	stopping atomic.Bool
	early    atomic.Int32
}

// startPublishers starts n publishers of sample to <rtmpBase>/<prefix><i>,
// stagger apart. Each ffmpeg runs in its own process group; stop ends them.
func startPublishers(ctx context.Context, ffmpeg, sample, rtmpBase, prefix string, n int, stagger time.Duration) (*publisherSet, error) {
	set := &publisherSet{}
	for i := 0; i < n; i++ {
		if i > 0 && stagger > 0 {
			sleepCtx(ctx, stagger)
		}
		if ctx.Err() != nil {
			set.stop(time.Second)
			return nil, ctx.Err()
		}
		p := &publisher{url: fmt.Sprintf("%s/%s%d", rtmpBase, prefix, i), done: make(chan struct{}), stderr: &tailBuffer{max: 4096}}
		p.cmd = exec.Command(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
			"-re", "-stream_loop", "-1", "-i", sample,
			"-c", "copy", "-f", "flv", p.url)
		p.cmd.Stderr = p.stderr
		setProcessGroup(p.cmd)
		if err := p.cmd.Start(); err != nil {
			set.stop(time.Second)
			return nil, fmt.Errorf("starting ffmpeg: %w", err)
		}
		go func() {
			p.err = p.cmd.Wait()
			if !set.stopping.Load() {
				set.early.Add(1)
			}
			close(p.done)
		}()
		set.list = append(set.list, p)
	}
	return set, nil
}

// pids lists the publishers' process ids.
func (s *publisherSet) pids() []int {
	out := make([]int, 0, len(s.list))
	for _, p := range s.list {
		out = append(out, p.cmd.Process.Pid)
	}
	return out
}

// exitedEarly counts the publishers that ended before stop.
func (s *publisherSet) exitedEarly() int { return int(s.early.Load()) }

// failures describes the publishers that ended before stop.
func (s *publisherSet) failures() []string {
	var out []string
	for _, p := range s.list {
		select {
		case <-p.done:
			out = append(out, fmt.Sprintf("%s: %v: %s", p.url, p.err, p.stderr.String()))
		default:
		}
	}
	return out
}

// stop sends SIGTERM to every publisher's process group, waits up to grace
// for them, then SIGKILLs what is left and reaps it (no zombies).
func (s *publisherSet) stop(grace time.Duration) {
	if s == nil {
		return
	}
	s.stopping.Store(true)
	for _, p := range s.list {
		_ = signalGroup(p.cmd.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, p := range s.list {
		t := time.NewTimer(max(time.Until(deadline), 0))
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	for _, p := range s.list {
		select {
		case <-p.done:
		default:
			_ = signalGroup(p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// fakeFFmpeg writes a shell script standing in for ffmpeg.
func fakeFFmpeg(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// gone reports whether pid has exited (no such process, or a zombie
// waiting for a parent other than us).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	return strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
}

func TestPublishersStopWholeGroup(t *testing.T) {
	testpeer.RequireLinux(t, "process groups and /proc")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchildren")
	// Each "ffmpeg" leaves a grandchild that ignores nothing but is in its
	// group; the group signal must take it down too.
	ff := fakeFFmpeg(t, "sleep 30 &\necho $! >> "+pidFile+"\nwait")
	set, err := startPublishers(context.Background(), ff, "sample.flv", "rtmp://127.0.0.1:1/live", "k", 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	pids := set.pids()
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	var grand []int
	deadline := time.Now().Add(5 * time.Second)
	for len(grand) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		grand = grand[:0]
		for _, f := range strings.Fields(string(b)) {
			p, _ := strconv.Atoi(f)
			grand = append(grand, p)
		}
	}
	if len(grand) != 3 {
		t.Fatalf("grandchildren %v", grand)
	}
	if n := set.exitedEarly(); n != 0 {
		t.Fatalf("%d exited early: %v", n, set.failures())
	}
	set.stop(2 * time.Second)
	for _, p := range set.list {
		if p.cmd.ProcessState == nil {
			t.Errorf("publisher %d not reaped", p.cmd.Process.Pid)
		}
	}
	for _, p := range grand {
		deadline := time.Now().Add(2 * time.Second)
		for !gone(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !gone(p) {
			t.Errorf("grandchild %d still running", p)
			_ = syscall.Kill(p, syscall.SIGKILL) // best effort: the test has already failed
		}
	}
	if n := set.exitedEarly(); n != 0 {
		t.Errorf("stopped publishers counted as early exits: %d", n)
	}
}

func TestPublisherExitingEarlyIsReported(t *testing.T) {
	testpeer.RequireLinux(t, "process groups")
	ff := fakeFFmpeg(t, "echo 'Connection refused' >&2\nexit 1")
	set, err := startPublishers(context.Background(), ff, "sample.flv", "rtmp://127.0.0.1:1/live", "k", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-set.list[0].done
	if set.exitedEarly() != 1 {
		t.Fatalf("exited early: %d", set.exitedEarly())
	}
	if f := set.failures(); len(f) != 1 || !strings.Contains(f[0], "Connection refused") || !strings.Contains(f[0], "rtmp://127.0.0.1:1/live/k0") {
		t.Fatalf("failures %q", f)
	}
	set.stop(time.Second)
}

func TestEnsureSampleRejectsBadBitrate(t *testing.T) {
	for _, b := range []string{"", "2 M", "../x", "2G", "-1M"} {
		if _, err := ensureSample(context.Background(), "ffmpeg", b, os.Stderr); err == nil {
			t.Errorf("%q accepted", b)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	for _, s := range []string{"abc", "defg"} {
		if n, err := tb.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := tb.String(); got != "cdefg" {
		t.Fatalf("got %q", got)
	}
}

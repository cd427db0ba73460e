package testpeer

import (
	"context"
	"os/exec"
	"testing"
)

// NeedBinary skips t with "<name> not installed" unless every named
// executable is in PATH.
func NeedBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
	}
}

// NeedFFmpeg skips t unless ffmpeg is installed.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	NeedBinary(t, "ffmpeg")
}

// RequireBinary fails t with "<name> not found: <hint>" unless every named
// executable is in PATH: for tests that must not pass by skipping.
func RequireBinary(t testing.TB, hint string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not found: %s", name, hint)
		}
	}
}

// FFmpeg runs ffmpeg quietly (-hide_banner -loglevel error -nostdin) with
// args and returns its combined output and its error.
func FFmpeg(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	out, err := exec.CommandContext(ctx, "ffmpeg", all...).CombinedOutput()
	return string(out), err
}

// LavfiSource is ffmpeg's input arguments for a test pattern: testsrc2 of
// size (such as "640x360") at 30 fps and a 440 Hz sine at 48 kHz, both
// seconds long.
func LavfiSource(size, seconds string) []string {
	return []string{
		"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
	}
}

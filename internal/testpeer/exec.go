package testpeer

import (
	"context"
	"os/exec"
	"testing"
)

// installHint is what a test that misses a tool tells the user: the
// README's test command installs everything the suite uses.
const installHint = "./scripts/test.sh installs it (or says how)"

// NeedBinary fails t with "<name> not found" and the install hint unless
// every named executable is in PATH. No test skips for a missing tool: the
// README's test command installs them all.
func NeedBinary(t testing.TB, names ...string) {
	t.Helper()
	RequireBinary(t, installHint, names...)
}

// NeedFFmpeg fails t unless ffmpeg and ffprobe are in PATH.
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	RequireBinary(t, "apt-get install -y ffmpeg (ffprobe comes with it); "+installHint, "ffmpeg", "ffprobe")
}

// RequireBinary fails t with "<name> not found: <hint>" unless every named
// executable is in PATH.
func RequireBinary(t testing.TB, hint string, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not found in PATH: %s", name, hint)
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

package testpeer

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// FFmpegFiles encodes test media with ffmpeg once per test binary and
// keeps it, in a temporary directory that RemoveAll deletes (from
// TestMain). Its zero value is not usable: set Pattern, Format and Timeout.
type FFmpegFiles struct {
	// Pattern names the temporary directory, as os.MkdirTemp's pattern.
	Pattern string
	// Format is ffmpeg's output format (-f), such as "flv" or "mpegts".
	Format string
	// Timeout bounds one encode.
	Timeout time.Duration

	once  sync.Once
	dir   string
	mu    sync.Mutex
	files map[string][]byte
}

// Get returns the file called name, which ffmpeg encodes with args (its
// inputs and codecs) on the first call: t fails without ffmpeg or if the
// encode does.
func (f *FFmpegFiles) Get(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	NeedFFmpeg(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.files[name]; ok {
		return b
	}
	f.once.Do(func() {
		var err error
		if f.dir, err = os.MkdirTemp("", f.Pattern); err != nil {
			t.Fatal(err)
		}
	})
	path := filepath.Join(f.dir, name+"."+f.Format)
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	defer cancel()
	if out, err := FFmpeg(ctx, append(append([]string{"-y"}, args...), "-f", f.Format, path)...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[name] = b
	return b
}

// RemoveAll deletes the temporary directory, if any.
func (f *FFmpegFiles) RemoveAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback TCP address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSIGTERMEndsStreamsAndExitsZero runs the real binary, publishes with
// ffmpeg, sends SIGTERM, and checks that the playlist ends with ENDLIST while
// the origin drains and that the process exits with status 0.
func TestSIGTERMEndsStreamsAndExitsZero(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not found: install it (apt-get install -y ffmpeg)")
	}
	bin := filepath.Join(t.TempDir(), "headwater")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rtmpAddr, originAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	srv := exec.Command(bin, "serve", "--rtmp-address", rtmpAddr, "--origin-address", originAddr, "--admin-address", adminAddr)
	srv.Env = append(os.Environ(), "HEADWATER_SHUTDOWN_DRAIN=3s")
	var logs bytes.Buffer
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		_ = srv.Process.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()

	pub := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "30",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-f", "flv", "rtmp://"+rtmpAddr+"/live/term")
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Process.Kill(); _ = pub.Wait() }()

	playlistURL := fmt.Sprintf("http://%s/live/term/video/index.m3u8", originAddr)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := httpGet(playlistURL); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream never became playable")
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawEndlist := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !sawEndlist; time.Sleep(100 * time.Millisecond) {
		_, body := httpGet(playlistURL)
		sawEndlist = strings.Contains(body, "#EXT-X-ENDLIST")
	}
	if !sawEndlist {
		t.Error("no EXT-X-ENDLIST served while draining")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), "headwater: stopped") {
		t.Errorf("no clean stop in the log")
	}
}

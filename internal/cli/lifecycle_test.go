package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSignals runs the real binary with a configuration file and a live
// ffmpeg publisher. SIGHUP with a bad file is refused and changes nothing;
// SIGHUP with a good file applies the reloadable keys and reports the rest;
// neither drops the stream. SIGTERM then ends the stream (the origin serves
// the ENDLIST playlist while draining) and the process exits with status 0.
func TestSignals(t *testing.T) {
	testpeer.RequireBinary(t, "install it (apt-get install -y ffmpeg)", "ffmpeg")
	bin := filepath.Join(t.TempDir(), "headwater")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/headwater-live/headwater").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rtmpAddr, originAddr, adminAddr := testpeer.FreeAddr(t), testpeer.FreeAddr(t), testpeer.FreeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "headwater.yaml")
	writeConfig := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// SRT and RTSP would take their fixed default ports: off here.
	const noFixedPorts = "srt:\n  address: \"\"\nrtsp:\n  address: \"\"\n"
	writeConfig(noFixedPorts + "rtmp:\n  max_publishers: 5\nshutdown:\n  drain: 3s\n")
	srv := exec.Command(bin, "serve", "--config", cfgFile,
		"--rtmp-address", rtmpAddr, "--origin-address", originAddr, "--admin-address", adminAddr)
	logs := &testpeer.LogBuffer{}
	srv.Stderr = logs
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

	lastSegment := func() string {
		_, body := httpGet(playlistURL)
		lines := strings.Split(strings.TrimSpace(body), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.HasPrefix(lines[i], "seg") {
				return lines[i]
			}
		}
		return ""
	}
	waitLog := func(what string) {
		t.Helper()
		testpeer.WaitLog(t, logs, what, 5*time.Second)
	}

	writeConfig(noFixedPorts + "rtmp:\n  max_publishers: many\n")
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`"msg":"reload: refused, keeping the running configuration"`)
	if !strings.Contains(logs.String(), "rtmp.max_publishers") {
		t.Error("the refusal does not name the bad key")
	}

	writeConfig(noFixedPorts + "rtmp:\n  max_publishers: 7\norigin:\n  gzip: false\nshutdown:\n  drain: 3s\n")
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`"msg":"reload: applied","key":"rtmp.max_publishers","old":"5","new":"7"`)
	waitLog(`"msg":"reload: needs a restart, old value kept","key":"origin.gzip"`)
	before := lastSegment()
	for deadline := time.Now().Add(5 * time.Second); lastSegment() == before; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream stopped advancing after the reloads")
		}
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

package testpeer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OBS Studio, the encoder most Headwater users publish with, run for real:
// Debian's obs-studio under xvfb-run (an X server in memory, mesa's
// software OpenGL), with a fresh HOME holding a profile that streams what
// docs/obs.md recommends.

// The stream OBS sends, as its profile sets it (docs/obs.md's settings).
const (
	// OBSWidth and OBSHeight are the canvas and output size.
	OBSWidth, OBSHeight = 1280, 720
	// OBSFPS is the frame rate.
	OBSFPS = 30
	// OBSVideoBitrate is the x264 CBR bitrate, kb/s.
	OBSVideoBitrate = 2500
	// OBSKeyframeInterval is x264's Keyframe Interval, seconds.
	OBSKeyframeInterval = 2
	// OBSRetryDelay is Settings → Output → Retry Delay, seconds: the first
	// reconnect attempt waits that long, later ones longer (OBS 29 logs
	// "Reconnecting in 2.00 seconds..", then 2.95, 4.34, ...).
	OBSRetryDelay = 2
)

// obsInstallHint says how to get what StartOBS runs.
const obsInstallHint = "apt-get install -y obs-studio xvfb xauth libgl1-mesa-dri; " + installHint

// NeedOBS fails t unless OBS Studio can run headless here: Linux, obs,
// xvfb-run with Xvfb and xauth, and mesa's software OpenGL driver.
func NeedOBS(t testing.TB) {
	t.Helper()
	RequireLinux(t, "OBS under xvfb-run")
	RequireBinary(t, obsInstallHint, "obs", "xvfb-run", "Xvfb", "xauth")
	if m, _ := filepath.Glob("/usr/lib/*/dri/swrast_dri.so"); len(m) == 0 {
		t.Fatalf("mesa's software OpenGL (swrast_dri.so) not found in /usr/lib/*/dri: %s", obsInstallHint)
	}
}

// OBS is an OBS Studio started by StartOBS, streaming, in a process group
// of its own with xvfb-run and the X server.
type OBS struct {
	home   string
	cmd    *exec.Cmd
	output *LogBuffer // xvfb-run's and OBS's standard output and error
	done   chan error // cmd.Wait's result, put back by whoever reads it
	stop   sync.Once
}

// StartOBS writes a profile into a fresh HOME (server and key as
// Settings → Stream shows them, key being the stream key with any
// credential in its query, such as "obs?key=<secret>"; the output of the
// constants above; one scene with a color source) and starts OBS streaming
// with it under xvfb-run:
//
//	xvfb-run -a -s "-screen 0 1280x720x24" obs --startstreaming --minimize-to-tray --disable-updater --disable-shutdown-check
//
// OBS is stopped when the test ends, and its log is logged if the test
// failed.
func StartOBS(t testing.TB, server, key string) *OBS {
	t.Helper()
	NeedOBS(t)
	home := t.TempDir()
	if err := writeOBSProfile(home, server, key); err != nil {
		t.Fatal(err)
	}
	o := &OBS{home: home, output: &LogBuffer{}, done: make(chan error, 1)}
	o.cmd = exec.Command("xvfb-run", "-a", "-s", fmt.Sprintf("-screen 0 %dx%dx24", OBSWidth, OBSHeight),
		"obs", "--startstreaming", "--minimize-to-tray", "--disable-updater", "--disable-shutdown-check")
	o.cmd.Dir = home
	// A clean environment: the host's display, session bus or Wayland
	// must not leak in.
	o.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"LANG=C.UTF-8",
		"QT_QPA_PLATFORM=xcb",
		"LIBGL_ALWAYS_SOFTWARE=1",
	}
	o.cmd.Stdout, o.cmd.Stderr = o.output, o.output
	o.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := o.cmd.Start(); err != nil {
		t.Fatalf("starting OBS under xvfb-run: %v", err)
	}
	go func() { o.done <- o.cmd.Wait() }()
	t.Cleanup(func() {
		o.Stop(t)
		if t.Failed() {
			t.Logf("OBS log:\n%s", o.Log())
			if o.Log() == "" {
				t.Logf("xvfb-run and OBS output:\n%s", o.output.String())
			}
		}
	})
	return o
}

// Log returns OBS's log so far: the newest file in
// $HOME/.config/obs-studio/logs/ ("" before OBS has written one).
func (o *OBS) Log() string {
	dir := filepath.Join(o.home, ".config", "obs-studio", "logs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	newest := ""
	for _, e := range ents {
		// Named by start time ("2026-12-07 17-05-10.txt"): the greatest is the newest.
		if strings.HasSuffix(e.Name(), ".txt") && e.Name() > newest {
			newest = e.Name()
		}
	}
	if newest == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dir, newest))
	if err != nil {
		return ""
	}
	return string(b)
}

// String is Log, for WaitLog.
func (o *OBS) String() string { return o.Log() }

// Stop ends OBS: SIGTERM to its process group (OBS, xvfb-run, the X
// server), then after 10 s SIGKILL to the group and to every process
// descended from xvfb-run. It fails t if a process of the group is still
// alive 5 s later. Later calls do nothing.
func (o *OBS) Stop(t testing.TB) {
	t.Helper()
	o.stop.Do(func() {
		pgid := o.cmd.Process.Pid
		pids := Descendants(pgid)
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case err := <-o.done:
			o.done <- err
		case <-time.After(10 * time.Second):
			t.Logf("OBS did not end within 10 s of SIGTERM: killing it")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			err := <-o.done
			o.done <- err
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := groupMembers(pgid)
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("processes of OBS's group %d left behind: %v", pgid, left)
				return
			}
			if errors.Is(syscall.Kill(-pgid, syscall.SIGKILL), syscall.ESRCH) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// groupMembers lists the live processes (zombies left out) of process
// group pgid, read from /proc.
func groupMembers(pgid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...", read after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// writeOBSProfile writes OBS's configuration under home: global.ini naming
// the profile and scene collection "Headwater", the profile (basic.ini,
// streamEncoder.json, service.json) and the scene collection.
func writeOBSProfile(home, server, key string) error {
	cfg := filepath.Join(home, ".config", "obs-studio")
	profile := filepath.Join(cfg, "basic", "profiles", "Headwater")
	scenes := filepath.Join(cfg, "basic", "scenes")
	for _, d := range []string{profile, scenes} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("OBS profile: %w", err)
		}
	}
	service, err := json.Marshal(map[string]any{
		"type":     "rtmp_custom",
		"settings": map[string]any{"server": server, "key": key, "use_auth": false},
	})
	if err != nil {
		return fmt.Errorf("OBS service.json: %w", err)
	}
	// x264 as docs/obs.md sets it in Settings → Output (Advanced) →
	// Streaming: Rate Control CBR, Keyframe Interval 2 s, CPU Usage Preset
	// veryfast, Profile high, Tune zerolatency, x264 Options scenecut=0.
	encoder, err := json.Marshal(map[string]any{
		"rate_control": "CBR", "bitrate": OBSVideoBitrate, "keyint_sec": OBSKeyframeInterval,
		"preset": "veryfast", "profile": "high", "tune": "zerolatency", "x264opts": "scenecut=0",
	})
	if err != nil {
		return fmt.Errorf("OBS streamEncoder.json: %w", err)
	}
	files := map[string]string{
		// FirstRun=true: not the first run, no auto-configuration wizard.
		// LastVersion 29.0.2: no "what's new" for this version.
		filepath.Join(cfg, "global.ini"): `[General]
FirstRun=true
LastVersion=486539266

[Basic]
Profile=Headwater
ProfileDir=Headwater
SceneCollection=Headwater
SceneCollectionFile=Headwater
`,
		filepath.Join(profile, "basic.ini"): fmt.Sprintf(`[General]
Name=Headwater

[Output]
Mode=Advanced
Reconnect=true
RetryDelay=%d
MaxRetries=25

[AdvOut]
Encoder=obs_x264
TrackIndex=1
ApplyServiceSettings=false
Track1Bitrate=128

[Video]
BaseCX=%[2]d
BaseCY=%[3]d
OutputCX=%[2]d
OutputCY=%[3]d
FPSType=0
FPSCommon=%[4]d

[Audio]
SampleRate=48000
ChannelSetup=Stereo
`, OBSRetryDelay, OBSWidth, OBSHeight, OBSFPS),
		filepath.Join(profile, "streamEncoder.json"): string(encoder),
		filepath.Join(profile, "service.json"):       string(service),
		filepath.Join(scenes, "Headwater.json"): fmt.Sprintf(`{"name": "Headwater", "current_scene": "Scene", "current_program_scene": "Scene",
 "scene_order": [{"name": "Scene"}],
 "sources": [
  {"id": "scene", "versioned_id": "scene", "name": "Scene", "settings": {"id_counter": 1, "items": [
   {"name": "Color", "id": 1, "visible": true, "locked": false, "pos": {"x": 0, "y": 0}, "scale": {"x": 1, "y": 1}, "rot": 0, "align": 5, "bounds_type": 0}]}},
  {"id": "color_source", "versioned_id": "color_source_v3", "name": "Color",
   "settings": {"color": 4283215696, "width": %d, "height": %d}}
 ],
 "transitions": [], "current_transition": "Fade", "transition_duration": 300}
`, OBSWidth, OBSHeight),
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return fmt.Errorf("OBS profile: %w", err)
		}
	}
	return nil
}

package server_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// ffmpegSource encodes a small test pattern (with a sine unless audio is
// empty) in real time for dur and sends it with the given output arguments.
func ffmpegSource(t *testing.T, dur time.Duration, video, audio []string, out ...string) *testpeer.Process {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"}
	if audio != nil {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
	}
	args = append(args, "-t", fmt.Sprintf("%.3f", dur.Seconds()), "-pix_fmt", "yuv420p")
	args = append(args, video...)
	args = append(args, audio...)
	args = append(args, out...)
	return testpeer.StartProcess(t, "ffmpeg", args...)
}

var (
	x264 = []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0"}
	x265 = []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=50:min-keyint=50:scenecut=0:log-level=error"}
	aac  = []string{"-c:a", "aac", "-b:a", "64k"}
	opus = []string{"-c:a", "libopus", "-b:a", "64k"}
)

// probe runs ffprobe on the multivariant playlist of an ended stream and
// returns "codec_name/codec_tag_string" per stream, and how many seconds of
// video ffmpeg decodes from it without an error.
func probeAndDecode(t *testing.T, url string) ([]string, float64) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-hide_banner", "-loglevel", "error",
		"-show_entries", "stream=codec_name,codec_tag_string", "-of", "csv=p=0", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	// ffprobe lists HLS streams once per program and once alone: keep each once, sorted.
	seen := map[string]bool{}
	var codecs []string
	for _, c := range strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), ",", "/")) {
		if !seen[c] {
			seen[c] = true
			codecs = append(codecs, c)
		}
	}
	sort.Strings(codecs)
	dec := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-i", url,
		"-map", "0:v:0", "-progress", "pipe:1", "-f", "null", "-")
	var stdout, stderr testpeer.LogBuffer
	dec.Stdout, dec.Stderr = &stdout, &stderr
	if err := dec.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Fatalf("ffmpeg decoding %s: %v\n%s", url, err, stderr.String())
	}
	return codecs, progressSeconds(stdout.String())
}

// TestProtocolsToLLHLS publishes over SRT (H.264+AAC encrypted, H.265+AAC,
// H.264+Opus) and RTSP (TCP and UDP), plus an RTSP pull source served by a
// second Headwater, and reads every stream back over LL-HLS: the
// multivariant names the right codecs, ffprobe sees them, ffmpeg decodes
// the whole window (over ten seconds) without an error.
func TestProtocolsToLLHLS(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "srt.pass")
	if err := os.WriteFile(passFile, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := func(c *config.Config) {
		c.SRT.Address = "127.0.0.1:0"
		c.SRT.Latency = config.Duration(500 * time.Millisecond)
		c.RTSP.Address = "127.0.0.1:0"
		c.RTSP.UDPRTPAddress, c.RTSP.UDPRTCPAddress = "", ""
		c.Segmenter.Window = 8
	}
	// The "camera": a second server whose RTSP read-out the first one pulls.
	camera := startServer(t, func(c *config.Config) { listen(c) })
	s := startServer(t, func(c *config.Config) {
		listen(c)
		c.RTSP.UDPRTPAddress, c.RTSP.UDPRTCPAddress = "127.0.0.1:18000", "127.0.0.1:18001"
		c.SRT.PrefixPassphraseFiles = []string{"live/enc=" + passFile}
		c.RTSP.Sources = []string{fmt.Sprintf("live/pulled=rtsp://%s/live/cam", camera.RTSPAddr())}
		c.RTSP.SourceTransport = "tcp"
	})

	const dur = 13 * time.Second
	srtURL := func(name, extra string) string {
		return fmt.Sprintf("srt://%s?streamid=#!::r=%s,m=publish&latency=500000%s", s.SRTAddr(), name, extra)
	}
	rtspURL := func(srv *testServer, name string) string { return fmt.Sprintf("rtsp://%s/%s", srv.RTSPAddr(), name) }
	cases := []struct {
		stream string
		pub    *testpeer.Process
		codecs []string // multivariant CODECS prefixes
		probe  []string // ffprobe codec_name/codec_tag_string
	}{
		{"live/enc", ffmpegSource(t, dur, x264, aac, "-f", "mpegts", srtURL("live/enc", "&passphrase=correct horse battery")),
			[]string{"avc1.", "mp4a.40.2"}, []string{"h264/avc1", "aac/mp4a"}},
		{"live/hevc", ffmpegSource(t, dur, x265, aac, "-f", "mpegts", srtURL("live/hevc", "")),
			[]string{"hvc1.1.6.L", "mp4a.40.2"}, []string{"hevc/hvc1", "aac/mp4a"}},
		{"live/opus", ffmpegSource(t, dur, x264, opus, "-f", "mpegts", srtURL("live/opus", "")),
			[]string{"avc1.", "opus"}, []string{"h264/avc1", "opus/Opus"}},
		{"live/rtsptcp", ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", rtspURL(s, "live/rtsptcp")),
			[]string{"avc1.", "mp4a.40.2"}, []string{"h264/avc1", "aac/mp4a"}},
		{"live/rtspudp", ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "udp", rtspURL(s, "live/rtspudp")),
			[]string{"avc1.", "mp4a.40.2"}, []string{"h264/avc1", "aac/mp4a"}},
		// AAC as MP4A-LATM, as IP cameras send it.
		{"live/rtsplatm", ffmpegSource(t, dur, x264, aac, "-rtpflags", "latm", "-f", "rtsp", "-rtsp_transport", "tcp", rtspURL(s, "live/rtsplatm")),
			[]string{"avc1.", "mp4a.40.2"}, []string{"h264/avc1", "aac/mp4a"}},
	}
	camPub := ffmpegSource(t, dur+2*time.Second, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", rtspURL(camera, "live/cam"))

	// A wrong passphrase is refused at the handshake and publishes nothing.
	wrong := ffmpegSource(t, 3*time.Second, x264, nil, "-f", "mpegts", srtURL("live/enc2", "&passphrase=wrong horse battery"))
	if err := wrong.Wait(t, 15*time.Second); err == nil {
		t.Error("SRT publish with a wrong passphrase succeeded")
	}

	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tc.pub.Wait(t, 40*time.Second)
		}()
	}
	wg.Wait()
	_ = camPub.Wait(t, 40*time.Second)

	all := append(slices.Clip(cases), struct {
		stream string
		pub    *testpeer.Process
		codecs []string
		probe  []string
	}{"live/pulled", camPub, []string{"avc1.", "mp4a.40.2"}, []string{"h264/avc1", "aac/mp4a"}})
	for _, tc := range all {
		t.Run(strings.TrimPrefix(tc.stream, "live/"), func(t *testing.T) {
			videoURL := s.originURL("/" + tc.stream + "/video/index.m3u8")
			testpeer.WaitFor(t, 15*time.Second, tc.stream+" to end", func() bool {
				if get(t, videoURL).status != http.StatusOK {
					return false
				}
				m, _ := mediaPlaylist(t, videoURL)
				return m.Endlist || tc.stream == "live/pulled"
			})
			mvURL := s.originURL("/" + tc.stream + "/index.m3u8")
			mv := get(t, mvURL)
			pl, err := playlist.Unmarshal(mv.body)
			if err != nil {
				t.Fatalf("multivariant: %v\n%s", err, mv.body)
			}
			v := pl.(*playlist.Multivariant).Variants[0]
			for i, want := range tc.codecs {
				if i >= len(v.Codecs) || !strings.HasPrefix(v.Codecs[i], want) {
					t.Errorf("CODECS %v, want prefixes %v", v.Codecs, tc.codecs)
				}
			}
			got, seconds := probeAndDecode(t, mvURL)
			want := append([]string(nil), tc.probe...)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("ffprobe: %v, want %v", got, tc.probe)
			}
			if seconds < 10 {
				t.Errorf("decoded %.2fs, want at least 10s", seconds)
			}
		})
	}
}

package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestLiveRTMPToLLHLS publishes with ffmpeg over RTMP and plays the stream
// back over LL-HLS: ffmpeg decodes ten seconds from the multivariant URL
// while the test exercises blocking reload, preload hints, delta updates,
// rendition reports and the part/segment objects.
func TestLiveRTMPToLLHLS(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		c.Segmenter.Window = 10
	})
	pub := testpeer.PublishRTMP(t, s.rtmpURL("e2e"), 22*time.Second, 30)

	multivariantURL := s.originURL("/live/e2e/index.m3u8")
	testpeer.WaitFor(t, 10*time.Second, "the multivariant playlist", func() bool {
		return get(t, multivariantURL).status == http.StatusOK
	})
	testpeer.WaitFor(t, 10*time.Second, "a first complete video segment", func() bool {
		return get(t, s.originURL("/live/e2e/video/index.m3u8")).status == http.StatusOK
	})

	// A real player reads the stream live while the rest of the test runs.
	reader := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats",
		"-i", multivariantURL, "-t", "10", "-progress", "pipe:1", "-f", "null", "-")
	var readerOut, readerErr bytes.Buffer
	reader.Stdout, reader.Stderr = &readerOut, &readerErr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Wait() }()
	defer func() { _ = reader.Process.Kill() }()

	mv := get(t, multivariantURL)
	pl, err := playlist.Unmarshal(mv.body)
	if err != nil {
		t.Fatalf("multivariant: %v\n%s", err, mv.body)
	}
	multi, ok := pl.(*playlist.Multivariant)
	if !ok || len(multi.Variants) != 1 || len(multi.Renditions) != 1 {
		t.Fatalf("multivariant: want 1 variant and 1 audio rendition:\n%s", mv.body)
	}
	v := multi.Variants[0]
	codecs := strings.Join(v.Codecs, ",")
	if !strings.HasPrefix(codecs, "avc1.") || !strings.HasSuffix(codecs, ",mp4a.40.2") {
		t.Errorf("CODECS = %q", codecs)
	}
	if v.Resolution != "640x360" || v.FrameRate == nil || *v.FrameRate != 30 || v.Audio == "" || v.Bandwidth <= 0 {
		t.Errorf("variant: %+v", v)
	}
	videoURL := s.originURL("/live/e2e/" + v.URI)
	audioURL := s.originURL("/live/e2e/" + *multi.Renditions[0].URI)

	// Wait for a first complete segment so the playlist is steady.
	var media *playlist.Media
	testpeer.WaitFor(t, 10*time.Second, "two complete video segments", func() bool {
		media, _ = mediaPlaylist(t, videoURL)
		return len(media.Segments) >= 2
	})

	t.Run("server control", func(t *testing.T) {
		sc := media.ServerControl
		if sc == nil || !sc.CanBlockReload || sc.PartHoldBack == nil || sc.CanSkipUntil == nil {
			t.Fatalf("server control: %+v", sc)
		}
		if media.PartInf == nil || media.PartInf.PartTarget <= 0 || *sc.PartHoldBack < 3*media.PartInf.PartTarget {
			t.Fatalf("part inf %+v, hold back %v", media.PartInf, *sc.PartHoldBack)
		}
		if media.PreloadHint == nil || len(media.RenditionReport) != 1 || !strings.Contains(media.RenditionReport[0].URI, "audio") {
			t.Fatalf("preload hint %+v, reports %+v", media.PreloadHint, media.RenditionReport)
		}
		if media.Map == nil || media.Map.URI != "init.mp4" {
			t.Fatalf("EXT-X-MAP: %+v", media.Map)
		}
		for _, seg := range media.Segments {
			if seg.DateTime == nil {
				t.Fatalf("segment %s without EXT-X-PROGRAM-DATE-TIME", seg.URI)
			}
		}
	})

	t.Run("blocking reload returns once the part exists", func(t *testing.T) {
		m, _ := mediaPlaylist(t, videoURL)
		msn, part := testpeer.ParsePartURI(t, m.PreloadHint.URI)
		url := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", videoURL, msn, part)
		start := time.Now()
		blocked, r := mediaPlaylist(t, url)
		waited := time.Since(start)
		if !strings.Contains(string(r.body), m.PreloadHint.URI) {
			t.Fatalf("blocking reload for %d.%d returned without it:\n%s", msn, part, r.body)
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
			t.Errorf("blocking reload Cache-Control %q", cc)
		}
		if waited > 2*time.Second {
			t.Errorf("blocking reload took %s for a %s part", waited, blocked.PartInf.PartTarget)
		}
		t.Logf("blocking reload waited %s for part %d.%d", waited, msn, part)
	})

	t.Run("preload hinted part blocks until it exists", func(t *testing.T) {
		m, _ := mediaPlaylist(t, videoURL)
		r := get(t, s.originURL("/live/e2e/video/"+m.PreloadHint.URI))
		if r.status != http.StatusOK || len(r.body) < 8 || string(r.body[4:8]) != "moof" {
			t.Fatalf("hinted part %s: status %d, %d bytes", m.PreloadHint.URI, r.status, len(r.body))
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("part Cache-Control %q", cc)
		}
	})

	t.Run("far future msn is a bad request", func(t *testing.T) {
		m, _ := mediaPlaylist(t, videoURL)
		msn, _ := testpeer.ParsePartURI(t, m.PreloadHint.URI)
		r := get(t, fmt.Sprintf("%s?_HLS_msn=%d", videoURL, msn+100))
		if r.status != http.StatusBadRequest {
			t.Fatalf("far-future msn: %d", r.status)
		}
	})

	t.Run("parts concatenate to the segment", func(t *testing.T) {
		m, _ := mediaPlaylist(t, videoURL)
		var seg *playlist.MediaSegment
		for _, sg := range m.Segments {
			if len(sg.Parts) > 0 {
				seg = sg
				break
			}
		}
		if seg == nil {
			t.Fatal("no complete segment with parts listed")
		}
		var joined []byte
		for i, p := range seg.Parts {
			body := get(t, s.originURL("/live/e2e/video/"+p.URI)).body
			// One key frame per segment (GOP = segment): only the first part is independent.
			if (i == 0) != p.Independent {
				t.Errorf("part %d of %s: INDEPENDENT=%v", i, seg.URI, p.Independent)
			}
			joined = append(joined, body...)
		}
		whole := get(t, s.originURL("/live/e2e/video/"+seg.URI))
		if whole.status != http.StatusOK || !bytes.Equal(joined, whole.body) {
			t.Fatalf("%d parts of %s (%d bytes) differ from the segment (%d bytes, status %d)", len(seg.Parts), seg.URI, len(joined), len(whole.body), whole.status)
		}
	})

	t.Run("rendition report matches the audio playlist", func(t *testing.T) {
		a, _ := mediaPlaylist(t, audioURL)
		if len(a.Segments) == 0 || a.PartInf == nil {
			t.Fatalf("audio playlist: %d segments", len(a.Segments))
		}
		if len(a.RenditionReport) != 1 || !strings.Contains(a.RenditionReport[0].URI, "video") {
			t.Fatalf("audio rendition reports: %+v", a.RenditionReport)
		}
	})

	t.Run("delta update skips old segments", func(t *testing.T) {
		// CAN-SKIP-UNTIL is 6 target durations; the 10-segment window gets
		// longer than that after about eight seconds.
		var m *playlist.Media
		testpeer.WaitFor(t, 15*time.Second, "a delta update with skipped segments", func() bool {
			m, _ = mediaPlaylist(t, videoURL+"?_HLS_skip=YES")
			return m.Skip != nil && m.Skip.SkippedSegments > 0
		})
		full, _ := mediaPlaylist(t, videoURL)
		if m.MediaSequence != full.MediaSequence && m.MediaSequence+1 != full.MediaSequence {
			t.Errorf("delta media sequence %d vs full %d", m.MediaSequence, full.MediaSequence)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, name := range []string{
			"headwater_streams_active 1",
			`headwater_ingest_bytes_total{protocol="rtmp"}`,
			"headwater_part_publish_latency_seconds_count",
			"headwater_segment_duration_seconds_count",
			"headwater_first_part_latency_seconds_count",
			`headwater_origin_requests_total{object="part",status="200"}`,
		} {
			if v := metricValue(t, s, name); v <= 0 {
				t.Errorf("metric %s = %v", name, v)
			}
		}
	})

	select {
	case err := <-readerDone:
		if err != nil || strings.TrimSpace(readerErr.String()) != "" {
			t.Fatalf("ffmpeg reading the live stream: %v\n%s", err, readerErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ffmpeg reader did not finish")
	}
	if d := progressSeconds(readerOut.String()); d < 9.9 {
		t.Fatalf("ffmpeg decoded %.2fs of the live stream, want 10s", d)
	}

	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
	testpeer.WaitFor(t, 5*time.Second, "EXT-X-ENDLIST", func() bool {
		m, _ := mediaPlaylist(t, videoURL)
		return m.Endlist
	})
}

// progressSeconds reads the last out_time_us of ffmpeg's -progress output.
func progressSeconds(progress string) float64 {
	last := 0.0
	sc := bufio.NewScanner(strings.NewReader(progress))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "out_time_us="); ok {
			if us, err := strconv.ParseFloat(v, 64); err == nil {
				last = us / 1e6
			}
		}
	}
	return last
}

// TestRepublishContinuesPlaylists ends a publish and starts another on the
// same key: the playlists continue with a discontinuity and rising sequence
// numbers, and nothing of the first session is left running.
func TestRepublishContinuesPlaylists(t *testing.T) {
	s := startServer(t, nil)
	baseline := runtime.NumGoroutine()
	videoURL := s.originURL("/live/again/video/index.m3u8")

	first := testpeer.PublishRTMP(t, s.rtmpURL("again"), 5*time.Second, 30)
	if err := first.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("first publish: %v\n%s", err, first.Stderr.String())
	}
	var ended *playlist.Media
	testpeer.WaitFor(t, 5*time.Second, "ENDLIST after the first publish", func() bool {
		if get(t, videoURL).status != http.StatusOK {
			return false
		}
		ended, _ = mediaPlaylist(t, videoURL)
		return ended.Endlist
	})
	if ended.PreloadHint != nil {
		t.Error("ended playlist still has a preload hint")
	}
	lastMSN := ended.MediaSequence + len(ended.Segments) - 1
	waitGoroutines(t, baseline, "the first session's goroutines to end")

	second := testpeer.PublishRTMP(t, s.rtmpURL("again"), 5*time.Second, 30)
	if err := second.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("second publish: %v\n%s", err, second.Stderr.String())
	}
	var m *playlist.Media
	testpeer.WaitFor(t, 5*time.Second, "ENDLIST after the second publish", func() bool {
		m, _ = mediaPlaylist(t, videoURL)
		return m.Endlist && m.MediaSequence+len(m.Segments)-1 > lastMSN
	})
	disc := -1
	for i, seg := range m.Segments {
		msn := m.MediaSequence + i
		if seg.Discontinuity {
			disc = msn
		}
		want := "seg" + strconv.Itoa(msn) + ".m4s"
		if path.Base(seg.URI) != want {
			t.Errorf("segment %d has URI %s", msn, seg.URI)
		}
	}
	if disc != lastMSN+1 {
		t.Fatalf("discontinuity at %d, want %d (first session ended at %d)", disc, lastMSN+1, lastMSN)
	}
	waitGoroutines(t, baseline, "every session goroutine to end")
}

// TestBadInputKeepsStreamsPlaying runs two streams while bad peers poke at
// every listener; each bad peer loses only its own connection.
func TestBadInputKeepsStreamsPlaying(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.SRT.Address = "127.0.0.1:0"
		c.RTSP.Address = "127.0.0.1:0"
		c.RTSP.UDPRTPAddress, c.RTSP.UDPRTCPAddress = "", ""
	})
	a := testpeer.PublishRTMP(t, s.rtmpURL("a"), 20*time.Second, 30)
	b := testpeer.PublishRTMP(t, s.rtmpURL("b"), 20*time.Second, 30)
	for _, key := range []string{"a", "b"} {
		url := s.originURL("/live/" + key + "/video/index.m3u8")
		testpeer.WaitFor(t, 10*time.Second, "stream "+key, func() bool { return get(t, url).status == http.StatusOK })
	}
	progress := func(key string) uint64 {
		st, ok := s.Store().Stream("live/" + key)
		if !ok {
			return 0
		}
		r, ok := st.Rendition("video")
		if !ok {
			return 0
		}
		msn, part, _ := r.Snapshot().LastMSN()
		return msn*1000 + uint64(part+1)
	}

	rtmpAddr := s.RTMPAddr().String()
	t.Run("random bytes", func(t *testing.T) {
		c, err := net.Dial("tcp", rtmpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 2000))
		expectClosed(t, c)
	})
	t.Run("truncated handshake", func(t *testing.T) {
		c, err := net.Dial("tcp", rtmpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(append([]byte{3}, make([]byte, 700)...))
		_ = c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c)
	})
	t.Run("second publisher on a live key", func(t *testing.T) {
		dup := testpeer.PublishRTMP(t, s.rtmpURL("a"), 5*time.Second, 30)
		if err := dup.Wait(t, 15*time.Second); err == nil {
			t.Fatal("second publisher on live/a was accepted")
		}
	})
	t.Run("unsupported codec", func(t *testing.T) {
		args := []string{"-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
			"-t", "3", "-c:v", "flv1", "-f", "flv", s.rtmpURL("sorenson")}
		out, err := exec.Command("ffmpeg", args...).CombinedOutput()
		if err == nil {
			t.Logf("ffmpeg ended cleanly: %s", out)
		}
		if st, ok := s.Registry().Get("live/sorenson"); ok {
			t.Fatalf("unsupported codec published as %s", st.Name())
		}
		if v := metricValue(t, s, `headwater_ingest_errors_total{protocol="rtmp",reason="unsupported_codec"}`); v < 1 {
			t.Fatalf("unsupported_codec errors = %v", v)
		}
	})
	t.Run("garbage HTTP paths", func(t *testing.T) {
		for _, p := range []string{
			"/../../etc/passwd", "/live/%2e%2e/%2e%2e/etc/passwd", "/live/a/video/seg-1.m4s",
			"/live/a/video/segxyz.m4s", "/live/a/video/part1.m4s", "/live/nope/index.m3u8",
			"/live/a/video/index.m3u8?_HLS_part=3", "/" + strings.Repeat("x", 5000),
			// Nested and reserved names: nothing is published there.
			"/live/a/x/index.m3u8", "/live/a/x/video/index.m3u8", "/live/video/index.m3u8", "/live/a/video/x/index.m3u8",
		} {
			r := get(t, s.originURL(p))
			if r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
				t.Errorf("GET %s: %d", p, r.status)
			}
		}
	})
	t.Run("nested and reserved names", func(t *testing.T) {
		// live/a is live: live/a/x would extend its name (and its URLs), and
		// "video" names a rendition. Every protocol refuses both at publish.
		srtURL := func(name string) string {
			return fmt.Sprintf("srt://%s?streamid=#!::r=%s,m=publish&latency=500000", s.SRTAddr(), name)
		}
		rtspURL := func(name string) string { return fmt.Sprintf("rtsp://%s/%s", s.RTSPAddr(), name) }
		const dur = 4 * time.Second
		pubs := []struct {
			proto, name string
			p           *testpeer.Process
		}{
			// ffmpeg would take rtmp://host/live/a/x as app "live/a", key "x".
			{"rtmp", "live/a/x", testpeer.PublishRTMP(t, s.rtmpURL("a/x"), dur, 30, "-rtmp_app", "live", "-rtmp_playpath", "a/x")},
			{"rtmp", "live/video", testpeer.PublishRTMP(t, s.rtmpURL("video"), dur, 30)},
			{"srt", "live/a/x", ffmpegSource(t, dur, x264, aac, "-f", "mpegts", srtURL("live/a/x"))},
			{"srt", "live/video", ffmpegSource(t, dur, x264, aac, "-f", "mpegts", srtURL("live/video"))},
			{"rtsp", "live/a/x", ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", rtspURL("live/a/x"))},
			{"rtsp", "live/video", ffmpegSource(t, dur, x264, aac, "-f", "rtsp", "-rtsp_transport", "tcp", rtspURL("live/video"))},
		}
		for _, pub := range pubs {
			if err := pub.p.Wait(t, 20*time.Second); err == nil {
				t.Errorf("%s publish of %s: ffmpeg ended cleanly, want an error", pub.proto, pub.name)
			}
			if st, ok := s.Registry().Get(pub.name); ok {
				t.Errorf("%s publish of %s: published as %s", pub.proto, pub.name, st.Name())
			}
		}
		for _, proto := range []string{"rtmp", "srt", "rtsp"} {
			series := `headwater_ingest_errors_total{protocol="` + proto + `",reason="invalid_name"}`
			if v := metricValue(t, s, series); v != 2 {
				t.Errorf("%s = %v, want 2 (one per refused publish)", series, v)
			}
			for _, name := range []string{"live/a/x", "live/video"} {
				n := 0
				for _, line := range strings.Split(s.logs.String(), "\n") {
					if strings.Contains(line, `"msg":"`+proto+`:`) && strings.Contains(line, `invalid_name`) && strings.Contains(line, name) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s refusal of %s logged %d times, want once", proto, name, n)
				}
			}
		}
	})

	before := map[string]uint64{"a": progress("a"), "b": progress("b")}
	testpeer.WaitFor(t, 5*time.Second, "both streams to keep producing parts", func() bool {
		return progress("a") > before["a"] && progress("b") > before["b"]
	})
	for _, p := range []*testpeer.Process{a, b} {
		if err := p.Wait(t, 30*time.Second); err != nil {
			t.Fatalf("publisher: %v\n%s", err, p.Stderr.String())
		}
	}
}

// expectClosed reads until the server closes the connection.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("server kept a bad connection open")
			}
			return
		}
	}
}

// waitGoroutines waits until no more goroutines run than at baseline, once
// the test's own idle HTTP connections are closed.
func waitGoroutines(t *testing.T, baseline int, what string) {
	t.Helper()
	testpeer.WaitFor(t, 5*time.Second, what, func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= baseline
	})
}

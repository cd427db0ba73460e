package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/server"
	"github.com/headwater-live/headwater/store"
)

// publishSized is publish with a 1280x720 test pattern and a given duration
// and GOP (frames at 30 fps).
func publishSized(t *testing.T, url string, dur time.Duration, gop int) *testpeer.Process {
	t.Helper()
	return testpeer.PublishPattern(t, url, "testsrc=size=1280x720:rate=30", "1500k", dur, gop)
}

// TestTranscodeABRLadder publishes 720p30 with 2s GOPs with the transcoder
// on: the default ladder adds 480p and 360p (not 720p, not below the
// source), listed after the source, each segment starting with a key frame
// at the same time as the source's.
func TestTranscodeABRLadder(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(t.Context()) }()
	s := startServer(t, func(c *config.Config) {
		c.Transcoder.Enabled = true
		c.Segmenter.Window = 10
	}, server.WithTracerProvider(tp))
	defer func() {
		// Each GOP's transcode job is a span under the publish span.
		var publishID string
		jobs := 0
		for _, sp := range exp.GetSpans() {
			if sp.Name == "publish live/abr" {
				publishID = sp.SpanContext.SpanID().String()
			}
		}
		for _, sp := range exp.GetSpans() {
			if sp.Name == "transcode job" && sp.Parent.SpanID().String() == publishID {
				jobs++
			}
		}
		if jobs < 3 {
			t.Errorf("%d transcode job spans under the publish span", jobs)
		}
	}()
	testpeer.WaitFor(t, 15*time.Second, "/readyz with a warm pool", func() bool {
		return get(t, s.adminURL("/readyz")).status == http.StatusOK
	})
	pub := publishSized(t, s.rtmpURL("abr"), 12*time.Second, 60)

	mvURL := s.originURL("/live/abr/index.m3u8")
	var multi *playlist.Multivariant
	var mvBody []byte
	testpeer.WaitFor(t, 20*time.Second, "a multivariant playlist with 3 variants", func() bool {
		r := get(t, mvURL)
		if r.status != http.StatusOK {
			return false
		}
		pl, err := playlist.Unmarshal(r.body)
		if err != nil {
			t.Fatalf("multivariant: %v\n%s", err, r.body)
		}
		multi, _ = pl.(*playlist.Multivariant)
		mvBody = r.body
		return multi != nil && len(multi.Variants) == 3
	})
	wantRes := []struct{ uri, res string }{{"video/index.m3u8", "1280x720"}, {"480p/index.m3u8", "854x480"}, {"360p/index.m3u8", "640x360"}}
	for i, v := range multi.Variants {
		if v.URI != wantRes[i].uri || v.Resolution != wantRes[i].res {
			t.Errorf("variant %d: %s %s, want %s %s", i, v.URI, v.Resolution, wantRes[i].uri, wantRes[i].res)
		}
		codecs := strings.Join(v.Codecs, ",")
		if !strings.HasPrefix(codecs, "avc1.") || !strings.HasSuffix(codecs, ",mp4a.40.2") || v.Audio == "" {
			t.Errorf("variant %d: CODECS %q, AUDIO %q", i, codecs, v.Audio)
		}
	}
	if len(multi.Renditions) != 1 {
		t.Errorf("want one audio rendition (shared):\n%s", mvBody)
	}

	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
	st, ok := s.Store().Stream("live/abr")
	if !ok {
		t.Fatal("no stream in the store")
	}
	names := []string{"video", "480p", "360p"}
	snaps := endedSnapshots(t, st, names...)

	// Segment boundaries: same MSNs, same decode times (tfdt), same
	// program date times; durations too except the last segment's.
	src := snaps["video"]
	if len(src.Segments) < 4 {
		t.Fatalf("source has %d segments", len(src.Segments))
	}
	for _, n := range names[1:] {
		rs := snaps[n]
		if len(rs.Segments) != len(src.Segments) {
			t.Errorf("%s: %d segments, source %d", n, len(rs.Segments), len(src.Segments))
			continue
		}
		for i, seg := range rs.Segments {
			ss := src.Segments[i]
			at := func(sg *store.Segment, ts uint32) time.Duration {
				return time.Duration(sg.BaseTime) * time.Second / time.Duration(ts)
			}
			if seg.MSN != ss.MSN || at(seg, rs.Info.Timescale) != at(ss, src.Info.Timescale) || seg.Gap ||
				!seg.ProgramDateTime.Equal(ss.ProgramDateTime) || (i < len(rs.Segments)-1 && seg.Duration != ss.Duration) {
				t.Errorf("%s segment %d: msn %d at %s (%s) pdt %s gap %v; source msn %d at %s (%s) pdt %s", n, i,
					seg.MSN, at(seg, rs.Info.Timescale), seg.Duration, seg.ProgramDateTime.Format(time.RFC3339Nano), seg.Gap,
					ss.MSN, at(ss, src.Info.Timescale), ss.Duration, ss.ProgramDateTime.Format(time.RFC3339Nano))
			}
		}
	}

	// Every segment of every rendition starts with a key frame (IDR), and
	// the media playlists decode at the expected size.
	dir := t.TempDir()
	for i, n := range names {
		base := s.originURL("/live/abr/" + n + "/")
		m, _ := mediaPlaylist(t, base+"index.m3u8")
		if m.Map == nil {
			t.Fatalf("%s: no EXT-X-MAP", n)
		}
		init := get(t, base+m.Map.URI).body
		for _, seg := range m.Segments {
			if seg.Gap {
				t.Errorf("%s: gap at %s", n, seg.URI)
				continue
			}
			f := filepath.Join(dir, n+"-"+seg.URI+".mp4")
			r := get(t, base+seg.URI)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s%s: %d", base, seg.URI, r.status)
			}
			if err := os.WriteFile(f, append(append([]byte{}, init...), r.body...), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames",
				"-read_intervals", "%+#1", "-show_entries", "frame=key_frame,pict_type", "-of", "csv=p=0", f).Output()
			// key_frame,pict_type[,side data]: x264 writes its SEI in the IDR access unit.
			if first := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); err != nil || !strings.HasPrefix(first, "1,I") {
				t.Errorf("%s %s: first frame %q (%v), want a key frame", n, seg.URI, first, err)
			}
		}
		out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
			"-show_entries", "stream=width,height", "-of", "csv=p=0:s=x", base+"index.m3u8").CombinedOutput()
		if got := strings.Fields(string(out)); err != nil || len(got) == 0 || got[0] != wantRes[i].res {
			t.Errorf("ffprobe %s: %q (%v), want %s", n, got, err, wantRes[i].res)
		}
	}
	// With a C compiler (the test command installs one) the renditions
	// above came from ffmpeg processes forked by the fork server.
	testpeer.RequireBinary(t, "the fork server is compiled with cc: apt-get install -y gcc; ./scripts/test.sh installs it", "cc")
	if up := metricValue(t, s, "headwater_transcoder_fork_server_up"); up != 1 {
		t.Errorf("headwater_transcoder_fork_server_up = %v with a C compiler", up)
	}
	if _, servers := ffmpegWorkers(t, pub.Cmd.Process.Pid); len(servers) != 1 {
		t.Errorf("fork servers: %v", servers)
	}
}

// ffmpegWorkers lists the transcoder's ffmpeg worker processes: the
// children of the fork server when it runs (an ffmpeg child of this process
// started with HEADWATER_FORKSERVER_FD), and the other ffmpeg children of
// this process but skip (the publisher). servers lists the fork servers.
func ffmpegWorkers(t *testing.T, skip int) (workers, servers []int) {
	t.Helper()
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("/proc: %v (the test suite runs on Linux)", err)
	}
	parent := map[int]int{} // ffmpeg processes by pid: their parent
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == skip {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(ffmpeg") {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[0] != "Z" {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	isServer := map[int]bool{}
	for pid, pp := range parent {
		if pp != self {
			continue
		}
		// The fork server's environment is its exec's: it names the
		// socket (the variable is unset for its children, not in /proc).
		env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if bytes.Contains(env, []byte("HEADWATER_FORKSERVER_FD=")) {
			isServer[pid] = true
			servers = append(servers, pid)
		}
	}
	for pid, pp := range parent {
		if (pp == self && !isServer[pid]) || isServer[pp] {
			workers = append(workers, pid)
		}
	}
	return workers, servers
}

func TestTranscodeWorkerKilled(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Transcoder.Enabled = true
		c.Segmenter.Window = 10
	})
	testpeer.WaitFor(t, 15*time.Second, "/readyz with a warm pool", func() bool {
		return get(t, s.adminURL("/readyz")).status == http.StatusOK
	})
	pub := publishSized(t, s.rtmpURL("kill"), 12*time.Second, 60)
	testpeer.WaitFor(t, 20*time.Second, "two 360p segments", func() bool {
		st, ok := s.Store().Stream("live/kill")
		if !ok {
			return false
		}
		r, ok := st.Rendition("360p")
		return ok && len(r.Snapshot().Segments) >= 2
	})
	// Kill a worker running a job (not blocked reading its GOP, as warm
	// processes are: /proc/<pid>/syscall starts with read's number, 0).
	var killed int
	testpeer.WaitFor(t, 5*time.Second, "a busy ffmpeg worker", func() bool {
		workers, _ := ffmpegWorkers(t, pub.Cmd.Process.Pid)
		for _, pid := range workers {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "syscall"))
			if err != nil || strings.HasPrefix(string(b), "0 ") {
				continue
			}
			if p, err := os.FindProcess(pid); err == nil && p.Kill() == nil {
				killed = pid
				return true
			}
		}
		return false
	})
	t.Logf("killed busy ffmpeg worker %d", killed)

	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
	st, _ := s.Store().Stream("live/kill")
	snaps := endedSnapshots(t, st, "video", "480p", "360p")
	src := snaps["video"]
	for _, seg := range src.Segments {
		if seg.Gap {
			t.Errorf("source segment %d is a gap", seg.MSN)
		}
	}
	for _, n := range []string{"480p", "360p"} {
		segs := snaps[n].Segments
		lost := len(src.Segments) - len(segs)
		for _, seg := range segs {
			if seg.Gap {
				lost++
			}
		}
		if lost > 1 {
			t.Errorf("%s lost %d segments of %d", n, lost, len(src.Segments))
		}
		if last := segs[len(segs)-1]; last.Gap || last.MSN != src.Segments[len(src.Segments)-1].MSN {
			t.Errorf("%s: last segment %d (gap %v), source's %d: the pool did not recover", n, last.MSN, last.Gap, src.Segments[len(src.Segments)-1].MSN)
		}
		t.Logf("%s: %d segments, %d lost", n, len(segs), lost)
	}
	t.Logf("retried rendition-GOPs: 480p %v, 360p %v",
		metricValue(t, s, `headwater_transcoder_jobs_total{outcome="retried",rendition="480p"}`),
		metricValue(t, s, `headwater_transcoder_jobs_total{outcome="retried",rendition="360p"}`))
	workers, servers := ffmpegWorkers(t, pub.Cmd.Process.Pid)
	if len(workers) == 0 {
		t.Error("no warm ffmpeg process after the kill")
	}
	// The worker died, not the fork server (when there is one).
	if up := metricValue(t, s, "headwater_transcoder_fork_server_up"); up == 1 {
		if restarts := metricValue(t, s, "headwater_transcoder_fork_server_restarts_total"); restarts != 0 || len(servers) != 1 {
			t.Errorf("fork servers %v, %v restarts: the kill reached the fork server", servers, restarts)
		}
	}
}

// TestTranscodeOpusAudioToAAC publishes H.264 + Opus over SRT with the
// transcoder on: the shared audio rendition is AAC-LC made by one ffmpeg
// process in place of the Opus track, continuous from the first segment to
// the last, on the video's segment boundaries, and ffmpeg decodes it.
func TestTranscodeOpusAudioToAAC(t *testing.T) {
	requireFFmpeg(t)
	s := startServer(t, func(c *config.Config) {
		c.SRT.Address = "127.0.0.1:0"
		c.SRT.Latency = config.Duration(500 * time.Millisecond)
		c.Transcoder.Enabled = true
		c.Transcoder.Ladder = []string{"180p=180:200k"}
		c.Segmenter.Window = 10
	})
	testpeer.WaitFor(t, 15*time.Second, "/readyz with a warm pool", func() bool {
		return get(t, s.adminURL("/readyz")).status == http.StatusOK
	})
	const dur = 10 * time.Second
	url := fmt.Sprintf("srt://%s?streamid=#!::r=live/opusabr,m=publish&latency=500000", s.SRTAddr())
	pub := ffmpegSource(t, dur, x264, opus, "-f", "mpegts", url)

	mvURL := s.originURL("/live/opusabr/index.m3u8")
	var multi *playlist.Multivariant
	var mvBody []byte
	testpeer.WaitFor(t, 20*time.Second, "a multivariant playlist with 2 variants", func() bool {
		r := get(t, mvURL)
		if r.status != http.StatusOK {
			return false
		}
		pl, err := playlist.Unmarshal(r.body)
		if err != nil {
			t.Fatalf("multivariant: %v\n%s", err, r.body)
		}
		multi, _ = pl.(*playlist.Multivariant)
		mvBody = r.body
		return multi != nil && len(multi.Variants) == 2
	})
	for i, v := range multi.Variants {
		codecs := strings.Join(v.Codecs, ",")
		if !strings.HasPrefix(codecs, "avc1.") || !strings.HasSuffix(codecs, ",mp4a.40.2") || v.Audio == "" {
			t.Errorf("variant %d: CODECS %q, AUDIO %q", i, codecs, v.Audio)
		}
	}
	if len(multi.Renditions) != 1 || strings.Contains(string(mvBody), "opus") {
		t.Errorf("want one AAC audio rendition, no Opus:\n%s", mvBody)
	}

	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
	st, ok := s.Store().Stream("live/opusabr")
	if !ok {
		t.Fatal("no stream in the store")
	}
	snaps := endedSnapshots(t, st, "video", "180p", "audio")
	if len(st.Renditions()) != 3 {
		t.Errorf("%d renditions, want video, 180p, audio", len(st.Renditions()))
	}
	a, v := snaps["audio"], snaps["video"]
	if _, ok := a.Info.Codec.(*media.AAC); !ok || a.Info.Timescale != 48000 {
		t.Fatalf("audio rendition: codec %v, timescale %d", a.Info.Codec, a.Info.Timescale)
	}
	if len(a.Segments) == 0 || len(v.Segments) == 0 {
		t.Fatalf("audio has %d segments, video %d", len(a.Segments), len(v.Segments))
	}
	// Continuous: each segment starts where the previous one ends, none is
	// a gap, and together they last about as long as the publish.
	var total time.Duration
	for i, seg := range a.Segments {
		if seg.Gap {
			t.Errorf("audio segment %d is a gap", i)
		}
		if i > 0 {
			prev := a.Segments[i-1]
			if want := prev.BaseTime + prev.DurationTicks; seg.BaseTime != want {
				t.Errorf("audio segment %d at %d, previous ends at %d", i, seg.BaseTime, want)
			}
		}
		total += seg.Duration
	}
	var vtotal time.Duration
	for _, seg := range v.Segments {
		vtotal += seg.Duration
	}
	t.Logf("audio: %d segments from %d, %s in all; video: %d segments from %d, %s", len(a.Segments), a.Segments[0].BaseTime, total, len(v.Segments), v.Segments[0].BaseTime, vtotal)
	if total < dur-2*time.Second || total > dur+time.Second || (vtotal-total).Abs() > 100*time.Millisecond {
		t.Errorf("audio segments last %s in all, video %s, published %s", total, vtotal, dur)
	}
	// On the video's segment boundaries: same sequence numbers.
	if len(a.Segments) != len(v.Segments) || len(a.Segments) == 0 || a.Segments[0].MSN != v.Segments[0].MSN {
		t.Errorf("audio has %d segments, video %d", len(a.Segments), len(v.Segments))
	}

	codecs, _ := probeAndDecode(t, mvURL)
	if !slices.ContainsFunc(codecs, func(c string) bool { return strings.HasPrefix(c, "aac/") }) {
		t.Errorf("ffprobe: %q, want aac", codecs)
	}
	if slices.ContainsFunc(codecs, func(c string) bool { return strings.HasPrefix(c, "opus") }) {
		t.Errorf("ffprobe: %q, want no opus", codecs)
	}
	dec := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-i", s.originURL("/live/opusabr/audio/index.m3u8"),
		"-map", "0:a:0", "-progress", "pipe:1", "-f", "null", "-")
	var stdout, stderr testpeer.LogBuffer
	dec.Stdout, dec.Stderr = &stdout, &stderr
	if err := dec.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Fatalf("ffmpeg decoding the audio: %v\n%s", err, stderr.String())
	}
	if sec := progressSeconds(stdout.String()); sec < 8 {
		t.Errorf("decoded %.1fs of audio, want >= 8s", sec)
	}
}

// TestReloadLadder changes the ladder with a reload: the next publish gets
// the new renditions, without a restart.
func TestReloadLadder(t *testing.T) {
	mutate := func(c *config.Config) {
		c.Transcoder.Enabled = true
		c.Transcoder.Ladder = []string{"180p=180:200k"}
	}
	s := startServer(t, mutate)
	testpeer.WaitFor(t, 15*time.Second, "/readyz with a warm pool", func() bool {
		return get(t, s.adminURL("/readyz")).status == http.StatusOK
	})
	next := config.Default()
	mutate(next)
	next.Transcoder.Ladder = []string{"120p=120:100k"}
	res, err := s.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	applied := false
	for _, c := range res.Applied {
		applied = applied || c.Key == "transcoder.ladder"
	}
	if !applied {
		t.Fatalf("ladder not applied: %+v", res)
	}
	pub := ffmpegSource(t, 5*time.Second, x264, aac, "-f", "flv", s.rtmpURL("reladder"))
	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	url := s.originURL("/live/reladder/index.m3u8")
	testpeer.WaitFor(t, 15*time.Second, "the 120p rendition", func() bool {
		r := get(t, url)
		return r.status == http.StatusOK && strings.Contains(string(r.body), "120p/index.m3u8")
	})
	if body := string(get(t, url).body); strings.Contains(body, "180p") {
		t.Fatalf("the old ladder is still used:\n%s", body)
	}
}

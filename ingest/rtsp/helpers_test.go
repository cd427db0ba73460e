package rtsp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if mediaDir != "" {
		os.RemoveAll(mediaDir)
	}
	os.Exit(code)
}

// --- test environment: a real server on loopback, a real registry ---

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// capture subscribes to a published stream and keeps every frame.
type capture struct {
	stream *media.Stream
	sub    *media.Subscription
	done   chan struct{}

	mu     sync.Mutex
	frames []*media.Frame
}

func (c *capture) Frames() []*media.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*media.Frame(nil), c.frames...)
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// wait waits for the stream to end and its frames to be drained.
func (c *capture) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("stream %s still live after %s", c.stream.Name(), timeout)
	}
}

// waitFrames waits until at least n frames arrived.
func (c *capture) waitFrames(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d frames after %s, want %d", c.stream.Name(), c.count(), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testEnv struct {
	t    testing.TB
	reg  *media.Registry
	srv  *Server
	prom *prometheus.Registry
	logs *syncBuffer
	udp  [2]int // UDP RTP and RTCP ports, 0 without UDP

	mu       sync.Mutex
	captures map[string][]*capture
	notify   chan struct{}
}

type envOptions struct {
	udp      bool
	registry media.RegistryConfig
	noStart  bool
	tweak    func(*Server)
}

func newEnv(t testing.TB, cfg Config) *testEnv {
	return newEnvWith(t, cfg, envOptions{})
}

func newEnvWith(t testing.TB, cfg Config, opts envOptions) *testEnv {
	t.Helper()
	e := &testEnv{
		t:        t,
		prom:     prometheus.NewRegistry(),
		logs:     &syncBuffer{},
		captures: make(map[string][]*capture),
		notify:   make(chan struct{}, 1),
	}
	rc := opts.registry
	rc.OnPublish = func(st *media.Stream) {
		c := &capture{stream: st, sub: st.Subscribe(100000), done: make(chan struct{})}
		go func() {
			defer close(c.done)
			for f := range c.sub.Frames() {
				c.mu.Lock()
				c.frames = append(c.frames, f)
				c.mu.Unlock()
			}
		}()
		e.mu.Lock()
		e.captures[st.Name()] = append(e.captures[st.Name()], c)
		e.mu.Unlock()
		select {
		case e.notify <- struct{}{}:
		default:
		}
	}
	e.reg = media.NewRegistry(rc)
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for attempt := 0; ; attempt++ {
		if opts.udp {
			e.udp = freeUDPPair(t)
			cfg.UDPRTPAddress = "127.0.0.1:" + strconv.Itoa(e.udp[0])
			cfg.UDPRTCPAddress = "127.0.0.1:" + strconv.Itoa(e.udp[1])
		}
		e.srv = New(cfg, e.reg, ingest.NewMetrics(e.prom), NewMetrics(e.prom), log)
		if opts.tweak != nil {
			opts.tweak(e.srv)
		}
		if opts.noStart {
			break
		}
		err := e.srv.Start()
		if err == nil {
			break
		}
		if !opts.udp || attempt == 10 {
			t.Fatal(err)
		}
		// Another test took the UDP ports meanwhile: try others.
		e.prom = prometheus.NewRegistry()
	}
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() || os.Getenv("RTSP_TEST_LOG") != "" {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// freeUDPPair finds an even UDP port whose successor is free too.
func freeUDPPair(t testing.TB) [2]int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := 20000 + 2*rand.IntN(20000)
		a, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return [2]int{p, p + 1}
	}
	t.Fatal("no free UDP port pair")
	return [2]int{}
}

func (e *testEnv) addr() string { return e.srv.Addr().String() }

func (e *testEnv) url(name string) string { return "rtsp://" + e.addr() + "/" + name }

// waitPublished waits for the n-th (1-based) publish of name.
func (e *testEnv) waitPublished(name string, n int, timeout time.Duration) *capture {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		cs := e.captures[name]
		e.mu.Unlock()
		if len(cs) >= n {
			return cs[n-1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not published %d times after %s", name, n, timeout)
		}
		select {
		case <-e.notify:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (e *testEnv) publishes(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.captures[name])
}

// metric returns the value of a series (protocol="rtsp" for the ingest
// metrics), 0 when absent.
func (e *testEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	want := map[string]string{}
	if strings.HasPrefix(name, "headwater_ingest_") {
		want["protocol"] = Protocol
	}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	mfs, err := e.prom.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// waitMetric polls a metric until cond holds.
func (e *testEnv) waitMetricCond(timeout time.Duration, cond func(float64) bool, desc, name string, labels ...string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := e.metric(name, labels...)
		if cond(got) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s%v = %v, want %s", name, labels, got, desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *testEnv) waitMetric(want float64, timeout time.Duration, name string, labels ...string) {
	e.t.Helper()
	e.waitMetricCond(timeout, func(v float64) bool { return v == want }, fmt.Sprint(want), name, labels...)
}

func (e *testEnv) waitErrors(reason ingest.Reason, want float64) {
	e.t.Helper()
	e.waitMetric(want, 5*time.Second, "headwater_ingest_errors_total", "reason", string(reason))
}

// waitLog polls the server log for a substring.
func (e *testEnv) waitLog(substr string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(e.logs.String(), substr) {
		if time.Now().After(deadline) {
			e.t.Fatalf("log has no %q", substr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *testEnv) logCount(substr string) int { return strings.Count(e.logs.String(), substr) }

// --- ffmpeg ---

func needFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed")
	}
}

// ffmpeg runs ffmpeg with the given arguments and returns its error and output.
func ffmpeg(ctx context.Context, args ...string) (string, error) {
	all := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	out, err := exec.CommandContext(ctx, "ffmpeg", all...).CombinedOutput()
	return string(out), err
}

// testsrcArgs are the lavfi inputs of the test publishes (30 fps, 48 kHz).
func testsrcArgs(size, seconds string) []string {
	return []string{
		"-re",
		"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
	}
}

// x264 are the encoder arguments of H.264 with a key frame every gop frames
// and up to bframes B-frames.
func x264(gop, bframes int) []string {
	return []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-g", strconv.Itoa(gop), "-bf", strconv.Itoa(bframes), "-sc_threshold", "0"}
}

// publishFFmpeg runs ffmpeg publishing over RTSP in the background; the
// returned channel gets its result.
func publishFFmpeg(ctx context.Context, t testing.TB, url, transport string, args ...string) <-chan error {
	done := make(chan error, 1)
	all := append(append([]string(nil), args...), "-f", "rtsp", "-rtsp_transport", transport, url)
	go func() {
		out, err := ffmpeg(ctx, all...)
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		done <- err
	}()
	return done
}

func waitDone(t testing.TB, done <-chan error, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("ffmpeg still running after %s", timeout)
		return nil
	}
}

// --- a gortsplib publisher fed with media encoded once by ffmpeg ---

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaErr  error
	testAV    *avMedia
)

// avMedia is 4 s of H.264 (320x240, 30 fps, a key frame every 30) and AAC
// (48 kHz stereo).
type avMedia struct {
	sps, pps []byte
	video    [][][]byte // access units, no AUD, parameter sets in-band on key frames
	keys     []bool
	asc      mpeg4audio.AudioSpecificConfig
	audio    [][]byte
}

func loadAV(t testing.TB) *avMedia {
	t.Helper()
	needFFmpeg(t)
	mediaOnce.Do(func() {
		mediaDir, mediaErr = os.MkdirTemp("", "rtsp-test-media")
		if mediaErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		vpath := filepath.Join(mediaDir, "v.h264")
		apath := filepath.Join(mediaDir, "a.aac")
		out, err := ffmpeg(ctx, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "4",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
			"-x264-params", "aud=1", "-f", "h264", vpath)
		if err != nil {
			mediaErr = fmt.Errorf("ffmpeg video: %v\n%s", err, out)
			return
		}
		out, err = ffmpeg(ctx, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
			"-ac", "2", "-c:a", "aac", "-f", "adts", apath)
		if err != nil {
			mediaErr = fmt.Errorf("ffmpeg audio: %v\n%s", err, out)
			return
		}
		testAV, mediaErr = parseAV(vpath, apath)
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return testAV
}

func parseAV(vpath, apath string) (*avMedia, error) {
	vb, err := os.ReadFile(vpath)
	if err != nil {
		return nil, err
	}
	annexb := splitAnnexB(vb)
	m := &avMedia{}
	var cur [][]byte
	flush := func() {
		if len(cur) > 0 {
			m.video = append(m.video, cur)
			m.keys = append(m.keys, h264.IsRandomAccess(cur))
		}
		cur = nil
	}
	for _, n := range annexb {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			flush()
			continue
		case h264.NALUTypeSPS:
			m.sps = n
		case h264.NALUTypePPS:
			m.pps = n
		}
		cur = append(cur, n)
	}
	flush()
	ab, err := os.ReadFile(apath)
	if err != nil {
		return nil, err
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(ab); err != nil {
		return nil, err
	}
	for _, p := range pkts {
		m.audio = append(m.audio, p.AU)
	}
	m.asc = mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelConfig: pkts[0].ChannelConfig}
	if len(m.video) == 0 || len(m.audio) == 0 || m.sps == nil {
		return nil, fmt.Errorf("parsed %d video and %d audio frames", len(m.video), len(m.audio))
	}
	return m, nil
}

// splitAnnexB splits an Annex-B byte stream into NAL units (trailing
// zero bytes of a NAL unit are part of the next start code).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// clientPublisher publishes avMedia with gortsplib's client.
type clientPublisher struct {
	c     *gortsplib.Client
	desc  *description.Session
	video *format.H264
	audio *format.MPEG4Audio
}

// startClientPublisher announces H.264 (with or without sprop parameter
// sets) and AAC and starts recording.
func startClientPublisher(t testing.TB, url string, m *avMedia, sprop bool, transport gortsplib.Protocol) (*clientPublisher, error) {
	t.Helper()
	p := &clientPublisher{
		video: &format.H264{PayloadTyp: 96, PacketizationMode: 1},
		audio: &format.MPEG4Audio{PayloadTyp: 97, Config: &m.asc, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3},
	}
	if sprop {
		p.video.SPS, p.video.PPS = m.sps, m.pps
	}
	p.desc = &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{p.video}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{p.audio}},
	}}
	tr := transport
	p.c = &gortsplib.Client{Protocol: &tr, OnPacketsLost: func(uint64) {}, OnDecodeError: func(error) {}, OnTransportSwitch: func(error) {}}
	if err := p.c.StartRecording(url, p.desc); err != nil {
		return nil, err
	}
	t.Cleanup(p.c.Close)
	return p, nil
}

// send writes the video frames [from, to) and the audio frames of the same
// time span, interleaved by time; pace > 0 sleeps between video frames.
// ts0 offsets the timestamps (in seconds) for a continuous timeline across calls.
func (p *clientPublisher) send(m *avMedia, from, to int, pace time.Duration, offset time.Duration) error {
	venc, err := p.video.CreateEncoder()
	if err != nil {
		return err
	}
	aenc, err := p.audio.CreateEncoder()
	if err != nil {
		return err
	}
	ai := from * 48000 / 30 / 1024
	for i := from; i < to && i < len(m.video); i++ {
		vpts := int64(i-from)*3000 + media.DurationToTicks(offset, 90000)
		pkts, err := venc.Encode(m.video[i])
		if err != nil {
			return err
		}
		for _, pkt := range pkts {
			pkt.Timestamp = uint32(vpts)
			if err := p.c.WritePacketRTP(p.desc.Medias[0], pkt); err != nil {
				return err
			}
		}
		// the audio up to the next video frame
		for ; ai < len(m.audio) && int64(ai)*1024*90000/48000 < int64(i+1)*3000; ai++ {
			apts := int64(ai-from*48000/30/1024)*1024 + media.DurationToTicks(offset, 48000)
			pkts, err := aenc.Encode([][]byte{m.audio[ai]})
			if err != nil {
				return err
			}
			for _, pkt := range pkts {
				pkt.Timestamp = uint32(apts)
				if err := p.c.WritePacketRTP(p.desc.Medias[1], pkt); err != nil {
					return err
				}
			}
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	return nil
}

// --- assertions ---

// checkAVCCPayload checks that a payload is a sequence of 4-byte length-prefixed NAL units.
func checkAVCCPayload(t testing.TB, p []byte) {
	t.Helper()
	if len(p) == 0 {
		t.Fatal("empty payload")
	}
	for rest := p; len(rest) > 0; {
		if len(rest) < 4 {
			t.Fatalf("payload has %d trailing bytes", len(rest))
		}
		l := int(binary.BigEndian.Uint32(rest))
		if l == 0 || l > len(rest)-4 {
			t.Fatalf("bad NAL unit length %d with %d bytes left", l, len(rest)-4)
		}
		rest = rest[4+l:]
	}
}

// naluTypes lists the NAL unit types of an AVCC payload.
func naluTypes(p []byte, h265 bool) []int {
	var out []int
	for len(p) >= 5 {
		l := int(binary.BigEndian.Uint32(p))
		if h265 {
			out = append(out, int(p[4]>>1)&0x3f)
		} else {
			out = append(out, int(p[4]&0x1f))
		}
		p = p[min(len(p), 4+l):]
	}
	return out
}

// waitGoroutines waits for the number of goroutines to fall to at most n.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fmtFrame(f *media.Frame) string {
	return fmt.Sprintf("track %d dts %d pts %d key %v size %d", f.Track.ID, f.DTS, f.PTS, f.Key, len(f.Payload))
}

// splitFrames splits captured frames by track id.
func splitFrames(t testing.TB, frames []*media.Frame) (video, audio []*media.Frame) {
	t.Helper()
	for _, f := range frames {
		switch f.Track.ID {
		case videoTrackID:
			video = append(video, f)
		case audioTrackID:
			audio = append(audio, f)
		default:
			t.Fatalf("frame of track %d", f.Track.ID)
		}
	}
	return video, audio
}

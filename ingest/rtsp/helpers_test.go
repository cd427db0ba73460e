package rtsp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
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
	"github.com/headwater-live/headwater/internal/testpeer"
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

type testEnv struct {
	t    testing.TB
	reg  *media.Registry
	srv  *Server
	prom *prometheus.Registry
	logs *testpeer.LogBuffer
	udp  [2]int // UDP RTP and RTCP ports, 0 without UDP
	caps *testpeer.Captures
	// metrics reads the rtsp series of e.prom (set once newEnvWith has
	// settled on e.prom, which a UDP port retry replaces).
	metrics testpeer.IngestMetrics
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
		t:    t,
		prom: prometheus.NewRegistry(),
		logs: &testpeer.LogBuffer{},
		caps: testpeer.NewCaptures(),
	}
	rc := opts.registry
	rc.OnPublish = e.caps.OnPublish
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
	e.metrics = testpeer.IngestMetrics{T: t, Reg: e.prom, Protocol: Protocol}
	testpeer.CloseAtEnd(t, e.srv, e.logs, "RTSP_TEST_LOG")
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
func (e *testEnv) waitPublished(name string, n int, timeout time.Duration) *testpeer.Capture {
	e.t.Helper()
	return e.caps.WaitPublished(e.t, name, n, timeout)
}

func (e *testEnv) logCount(substr string) int { return strings.Count(e.logs.String(), substr) }

// --- ffmpeg ---

// testsrcArgs are the lavfi inputs of the test publishes (30 fps, 48 kHz).
func testsrcArgs(size, seconds string) []string {
	return append([]string{"-re"}, testpeer.LavfiSource(size, seconds)...)
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
		out, err := testpeer.FFmpeg(ctx, all...)
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
	testpeer.NeedFFmpeg(t)
	mediaOnce.Do(func() {
		mediaDir, mediaErr = os.MkdirTemp("", "rtsp-test-media")
		if mediaErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		vpath := filepath.Join(mediaDir, "v.h264")
		apath := filepath.Join(mediaDir, "a.aac")
		out, err := testpeer.FFmpeg(ctx, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "4",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
			"-x264-params", "aud=1", "-f", "h264", vpath)
		if err != nil {
			mediaErr = fmt.Errorf("ffmpeg video: %v\n%s", err, out)
			return
		}
		out, err = testpeer.FFmpeg(ctx, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
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

// checkAVCCPayload checks that a payload is a non-empty sequence of 4-byte
// length-prefixed NAL units.
func checkAVCCPayload(t testing.TB, p []byte) {
	t.Helper()
	if len(p) == 0 {
		t.Fatal("empty payload")
	}
	testpeer.CheckAVCC(t, p)
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

package rtsp

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// publishCheck describes what an ffmpeg publish of testsrcArgs must have produced.
type publishCheck struct {
	seconds  int
	width    int
	height   int
	h265     bool
	opus     bool
	bframes  bool
	lossy    bool // UDP: allow a few missing frames
	keyEvery int
}

// checkPublish checks the frames ffmpeg published: codec parameters, the
// key frame cadence, monotonic DTS, AVCC payloads, audio frame counts and
// steps.
func checkPublish(t *testing.T, c *testpeer.Capture, pc publishCheck) {
	t.Helper()
	tracks := c.Stream.Tracks()
	if len(tracks) != 2 {
		t.Fatalf("%d tracks, want 2", len(tracks))
	}
	vt, at := tracks[0], tracks[1]
	if vt.ID != videoTrackID || vt.ClockRate != 90000 {
		t.Fatalf("video track: id %d clock %d", vt.ID, vt.ClockRate)
	}
	switch c := vt.Codec.(type) {
	case *media.H264:
		if pc.h265 || len(c.SPS) == 0 || len(c.PPS) == 0 {
			t.Fatalf("video codec %T %+v", vt.Codec, c)
		}
	case *media.H265:
		if !pc.h265 || len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0 {
			t.Fatalf("video codec %T", vt.Codec)
		}
	default:
		t.Fatalf("video codec %T", vt.Codec)
	}
	info, err := media.ParseVideoInfo(vt.Codec)
	if err != nil {
		t.Fatal(err)
	}
	if info.Width != pc.width || info.Height != pc.height {
		t.Errorf("video %dx%d, want %dx%d", info.Width, info.Height, pc.width, pc.height)
	}
	if pc.opus {
		o, ok := at.Codec.(*media.Opus)
		if !ok || at.ID != audioTrackID || at.ClockRate != 48000 || o.ChannelCount < 1 {
			t.Fatalf("audio track: id %d codec %T clock %d", at.ID, at.Codec, at.ClockRate)
		}
	} else {
		aac, ok := at.Codec.(*media.AAC)
		if !ok || at.ID != audioTrackID || at.ClockRate != 48000 || aac.Config.SampleRate != 48000 {
			t.Fatalf("audio track: id %d codec %T clock %d", at.ID, at.Codec, at.ClockRate)
		}
	}

	video, audio := splitFrames(t, c.Frames())
	want := 30 * pc.seconds
	if pc.lossy {
		if len(video) < want-5 || len(video) > want {
			t.Errorf("%d video frames, want about %d", len(video), want)
		}
	} else if len(video) != want {
		t.Errorf("%d video frames, want %d", len(video), want)
	}

	var keys []int
	reordered := 0
	for i, f := range video {
		if f.Track.ID != videoTrackID {
			t.Fatalf("video frame %d has another track", i)
		}
		checkAVCCPayload(t, f.Payload)
		types := testpeer.NALUTypes(f.Payload, pc.h265)
		for _, typ := range types {
			if (!pc.h265 && typ == 9) || (pc.h265 && typ == 35) {
				t.Errorf("frame %d carries an access unit delimiter", i)
			}
		}
		if f.Key {
			keys = append(keys, i)
		}
		if i == 0 && !f.Key {
			t.Errorf("the first video frame is not a key frame")
		}
		if i > 0 && f.DTS <= video[i-1].DTS {
			t.Errorf("video DTS not increasing at %d: %s after %s", i, testpeer.FormatFrame(f), testpeer.FormatFrame(video[i-1]))
		}
		if f.DTS < 0 || f.PTS < f.DTS {
			t.Errorf("video frame %d: %s", i, testpeer.FormatFrame(f))
		}
		if f.PTS != f.DTS {
			reordered++
		}
		if f.Received.IsZero() {
			t.Errorf("video frame %d without reception time", i)
		}
	}
	if !pc.lossy {
		for i, k := range keys {
			if k != pc.keyEvery*i {
				t.Errorf("key frames at %v, want every %d frames from 0", keys, pc.keyEvery)
				break
			}
		}
	}
	if n := (len(video) + pc.keyEvery - 1) / pc.keyEvery; len(keys) < n-1 || len(keys) > n {
		t.Errorf("key frames at %v for %d frames", keys, len(video))
	}
	if pc.bframes && reordered == 0 {
		t.Error("no frame with PTS != DTS in a stream with B-frames")
	}
	if !pc.bframes && reordered != 0 {
		t.Errorf("%d frames with PTS != DTS without B-frames", reordered)
	}
	// Frame durations: 3000 ticks at 30 fps, in DTS order.
	if !pc.lossy && !pc.bframes {
		for i := 1; i < len(video); i++ {
			if d := video[i].DTS - video[i-1].DTS; d != 3000 {
				t.Errorf("video DTS step %d at frame %d, want 3000", d, i)
				break
			}
		}
	}

	step := int64(1024)
	perSecond := 48000 / 1024
	if pc.opus {
		step, perSecond = 960, 50 // ffmpeg's libopus: 20 ms frames
	}
	if min := perSecond*pc.seconds - perSecond/2; len(audio) < min {
		t.Errorf("%d audio frames, want at least %d", len(audio), min)
	}
	for i, f := range audio {
		if !f.Key || f.PTS != f.DTS || len(f.Payload) == 0 || f.DTS < 0 {
			t.Errorf("audio frame %d: %s", i, testpeer.FormatFrame(f))
		}
		if i > 0 && !pc.lossy && f.DTS-audio[i-1].DTS != step {
			t.Errorf("audio DTS step %d at frame %d, want %d", f.DTS-audio[i-1].DTS, i, step)
			break
		}
		if i > 0 && f.DTS <= audio[i-1].DTS {
			t.Errorf("audio DTS not increasing at %d", i)
		}
	}
	// Audio and video start together (within 100 ms).
	if len(video) > 0 && len(audio) > 0 {
		d := media.TicksToDuration(video[0].DTS, 90000) - media.TicksToDuration(audio[0].DTS, 48000)
		t.Logf("audio starts %s after video; %d video, %d audio frames", -d, len(video), len(audio))
		if d > 100*time.Millisecond || d < -100*time.Millisecond {
			t.Errorf("audio starts %s away from video", d)
		}
	}
}

func TestPublishFFmpegTCP(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	args := append(append(testsrcArgs("640x360", "3"), x264(60, 0)...), "-c:a", "aac")
	done := publishFFmpeg(ctx, t, e.url("live/tcp"), "tcp", args...)
	c := e.waitPublished("live/tcp", 1, 10*time.Second)
	if err := waitDone(t, done, 20*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, publishCheck{seconds: 3, width: 640, height: 360, keyEvery: 60})

	if info := c.Stream.Info(); info.Protocol != "rtsp" || info.SessionID == "" || info.RemoteAddr == "" {
		t.Errorf("publish info %+v", info)
	}
	if _, live := e.reg.Get("live/tcp"); live {
		t.Error("stream still registered after the publisher left")
	}
	e.metrics.CheckEnded(90)
	if got := e.metrics.Value("headwater_ingest_connections_total"); got < 1 {
		t.Errorf("connections metric = %v", got)
	}
	testpeer.WaitLog(e.t, e.logs, "rtsp: session ended", 2*time.Second)
}

// TestPublishFFmpegUDP publishes H.264 with B-frames over UDP.
func TestPublishFFmpegUDP(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnvWith(t, Config{}, envOptions{udp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	args := append(append(testsrcArgs("640x360", "3"), x264(60, 2)...), "-c:a", "aac")
	done := publishFFmpeg(ctx, t, e.url("live/udp"), "udp", args...)
	c := e.waitPublished("live/udp", 1, 10*time.Second)
	if err := waitDone(t, done, 20*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 15*time.Second) // TEARDOWN, or the UDP read timeout
	checkPublish(t, c, publishCheck{seconds: 3, width: 640, height: 360, bframes: true, lossy: true, keyEvery: 60})
	if !strings.Contains(e.logs.String(), "transport=UDP") {
		t.Error("the session did not use UDP")
	}
}

func TestPublishFFmpegH265(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	args := append(testsrcArgs("320x180", "3"), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-x265-params", "keyint=30:min-keyint=30:scenecut=0:open-gop=0:bframes=2:log-level=error",
		"-c:a", "aac")
	done := publishFFmpeg(ctx, t, e.url("live/hevc"), "tcp", args...)
	c := e.waitPublished("live/hevc", 1, 15*time.Second)
	if err := waitDone(t, done, 30*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, publishCheck{seconds: 3, width: 320, height: 180, h265: true, bframes: true, keyEvery: 30})
}

func TestPublishFFmpegOpus(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	args := append(append(testsrcArgs("640x360", "3"), x264(60, 0)...), "-c:a", "libopus", "-ac", "2")
	done := publishFFmpeg(ctx, t, e.url("live/opus"), "tcp", args...)
	c := e.waitPublished("live/opus", 1, 10*time.Second)
	if err := waitDone(t, done, 20*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, publishCheck{seconds: 3, width: 640, height: 360, opus: true, keyEvery: 60})
	if o := c.Stream.Tracks()[1].Codec.(*media.Opus); o.ChannelCount != 2 {
		t.Errorf("opus channels %d", o.ChannelCount)
	}
}

// TestPublishFFmpegLATM publishes AAC as MP4A-LATM (-rtpflags latm, as IP
// cameras send it): the stream gets the AAC track MPEG4-GENERIC gives, and
// ffmpeg decodes its frames, as captured (in ADTS) and through the RTSP
// read-out.
func TestPublishFFmpegLATM(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	formats := make(chan []format.Format, 1)
	e := newEnvWith(t, Config{}, envOptions{tweak: func(s *Server) {
		s.testHookPublished = func(p *publisher) {
			var fs []format.Format
			for _, tr := range p.tracks {
				fs = append(fs, tr.plan.format)
			}
			formats <- fs
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	dir := t.TempDir()

	args := append(append(testsrcArgs("320x240", "6"), x264(60, 0)...), "-c:a", "aac", "-ac", "2", "-rtpflags", "latm")
	done := publishFFmpeg(ctx, t, e.url("live/latm"), "tcp", args...)
	c := e.waitPublished("live/latm", 1, 10*time.Second)
	fs := <-formats
	if latm, ok := fs[len(fs)-1].(*format.MPEG4AudioLATM); !ok || latm.CPresent {
		t.Fatalf("ffmpeg's audio format: %#v", fs[len(fs)-1])
	}

	// The RTSP read-out, while ffmpeg publishes: 2 s of audio.
	readOut := filepath.Join(dir, "read.pcm")
	out, err := testpeer.FFmpeg(ctx, "-rtsp_transport", "tcp", "-i", e.url("live/latm"), "-map", "0:a", "-t", "2",
		"-f", "s16le", "-ac", "2", "-ar", "48000", readOut)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("reading live/latm: %v\n%s", err, out)
	}
	checkSine(t, "read-out", readOut, 1500*time.Millisecond)

	if err := waitDone(t, done, 30*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 5*time.Second)
	checkPublish(t, c, publishCheck{seconds: 6, width: 320, height: 240, keyEvery: 60})
	at := c.Stream.Tracks()[1]
	aac := at.Codec.(*media.AAC)
	if aac.Config.Type != mpeg4audio.ObjectTypeAACLC || aac.Config.ChannelConfig != 2 || aac.RFC6381() != "mp4a.40.2" {
		t.Errorf("AAC config %+v", aac.Config)
	}

	// The captured frames, as ADTS: ffmpeg decodes all of them.
	_, audio := splitFrames(t, c.Frames())
	var pkts mpeg4audio.ADTSPackets
	for _, f := range audio {
		pkts = append(pkts, &mpeg4audio.ADTSPacket{Type: aac.Config.Type, SampleRate: aac.Config.SampleRate,
			ChannelConfig: aac.Config.ChannelConfig, AU: f.Payload})
	}
	adts, err := pkts.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	adtsPath, pcmPath := filepath.Join(dir, "a.aac"), filepath.Join(dir, "a.pcm")
	if err := os.WriteFile(adtsPath, adts, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = testpeer.FFmpeg(ctx, "-f", "aac", "-i", adtsPath, "-f", "s16le", "-ac", "2", pcmPath)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("decoding the frames: %v\n%s", err, out)
	}
	d := checkSine(t, "frames", pcmPath, media.TicksToDuration(int64(len(audio)-1)*1024, 48000))
	if want := media.TicksToDuration(int64(len(audio))*1024, 48000); d > want {
		t.Errorf("decoded %s from %d frames", d, len(audio))
	}
}

// checkSine checks 48 kHz stereo s16le PCM of ffmpeg's test sine: at least
// min long, as loud as the sine and of its frequency (440 Hz: 880 zero
// crossings a second). It returns the duration.
func checkSine(t *testing.T, what, path string, min time.Duration) time.Duration {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return 0
	}
	n := len(b) / 4
	d := time.Duration(n) * time.Second / 48000
	var sum float64
	crossings := 0
	var prev int16
	for i := 0; i+1 < len(b); i += 2 {
		v := int16(binary.LittleEndian.Uint16(b[i:]))
		sum += float64(v) * float64(v)
		if i%4 == 0 { // left channel
			if i > 0 && (v < 0) != (prev < 0) {
				crossings++
			}
			prev = v
		}
	}
	rms, hz := 0.0, 0.0
	if n > 0 {
		rms = math.Sqrt(sum / float64(2*n))
		hz = float64(crossings) / 2 / d.Seconds()
	}
	t.Logf("%s: %s of audio, RMS %.0f, %.1f Hz", what, d, rms, hz)
	if d < min {
		t.Errorf("%s: %s of audio, want at least %s", what, d, min)
	}
	// The sine's amplitude is 1/8 of full scale, upmixed to stereo at
	// -3 dB: an RMS of about 2050.
	if rms < 1000 || rms > 4000 || hz < 430 || hz > 450 {
		t.Errorf("%s: RMS %.0f at %.1f Hz: not ffmpeg's sine", what, rms, hz)
	}
	return d
}

// TestSecondPublisherRefused: while ffmpeg publishes, a second publisher
// on the same name is refused and the first one is not disturbed.
func TestSecondPublisherRefused(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	args := append(append(testsrcArgs("320x240", "4"), x264(60, 0)...), "-c:a", "aac")
	first := publishFFmpeg(ctx, t, e.url("live/dup"), "tcp", args...)
	c := e.waitPublished("live/dup", 1, 10*time.Second)

	second := append(append([]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "1"}, x264(60, 0)...),
		"-f", "rtsp", "-rtsp_transport", "tcp", e.url("live/dup"))
	out, err := testpeer.FFmpeg(ctx, second...)
	if err == nil {
		t.Errorf("second publisher on a live name succeeded\n%s", out)
	} else if !strings.Contains(out, "403") {
		t.Errorf("second publisher: %s", out)
	}
	e.metrics.WaitErrors(ingest.ReasonAlreadyPublishing, 1)
	select {
	case <-c.Done():
		t.Fatal("first publisher's stream ended when the second was refused")
	default:
	}
	before := c.Count()
	if err := waitDone(t, first, 20*time.Second); err != nil {
		t.Fatalf("first publisher: %v", err)
	}
	c.Wait(t, 5*time.Second)
	if c.Count() <= before {
		t.Errorf("first publisher stopped at %d frames", before)
	}
	if n := e.caps.Publishes("live/dup"); n != 1 {
		t.Errorf("%d publishes", n)
	}
}

// TestUnsupportedCodecFFmpeg: an SDP without any supported codec is refused
// (415, unsupported_codec); a supported track with an unsupported one is
// published alone, with a warning.
func TestUnsupportedCodecFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	args := []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=8000",
		"-t", "1", "-c:v", "mpeg4", "-c:a", "pcm_mulaw", "-f", "rtsp", "-rtsp_transport", "tcp", e.url("live/mpeg4")}
	out, err := testpeer.FFmpeg(ctx, args...)
	if err == nil || !strings.Contains(out, "415") {
		t.Errorf("mpeg4 + G.711 publish: %v\n%s", err, out)
	}
	e.metrics.WaitErrors(ingest.ReasonUnsupportedCodec, 1)
	if n := e.caps.Publishes("live/mpeg4"); n != 0 {
		t.Errorf("published %d times", n)
	}

	args = append(append(testsrcArgs("320x240", "2"), x264(60, 0)...), "-c:a", "pcm_alaw", "-ar", "8000")
	done := publishFFmpeg(ctx, t, e.url("live/alaw"), "tcp", args...)
	c := e.waitPublished("live/alaw", 1, 10*time.Second)
	if err := waitDone(t, done, 20*time.Second); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	c.Wait(t, 5*time.Second)
	if tr := c.Stream.Tracks(); len(tr) != 1 || tr[0].ID != videoTrackID {
		t.Errorf("tracks %v", tr)
	}
	if n := c.Count(); n != 60 {
		t.Errorf("%d frames, want 60", n)
	}
	testpeer.WaitLog(e.t, e.logs, "rtsp: ignoring a track", time.Second)
	if n := e.logCount("rtsp: ignoring a track"); n != 1 {
		t.Errorf("%d warnings about the ignored track", n)
	}
}

// TestReadFFmpeg reads with ffmpeg, over TCP, a stream published over RTMP
// (another protocol: any live stream can be read) and, over UDP, one
// published over RTSP.
func TestReadFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnvWith(t, Config{}, envOptions{udp: true})
	rt := rtmp.New(rtmp.Config{Address: "127.0.0.1:0"}, e.reg, nil, nil)
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// RTMP publisher: H.264 + AAC, 6 s.
	rtmpDone := make(chan error, 1)
	go func() {
		args := append(append(testsrcArgs("640x360", "6"), x264(60, 0)...), "-c:a", "aac",
			"-f", "flv", "rtmp://"+rt.Addr().String()+"/live/fromrtmp")
		out, err := testpeer.FFmpeg(ctx, args...)
		if err != nil {
			t.Logf("rtmp publisher: %v\n%s", err, out)
		}
		rtmpDone <- err
	}()
	// RTSP publisher: H.264 with B-frames + Opus, 6 s.
	args := append(append(testsrcArgs("320x240", "6"), x264(30, 2)...), "-c:a", "libopus")
	rtspDone := publishFFmpeg(ctx, t, e.url("live/fromrtsp"), "tcp", args...)
	e.waitPublished("live/fromrtmp", 1, 10*time.Second)
	e.waitPublished("live/fromrtsp", 1, 10*time.Second)

	read := func(name, transport string) {
		start := time.Now()
		out, err := testpeer.FFmpeg(ctx, "-rtsp_transport", transport, "-i", e.url(name), "-t", "3", "-f", "null", "-")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("reading %s over %s: %v\n%s", name, transport, err, out)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("reading %s took %s only", name, d)
		}
	}
	errs := make(chan struct{}, 2)
	go func() { read("live/fromrtmp", "tcp"); errs <- struct{}{} }()
	go func() { read("live/fromrtsp", "udp"); errs <- struct{}{} }()
	<-errs
	<-errs
	e.metrics.Wait(0, 5*time.Second, "headwater_rtsp_readers")
	testpeer.WaitLog(e.t, e.logs, "rtsp: reader disconnected", time.Second)

	// A stream that is not live: 404.
	out, err := testpeer.FFmpeg(ctx, "-rtsp_transport", "tcp", "-i", e.url("live/nothing"), "-t", "1", "-f", "null", "-")
	if err == nil || !strings.Contains(out, "404") {
		t.Errorf("reading a stream that is not live: %v\n%s", err, out)
	}
	if err := waitDone(t, rtspDone, 20*time.Second); err != nil {
		t.Errorf("rtsp publisher: %v", err)
	}
	if err := <-rtmpDone; err != nil {
		t.Errorf("rtmp publisher: %v", err)
	}
}

package rtsp

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// fastBackoff shortens the sources' backoff for tests.
func fastBackoff(s *Server) {
	s.minBackoff, s.maxBackoff, s.stableAfter = 100*time.Millisecond, 400*time.Millisecond, time.Second
}

// feed publishes m to url in a loop (a continuous timeline) until ctx ends.
func feed(ctx context.Context, t *testing.T, url string, m *avMedia, transport gortsplib.Protocol) *clientPublisher {
	t.Helper()
	p, err := startClientPublisher(t, url, m, true, transport)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for loop := 0; ctx.Err() == nil; loop++ {
			offset := time.Duration(loop) * time.Duration(len(m.video)) * time.Second / 30
			for i := 0; i < len(m.video) && ctx.Err() == nil; i += 30 {
				if err := p.send(m, i, i+30, 10*time.Millisecond, offset+time.Duration(i)*time.Second/30); err != nil {
					return
				}
			}
		}
	}()
	return p
}

// checkSourceFrames checks the frames a source published: H.264 with the
// upstream's parameter sets starting at a key frame, a key frame every 30
// frames, DTS steps of 3000, AAC steps of 1024.
func checkSourceFrames(t *testing.T, c *testpeer.Capture, m *avMedia) {
	t.Helper()
	tr := c.Stream.Tracks()
	if len(tr) != 2 {
		t.Fatalf("%d tracks", len(tr))
	}
	h, ok := tr[0].Codec.(*media.H264)
	if !ok || string(h.SPS) != string(m.sps) || string(h.PPS) != string(m.pps) {
		t.Fatalf("video codec %T", tr[0].Codec)
	}
	if _, ok := tr[1].Codec.(*media.AAC); !ok || tr[1].ClockRate != 48000 {
		t.Fatalf("audio codec %T", tr[1].Codec)
	}
	video, audio := splitFrames(t, c.Frames())
	if len(video) < 30 || len(audio) < 40 {
		t.Fatalf("%d video and %d audio frames", len(video), len(audio))
	}
	for i, f := range video {
		checkAVCCPayload(t, f.Payload)
		if f.Key != (i%30 == 0) {
			t.Fatalf("video frame %d key %v", i, f.Key)
		}
		if i > 0 && f.DTS-video[i-1].DTS != 3000 {
			t.Fatalf("video step %d at %d", f.DTS-video[i-1].DTS, i)
		}
	}
	if video[0].DTS != 0 {
		t.Errorf("first video DTS %d", video[0].DTS)
	}
	for i := 1; i < len(audio); i++ {
		if d := audio[i].DTS - audio[i-1].DTS; d != 1024 {
			t.Fatalf("audio step %d at %d", d, i)
		}
	}
}

func TestPullSource(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	up := newEnvWith(t, Config{}, envOptions{udp: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := feed(ctx, t, up.url("live/up"), m, gortsplib.ProtocolTCP)
	up.waitPublished("live/up", 1, 5*time.Second)

	var sources []Source
	for _, tr := range []string{TransportTCP, TransportUDP, TransportAuto} {
		sources = append(sources, Source{Name: "live/cam-" + tr, URL: up.url("live/up"), Transport: tr})
	}
	e := newEnvWith(t, Config{Sources: sources}, envOptions{tweak: fastBackoff})
	for _, s := range sources {
		c := e.waitPublished(s.Name, 1, 10*time.Second)
		c.WaitFrames(t, 120, 10*time.Second)
		e.metrics.Wait(1, time.Second, "headwater_rtsp_source_state", "source", s.Name)
		if info := c.Stream.Info(); info.Protocol != "rtsp" || info.RemoteAddr != up.addr() {
			t.Errorf("%s: publish info %+v", s.Name, info)
		}
	}
	up.metrics.Wait(3, time.Second, "headwater_rtsp_readers")

	// The upstream publisher goes: every source loses its stream, retries,
	// and comes back when it publishes again.
	cancel()
	p.c.Close()
	for _, s := range sources {
		c := e.waitPublished(s.Name, 1, time.Second)
		c.Wait(t, 10*time.Second)
		checkSourceFrames(t, c, m)
		e.metrics.Wait(0, 2*time.Second, "headwater_rtsp_source_state", "source", s.Name)
	}
	testpeer.WaitLog(e.t, e.logs, "rtsp: source lost", time.Second)
	e.metrics.WaitCond(5*time.Second, func(v float64) bool { return v >= 2 }, ">= 2",
		"headwater_rtsp_source_reconnects_total", "source", "live/cam-tcp")

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	feed(ctx2, t, up.url("live/up"), m, gortsplib.ProtocolTCP)
	for _, s := range sources {
		c := e.waitPublished(s.Name, 2, 10*time.Second)
		c.WaitFrames(t, 60, 10*time.Second)
	}
	testpeer.WaitLog(e.t, e.logs, "rtsp: source live again", time.Second)
	if n := e.logCount("rtsp: source lost"); n != 3 {
		t.Errorf("%d 'source lost' lines for 3 sources", n)
	}
	if n := e.logCount("rtsp: source unreachable"); n != 0 {
		t.Errorf("%d 'source unreachable' lines after 'source lost'", n)
	}
	// The streams pulled over UDP used UDP.
	if n := e.logCount("rtsp: source live again"); n != 3 {
		t.Errorf("%d 'live again' lines", n)
	}
}

// TestPullSourceUnreachable: a source whose server is down is retried with
// backoff (logged once, state 0, reconnects counted) and connects when the
// server appears.
func TestPullSourceUnreachable(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	e := newEnvWith(t, Config{Sources: []Source{{Name: "live/cam", URL: "rtsp://user:secret@" + addr + "/live/up", Transport: TransportTCP}}},
		envOptions{tweak: fastBackoff})
	start := time.Now()
	e.metrics.WaitCond(5*time.Second, func(v float64) bool { return v >= 4 }, ">= 4",
		"headwater_rtsp_source_reconnects_total", "source", "live/cam")
	// 100, 200, 400, 400 ms minus up to 25% jitter: at least 0.8 s for 4 retries.
	if d := time.Since(start); d < 750*time.Millisecond {
		t.Errorf("4 retries in %s: no backoff", d)
	}
	if got := e.metrics.Value("headwater_rtsp_source_state", "source", "live/cam"); got != 0 {
		t.Errorf("state %v", got)
	}
	if n := e.logCount("rtsp: source unreachable"); n != 1 {
		t.Errorf("%d 'unreachable' lines, want 1 (per state change)", n)
	}
	if n := e.logCount("secret"); n != 0 {
		t.Errorf("the password was logged %d times", n)
	}

	// Nobody else may publish under a source's name.
	if _, err := startClientPublisher(t, e.url("live/cam"), m, true, gortsplib.ProtocolTCP); err == nil {
		t.Error("published under a source's name")
	}
	e.metrics.WaitErrors(ingest.ReasonBadApp, 1)

	// The server appears on that address.
	up := newEnv(t, Config{Address: addr})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed(ctx, t, up.url("live/up"), m, gortsplib.ProtocolTCP)
	c := e.waitPublished("live/cam", 1, 10*time.Second)
	c.WaitFrames(t, 60, 10*time.Second)
	e.metrics.Wait(1, time.Second, "headwater_rtsp_source_state", "source", "live/cam")
	testpeer.WaitLog(e.t, e.logs, "rtsp: source live again", time.Second)
}

// TestOnDemandSource: an on-demand source connects on Server.Demand and on
// an RTSP reader's DESCRIBE, and disconnects after the linger.
func TestOnDemandSource(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	up := newEnv(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed(ctx, t, up.url("live/up"), m, gortsplib.ProtocolTCP)
	up.waitPublished("live/up", 1, 5*time.Second)

	e := newEnvWith(t, Config{
		OnDemandLinger: time.Second,
		Sources:        []Source{{Name: "live/od", URL: up.url("live/up"), Transport: TransportTCP, OnDemand: true}},
	}, envOptions{tweak: fastBackoff})
	// The source has decided not to connect once it waits for readers.
	testpeer.WaitLog(t, e.logs, "rtsp: on-demand source idle, waiting for readers", 5*time.Second)
	if e.caps.Publishes("live/od") != 0 || up.metrics.Value("headwater_rtsp_readers") != 0 {
		t.Fatal("an on-demand source connected without demand")
	}
	if e.srv.Demand("live/other") {
		t.Error("Demand of a name that is not a source")
	}

	// The origin asks for it, on every request of its readers.
	if !e.srv.Demand("live/od") {
		t.Fatal("Demand: not a source")
	}
	demanding := make(chan struct{})
	go func() {
		defer close(demanding)
		for e.caps.Publishes("live/od") == 0 || e.waitPublished("live/od", 1, time.Second).Count() < 30 {
			e.srv.Demand("live/od")
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c := e.waitPublished("live/od", 1, 10*time.Second)
	c.WaitFrames(t, 30, 10*time.Second)
	<-demanding
	up.metrics.Wait(1, time.Second, "headwater_rtsp_readers")
	// Nobody asks any more: disconnected after the linger.
	c.Wait(t, 5*time.Second)
	up.metrics.Wait(0, 2*time.Second, "headwater_rtsp_readers")
	testpeer.WaitLog(e.t, e.logs, "no readers", time.Second)
	time.Sleep(300 * time.Millisecond)
	if e.caps.Publishes("live/od") != 1 {
		t.Fatal("reconnected without demand")
	}

	// An RTSP reader: DESCRIBE waits for the source.
	u, _ := base.ParseURL(e.url("live/od"))
	tcp := gortsplib.ProtocolTCP
	rc := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	desc, _, err := rc.Describe(u)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if err := rc.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1000)
	rc.OnPacketRTPAny(func(_ *description.Media, _ format.Format, _ *rtp.Packet) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if _, err := rc.Play(nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for n := 0; n < 100; n++ {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("%d packets received", n)
		}
	}
	// The reader keeps it connected past the linger.
	time.Sleep(1500 * time.Millisecond)
	c2 := e.waitPublished("live/od", 2, time.Second)
	select {
	case <-c2.Done():
		t.Fatal("the source disconnected while read")
	default:
	}
	rc.Close()
	c2.Wait(t, 5*time.Second)
}

// latmCamera is an RTSP server (gortsplib's) serving streams by path, the
// way an IP camera sending AAC as MP4A-LATM does.
type latmCamera struct {
	srv     *gortsplib.Server
	streams map[string]*gortsplib.ServerStream
}

func (c *latmCamera) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if st := c.streams[ctx.Path]; st != nil {
		return &base.Response{StatusCode: base.StatusOK}, st, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

func (c *latmCamera) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if st := c.streams[ctx.Path]; st != nil {
		return &base.Response{StatusCode: base.StatusOK}, st, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

func (c *latmCamera) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// startLATMCamera serves descs (by path) on a loopback port; it returns the
// camera and its address.
func startLATMCamera(t *testing.T, descs map[string]*description.Session) (*latmCamera, string) {
	t.Helper()
	c := &latmCamera{streams: map[string]*gortsplib.ServerStream{}}
	c.srv = &gortsplib.Server{Handler: c, RTSPAddress: "127.0.0.1:0"}
	if err := c.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.srv.Close)
	for path, desc := range descs {
		st := &gortsplib.ServerStream{Server: c.srv, Desc: desc}
		if err := st.Initialize(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		c.streams[path] = st
	}
	return c, c.srv.NetListener().Addr().String()
}

// TestPullSourceLATM pulls H.264 and MP4A-LATM from a camera: the source
// publishes the AAC frames the camera packetized, 1024 samples apart. A
// camera whose SDP crashes gortsplib's parser is retried, and the server
// survives it.
func TestPullSourceLATM(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	video := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: m.sps, PPS: m.pps}
	smc := &mpeg4audio.StreamMuxConfig{Programs: []*mpeg4audio.StreamMuxConfigProgram{{
		Layers: []*mpeg4audio.StreamMuxConfigLayer{{AudioSpecificConfig: &m.asc, LatmBufferFullness: 255}},
	}}}
	audio := &format.MPEG4AudioLATM{PayloadTyp: 97, ProfileLevelID: 30, StreamMuxConfig: smc}
	good := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{video}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{audio}},
	}}
	// A second layer reusing the first one's config: gortsplib v5.5.0's
	// SDP parser panics on it.
	reuse := *smc
	reuse.Programs = []*mpeg4audio.StreamMuxConfigProgram{{Layers: []*mpeg4audio.StreamMuxConfigLayer{
		smc.Programs[0].Layers[0], {LatmBufferFullness: 255},
	}}}
	bad := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeAudio, Formats: []format.Format{&format.MPEG4AudioLATM{PayloadTyp: 97, ProfileLevelID: 30, StreamMuxConfig: &reuse}}},
	}}
	cam, addr := startLATMCamera(t, map[string]*description.Session{"/cam": good, "/bad": bad})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		st := cam.streams["/cam"]
		venc, _ := video.CreateEncoder()
		aenc, _ := audio.CreateEncoder()
		ai := 0
		for i := 0; ctx.Err() == nil; i++ {
			vi := i % len(m.video)
			pkts, _ := venc.Encode(m.video[vi])
			for _, p := range pkts {
				p.Timestamp = uint32(i * 3000)
				_ = st.WritePacketRTP(good.Medias[0], p)
			}
			for ; int64(ai)*1024*90000/48000 < int64(i+1)*3000; ai++ {
				el, _ := mpeg4audio.AudioMuxElement{StreamMuxConfig: smc, Payloads: [][][][]byte{{{m.audio[ai%len(m.audio)]}}}}.Marshal()
				pkts, _ := aenc.Encode(el)
				for _, p := range pkts {
					p.Timestamp = uint32(ai * 1024)
					_ = st.WritePacketRTP(good.Medias[1], p)
				}
			}
			time.Sleep(time.Second / 30)
		}
	}()

	e := newEnvWith(t, Config{Sources: []Source{
		{Name: "live/latmcam", URL: "rtsp://" + addr + "/cam", Transport: TransportTCP},
		{Name: "live/badcam", URL: "rtsp://" + addr + "/bad", Transport: TransportTCP},
	}}, envOptions{tweak: fastBackoff})
	c := e.waitPublished("live/latmcam", 1, 10*time.Second)
	c.WaitFrames(t, 150, 15*time.Second)
	tr := c.Stream.Tracks()
	if len(tr) != 2 {
		t.Fatalf("%d tracks", len(tr))
	}
	if aac, ok := tr[1].Codec.(*media.AAC); !ok || aac.Config.Type != m.asc.Type || aac.Config.SampleRate != m.asc.SampleRate ||
		aac.Config.ChannelConfig != m.asc.ChannelConfig || tr[1].ClockRate != 48000 {
		t.Fatalf("audio track %+v", tr[1])
	}
	_, frames := splitFrames(t, c.Frames())
	if len(frames) < 40 {
		t.Fatalf("%d audio frames", len(frames))
	}
	// The camera's frames, in order from wherever the source started.
	start := -1
	for j, au := range m.audio {
		if string(au) == string(frames[0].Payload) {
			start = j
			break
		}
	}
	if start < 0 {
		t.Fatal("the first audio frame is none of the camera's")
	}
	for i, f := range frames {
		if string(f.Payload) != string(m.audio[(start+i)%len(m.audio)]) {
			t.Fatalf("audio frame %d is not the camera's %d", i, (start+i)%len(m.audio))
		}
		if i > 0 && f.DTS-frames[i-1].DTS != 1024 {
			t.Fatalf("audio step %d at %d", f.DTS-frames[i-1].DTS, i)
		}
	}

	// The camera with the crashing SDP: refused and retried.
	e.metrics.WaitCond(10*time.Second, func(v float64) bool { return v >= 2 }, ">= 2",
		"headwater_rtsp_source_reconnects_total", "source", "live/badcam")
	testpeer.WaitLog(e.t, e.logs, "rtsp: emptying a source's SDP that crashes gortsplib's parser", time.Second)
	if n := e.caps.Publishes("live/badcam"); n != 0 {
		t.Errorf("live/badcam published %d times", n)
	}
}

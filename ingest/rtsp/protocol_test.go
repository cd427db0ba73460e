package rtsp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// rawRequest sends one RTSP request on conn and reads the response's
// status code and headers.
func rawRequest(t *testing.T, conn net.Conn, br *bufio.Reader, method, url string, cseq int, hdr map[string]string, body string) (int, textproto.MIMEHeader) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s RTSP/1.0\r\nCSeq: %d\r\n", method, url, cseq)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("%s: reading the response: %v", method, err)
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 || parts[0] != "RTSP/1.0" {
		t.Fatalf("%s: response line %q", method, line)
	}
	code, _ := strconv.Atoi(parts[1])
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("%s: response headers: %v", method, err)
	}
	if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			t.Fatal(err)
		}
	}
	return code, h
}

// waitClosed waits for the server to drop the connection.
func waitClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); ingest.IsTimeout(err) {
		t.Fatal("connection still open")
	}
}

func TestBadSDP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	cases := []struct {
		name   string
		body   string
		ct     string
		want   int
		reason ingest.Reason
	}{
		{"garbage", "this is not an SDP\r\n\x00\x01\x02", "application/sdp", 400, ingest.ReasonProtocol},
		{"truncated", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=!!!,###\r\n", "application/sdp", 400, ingest.ReasonProtocol},
		{"aac without config", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 streamtype=5; mode=AAC-hbr\r\n", "application/sdp", 400, ingest.ReasonProtocol},
		{"no media", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n", "application/sdp", 400, ingest.ReasonProtocol},
		{"wrong content type", "v=0\r\n", "text/plain", 400, ingest.ReasonProtocol},
		{"only unsupported", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n", "application/sdp", 415, ingest.ReasonUnsupportedCodec},
		// MP4A-LATM: gortsplib parses the config, refusing what it cannot
		// (400); shapes it parses and this package does not ingest are
		// unsupported (415, the reason logged).
		{"latm in-band config", latmSDP("MP4A-LATM/90000/1", "cpresent=1"), "application/sdp", 415, ingest.ReasonUnsupportedCodec},
		{"latm two layers", latmSDP("MP4A-LATM/48000/2", "cpresent=0;config=400223203fc23203fc"), "application/sdp", 415, ingest.ReasonUnsupportedCodec},
		{"latm AAC Main", latmSDP("MP4A-LATM/48000/2", "cpresent=0;config=400013203fc0"), "application/sdp", 400, ingest.ReasonProtocol},
		// gortsplib v5.5.0's parser panics on this one (a second layer
		// reusing the first one's config); the server must survive it.
		{"latm layer reusing the config", latmSDP("MP4A-LATM/48000/2", "cpresent=0;config=400223203fe3fc"), "application/sdp", 400, ingest.ReasonProtocol},
	}
	counts := map[ingest.Reason]float64{}
	for i, tc := range cases {
		conn, err := net.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		code, _ := rawRequest(t, conn, br, "ANNOUNCE", e.url("live/bad"), 1, map[string]string{"Content-Type": tc.ct}, tc.body)
		if code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, code, tc.want)
		}
		waitClosed(t, conn, br)
		conn.Close()
		counts[tc.reason]++
		for r, n := range counts {
			e.metrics.WaitErrors(r, n)
		}
		_ = i
	}
	if n := e.caps.Publishes("live/bad"); n != 0 {
		t.Errorf("published %d times", n)
	}
	for _, want := range []string{"LATM with in-band StreamMuxConfig is not supported", "LATM with 1 programs and 2 layers",
		"unsupported object type: 1", "rtsp: emptying an SDP that crashes gortsplib's parser"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("no %q in the logs", want)
		}
	}
	// A request that is not RTSP at all.
	conn, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HELLO WORLD RTSP/1.0\r\nCSeq: 1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, bufio.NewReader(conn))
	e.metrics.WaitErrors(ingest.ReasonProtocol, counts[ingest.ReasonProtocol]+1)
}

// latmSDP is an SDP of one MP4A-LATM audio media.
func latmSDP(rtpmap, fmtp string) string {
	return "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 97\r\n" +
		"a=rtpmap:97 " + rtpmap + "\r\na=fmtp:97 profile-level-id=15;" + fmtp + "\r\n"
}

func TestInvalidName(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnv(t, Config{})
	for _, path := range []string{"live/a%20b", "live/../x", "live//x"} {
		_, err := startClientPublisher(t, "rtsp://"+e.addr()+"/"+path, m, true, gortsplib.ProtocolTCP)
		var bad liberrors.ErrClientBadStatusCode
		if !errors.As(err, &bad) || bad.Code != base.StatusBadRequest {
			t.Errorf("%s: %v", path, err)
		}
	}
	e.metrics.WaitErrors(ingest.ReasonInvalidName, 3)
}

// TestPublishClient publishes with gortsplib's client, without sprop
// parameter sets (they come in-band), over TCP and UDP.
func TestPublishClient(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnvWith(t, Config{}, envOptions{udp: true})
	for _, tr := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		name := "live/client" + strings.ToLower(tr.String())
		p, err := startClientPublisher(t, e.url(name), m, false, tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.send(m, 0, 90, 2*time.Millisecond, 0); err != nil {
			t.Fatal(err)
		}
		c := e.waitPublished(name, 1, 5*time.Second)
		c.WaitFrames(t, 90+130, 5*time.Second)
		p.c.Close()
		c.Wait(t, 15*time.Second)
		video, audio := splitFrames(t, c.Frames())
		if len(video) != 90 {
			t.Errorf("%s: %d video frames", tr, len(video))
		}
		h := c.Stream.Tracks()[0].Codec.(*media.H264)
		if string(h.SPS) != string(m.sps) || string(h.PPS) != string(m.pps) {
			t.Errorf("%s: parameter sets differ from the stream's", tr)
		}
		for i, f := range video {
			checkAVCCPayload(t, f.Payload)
			if f.Key != (i%30 == 0) || f.DTS != int64(i)*3000 || f.PTS != f.DTS {
				t.Fatalf("%s: video frame %d: %s", tr, i, testpeer.FormatFrame(f))
			}
			if f.Key && testpeer.NALUTypes(f.Payload, false)[0] != 7 {
				t.Errorf("%s: key frame %d lost its in-band SPS", tr, i)
			}
		}
		for i, f := range audio {
			if i > 0 && f.DTS-audio[i-1].DTS != 1024 {
				t.Fatalf("%s: audio step at %d: %d", tr, i, f.DTS-audio[i-1].DTS)
			}
			if string(f.Payload) != string(m.audio[i]) {
				t.Fatalf("%s: audio frame %d differs", tr, i)
			}
		}
		if want := 90 * 48000 / 30 / 1024; len(audio) < want-2 || len(audio) > want+2 {
			t.Errorf("%s: %d audio frames, want about %d", tr, len(audio), want)
		}
	}
}

// TestVideoWithoutParams: a publisher that never sends parameter sets has
// its video dropped after the header wait, and the audio published alone.
func TestVideoWithoutParams(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	stripped := *m
	stripped.video = nil
	for _, au := range m.video {
		var out [][]byte
		for _, n := range au {
			if typ := n[0] & 0x1f; typ != 7 && typ != 8 {
				out = append(out, n)
			}
		}
		stripped.video = append(stripped.video, out)
	}
	e := newEnvWith(t, Config{}, envOptions{tweak: func(s *Server) { s.headerWait = 300 * time.Millisecond }})
	p, err := startClientPublisher(t, e.url("live/noparams"), &stripped, false, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.send(&stripped, 0, 60, 10*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	c := e.waitPublished("live/noparams", 1, 5*time.Second)
	if tr := c.Stream.Tracks(); len(tr) != 1 || tr[0].ID != audioTrackID {
		t.Fatalf("tracks %v", tr)
	}
	testpeer.WaitLog(e.t, e.logs, "why=\"no parameter sets\"", time.Second)
}

// TestKick: kicking the stream ends the publisher's session.
func TestKick(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnv(t, Config{})
	p, err := startClientPublisher(t, e.url("live/kick"), m, true, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.send(m, 0, 30, 0, 0); err != nil {
		t.Fatal(err)
	}
	c := e.waitPublished("live/kick", 1, 5*time.Second)
	c.Stream.Kick()
	c.Wait(t, 5*time.Second)
	testpeer.WaitLog(e.t, e.logs, "rtsp: publisher kicked", 2*time.Second)
	waitErr := make(chan error, 1)
	go func() { waitErr <- p.c.Wait() }()
	select {
	case err := <-waitErr:
		t.Logf("kicked client: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the kicked client is still connected")
	}
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
	// The name is free again.
	p2, err := startClientPublisher(t, e.url("live/kick"), m, true, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.send(m, 0, 30, 0, 0); err != nil {
		t.Fatal(err)
	}
	e.waitPublished("live/kick", 2, 5*time.Second)
}

// TestLimits: MaxPublishers and MaxReaders.
func TestLimits(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnv(t, Config{MaxPublishers: 1, MaxReaders: 1})
	p, err := startClientPublisher(t, e.url("live/one"), m, true, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.send(m, 0, 30, 0, 0); err != nil {
		t.Fatal(err)
	}
	e.waitPublished("live/one", 1, 5*time.Second)
	_, err = startClientPublisher(t, e.url("live/two"), m, true, gortsplib.ProtocolTCP)
	var bad liberrors.ErrClientBadStatusCode
	if !errors.As(err, &bad) || bad.Code != base.StatusServiceUnavailable {
		t.Errorf("second publisher: %v", err)
	}
	e.metrics.WaitErrors(ingest.ReasonTooManyPublishers, 1)

	read := func() error {
		u, _ := base.ParseURL(e.url("live/one"))
		tcp := gortsplib.ProtocolTCP
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
		if err := c.Start(); err != nil {
			return err
		}
		t.Cleanup(c.Close)
		desc, _, err := c.Describe(u)
		if err != nil {
			return err
		}
		if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			return err
		}
		_, err = c.Play(nil)
		return err
	}
	if err := read(); err != nil {
		t.Fatalf("first reader: %v", err)
	}
	if err := read(); !errors.As(err, &bad) || bad.Code != base.StatusServiceUnavailable {
		t.Errorf("second reader: %v", err)
	}
	e.metrics.Wait(1, time.Second, "headwater_rtsp_readers")
}

// TestPublisherTimeout: a publisher that stops sending is dropped after
// ReadTimeout (reason timeout).
func TestPublisherTimeout(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnvWith(t, Config{ReadTimeout: time.Second}, envOptions{udp: true})
	for i, tr := range []gortsplib.Protocol{gortsplib.ProtocolUDP, gortsplib.ProtocolTCP} {
		name := "live/silent" + strconv.Itoa(i)
		p, err := startClientPublisher(t, e.url(name), m, true, tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.send(m, 0, 30, 0, 0); err != nil {
			t.Fatal(err)
		}
		c := e.waitPublished(name, 1, 5*time.Second)
		c.Wait(t, 5*time.Second)
	}
	e.metrics.WaitErrors(ingest.ReasonTimeout, 2)
}

// TestNoGoroutineLeak: nothing of a publish or a read keeps running once
// it ended. Not parallel: it counts goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	m := loadAV(t)
	e := newEnvWith(t, Config{ReadTimeout: time.Second}, envOptions{udp: true})
	running := runtime.NumGoroutine()
	for i, tr := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		name := "live/leak" + strconv.Itoa(i)
		p, err := startClientPublisher(t, e.url(name), m, true, tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.send(m, 0, 60, time.Millisecond, 0); err != nil {
			t.Fatal(err)
		}
		c := e.waitPublished(name, 1, 5*time.Second)

		u, _ := base.ParseURL(e.url(name))
		rc := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tr}
		if err := rc.Start(); err != nil {
			t.Fatal(err)
		}
		desc, _, err := rc.Describe(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Play(nil); err != nil {
			t.Fatal(err)
		}
		if err := p.send(m, 60, 90, time.Millisecond, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		p.c.Close()
		c.Wait(t, 5*time.Second)
		e.metrics.Wait(0, 5*time.Second, "headwater_rtsp_readers")
		testpeer.WaitGoroutines(t, running)
	}
}

// TestCloseEndsEverything: Close ends publishers, readers and sources, and
// leaves no goroutine behind. Not parallel: it counts goroutines.
func TestCloseEndsEverything(t *testing.T) {
	m := loadAV(t)
	before := runtime.NumGoroutine()
	func() {
		up := newEnvWith(t, Config{}, envOptions{udp: true})
		e := newEnvWith(t, Config{Sources: []Source{
			{Name: "live/src", URL: up.url("live/up"), Transport: TransportUDP},
			{Name: "live/dead", URL: "rtsp://127.0.0.1:1/x", Transport: TransportTCP},
		}}, envOptions{udp: true})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := feed(ctx, t, up.url("live/up"), m, gortsplib.ProtocolTCP)
		pe := feed(ctx, t, e.url("live/pub"), m, gortsplib.ProtocolUDP)
		src := e.waitPublished("live/src", 1, 10*time.Second)
		pub := e.waitPublished("live/pub", 1, 5*time.Second)

		u, _ := base.ParseURL(e.url("live/pub"))
		tcp := gortsplib.ProtocolTCP
		rc := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
		if err := rc.Start(); err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		desc, _, err := rc.Describe(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Play(nil); err != nil {
			t.Fatal(err)
		}
		e.metrics.Wait(1, 2*time.Second, "headwater_rtsp_readers")

		done := make(chan error)
		go func() { done <- e.srv.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return")
		}
		src.Wait(t, time.Second)
		pub.Wait(t, time.Second)
		if n := e.reg.Len(); n != 0 {
			t.Errorf("%d streams left", n)
		}
		if err := e.srv.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
		if err := e.srv.Start(); err == nil {
			t.Error("Start after Close succeeded")
		}
		if got := e.metrics.Value("headwater_rtsp_readers"); got != 0 {
			t.Errorf("readers = %v after Close", got)
		}
		rc.Close()
		cancel()
		pe.c.Close()
		p.c.Close()
		if err := up.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	testpeer.WaitGoroutines(t, before)
}

// TestSlowReader: a reader that stops reading never slows the publisher
// down; it overflows (skipping to the next key frame) and is dropped after
// WriteTimeout.
func TestSlowReader(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	e := newEnvWith(t, Config{WriteTimeout: 2 * time.Second}, envOptions{tweak: func(s *Server) {
		s.testListen = func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			return smallSendBuffers{ln}, err
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := startClientPublisher(t, e.url("live/slow"), m, true, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	go func() {
		n := 0
		for loop := 0; ctx.Err() == nil; loop++ {
			offset := time.Duration(loop) * time.Duration(len(m.video)) * time.Second / 30
			if p.send(m, 0, len(m.video), 2*time.Millisecond, offset) != nil {
				break
			}
			n += len(m.video)
		}
		sent <- n
	}()
	c := e.waitPublished("live/slow", 1, 5*time.Second)

	// A reader with a tiny receive window that reads nothing after PLAY.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := d.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	u := e.url("live/slow")
	if code, _ := rawRequest(t, conn, br, "DESCRIBE", u, 1, nil, ""); code != 200 {
		t.Fatalf("DESCRIBE: %d", code)
	}
	code, h := rawRequest(t, conn, br, "SETUP", u+"/trackID=0", 2, map[string]string{"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}, "")
	if code != 200 {
		t.Fatalf("SETUP: %d", code)
	}
	session, _, _ := strings.Cut(h.Get("Session"), ";")
	if code, _ := rawRequest(t, conn, br, "PLAY", u, 3, map[string]string{"Session": session}, ""); code != 200 {
		t.Fatalf("PLAY: %d", code)
	}
	e.metrics.Wait(1, time.Second, "headwater_rtsp_readers")

	// The reader is dropped; meanwhile the publisher went on at full speed.
	start := c.Count()
	e.metrics.Wait(0, 15*time.Second, "headwater_rtsp_readers")
	if c.Count()-start < 100 {
		t.Errorf("the publisher wrote %d frames while the reader stalled", c.Count()-start)
	}
	cancel()
	n := <-sent
	p.c.Close()
	c.Wait(t, 5*time.Second)
	if got := c.Count(); got < n*9/10 {
		t.Errorf("%d frames captured of %d sent", got, n)
	}
	testpeer.WaitLog(e.t, e.logs, "rtsp: reader disconnected", time.Second)
	t.Logf("overflows %v, frames sent %d", e.metrics.Value("headwater_rtsp_reader_overflows_total"), n)
}

// smallSendBuffers gives accepted connections a small send buffer, so that
// a reader that stops reading is noticed at once.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

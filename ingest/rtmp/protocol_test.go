package rtmp

import (
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// FLV sources encoded once by ffmpeg and replayed by the raw client.

func avTags(t *testing.T) []flvTag {
	return testFLV(t, "av", append(testsrcArgs("2"), "-c:v", "libx264", "-preset", "ultrafast",
		"-tune", "zerolatency", "-g", "60", "-c:a", "aac")...)
}

func smallTags(t *testing.T) []flvTag {
	return testFLV(t, "small", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "1",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-c:a", "aac")
}

func videoOnlyTags(t testing.TB) []flvTag {
	return testFLV(t, "video", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "1",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30")
}

func audioOnlyTags(t *testing.T) []flvTag {
	return testFLV(t, "audio", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "1", "-c:a", "aac")
}

func isSeqHeader(tag flvTag) bool {
	return (tag.typeID == msgVideo || tag.typeID == msgAudio) && len(tag.data) > 1 && tag.data[1] == 0
}

func withoutMetadata(tags []flvTag) []flvTag {
	var out []flvTag
	for _, tag := range tags {
		if tag.typeID != msgDataAMF0 {
			out = append(out, tag)
		}
	}
	return out
}

func countKind(frames []*media.Frame, id int) int {
	n := 0
	for _, f := range frames {
		if f.Track.ID == id {
			n++
		}
	}
	return n
}

// TestOBSSequence replays OBS's command sequence (connect, releaseStream,
// FCPublish, createStream, publish, @setDataFrame, media, FCUnpublish,
// deleteStream) with a query string on the key.
func TestOBSSequence(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	var (
		mu    sync.Mutex
		query string
	)
	e := newEnvWith(t, Config{}, envOptions{published: func(s *session) {
		mu.Lock()
		query = s.query.Get("token")
		mu.Unlock()
	}})

	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("obs?token=s3cret"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(tags, 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/obs", 1, 5*time.Second)
	for _, cmd := range []string{"FCUnpublish", "deleteStream"} {
		if err := c.command(0, cmd, nil, "obs?token=s3cret"); err != nil {
			t.Fatal(err)
		}
	}
	c.waitClosed(5 * time.Second)
	cap.Wait(t, 5*time.Second)

	frames := cap.Frames()
	if n := countKind(frames, 1); n != 60 {
		t.Errorf("%d video frames, want 60", n)
	}
	if n := countKind(frames, 2); n < 90 {
		t.Errorf("%d audio frames, want at least 90", n)
	}
	mu.Lock()
	if query != "s3cret" {
		t.Errorf("session query token = %q", query)
	}
	mu.Unlock()
	if strings.Contains(e.logs.String(), "s3cret") {
		t.Error("the stream key's query string was logged")
	}
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
	for _, r := range ingest.Reasons {
		if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			t.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
}

// TestSequenceHeaderChange switches resolution mid-stream: frames after the
// new AVC sequence header carry a new track with the same id.
func TestSequenceHeaderChange(t *testing.T) {
	t.Parallel()
	first, second := avTags(t), smallTags(t)
	e := newEnv(t, Config{})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("switch"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(first, 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/switch", 1, 5*time.Second)
	if err := c.sendTags(withoutMetadata(second), 2033); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	cap.Wait(t, 5*time.Second)

	var tracks []*media.Track
	var lastDTS int64 = -1
	for _, f := range cap.Frames() {
		if f.Track.ID != 1 {
			continue
		}
		if len(tracks) == 0 || tracks[len(tracks)-1] != f.Track {
			tracks = append(tracks, f.Track)
			if !f.Key {
				t.Errorf("first frame of video track %d is not a key frame", len(tracks))
			}
		}
		if f.DTS <= lastDTS {
			t.Errorf("video DTS %d after %d", f.DTS, lastDTS)
		}
		lastDTS = f.DTS
	}
	if len(tracks) != 2 {
		t.Fatalf("%d video tracks, want 2", len(tracks))
	}
	if cap.Stream.Tracks()[0] != tracks[0] {
		t.Error("the published track is not the first one")
	}
	for i, want := range []int{640, 320} {
		info, err := media.ParseVideoInfo(tracks[i].Codec)
		if err != nil || info.Width != want {
			t.Errorf("track %d: %+v %v, want width %d", i, info, err, want)
		}
	}
}

func TestSingleTrackPublishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	cases := []struct {
		key    string
		tags   []flvTag
		id     int
		frames int
	}{
		// Not "video" or "audio": those name renditions and are refused.
		{"video-only", videoOnlyTags(t), 1, 30},
		{"video-only-nometa", withoutMetadata(videoOnlyTags(t)), 1, 30},
		{"audio-only", audioOnlyTags(t), 2, 43},
		{"audio-only-nometa", withoutMetadata(audioOnlyTags(t)), 2, 43},
	}
	for _, tc := range cases {
		c := dialRaw(t, e.addr())
		c.connect("live")
		if code := c.publish(tc.key); code != "NetStream.Publish.Start" {
			t.Fatalf("%s: publish: %s", tc.key, code)
		}
		start := time.Now()
		if err := c.sendTags(tc.tags, 0); err != nil {
			t.Fatal(err)
		}
		cap := e.waitPublished("live/"+tc.key, 1, 5*time.Second)
		if d := time.Since(start); d > headerWait/2 {
			t.Errorf("%s: published after %s", tc.key, d)
		}
		c.conn.Close()
		cap.Wait(t, 5*time.Second)
		tracks := cap.Stream.Tracks()
		if len(tracks) != 1 || tracks[0].ID != tc.id {
			t.Errorf("%s: tracks %v", tc.key, tracks)
		}
		if n := countKind(cap.Frames(), tc.id); n < tc.frames {
			t.Errorf("%s: %d frames, want at least %d", tc.key, n, tc.frames)
		}
	}
}

// TestLateAudioHeader: the metadata announces audio, whose sequence header
// comes after some video frames: the publish waits for it and loses nothing.
func TestLateAudioHeader(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	var meta, audioHdr []flvTag
	var rest []flvTag
	for _, tag := range tags {
		switch {
		case tag.typeID == msgDataAMF0:
			meta = append(meta, tag)
		case tag.typeID == msgAudio && isSeqHeader(tag):
			audioHdr = append(audioHdr, tag)
		default:
			rest = append(rest, tag)
		}
	}
	e := newEnv(t, Config{})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("late"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(append(meta, rest[:10]...), 0); err != nil {
		t.Fatal(err)
	}
	// The server answers commands in order: once createStream's result is
	// back, it has handled the tags sent before it.
	if err := c.command(0, "createStream", nil); err != nil {
		t.Fatal(err)
	}
	c.expect("_result", "")
	if e.caps.Publishes("live/late") != 0 {
		t.Fatal("published before the announced audio track's header")
	}
	if err := c.sendTags(append(audioHdr, rest[10:]...), 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/late", 1, 5*time.Second)
	c.conn.Close()
	cap.Wait(t, 5*time.Second)
	if n := len(cap.Stream.Tracks()); n != 2 {
		t.Fatalf("%d tracks", n)
	}
	if n := countKind(cap.Frames(), 1); n != 60 {
		t.Errorf("%d video frames, want 60", n)
	}
}

// TestAggregate sends the media as one Aggregate message.
func TestAggregate(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	var agg []byte
	for _, tag := range tags {
		if tag.typeID == msgDataAMF0 {
			continue
		}
		h := []byte{tag.typeID, byte(len(tag.data) >> 16), byte(len(tag.data) >> 8), byte(len(tag.data)),
			byte(tag.timestamp >> 16), byte(tag.timestamp >> 8), byte(tag.timestamp), byte(tag.timestamp >> 24), 0, 0, 0}
		agg = append(append(agg, h...), tag.data...)
		agg = binary.BigEndian.AppendUint32(agg, uint32(11+len(tag.data)))
	}
	e := newEnv(t, Config{})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("agg"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.send(6, msgAggregate, 1, 0, agg); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/agg", 1, 5*time.Second)
	c.conn.Close()
	cap.Wait(t, 5*time.Second)
	if n := countKind(cap.Frames(), 1); n != 60 {
		t.Errorf("%d video frames, want 60", n)
	}
}

func TestRandomBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{IdleTimeout: 500 * time.Millisecond})
	rng := rand.New(rand.NewSource(1))
	junk := make([]byte, 64<<10)
	rng.Read(junk)
	junk[0] = 'G' // not version 3: an HTTP client, say

	conn, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write(junk) // the server may close before reading it all
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); ingest.IsTimeout(err) {
		t.Fatal("connection not closed")
	}
	e.metrics.WaitErrors(ingest.ReasonHandshake, 1)

	// After a valid handshake: the chunk layer refuses the garbage (or times out on it).
	for seed := int64(0); seed < 5; seed++ {
		c := dialRaw(t, e.addr())
		c.handshake()
		rand.New(rand.NewSource(seed)).Read(junk)
		_, _ = c.conn.Write(junk)
		c.waitClosed(5 * time.Second)
	}
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "internal"); got != 0 {
		t.Errorf("internal errors = %v", got)
	}
	// The server still works.
	c := dialRaw(t, e.addr())
	c.connect("live")
}

func TestTruncatedHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{HandshakeTimeout: 300 * time.Millisecond})

	// Half a C1, then EOF.
	conn, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write(append([]byte{3}, make([]byte, 700)...))
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); ingest.IsTimeout(err) {
		t.Fatal("connection not closed")
	}
	conn.Close()
	e.metrics.WaitErrors(ingest.ReasonHandshake, 1)

	// C0C1, then silence: the handshake timeout drops it.
	conn, err = net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = conn.Write(append([]byte{3}, make([]byte, handshakeSize)...))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); ingest.IsTimeout(err) {
		t.Fatal("connection not closed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dropped after %s", d)
	}
	e.metrics.WaitErrors(ingest.ReasonHandshake, 2)

	// A connection closed without a byte (a TCP health check) is no error.
	conn2, err := net.Dial("tcp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	conn2.Close()
	e.metrics.Wait(3, 2*time.Second, "headwater_ingest_connections_total")
	time.Sleep(50 * time.Millisecond)
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "handshake"); got != 2 {
		t.Errorf("handshake errors = %v, want 2", got)
	}
}

func TestChunkSizeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for i, size := range []uint32{0x7fffffff, 65537, 0} {
		c := dialRaw(t, e.addr())
		c.handshake()
		if err := c.send(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, size)); err != nil {
			t.Fatal(err)
		}
		c.waitClosed(5 * time.Second)
		e.metrics.WaitErrors(ingest.ReasonProtocol, float64(i+1))
	}
	testpeer.WaitLog(e.t, e.logs, "peer chunk size 2147483647 outside 1..65536", time.Second)

	// The largest allowed size works, with a message spanning several chunks.
	tags := avTags(t)
	c := dialRaw(t, e.addr())
	c.connect("live")
	if err := c.send(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 65536)); err != nil {
		t.Fatal(err)
	}
	c.cw.chunkSize = 65536
	if code := c.publish("bigchunks"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(tags, 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/bigchunks", 1, 5*time.Second)
	c.conn.Close()
	cap.Wait(t, 5*time.Second)
	if n := countKind(cap.Frames(), 1); n != 60 {
		t.Errorf("%d video frames, want 60", n)
	}
}

func TestWrongApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{App: "ingest"})
	c := dialRaw(t, e.addr())
	c.handshake()
	if err := c.command(0, "connect", amfObj{{"app", "live"}}); err != nil {
		t.Fatal(err)
	}
	c.expect("_error", "NetConnection.Connect.Rejected")
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonBadApp, 1)
	testpeer.WaitLog(e.t, e.logs, `application \"live\" refused`, time.Second)

	// The configured app, with a query string and a trailing slash, is accepted.
	c = dialRaw(t, e.addr())
	c.connect("ingest/?v=1")
	if code := c.publish("k"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
}

func TestInvalidName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	for i, key := range []string{"", "bad key", "../x"} {
		c := dialRaw(t, e.addr())
		c.connect("live")
		if code := c.publish(key); code != "NetStream.Publish.BadName" {
			t.Errorf("publish %q: %s", key, code)
		}
		c.waitClosed(5 * time.Second)
		e.metrics.WaitErrors(ingest.ReasonInvalidName, float64(i+1))
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnv(t, Config{IdleTimeout: 300 * time.Millisecond})

	// Silent after the handshake.
	c := dialRaw(t, e.addr())
	c.handshake()
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)

	// Silent while publishing: dropped, stream closed.
	c = dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("idle"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(tags[:20], 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/idle", 1, 5*time.Second)
	start := time.Now()
	c.waitClosed(5 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dropped after %s", d)
	}
	cap.Wait(t, 5*time.Second)
	e.metrics.WaitErrors(ingest.ReasonTimeout, 2)
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
}

func TestMaxPublishers(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnv(t, Config{MaxPublishers: 1})
	a := dialRaw(t, e.addr())
	a.connect("live")
	if code := a.publish("a"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish a: %s", code)
	}
	if err := a.sendTags(tags[:10], 0); err != nil {
		t.Fatal(err)
	}
	capA := e.waitPublished("live/a", 1, 5*time.Second)
	e.metrics.Wait(1, 2*time.Second, "headwater_ingest_sessions")

	b := dialRaw(t, e.addr())
	b.connect("live")
	if code := b.publish("b"); code != "NetStream.Publish.Rejected" {
		t.Fatalf("publish b: %s", code)
	}
	b.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonTooManyPublishers, 1)

	a.conn.Close()
	capA.Wait(t, 5*time.Second)
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
	// The slot is free again (the session may still be finishing: retry briefly).
	deadline := time.Now().Add(2 * time.Second)
	for {
		b = dialRaw(t, e.addr())
		b.connect("live")
		code := b.publish("b")
		if code == "NetStream.Publish.Start" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish b after a left: %s", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKick(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnv(t, Config{})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("kick"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(tags[:20], 0); err != nil {
		t.Fatal(err)
	}
	cap := e.waitPublished("live/kick", 1, 5*time.Second)
	cap.Stream.Kick()
	c.waitClosed(5 * time.Second)
	cap.Wait(t, 5*time.Second)
	testpeer.WaitLog(e.t, e.logs, "rtmp: publisher kicked", 2*time.Second)
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
	for _, r := range ingest.Reasons {
		if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			t.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
	// The name is free again.
	if _, live := e.reg.Get("live/kick"); live {
		t.Error("kicked stream still registered")
	}
}

type panickingPublisher struct{ *media.Registry }

func (p panickingPublisher) Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	if strings.HasSuffix(name, "/panic") {
		panic("boom")
	}
	return p.Registry.Publish(name, info, tracks)
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnvWith(t, Config{}, envOptions{publisher: func(r *media.Registry) ingest.Registry {
		return panickingPublisher{r}
	}})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("panic"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	_ = c.sendTags(tags, 0)
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonInternal, 1)
	testpeer.WaitLog(e.t, e.logs, "rtmp: panic in session", time.Second)
	if n := strings.Count(e.logs.String(), "panic in session"); n != 1 {
		t.Errorf("panic logged %d times", n)
	}
	testpeer.WaitLog(e.t, e.logs, "session=", time.Second)

	// Other sessions are unaffected and the publisher slot was released.
	c = dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("fine"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendTags(tags, 0); err != nil {
		t.Fatal(err)
	}
	e.waitPublished("live/fine", 1, 5*time.Second)
}

// TestCloseEndsSessions: Close drops live publishers, closes their streams
// and returns once every goroutine is gone.
func TestCloseEndsSessions(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnv(t, Config{})
	var caps []*testpeer.Capture
	for _, key := range []string{"one", "two"} {
		c := dialRaw(t, e.addr())
		c.connect("live")
		if code := c.publish(key); code != "NetStream.Publish.Start" {
			t.Fatalf("publish: %s", code)
		}
		if err := c.sendTags(tags[:20], 0); err != nil {
			t.Fatal(err)
		}
		caps = append(caps, e.waitPublished("live/"+key, 1, 5*time.Second))
	}
	idle, err := net.Dial("tcp", e.addr()) // mid-handshake
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	done := make(chan error)
	go func() { done <- e.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range caps {
		c.Wait(t, time.Second)
	}
	if e.reg.Len() != 0 {
		t.Errorf("%d streams left", e.reg.Len())
	}
	if err := e.srv.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

// TestNoGoroutineLeak: not parallel, it counts goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	tags := avTags(t)
	base := runtime.NumGoroutine()
	func() {
		e := newEnv(t, Config{})
		running := runtime.NumGoroutine()
		for i, graceful := range []bool{true, false} {
			c := dialRaw(t, e.addr())
			c.connect("live")
			if code := c.publish("leak"); code != "NetStream.Publish.Start" {
				t.Fatalf("publish: %s", code)
			}
			if err := c.sendTags(tags, 0); err != nil {
				t.Fatal(err)
			}
			cap := e.waitPublished("live/leak", i+1, 5*time.Second)
			if graceful {
				_ = c.command(1, "deleteStream", nil, 1.0)
			}
			c.conn.Close()
			cap.Wait(t, 5*time.Second)
			// The session, its kick watcher and the subscriber are gone.
			testpeer.WaitGoroutines(t, running)
		}
		if err := e.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	testpeer.WaitGoroutines(t, base)
}

// publishOnly hides the registry's Get: a duplicate publish is then only
// refused by Publish, after the sequence headers.
type publishOnly struct{ r *media.Registry }

func (p publishOnly) Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	return p.r.Publish(name, info, tracks)
}

// Get finds no stream, so the publish command lets a live name through.
func (p publishOnly) Get(string) (*media.Stream, bool) { return nil, false }

func TestAlreadyPublishingRefusedByPublish(t *testing.T) {
	t.Parallel()
	tags := avTags(t)
	e := newEnvWith(t, Config{}, envOptions{publisher: func(r *media.Registry) ingest.Registry { return publishOnly{r} }})
	a := dialRaw(t, e.addr())
	a.connect("live")
	if code := a.publish("dup"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := a.sendTags(tags[:20], 0); err != nil {
		t.Fatal(err)
	}
	capA := e.waitPublished("live/dup", 1, 5*time.Second)

	b := dialRaw(t, e.addr())
	b.connect("live")
	if code := b.publish("dup"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	// Metadata, sequence headers and a first frame: Publish is called, and fails.
	if err := b.sendTags(tags[:4], 0); err != nil {
		t.Fatal(err)
	}
	b.expect("onStatus", "NetStream.Publish.BadName")
	b.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonAlreadyPublishing, 1)

	// The first publisher goes on.
	before := capA.Count()
	if err := a.sendTags(tags[20:], 0); err != nil {
		t.Fatal(err)
	}
	a.conn.Close()
	capA.Wait(t, 5*time.Second)
	if capA.Count() <= before {
		t.Error("first publisher disturbed")
	}
	if e.caps.Publishes("live/dup") != 1 {
		t.Errorf("%d publishes", e.caps.Publishes("live/dup"))
	}
}

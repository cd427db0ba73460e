package srt

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// rejectedWith tells whether a gosrt Dial error is a rejection with code
// (gosrt prints the code in base 32).
func rejectedWith(err error, code gosrt.RejectionReason) bool {
	return err != nil && strings.Contains(err.Error(), "REJECT ("+strconv.FormatUint(uint64(code), 32)+")")
}

// TestRejections checks the handshake decisions: every refusal has its SRT
// rejection code, its ingest reason and its SRT reason.
func TestRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{
		Passphrase:        testPassphrase,
		PrefixPassphrases: map[string]string{"open/": "", "team/": "team-passphrase-1"},
		MaxPublishers:     1,
		MaxReaders:        1,
	}).start()

	// A publisher holding the only publisher slot.
	pub, err := e.dial("#!::r=live/busy,m=publish", testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ts := benchTS(t)
	go func() { _ = sendTSErr(pub, ts, fastRate) }()
	e.waitPublished("live/busy", 1, 5*time.Second)

	cases := []struct {
		name       string
		streamid   string
		passphrase string
		code       gosrt.RejectionReason
		reason     ingest.Reason // "" when not an ingest error
		srtReason  string
	}{
		{"wrong passphrase", "live/a", "wrong-passphrase-0", gosrt.REJ_BADSECRET, ingest.ReasonHandshake, rejectPassphrase},
		{"no passphrase", "live/a", "", gosrt.REJ_UNSECURE, ingest.ReasonHandshake, rejectEncryption},
		{"prefix passphrase", "team/a", testPassphrase, gosrt.REJ_BADSECRET, ingest.ReasonHandshake, rejectPassphrase},
		{"unexpected encryption", "open/a", testPassphrase, gosrt.REJ_UNSECURE, ingest.ReasonHandshake, rejectEncryption},
		{"no resource", "#!::m=publish", testPassphrase, gosrt.REJX_BAD_REQUEST, ingest.ReasonProtocol, rejectStreamID},
		{"bad syntax", "#!::r=live/a,publish", testPassphrase, gosrt.REJX_BAD_REQUEST, ingest.ReasonProtocol, rejectStreamID},
		{"bad verb", "push:live/a", testPassphrase, gosrt.REJX_BAD_REQUEST, ingest.ReasonProtocol, rejectStreamID},
		{"bidirectional", "#!::r=live/a,m=bidirectional", testPassphrase, gosrt.REJX_BAD_MODE, ingest.ReasonProtocol, rejectStreamID},
		{"file type", "#!::r=live/a,m=publish,t=file", testPassphrase, gosrt.REJX_NOTSUP_MEDIA, ingest.ReasonProtocol, rejectStreamID},
		{"bad name", "#!::r=live/../a,m=publish", testPassphrase, gosrt.REJX_BAD_REQUEST, ingest.ReasonInvalidName, rejectStreamID},
		{"empty", "", testPassphrase, gosrt.REJX_BAD_REQUEST, ingest.ReasonProtocol, rejectStreamID},
		{"already publishing", "publish:live/busy", testPassphrase, gosrt.REJX_CONFLICT, ingest.ReasonAlreadyPublishing, rejectBusy},
		{"publisher limit", "publish:live/other", testPassphrase, gosrt.REJX_OVERLOAD, ingest.ReasonTooManyPublishers, rejectLimit},
		{"not live", "read:live/nothing", testPassphrase, gosrt.REJX_NOTFOUND, "", rejectNotFound},
		{"not live, default mode", "#!::r=live/nothing", testPassphrase, gosrt.REJX_NOTFOUND, "", rejectNotFound},
	}
	counts := map[ingest.Reason]float64{}
	srtCounts := map[string]float64{}
	for _, tc := range cases {
		conn, err := e.dial(tc.streamid, tc.passphrase)
		if err == nil {
			conn.Close()
			t.Errorf("%s: connection accepted", tc.name)
			continue
		}
		if !rejectedWith(err, tc.code) {
			t.Errorf("%s: %v, want rejection %d", tc.name, err, tc.code)
		}
		if tc.reason != "" {
			counts[tc.reason]++
			e.metrics.WaitErrors(tc.reason, counts[tc.reason])
		}
		srtCounts[tc.srtReason]++
		e.metrics.Wait(srtCounts[tc.srtReason], 2*time.Second, "headwater_srt_rejections_total", "reason", tc.srtReason)
	}

	// The prefix passphrases let their callers in (one at a time: the only
	// publisher slot must be free first).
	pub.Close()
	e.waitPublished("live/busy", 1, time.Second).Wait(t, 5*time.Second)
	e.waitFreeSlots()
	for _, c := range []struct{ streamid, passphrase string }{
		{"team/ok", "team-passphrase-1"},
		{"open/ok", ""},
		{"live/ok", testPassphrase},
	} {
		conn, err := e.dial(c.streamid, c.passphrase)
		if err != nil {
			t.Errorf("%s: %v", c.streamid, err)
			continue
		}
		conn.Close()
		e.waitFreeSlots()
	}

	// The reader limit: one reader fits, the second is refused.
	pub2, err := e.dial("#!::r=live/busy,m=publish", testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	defer pub2.Close()
	go func() { _ = sendTSErr(pub2, ts, fastRate) }()
	e.waitPublished("live/busy", 2, 5*time.Second)
	r1, err := e.dial("read:live/busy", testPassphrase)
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer r1.Close()
	if _, err := e.dial("request:live/busy", testPassphrase); !rejectedWith(err, gosrt.REJX_OVERLOAD) {
		t.Errorf("second reader: %v", err)
	}
	if n := e.caps.Publishes("live/busy"); n != 2 {
		t.Errorf("live/busy published %d times", n)
	}
}

// TestWrongPassphraseFFmpeg: ffmpeg with a wrong passphrase is refused at
// the handshake and counted; with the right one it publishes.
func TestWrongPassphraseFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{Passphrase: testPassphrase}).start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(append(testsrcArgs("2"), x264Args...), "-c:a", "aac")
	if out, err := e.publishFFmpeg(ctx, "#!::r=live/pw,m=publish", "not-the-passphrase", args...); err == nil {
		t.Fatalf("ffmpeg with a wrong passphrase succeeded\n%s", out)
	}
	e.metrics.WaitErrors(ingest.ReasonHandshake, 1)
	e.metrics.Wait(1, time.Second, "headwater_srt_rejections_total", "reason", rejectPassphrase)
	if n := e.caps.Publishes("live/pw"); n != 0 {
		t.Errorf("published %d times", n)
	}
	if out, err := e.publishFFmpeg(ctx, "#!::r=live/pw,m=publish", testPassphrase, args...); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	e.waitPublished("live/pw", 1, 5*time.Second).Wait(t, 5*time.Second)
}

// TestMalformedStreamIDFFmpeg: ffmpeg with a streamid that names no stream
// is refused.
func TestMalformedStreamIDFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	e := newEnv(t, Config{}).start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(append(testsrcArgs("1"), x264Args...), "-c:a", "aac")
	if out, err := e.publishFFmpeg(ctx, "#!::m=publish,u=bob", "", args...); err == nil {
		t.Fatalf("ffmpeg with a malformed streamid succeeded\n%s", out)
	}
	e.metrics.WaitErrors(ingest.ReasonProtocol, 1)
	testpeer.WaitLog(e.t, e.logs, "no resource (r=)", time.Second)
}

// TestGarbageDatagrams sends junk to the port, including handshake-looking
// packets: the server survives and a following publish works.
func TestGarbageDatagrams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).start()
	uc, err := net.Dial("udp", e.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 1500)
	for i := range 2000 {
		n := 1 + i%len(buf)
		_, _ = rand.Read(buf[:n])
		switch i % 4 {
		case 1: // a control packet of type handshake to socket 0
			if n >= 16 {
				binary.BigEndian.PutUint16(buf[0:], 0x8000)
				binary.BigEndian.PutUint32(buf[12:], 0)
			}
		case 2: // a data packet to a random socket
			buf[0] &= 0x7f
		case 3: // a truncated induction handshake
			if n >= 64 {
				binary.BigEndian.PutUint16(buf[0:], 0x8000)
				binary.BigEndian.PutUint32(buf[12:], 0)
				binary.BigEndian.PutUint32(buf[16:], 5)          // version
				binary.BigEndian.PutUint32(buf[36:], 0xffffffff) // conclusion... or anything
			}
		}
		if _, err := uc.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if i%200 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	// gosrt's caller sends its induction once: give the burst (which
	// overflows the socket buffer) time to drain, and retry like libsrt.
	time.Sleep(300 * time.Millisecond)
	var conn gosrt.Conn
	for range 3 {
		if conn, err = e.dial("live/after-garbage", ""); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial after garbage: %v", err)
	}
	defer conn.Close()
	sendTS(t, conn, benchTS(t), fastRate)
	c := e.waitPublished("live/after-garbage", 1, 5*time.Second)
	closeDrained(t, conn, c)
	c.Wait(t, 5*time.Second)
	if n := c.Count(); n < 60 {
		t.Errorf("%d frames after the garbage", n)
	}
}

// TestCorruptTSOverSRT sends a TS file damaged in the middle with a gosrt
// caller: the stream goes on, the errors are counted.
func TestCorruptTSOverSRT(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	ts := corruptTS(testTS(t, "h264-aac-4s", append(append(testsrcArgs("4"), x264Args...), "-c:a", "aac")...))
	e := newEnv(t, Config{}).start()
	conn, err := e.dial("#!::r=live/corrupt,m=publish", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sendTS(t, conn, ts, len(ts)/2) // in about two seconds
	c := e.waitPublished("live/corrupt", 1, 5*time.Second)
	closeDrained(t, conn, c)
	c.Wait(t, 5*time.Second)
	if got := e.metrics.Value("headwater_srt_demux_errors_total"); got == 0 {
		t.Error("no demux error counted")
	}
	checkCorruptStream(t, c)
	for _, r := range ingest.Reasons {
		if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			t.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
}

// TestIdleTimeout: a publisher that stops sending, or never sends, is
// dropped after the idle timeout and counted as a timeout.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{IdleTimeout: 1500 * time.Millisecond}).start()

	silent, err := e.dial("live/silent", "")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	e.metrics.WaitErrors(ingest.ReasonTimeout, 1)

	stalled, err := e.dial("live/stalled", "")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	ts := benchTS(t)
	sendTS(t, stalled, ts[:len(ts)/2], fastRate)
	c := e.waitPublished("live/stalled", 1, 5*time.Second)
	start := time.Now()
	c.Wait(t, 5*time.Second)
	if d := time.Since(start); d < time.Second {
		t.Errorf("stalled publisher dropped after %s", d)
	}
	e.metrics.WaitErrors(ingest.ReasonTimeout, 2)
	e.metrics.Wait(0, 2*time.Second, "headwater_ingest_sessions")
}

// TestKick: kicking the stream drops the publisher.
func TestKick(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).start()
	conn, err := e.dial("live/kick", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := benchTS(t)
	sendTS(t, conn, ts[:len(ts)/2], fastRate)
	c := e.waitPublished("live/kick", 1, 5*time.Second)
	c.Stream.Kick()
	c.Wait(t, 5*time.Second)
	testpeer.WaitLog(e.t, e.logs, "srt: publisher kicked", 2*time.Second)
	// The name is free again.
	conn2, err := e.dial("live/kick", "")
	if err != nil {
		t.Fatalf("publishing again: %v", err)
	}
	conn2.Close()
	for _, r := range ingest.Reasons {
		if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			t.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
}

// TestStreamMetrics: the per-stream SRT series exist while the publisher
// and a reader are connected and are deleted when they leave.
func TestStreamMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).start()
	conn, err := e.dial("live/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := benchTS(t)
	sendTS(t, conn, ts[:len(ts)/2], fastRate)
	e.waitPublished("live/metrics", 1, 5*time.Second)
	reader, err := e.dial("read:live/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	e.metrics.Wait(1, 2*time.Second, "headwater_srt_readers")
	for _, m := range []string{"headwater_srt_packets_lost_total", "headwater_srt_packets_retransmitted_total", "headwater_srt_packets_dropped_total"} {
		for _, dir := range []string{dirReceive, dirSend} {
			if _, ok := e.metrics.Lookup(m, "stream", "live/metrics", "direction", dir); !ok {
				t.Errorf("%s{direction=%s} missing", m, dir)
			}
		}
	}
	if rtt, ok := e.metrics.Lookup("headwater_srt_rtt_seconds", "stream", "live/metrics"); !ok || rtt <= 0 || rtt > 1 {
		t.Errorf("rtt = %v (present %v)", rtt, ok)
	}
	if _, ok := e.metrics.Lookup("headwater_srt_receive_buffer_seconds", "stream", "live/metrics"); !ok {
		t.Error("receive buffer gauge missing")
	}

	conn.Close()
	e.metrics.Wait(0, 5*time.Second, "headwater_srt_readers") // the stream ended: the reader is dropped
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok1 := e.metrics.Lookup("headwater_srt_packets_lost_total", "stream", "live/metrics")
		_, ok2 := e.metrics.Lookup("headwater_srt_rtt_seconds", "stream", "live/metrics")
		if !ok1 && !ok2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("per-stream series still exported after the stream ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoGoroutineLeft: a connection's goroutines end with it, and Close
// drops publishers and readers, closes their streams and leaves no
// goroutine behind.
func TestNoGoroutineLeft(t *testing.T) {
	// Not parallel: it counts goroutines.
	before := serverGoroutines()
	e := newEnv(t, Config{})
	e.start()
	base := serverGoroutines()
	ts := benchTS(t)

	// A publisher and a reader come and go.
	pub, err := e.dial("live/once", "")
	if err != nil {
		t.Fatal(err)
	}
	sendTS(t, pub, ts[:len(ts)/2], fastRate)
	c := e.waitPublished("live/once", 1, 5*time.Second)
	rd, err := e.dial("read:live/once", "")
	if err != nil {
		t.Fatal(err)
	}
	e.metrics.Wait(1, 2*time.Second, "headwater_srt_readers")
	rd.Close()
	e.metrics.Wait(0, 5*time.Second, "headwater_srt_readers")
	pub.Close()
	c.Wait(t, 5*time.Second)
	testpeer.WaitGoroutinesCounted(t, base, 10*time.Second, serverGoroutines)

	// Close with everything open.
	var conns []gosrt.Conn
	for _, name := range []string{"live/a", "live/b"} {
		conn, err := e.dial(name, "")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		sendTS(t, conn, ts[:len(ts)/2], fastRate)
		e.waitPublished(name, 1, 5*time.Second)
	}
	r, err := e.dial("read:live/a", "")
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, r)
	silent, err := e.dial("live/silent", "") // accepted, before any media
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, silent)
	e.metrics.Wait(1, 2*time.Second, "headwater_srt_readers")

	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"live/a", "live/b"} {
		e.waitPublished(name, 1, time.Second).Wait(t, 2*time.Second)
	}
	if n := e.reg.Len(); n != 0 {
		t.Errorf("%d streams left", n)
	}
	if err := e.srv.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	testpeer.WaitGoroutinesCounted(t, before, 10*time.Second, serverGoroutines)
	for _, r := range ingest.Reasons {
		if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(r)); got != 0 {
			t.Errorf("errors{reason=%s} = %v", r, got)
		}
	}
}

// TestServeConcurrentPublishers publishes several streams at once with
// gosrt callers.
func TestServeConcurrentPublishers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).start()
	ts := benchTS(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "live/many" + strconv.Itoa(i)
			conn, err := e.dial("publish:"+name, "")
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			if err := sendTSErr(conn, ts, len(ts)/2); err != nil { // in real time
				t.Error(err)
				return
			}
			closeDrained(t, conn, e.waitPublished(name, 1, 5*time.Second))
		}()
	}
	wg.Wait()
	for i := range 4 {
		c := e.waitPublished("live/many"+strconv.Itoa(i), 1, time.Second)
		c.Wait(t, 5*time.Second)
		checkLossyStream(t, c, 2)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Passphrase: "short"},
		{Passphrase: strings.Repeat("x", 80)},
		{PBKeyLen: 20},
		{PrefixPassphrases: map[string]string{"": "long-enough-passphrase"}},
		{PrefixPassphrases: map[string]string{"a/": "short"}},
	} {
		cfg.Address = "127.0.0.1:0"
		s := New(cfg, nil, nil, nil, nil)
		if err := s.Start(); err == nil {
			t.Errorf("%+v: started", cfg)
		}
		_ = s.Close()
	}
	s := New(Config{Address: "127.0.0.1:0"}, nil, nil, nil, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// A second server on the same port fails instead of sharing it.
	other := New(Config{Address: s.Addr().String()}, nil, nil, nil, nil)
	if err := other.Start(); err == nil {
		t.Errorf("second server on %s started", s.Addr())
	}
	_ = other.Close()
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestPassphraseFor(t *testing.T) {
	t.Parallel()
	c := Config{Passphrase: "server", PrefixPassphrases: map[string]string{
		"live/":        "live",
		"live/secure/": "secure",
		"open/":        "",
	}}
	for name, want := range map[string]string{
		"live/a":          "live",
		"live/secure/a":   "secure",
		"live/secure":     "live",
		"open/x":          "",
		"other/x":         "server",
		"liveliness/test": "server",
	} {
		if got := c.passphraseFor(name); got != want {
			t.Errorf("passphraseFor(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestNoMedia: a publisher whose data stops decoding to frames (here: null
// packets only) is dropped after the idle timeout as a protocol error.
func TestNoMedia(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{IdleTimeout: 1500 * time.Millisecond}).start()
	conn, err := e.dial("live/nulls", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := benchTS(t)
	sendTS(t, conn, ts[:len(ts)/2], fastRate)
	c := e.waitPublished("live/nulls", 1, 5*time.Second)
	null := make([]byte, 7*188)
	for i := 0; i < len(null); i += 188 {
		copy(null[i:], []byte{0x47, 0x1f, 0xff, 0x10})
	}
	go func() {
		for range 800 { // 8 s of null packets, until the server drops us
			if _, err := conn.Write(null); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	c.Wait(t, 10*time.Second)
	e.metrics.WaitErrors(ingest.ReasonProtocol, 1)
	testpeer.WaitLog(e.t, e.logs, "no decodable media", time.Second)
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", "timeout"); got != 0 {
		t.Errorf("timeout errors = %v", got)
	}
}

// TestConnectionRateLimit refuses an address that opens more connections a
// minute than allowed, at the handshake, with its own reason.
func TestConnectionRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxConnectionsPerMinute: 2}).start()
	for i := range 2 {
		c, err := e.dial("#!::r=live/rate"+strconv.Itoa(i)+",m=publish", "")
		if err != nil {
			t.Fatalf("connection %d refused: %v", i, err)
		}
		_ = c.Close()
	}
	if _, err := e.dial("#!::r=live/rate3,m=publish", ""); !rejectedWith(err, gosrt.REJX_OVERLOAD) {
		t.Fatalf("third connection in a minute: %v, want REJX_OVERLOAD", err)
	}
	e.metrics.WaitErrors(ingest.ReasonRateLimited, 1)
}

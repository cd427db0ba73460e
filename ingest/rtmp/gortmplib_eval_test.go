//go:build eval

// This file is an evaluation, not a test: it is compiled only with the eval
// build tag, so that go test ./... runs tests only. Run it with
//
//	go test -tags eval -run 'TestGortmplibEval' -v ./ingest/rtmp/
//	go test -tags eval -run '^$' -fuzz FuzzGortmplibServer -fuzztime 60s ./ingest/rtmp/
//
// Its conclusions are in docs/decisions.md ("Enhanced RTMP: gortmplib
// evaluated, our message layer kept").

package rtmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// The evaluation of gortmplib's server side recorded in docs/decisions.md:
// the hostile inputs our message layer is tested with, and FuzzSession's
// seeds, fed to a gortmplib ServerConn + Reader (the way its server example
// and MediaMTX use them) and to our session. Not a regression test of
// gortmplib, so it only runs when asked (see the top of the file).

// gortmplibSession serves one connection with gortmplib as a publish server
// would: ServerConn (handshake, connect, publish), then Reader (tracks, then
// frames), with a recover so that a panic is an error, not a crash.
func gortmplibSession(conn net.Conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	sc := &gortmplib.ServerConn{RW: conn}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if err := sc.Accept(); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if !sc.Publish {
		return errors.New("not a publish")
	}
	r := &gortmplib.Reader{Conn: sc}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("reader: %w", err)
	}
	for _, tr := range r.Tracks() {
		switch tr.Codec.(type) {
		case *rtmpcodecs.AV1:
			r.OnDataAV1(tr, func(time.Duration, [][]byte) {})
		case *rtmpcodecs.VP9:
			r.OnDataVP9(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.H265:
			r.OnDataH265(tr, func(time.Duration, time.Duration, [][]byte) {})
		case *rtmpcodecs.H264:
			r.OnDataH264(tr, func(time.Duration, time.Duration, [][]byte) {})
		case *rtmpcodecs.Opus:
			r.OnDataOpus(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.FLAC:
			r.OnDataFLAC(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.MPEG1Audio:
			r.OnDataMPEG1Audio(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.AC3:
			r.OnDataAC3(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.G711:
			r.OnDataG711(tr, func(time.Duration, []byte) {})
		case *rtmpcodecs.LPCM:
			r.OnDataLPCM(tr, func(time.Duration, []byte) {})
		}
	}
	for {
		if err := r.Read(); err != nil {
			return err
		}
	}
}

type probeResult struct {
	err     error
	elapsed time.Duration
	hung    bool // still running 5 s after the input ended
}

// probe feeds input (after a simple handshake) to serve, on a connection
// that reads it and then io.EOF, and waits for the session to end.
func probe(serve func(net.Conn) error, input []byte) probeResult {
	return probeRaw(serve, append(clientHandshake(), input...))
}

// probeRaw is probe without the handshake.
func probeRaw(serve func(net.Conn) error, input []byte) probeResult {
	conn := newInputConn(input)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		err := serve(conn)
		_ = conn.Close()
		done <- err
	}()
	select {
	case err := <-done:
		return probeResult{err: err, elapsed: time.Since(start)}
	case <-time.After(5 * time.Second):
		_ = conn.Close()
		return probeResult{hung: true, elapsed: time.Since(start)}
	}
}

// ourSession serves a connection with our server's session.
func ourSession() (func(net.Conn) error, *prometheus.Registry) {
	prom := prometheus.NewRegistry()
	srv := New(Config{HandshakeTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second},
		media.NewRegistry(media.RegistryConfig{}), ingest.NewMetrics(prom), nil)
	return func(c net.Conn) error {
		s := newSession(srv, c)
		err := s.serveSafe()
		s.finish()
		return err
	}, prom
}

// deepAMF is a connect command whose object nests n objects deep (4 bytes a level).
func deepAMF(n int) []byte {
	var b bytes.Buffer
	b.Write(amfEncode(nil, "connect", 1.0))
	for i := 0; i < n; i++ {
		b.Write([]byte{amfObject, 0, 1, 'a'})
	}
	b.WriteByte(amfNull)
	for i := 0; i < n; i++ {
		b.Write([]byte{0, 0, amfObjectEnd})
	}
	return b.Bytes()
}

func TestGortmplibEval(t *testing.T) {
	ours, _ := ourSession()
	modEx := append(append([]byte{exHeader(1, exModEx), 2, 1, 2, 3, exCodedFramesX}, "hvc1"...), 0, 0, 0, 1, 0x26)
	cases := []struct {
		name  string
		input []byte
	}{
		{"zero-length message", newMessages().add(2, msgUserControl, 0, 0, nil).raw(0x02, 0, 0, 0).bytes()},
		{"set chunk size 0", newMessages().add(2, msgSetChunkSize, 0, 0, []byte{0, 0, 0, 0}).
			command(0, "connect", 1.0, amfObj{{"app", "live"}, {"tcUrl", "rtmp://x/live"}}).bytes()},
		{"set chunk size 2^31-1", newMessages().add(2, msgSetChunkSize, 0, 0, []byte{0x7f, 0xff, 0xff, 0xff}).bytes()},
		{"publish without arguments", newMessages().
			command(0, "connect", 1.0, amfObj{{"app", "live"}, {"tcUrl", "rtmp://x/live"}}).
			command(0, "createStream", 2.0, nil).command(1, "publish", 3.0).bytes()},
		{"strict array of 2^32-1 elements", newMessages().
			add(3, msgCommandAMF0, 0, 0, append(amfEncode(nil, "connect", 1.0), amfStrictArray, 0xff, 0xff, 0xff, 0xff, amfNull)).bytes()},
		{"aggregate message", publishPrefix().
			add(6, msgAggregate, 1, 0, []byte{9, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x17, 2, 0, 0, 0, 0, 0, 0, 16}).bytes()},
		{"AMF3 command", newMessages().add(3, msgCommandAMF3, 0, 0, append([]byte{0}, amfEncode(nil, "connect", 1.0, amfObj{{"app", "live"}, {"tcUrl", "rtmp://x/live"}})...)).bytes()},
		{"enhanced RTMP ModEx frame", publishPrefix().
			add(6, msgVideo, 1, 0, append([]byte{exHeader(1, exSequenceStart), 'h', 'v', 'c', '1'}, hvcC(loadHEVC(t).vps, loadHEVC(t).sps, loadHEVC(t).pps, 4)...)).
			add(6, msgVideo, 1, 40, modEx).bytes()},
	}
	// Found by FuzzGortmplibServer: an hvcC whose VPS array holds one NAL unit
	// of length 0.
	src := loadHEVC(t)
	emptyVPS := hvcC(src.vps, src.sps, src.pps, 4)[:23]
	emptyVPS = append(emptyVPS, 0x80|hevcNALVPS, 0, 1, 0, 0)
	for _, n := range [][]byte{src.sps, src.pps} {
		emptyVPS = append(binary.BigEndian.AppendUint16(append(emptyVPS, 0x80|(n[0]>>1)&0x3f, 0, 1), uint16(len(n))), n...)
	}
	cases = append(cases, struct {
		name  string
		input []byte
	}{"hvcC with a 0-byte VPS", publishPrefix().
		add(6, msgVideo, 1, 0, append([]byte{exHeader(1, exSequenceStart), 'h', 'v', 'c', '1'}, emptyVPS...)).bytes()})
	for _, tc := range cases {
		g := probe(gortmplibSession, tc.input)
		o := probe(ours, tc.input)
		t.Logf("%-32s gortmplib: hung=%v after %v: %v", tc.name, g.hung, g.elapsed.Round(time.Millisecond), g.err)
		t.Logf("%-32s ours:      hung=%v after %v: %v", "", o.hung, o.elapsed.Round(time.Millisecond), o.err)
	}
}

// TestGortmplibEvalDeepAMF runs a 10 MiB connect command nested 2.6M levels
// deep against gortmplib in a child process (a stack overflow is fatal, not
// a panic a recover can catch) and against our session in this one.
func TestGortmplibEvalDeepAMF(t *testing.T) {
	body := deepAMF((10<<20 - 64) / 7)
	input := newMessages().add(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 65536))
	input.cw.chunkSize = 65536
	in := input.add(3, msgCommandAMF0, 0, 0, body).bytes()
	if os.Getenv("GORTMPLIB_EVAL_CHILD") == "deep" {
		r := probe(gortmplibSession, in)
		fmt.Printf("child: hung=%v after %v: %v\n", r.hung, r.elapsed.Round(time.Millisecond), r.err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGortmplibEvalDeepAMF$", "-test.v")
	cmd.Env = append(os.Environ(), "GORTMPLIB_EVAL_CHILD=deep")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if i < 6 || strings.Contains(l, "child:") || strings.Contains(l, "fatal error") || strings.Contains(l, "exceeds") {
			t.Logf("gortmplib child: %s", l)
		}
	}
	t.Logf("gortmplib child exit: %v (%d bytes of output)", err, len(out))
	ours, _ := ourSession()
	o := probe(ours, in)
	t.Logf("ours: hung=%v after %v: %v", o.hung, o.elapsed.Round(time.Millisecond), o.err)
}

// TestGortmplibEvalMemory opens n connections that each announce a chunk
// size and a 16 MiB message, send its header only, and wait: what does a
// server hold for them? gortmplib allows chunk sizes up to 10 MiB and
// allocates a chunk's body before it arrives; ours caps the chunk size at
// rtmp.max_chunk_size and grows a message as its bytes arrive.
func TestGortmplibEvalMemory(t *testing.T) {
	const n = 20
	for _, tc := range []struct {
		name      string
		chunkSize uint32
	}{{"chunk size 10 MiB", 10 << 20}, {"chunk size 64 KiB", 65536}} {
		input := newMessages().add(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, tc.chunkSize)).
			raw(0x03, 0, 0, 0, 0xff, 0xff, 0xff, msgCommandAMF0, 0, 0, 0, 0, 2).bytes()
		ours, _ := ourSession()
		for _, side := range []struct {
			name  string
			serve func(net.Conn) error
		}{{"gortmplib", gortmplibSession}, {"ours", ours}} {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var wg sync.WaitGroup
			var clients []net.Conn
			for i := 0; i < n; i++ {
				client, server := net.Pipe()
				clients = append(clients, client)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = side.serve(server)
					_ = server.Close()
				}()
				go func() { _, _ = io.Copy(io.Discard, client) }()
				_, _ = client.Write(append(clientHandshake(), input...))
			}
			time.Sleep(300 * time.Millisecond)
			runtime.GC()
			runtime.ReadMemStats(&after)
			t.Logf("%-18s %-9s %d connections x %d bytes sent: heap in use +%.1f MiB",
				tc.name, side.name, n, len(clientHandshake())+len(input),
				float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20))
			for _, c := range clients {
				_ = c.Close()
			}
			wg.Wait()
		}
	}
}

// FuzzGortmplibServer is FuzzSession's harness and seeds against gortmplib:
// the session must end once the input does, without a panic.
func FuzzGortmplibServer(f *testing.F) {
	for _, seed := range sessionSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		input := data
		if len(data) > 0 && data[0]&1 == 0 {
			input = append(clientHandshake(), data[1:]...)
		}
		r := probeRaw(gortmplibSession, input)
		if r.hung {
			t.Fatal("session still running 5s after its input ended")
		}
		if r.err != nil && strings.HasPrefix(r.err.Error(), "panic") {
			t.Fatal(r.err)
		}
	})
}

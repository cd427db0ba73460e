package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// clientHandshake is a valid C0+C1+C2 (simple handshake; the server does not
// check that C2 echoes S1).
func clientHandshake() []byte {
	return append([]byte{3}, make([]byte, 2*handshakeSize)...)
}

// messages encodes RTMP messages the way a client sends them.
type messages struct {
	buf bytes.Buffer
	bw  *bufio.Writer
	cw  chunkWriter
}

func newMessages() *messages {
	m := &messages{}
	m.bw = bufio.NewWriter(&m.buf)
	m.cw = chunkWriter{w: m.bw, chunkSize: defaultChunkSize}
	return m
}

func (m *messages) add(csid, typeID uint8, streamID, ts uint32, payload []byte) *messages {
	_ = m.cw.writeMessage(csid, typeID, streamID, ts, payload)
	return m
}

func (m *messages) command(streamID uint32, values ...any) *messages {
	return m.add(3, msgCommandAMF0, streamID, 0, amfEncode(nil, values...))
}

func (m *messages) raw(b ...byte) *messages {
	_ = m.bw.Flush()
	m.buf.Write(b)
	return m
}

func (m *messages) bytes() []byte {
	_ = m.bw.Flush()
	return m.buf.Bytes()
}

// publishPrefix is connect, createStream and publish of live/fuzz (with a
// tcUrl, without which gortmplib refuses the connect).
func publishPrefix() *messages {
	return newMessages().
		command(0, "connect", 1.0, amfObj{{"app", "live"}, {"tcUrl", "rtmp://127.0.0.1/live"}}).
		command(0, "createStream", 2.0, nil).
		command(1, "publish", 3.0, nil, "fuzz", "live")
}

// sessionSeeds are the inputs FuzzSession starts from: a first byte (even: a
// valid handshake is put in front), then what a client sends.
func sessionSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	add := func(b []byte) { seeds = append(seeds, b) }
	add([]byte{})
	add([]byte{1, 3, 0, 0})
	add(append([]byte{0}, publishPrefix().bytes()...))
	// What makes gomedia's chunk reader spin forever: a zero-length message,
	// a chunk size of 0.
	add(append([]byte{0}, newMessages().add(2, msgUserControl, 0, 0, nil).raw(0x02, 0, 0, 0).bytes()...))
	add(append([]byte{0}, newMessages().add(2, msgSetChunkSize, 0, 0, []byte{0, 0, 0, 0}).add(3, msgCommandAMF0, 0, 0, []byte{2, 0, 1, 'x'}).bytes()...))
	// Type-3 and type-1 headers on fresh chunk streams, extended timestamps,
	// 2- and 3-byte chunk stream ids.
	add(append([]byte{0}, newMessages().raw(0xc7, 0x47, 0, 0, 1, 0, 0, 1, 4, 0, 0, 0).
		raw(0x00, 10, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0, 0, 0, 1, 0xaf).
		raw(0x01, 1, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).bytes()...))
	// Commands with missing or mistyped arguments, deep nesting, huge counts.
	add(append([]byte{0}, publishPrefix().
		command(1, "publish", 4.0).command(0, 1.0, 2.0).
		add(3, msgCommandAMF0, 0, 0, append(bytes.Repeat([]byte{amfStrictArray, 0xff, 0xff, 0xff, 0xff}, 40), amfNull)).
		add(5, msgDataAMF0, 1, 0, amfEncode(nil, "@setDataFrame", "onMetaData", amfObj{{"videocodecid", 7.0}, {"audiocodecid", "mp4a"}})).
		bytes()...))
	// Media: malformed sequence headers and frames, other codecs, enhanced RTMP.
	add(append([]byte{0}, publishPrefix().
		add(6, msgVideo, 1, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64}).
		add(6, msgVideo, 1, 0, []byte{0x17, 1, 0xff, 0xff, 0xff, 0, 0, 0, 9, 0x65}).
		add(4, msgAudio, 1, 0, []byte{0xaf, 0, 0x11}).
		add(4, msgAudio, 1, 0, []byte{0xaf, 1, 1, 2, 3}).
		add(6, msgVideo, 1, 0, []byte{0x90, 'h', 'v', 'c', '1'}).
		add(4, msgAudio, 1, 0, []byte{0x2f, 1}).
		add(6, msgAggregate, 1, 0, []byte{9, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x17, 2, 0, 0, 0, 0, 0, 0, 16}).
		bytes()...))
	// A real publish: metadata, sequence headers and the first frames.
	m := publishPrefix()
	for i, tag := range videoOnlyTags(tb) {
		if i > 6 {
			break
		}
		payload := tag.data
		if tag.typeID == msgDataAMF0 {
			payload = append(amfEncode(nil, "@setDataFrame"), payload...)
		}
		m.add(6, tag.typeID, 1, tag.timestamp, payload)
	}
	add(append([]byte{0}, m.bytes()...))
	add(append([]byte{0}, newMessages().add(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 4096)).raw(m.bytes()...).bytes()...))
	// Enhanced RTMP: HEVC and AV1 sequence starts and frames as OBS sends
	// them, a ModEx-wrapped and a multitrack frame.
	if hevc, err := readHEVC("testdata/h265.ts"); err == nil {
		m := publishPrefix().
			add(6, msgVideo, 1, 0, append([]byte{exHeader(flvFrameKey, exSequenceStart), 'h', 'v', 'c', '1'}, hvcC(hevc.vps, hevc.sps, hevc.pps, 4)...))
		i := 0
		for _, au := range hevc.aus {
			data := lengthPrefixed(au.nalus, 4)
			if len(data) > 1500 { // small frames only: a short seed fuzzes faster
				continue
			}
			if i++; i > 4 {
				break
			}
			switch i {
			case 1:
				m.add(6, msgVideo, 1, uint32(i*40), append(append([]byte{exHeader(2, exModEx), 2, 1, 2, 3, exCodedFramesX}, "hvc1"...), data...))
			case 2:
				m.add(6, msgVideo, 1, uint32(i*40), append(append([]byte{exHeader(2, exMultitrack), mtOneTrack<<4 | exCodedFramesX}, "hvc1\x00"...), data...))
			default:
				m.add(6, msgVideo, 1, uint32(i*40), append(append([]byte{exHeader(1, exCodedFrames)}, "hvc1\x00\x00\x28"...), data...))
			}
		}
		add(append([]byte{0}, m.bytes()...))
	}
	if av1src, err := readAV1("testdata/av1.obu"); err == nil {
		m := publishPrefix().
			add(6, msgVideo, 1, 0, append([]byte{exHeader(flvFrameKey, exSequenceStart), 'a', 'v', '0', '1'}, av1C(av1src.seqHdr)...))
		i := 0
		for _, tu := range av1src.tus {
			data, _ := av1.Bitstream(tu).Marshal()
			if len(data) > 1500 {
				continue
			}
			if i++; i > 4 {
				break
			}
			m.add(6, msgVideo, 1, uint32(i*40), append(append([]byte{exHeader(2, exCodedFramesX)}, "av01\x12\x00"...), data...))
		}
		add(append([]byte{0}, m.bytes()...))
	}
	add(append([]byte{0}, publishPrefix().add(6, msgVideo, 1, 0, append([]byte{exHeader(1, exSequenceStart)}, "vp09"...)).bytes()...))
	// Issue 12: 64 chunk streams after Set Chunk Size 1, each opening a
	// message announcing 256 KiB with one byte (832 bytes); one chunk
	// stream more than allowed; a connect nested past amfMaxDepth.
	setChunkSize, opens := chunkAttack()
	add(append(append([]byte{0}, setChunkSize...), opens...))
	add(append(append(append([]byte{0}, setChunkSize...), opens...), 0x01, 0xff, 0xff, 0, 0, 0, 0, 0, 1, msgAck, 0, 0, 0, 0, 'x'))
	add(append([]byte{0}, newMessages().add(3, msgCommandAMF0, 0, 0, append(amfEncode(nil, "connect", 1.0), deepAMF0(amfMaxDepth+2)...)).bytes()...))
	return seeds
}

// FuzzSession feeds arbitrary bytes to the server side of a connection (after
// a valid handshake when the first byte is even) and checks that the session
// ends by itself once the input is exhausted, without a panic (a recovered
// one counts as an internal error, which fails the test too).
func FuzzSession(f *testing.F) {
	for _, seed := range sessionSeeds(f) {
		f.Add(seed)
	}

	prom := prometheus.NewRegistry()
	srv := New(Config{HandshakeTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second},
		media.NewRegistry(media.RegistryConfig{}), ingest.NewMetrics(prom), nil)
	f.Cleanup(func() { srv.Close() })
	internal := func() float64 {
		mfs, _ := prom.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "headwater_ingest_errors_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == string(ingest.ReasonInternal) {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		input := data
		if len(data) > 0 && data[0]&1 == 0 {
			input = append(clientHandshake(), data[1:]...)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.serveConn(newInputConn(input))
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("session still running 5s after its input ended")
		}
		if n := internal(); n != 0 {
			t.Fatalf("%v internal errors (recovered panics)", n)
		}
	})
}

// inputConn is a connection that reads a fixed input, then io.EOF, and
// accepts and discards every write. A session served on it sees its whole
// input whatever it answers; over net.Pipe, the first answer (S0+S1+S2)
// fails once the client has written everything and closed, so the session
// ends in the handshake before reading what follows it.
type inputConn struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
}

func newInputConn(input []byte) *inputConn { return &inputConn{r: bytes.NewReader(input)} }

func (c *inputConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *inputConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *inputConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *inputConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1935} }
func (c *inputConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *inputConn) SetDeadline(time.Time) error      { return nil }
func (c *inputConn) SetReadDeadline(time.Time) error  { return nil }
func (c *inputConn) SetWriteDeadline(time.Time) error { return nil }

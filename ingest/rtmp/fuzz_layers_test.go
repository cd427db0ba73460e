package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
)

// deepAMF0 is n nested AMF0 objects (4 bytes a level), closed.
func deepAMF0(n int) []byte {
	var b []byte
	for range n {
		b = append(b, amfObject, 0, 1, 'a')
	}
	b = append(b, amfNull)
	for range n {
		b = append(b, 0, 0, amfObjectEnd)
	}
	return b
}

// FuzzAMF decodes arbitrary AMF0 (and AMF3-wrapped AMF0: a 0 format byte
// first) values: no panic, no unbounded recursion (nesting is capped at
// amfMaxDepth), and what decodes re-encodes.
func FuzzAMF(f *testing.F) {
	f.Add(amfEncode(nil, "connect", 1.0, amfObj{{"app", "live"}, {"tcUrl", "rtmp://x/live"}}))
	f.Add(deepAMF0(amfMaxDepth))
	f.Add(deepAMF0(amfMaxDepth + 1))
	f.Add(deepAMF0(5000))
	f.Add(append([]byte{0}, deepAMF0(40)...))
	f.Add(bytes.Repeat([]byte{amfStrictArray, 0xff, 0xff, 0xff, 0xff}, 200))
	f.Add(bytes.Repeat([]byte{amfECMAArray, 0, 0, 0, 1, 0, 1, 'k'}, 200))
	f.Add([]byte{amfTypedObject, 0, 1, 'T', 0, 1, 'k', amfAVMPlus, 0x0a, 0x0b})
	f.Add([]byte{amfLongString, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == 0 {
			b = b[1:]
		}
		vals, err := amfDecodeAll(b)
		if err != nil {
			return
		}
		for _, v := range vals {
			if o, ok := v.(amfObj); ok {
				_ = amfEncode(nil, o)
			}
		}
	})
}

// fuzzSession is a session that published (its publish was granted), on a
// connection that reads nothing: media messages go to its handlers.
func fuzzSession(srv *Server) *session {
	s := newSession(srv, newInputConn(nil))
	s.connected, s.publishing = true, true
	s.app, s.name = "live", "live/fuzz"
	s.publishStartedAt = time.Now()
	return s
}

// FuzzFLVTag feeds FLV tag bodies (audio, video, data) to a publishing
// session: sequence headers with lengths that lie, frames before or
// without them, enhanced RTMP packets. No panic (a recovered one fails).
func FuzzFLVTag(f *testing.F) {
	f.Add(byte(msgVideo), []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0xff, 0xff, 0x67}, []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65})
	f.Add(byte(msgVideo), []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64, 0x01, 0, 0xff, 0xff}, []byte{0x17, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x65})
	f.Add(byte(msgAudio), []byte{0xaf, 0, 0x12, 0x10}, []byte{0xaf, 1, 0x21, 0x00})
	f.Add(byte(msgAudio), []byte{0xaf, 0, 0xff}, []byte{0xaf, 1})
	f.Add(byte(msgVideo), append([]byte{exHeader(flvFrameKey, exSequenceStart)}, "hvc1\x01\x00\x00"...), []byte{exHeader(1, exCodedFrames), 'h', 'v', 'c', '1', 0, 0, 0, 0, 0, 0, 0xff})
	f.Add(byte(msgVideo), append([]byte{exHeader(flvFrameKey, exSequenceStart)}, "av01\x81\x00\x0c"...), []byte{exHeader(1, exCodedFramesX), 'a', 'v', '0', '1', 0x12, 0})
	f.Add(byte(msgDataAMF0), amfEncode(nil, "@setDataFrame", "onMetaData", amfObj{{"videocodecid", 7.0}}), []byte{2, 0xff, 0xff})
	f.Add(byte(msgAggregate), []byte{9, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x17, 2, 0, 0, 0, 0, 0, 0, 16}, []byte{9, 0xff, 0xff, 0xff})
	srv := New(Config{}, media.NewRegistry(media.RegistryConfig{}), nil, nil)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, typ byte, header, frame []byte) {
		s := fuzzSession(srv)
		defer s.finish()
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			for i, p := range [][]byte{header, frame, frame} {
				msg := &message{typeID: typ, streamID: 1, timestamp: uint32(i * 40), payload: p}
				if err := s.handleMessage(msg); err != nil {
					return err
				}
			}
			return nil
		}()
		_ = err
	})
}

// FuzzChunkStreams feeds arbitrary chunks, with small limits, to a chunk
// reader: no panic, no loop, and its accounting holds: the bytes of partial
// messages never exceed the limit, the buffers hold at most twice them
// (plus the chunk that grew them), and no more chunk streams than allowed.
func FuzzChunkStreams(f *testing.F) {
	setChunkSize, opens := chunkAttack()
	f.Add(uint16(1), append(setChunkSize, opens...))
	f.Add(uint16(1), opens)
	var many []byte
	for i := range 300 {
		many = append(many, 1, byte(i), byte(i>>8), 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0, 'x')
	}
	f.Add(uint16(128), many)
	f.Add(uint16(4), []byte{0x04, 0, 0, 0, 0, 0, 6, 8, 1, 0, 0, 0, 'a', 'b', 'c', 'd', 0xc4, 'e', 'f'})
	f.Add(uint16(2), []byte{0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 9, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'z', 0xc3, 0, 0, 0, 2, 'y'})
	const maxStreams, maxUnassembled = 8, 4096
	f.Fuzz(func(t *testing.T, chunkSize uint16, in []byte) {
		cr := newChunkReader(bufio.NewReader(bytes.NewReader(in)), maxStreams, maxUnassembled)
		cr.chunkSize = uint32(max(chunkSize, 1))
		for i := 0; ; i++ {
			if i > len(in) {
				t.Fatalf("%d messages from %d bytes", i, len(in))
			}
			msg, err := cr.readMessage()
			if cr.buffered > maxUnassembled || cr.reserved > 2*cr.buffered+2*int(cr.chunkSize) || len(cr.streams) > maxStreams {
				t.Fatalf("buffered %d, reserved %d, %d chunk streams", cr.buffered, cr.reserved, len(cr.streams))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && err.Error() == "" {
					t.Fatal("empty error")
				}
				return
			}
			if len(msg.payload) > maxUnassembled+int(cr.chunkSize) {
				t.Fatalf("message of %d bytes", len(msg.payload))
			}
			if msg.typeID == msgSetChunkSize && len(msg.payload) >= 4 {
				if n := binary.BigEndian.Uint32(msg.payload) & 0x7fffffff; n >= 1 && n <= 1<<16 {
					cr.chunkSize = n
				}
			}
		}
	})
}

package rtmp

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/headwater-live/headwater/ingest"
)

// RTMP message type ids.
const (
	msgSetChunkSize     = 1
	msgAbort            = 2
	msgAck              = 3
	msgUserControl      = 4
	msgWindowAckSize    = 5
	msgSetPeerBandwidth = 6
	msgAudio            = 8
	msgVideo            = 9
	msgDataAMF3         = 15
	msgSharedObjAMF3    = 16
	msgCommandAMF3      = 17
	msgDataAMF0         = 18
	msgSharedObjAMF0    = 19
	msgCommandAMF0      = 20
	msgAggregate        = 22
)

// User control events.
const (
	ucStreamBegin  = 0
	ucPingRequest  = 6
	ucPingResponse = 7
)

const (
	// defaultChunkSize is the chunk size of both directions until a Set Chunk Size.
	defaultChunkSize = 128
	// preallocBudget bounds, once the publish is authorised, the buffer
	// capacity a connection may hold ahead of the bytes received: a message
	// then gets its exact buffer at once when it fits (nearly every frame up
	// to 1080p), so that the media path allocates once per message. Before
	// the publish is authorised the budget is 0: buffers grow with the
	// bytes received, whatever length a message announces.
	preallocBudget = 256 << 10
)

// message is one reassembled RTMP message. Its payload is a buffer allocated
// for this message alone and never reused by the reader: it may be retained
// (frame payloads are sub-slices of it).
type message struct {
	typeID    uint8
	streamID  uint32
	timestamp uint32 // milliseconds, 32-bit wrapping
	payload   []byte
}

// chunkStream is the header state of one chunk stream id.
type chunkStream struct {
	timestamp uint32 // of the current (or last) message
	tsField   uint32 // last timestamp field read: the delta a type-3 chunk starting a new message adds
	extended  bool   // the last header carried an extended timestamp
	length    uint32
	typeID    uint8
	streamID  uint32
	buf       []byte // message being reassembled; nil between messages
}

// chunkReader reassembles RTMP messages from chunks (RTMP spec 5.3). It is
// written for untrusted input: every length is bounded and each message
// consumes at least one byte of input, so malformed streams end in an error,
// never a panic or a loop. What it holds is bounded by the bytes received:
// a message's buffer grows as its chunks arrive (by doubling, never past the
// announced length), plus at most prealloc bytes ahead of them for the whole
// connection; maxStreams bounds the chunk stream ids and maxUnassembled the
// bytes received of messages not yet complete.
type chunkReader struct {
	r              *bufio.Reader
	chunkSize      uint32
	maxStreams     int // chunk stream ids a connection may use
	maxUnassembled int // bytes of partial messages a connection may hold
	prealloc       int // buffer capacity allowed ahead of the bytes received
	streams        map[uint32]*chunkStream
	buffered       int // bytes received of the messages being reassembled
	reserved       int // capacity of their buffers (>= buffered)
	hdr            [11]byte
}

func newChunkReader(r *bufio.Reader, maxStreams, maxUnassembled int) *chunkReader {
	return &chunkReader{r: r, chunkSize: defaultChunkSize, maxStreams: maxStreams, maxUnassembled: maxUnassembled,
		streams: make(map[uint32]*chunkStream)}
}

// errLimit is the error of a peer exceeding a limit of the chunk reader.
func errLimit(format string, args ...any) error {
	return ingest.Fail(ingest.ReasonResourceLimit, format, args...)
}

// drop forgets the buffer of a chunk stream's partial message.
func (cr *chunkReader) drop(cs *chunkStream) {
	cr.buffered -= len(cs.buf)
	cr.reserved -= cap(cs.buf)
	cs.buf = nil
}

// readMessage reads chunks until one message is complete.
func (cr *chunkReader) readMessage() (*message, error) {
	for {
		msg, err := cr.readChunk()
		if err != nil || msg != nil {
			return msg, err
		}
	}
}

// abort discards the partial message of a chunk stream (Abort Message).
func (cr *chunkReader) abort(csid uint32) {
	if cs, ok := cr.streams[csid]; ok && cs.buf != nil {
		cr.drop(cs)
	}
}

func (cr *chunkReader) readChunk() (*message, error) {
	b0, err := cr.r.ReadByte()
	if err != nil {
		return nil, err
	}
	format := b0 >> 6
	csid := uint32(b0 & 0x3f)
	switch csid {
	case 0:
		b, err := cr.r.ReadByte()
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		csid = 64 + uint32(b)
	case 1:
		if _, err := io.ReadFull(cr.r, cr.hdr[:2]); err != nil {
			return nil, unexpectedEOF(err)
		}
		csid = 64 + uint32(cr.hdr[0]) + uint32(cr.hdr[1])*256
	}

	cs, ok := cr.streams[csid]
	if !ok {
		if len(cr.streams) >= cr.maxStreams {
			return nil, errLimit("more than %d chunk streams (rtmp.max_chunk_streams)", cr.maxStreams)
		}
		// A new chunk stream starts from an all-zero previous header, which
		// is what ffmpeg assumes when it opens one with a type-1 header.
		cs = &chunkStream{}
		cr.streams[csid] = cs
	}
	continuing := cs.buf != nil

	if format < 3 {
		if continuing {
			return nil, fmt.Errorf("type %d chunk header on chunk stream %d before its message was complete", format, csid)
		}
		n := [3]int{11, 7, 3}[format]
		h := cr.hdr[:n]
		if _, err := io.ReadFull(cr.r, h); err != nil {
			return nil, unexpectedEOF(err)
		}
		ts := uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		if format <= 1 {
			cs.length = uint32(h[3])<<16 | uint32(h[4])<<8 | uint32(h[5])
			cs.typeID = h[6]
		}
		if format == 0 {
			cs.streamID = binary.LittleEndian.Uint32(h[7:11])
		}
		cs.extended = ts == 0xffffff
		if cs.extended {
			if ts, err = cr.readExtended(); err != nil {
				return nil, err
			}
		}
		cs.tsField = ts
		if format == 0 {
			cs.timestamp = ts
		} else {
			cs.timestamp += ts
		}
	} else {
		if cs.extended {
			// Type-3 chunks repeat the extended timestamp of their stream's
			// last header (spec 5.3.1.3); its value is that header's.
			if _, err := cr.readExtended(); err != nil {
				return nil, err
			}
		}
		if !continuing {
			// A type-3 chunk starting a new message reuses the last header,
			// its timestamp field being a delta (spec 5.3.1.2.4).
			cs.timestamp += cs.tsField
		}
	}

	n := min(int(cs.length)-len(cs.buf), int(cr.chunkSize))
	if cr.buffered+n > cr.maxUnassembled {
		return nil, errLimit("partial messages exceed %d bytes (rtmp.max_unassembled_bytes)", cr.maxUnassembled)
	}
	if !continuing {
		// The chunk's bytes, and what the budget allows ahead of them.
		size := n + max(0, min(int(cs.length)-n, cr.prealloc-(cr.reserved-cr.buffered)))
		cs.buf = make([]byte, 0, size)
		cr.reserved += size
	}
	if n > 0 {
		if len(cs.buf)+n > cap(cs.buf) {
			// Grow once per doubling, never past the announced length.
			grown := make([]byte, len(cs.buf), min(int(cs.length), max(2*cap(cs.buf), len(cs.buf)+n)))
			copy(grown, cs.buf)
			cr.reserved += cap(grown) - cap(cs.buf)
			cs.buf = grown
		}
		start := len(cs.buf)
		cs.buf = cs.buf[:start+n]
		cr.buffered += n
		if _, err := io.ReadFull(cr.r, cs.buf[start:]); err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	if len(cs.buf) < int(cs.length) {
		return nil, nil
	}
	msg := &message{typeID: cs.typeID, streamID: cs.streamID, timestamp: cs.timestamp, payload: cs.buf}
	cr.drop(cs)
	return msg, nil
}

func (cr *chunkReader) readExtended() (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(cr.r, b[:]); err != nil {
		return 0, unexpectedEOF(err)
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// unexpectedEOF turns an EOF in the middle of a chunk into io.ErrUnexpectedEOF
// so that it is told apart from a clean close between chunks.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// chunkWriter writes messages as chunks: a type-0 header, then type-3
// continuation chunks. It buffers; the caller flushes.
type chunkWriter struct {
	w         *bufio.Writer
	chunkSize int
}

func (cw *chunkWriter) writeMessage(csid uint8, typeID uint8, streamID, timestamp uint32, payload []byte) error {
	var h [12]byte
	h[0] = csid & 0x3f // csid < 64: one-byte basic header, format 0
	if timestamp >= 0xffffff {
		timestamp = 0xffffff - 1 // the server only sends control messages at time 0
	}
	h[1], h[2], h[3] = byte(timestamp>>16), byte(timestamp>>8), byte(timestamp)
	l := len(payload)
	h[4], h[5], h[6] = byte(l>>16), byte(l>>8), byte(l)
	h[7] = typeID
	binary.LittleEndian.PutUint32(h[8:], streamID)
	if _, err := cw.w.Write(h[:]); err != nil {
		return err
	}
	for first := true; first || len(payload) > 0; first = false {
		if !first {
			if err := cw.w.WriteByte(0xc0 | csid&0x3f); err != nil {
				return err
			}
		}
		n := min(len(payload), cw.chunkSize)
		if _, err := cw.w.Write(payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return nil
}

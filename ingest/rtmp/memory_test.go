package rtmp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// chunkAttack is the input of issue 12's RTMP memory attack, after the
// handshake: Set Chunk Size 1, then 64 chunk streams that each start a
// message announcing 256 KiB and send its first byte. 832 bytes open the
// 64 messages (13 bytes each).
func chunkAttack() (setChunkSize, opens []byte) {
	setChunkSize = newMessages().add(2, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 1)).bytes()
	for i := range DefaultMaxChunkStreams {
		csid := byte(2 + i) // 2..65: 64 and 65 need a 2-byte basic header
		if csid < 64 {
			opens = append(opens, csid, 0, 0, 0, 0x04, 0, 0, msgVideo, 1, 0, 0, 0, 'x')
		} else {
			opens = append(opens, 0, csid-64, 0, 0, 0, 0x04, 0, 0, msgVideo, 1, 0, 0, 0, 'x')
		}
	}
	return setChunkSize, opens
}

// allocated is what a chunk reader holds for its messages being reassembled:
// the capacity of their buffers.
func (cr *chunkReader) allocated() int {
	n := 0
	for _, cs := range cr.streams {
		n += cap(cs.buf)
	}
	return n
}

// TestChunkAttackMemory: 64 messages announcing 256 KiB each, one byte of
// each received: what the reader allocates grows with the bytes received,
// not with the lengths announced.
func TestChunkAttackMemory(t *testing.T) {
	_, opens := chunkAttack()
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(opens)), DefaultMaxChunkStreams, DefaultMaxUnassembledBytes)
	cr.chunkSize = 1
	for {
		msg, err := cr.readMessage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d chunk streams: %v", len(cr.streams), err)
		}
		t.Fatalf("message of %d bytes from a partial input", len(msg.payload))
	}
	if len(cr.streams) != DefaultMaxChunkStreams {
		t.Fatalf("%d chunk streams open, want %d", len(cr.streams), DefaultMaxChunkStreams)
	}
	// 64 bytes received: a few bytes of buffer each, not 256 KiB.
	if got, limit := cr.allocated(), 64*64; got > limit {
		t.Errorf("%d bytes of input made the reader allocate %d bytes of message buffers (limit %d)", len(opens), got, limit)
	}
	t.Logf("%d bytes of input: %d bytes allocated", len(opens), cr.allocated())
}

// reassemblyInput is one second of a 6 Mb/s publish as chunks of 4096
// bytes: 30 video frames of 25 KB (a 150 KB key frame first) interleaved
// with 47 AAC frames of 370 bytes.
func reassemblyInput() []byte {
	m := newMessages()
	m.cw.chunkSize = 4096
	v := bytes.Repeat([]byte{0x27, 1, 0, 0, 0}, 5000)
	key := bytes.Repeat([]byte{0x17, 1, 0, 0, 0}, 30000)
	a := bytes.Repeat([]byte{0xaf, 1}, 185)
	for i := range 47 {
		if i < 30 {
			p := v
			if i == 0 {
				p = key
			}
			m.add(6, msgVideo, 1, uint32(i*33), p)
		}
		m.add(4, msgAudio, 1, uint32(i*21), a)
	}
	return m.bytes()
}

// BenchmarkChunkReassembly measures the media path of the chunk reader:
// one op is reassembling one second of a 6 Mb/s publish, once the publish
// is authorised (buffers allocated at once within preallocBudget) and, for
// comparison, as before it (buffers growing with the bytes received).
func BenchmarkChunkReassembly(b *testing.B) {
	for _, bc := range []struct {
		name     string
		prealloc int
	}{{"publishing", preallocBudget}, {"unauthorised", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			in := reassemblyInput()
			r := bytes.NewReader(in)
			br := bufio.NewReaderSize(r, 64<<10)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(in)
				br.Reset(r)
				cr := newChunkReader(br, DefaultMaxChunkStreams, DefaultMaxUnassembledBytes)
				cr.chunkSize = 4096
				cr.prealloc = bc.prealloc
				for {
					if _, err := cr.readMessage(); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
	}
}

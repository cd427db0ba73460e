package rtmp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/headwater-live/headwater/ingest"
)

func readAll(t *testing.T, chunkSize uint32, in []byte) ([]*message, error) {
	t.Helper()
	return readAllLimited(t, chunkSize, DefaultMaxUnassembledBytes, in)
}

// readAllLimited is readAll with a limit on the bytes of partial messages.
func readAllLimited(t *testing.T, chunkSize uint32, maxUnassembled int, in []byte) ([]*message, error) {
	t.Helper()
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(in)), DefaultMaxChunkStreams, maxUnassembled)
	cr.chunkSize = chunkSize
	var out []*message
	for {
		msg, err := cr.readMessage()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, msg)
	}
}

func TestChunkReaderHeaders(t *testing.T) {
	in := []byte{
		// csid 4, fmt 0: ts 1000, len 3, type 8, stream 1
		0x04, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x03, 0x08, 0x01, 0x00, 0x00, 0x00, 'a', 'b', 'c',
		// fmt 1: delta 20, len 2, type 9
		0x44, 0x00, 0x00, 0x14, 0x00, 0x00, 0x02, 0x09, 'd', 'e',
		// fmt 2: delta 30
		0x84, 0x00, 0x00, 0x1e, 'f', 'g',
		// fmt 3 starting a new message: delta 30 again
		0xc4, 'h', 'i',
		// 2-byte csid (64+10), fmt 0, extended timestamp 0x01000000, 5 bytes over two chunks of 4
		0x00, 10, 0xff, 0xff, 0xff, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 'j', 'k', 'l', 'm',
		// continuation repeats the extended timestamp
		0xc0, 10, 0x01, 0x00, 0x00, 0x00, 'n',
		// 3-byte csid (64+1+256*1 = 321), fmt 1 on a fresh stream (ffmpeg does that), empty message
		0x41, 0x01, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x04,
	}
	msgs, err := readAll(t, 4, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []message{
		{typeID: 8, streamID: 1, timestamp: 1000, payload: []byte("abc")},
		{typeID: 9, streamID: 1, timestamp: 1020, payload: []byte("de")},
		{typeID: 9, streamID: 1, timestamp: 1050, payload: []byte("fg")},
		{typeID: 9, streamID: 1, timestamp: 1080, payload: []byte("hi")},
		{typeID: 18, streamID: 0, timestamp: 0x01000000, payload: []byte("jklmn")},
		{typeID: 4, streamID: 0, timestamp: 5, payload: []byte{}},
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if !reflect.DeepEqual(*m, want[i]) {
			t.Errorf("message %d = %+v, want %+v", i, *m, want[i])
		}
	}
}

func TestChunkReaderInterleavedAndAbort(t *testing.T) {
	in := []byte{
		0x04, 0, 0, 0, 0, 0, 6, 8, 1, 0, 0, 0, 'a', 'b', 'c', 'd', // csid 4: 4 of 6 bytes
		0x06, 0, 0, 0, 0, 0, 2, 9, 1, 0, 0, 0, 'x', 'y', // csid 6: whole message
		0xc4, 'e', 'f', // csid 4 continues
		0x04, 0, 0, 0, 0, 0, 6, 8, 1, 0, 0, 0, 'a', 'b', 'c', 'd', // csid 4: partial again
	}
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(in)), DefaultMaxChunkStreams, DefaultMaxUnassembledBytes)
	cr.chunkSize = 4
	var got []string
	for {
		msg, err := cr.readMessage()
		if err != nil {
			break
		}
		got = append(got, string(msg.payload))
	}
	if !reflect.DeepEqual(got, []string{"xy", "abcdef"}) {
		t.Errorf("got %q", got)
	}
	if cr.buffered != 4 || cr.reserved != 4 {
		t.Errorf("buffered %d, reserved %d; want 4, 4", cr.buffered, cr.reserved)
	}
	cr.abort(4)
	if cr.buffered != 0 || cr.reserved != 0 || cr.streams[4].buf != nil {
		t.Error("abort kept the partial message")
	}
}

func TestChunkReaderLimits(t *testing.T) {
	// A new header in the middle of a message.
	in := []byte{0x04, 0, 0, 0, 0, 0, 6, 8, 1, 0, 0, 0, 'a', 0x44, 0, 0, 0, 0, 0, 1, 8, 'b'}
	if _, err := readAll(t, 1, in); err == nil || !strings.Contains(err.Error(), "before its message was complete") {
		t.Errorf("err = %v", err)
	}
	// Too many chunk streams.
	var many []byte
	for i := 0; i < DefaultMaxChunkStreams+1; i++ {
		many = append(many, 0x00, byte(i), 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 'z')
	}
	if _, err := readAll(t, 128, many); !errors.As(err, new(*ingest.SessionError)) || !strings.Contains(err.Error(), "chunk streams") {
		t.Errorf("err = %v", err)
	}
	// Announcing 3 messages of 16 MiB costs nothing; receiving more bytes
	// of partial messages than the limit ends the session.
	var big []byte
	for i := byte(3); i < 6; i++ {
		big = append(big, i, 0, 0, 0, 0xff, 0xff, 0xff, 9, 0, 0, 0, 0, 'z', 'z')
	}
	if _, err := readAllLimited(t, 2, 6, big); err != nil {
		t.Errorf("6 bytes of 3 partial messages: %v", err)
	}
	big = append(big, 0xc3, 'z')
	_, err := readAllLimited(t, 2, 6, big)
	var se *ingest.SessionError
	if !errors.As(err, &se) || se.Reason != ingest.ReasonResourceLimit || !strings.Contains(err.Error(), "max_unassembled_bytes") {
		t.Errorf("7 bytes of 3 partial messages, limit 6: %v", err)
	}
	// Truncated header: unexpected EOF, not EOF.
	if _, err := readAll(t, 128, []byte{0x04, 0, 0}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v", err)
	}
}

func TestChunkWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := chunkWriter{w: bw, chunkSize: 5}
	payload := []byte("hello, chunked world")
	if err := cw.writeMessage(3, msgCommandAMF0, 1, 42, payload); err != nil {
		t.Fatal(err)
	}
	if err := cw.writeMessage(3, msgCommandAMF0, 1, 43, nil); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	msgs, err := readAll(t, 5, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || string(msgs[0].payload) != string(payload) || msgs[0].timestamp != 42 ||
		msgs[0].streamID != 1 || len(msgs[1].payload) != 0 || msgs[1].timestamp != 43 {
		t.Errorf("got %+v", msgs)
	}
}

func TestAMFRoundTrip(t *testing.T) {
	in := []any{"connect", 1.0, amfObj{{"app", "live"}, {"fpad", false}, {"nested", amfObj{{"x", nil}}}}, nil, true}
	b := amfEncode(nil, in...)
	out, err := amfDecodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("got %#v", out)
	}
	// ECMA array (what onMetaData uses), strict array, long string, date, undefined.
	ecma := []byte{amfECMAArray, 0, 0, 0, 9, 0, 1, 'w', amfNumber, 0x40, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, amfObjectEnd}
	strict := []byte{amfStrictArray, 0, 0, 0, 2, amfBoolean, 1, amfUndefined}
	long := []byte{amfLongString, 0, 0, 0, 2, 'h', 'i'}
	date := []byte{amfDate, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	out, err = amfDecodeAll(append(append(append(ecma, strict...), long...), date...))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{amfObj{{"w", 640.0}}, []any{true, nil}, "hi", 0.0}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %#v", out)
	}
	for _, bad := range [][]byte{
		{amfString, 0, 5, 'a'},
		{amfNumber, 1},
		{amfObject, 0, 1, 'k'},
		{amfStrictArray, 0xff, 0xff, 0xff, 0xff, amfNull},
		{amfAVMPlus, 1},
		bytes.Repeat([]byte{amfObject, 0, 1, 'k'}, amfMaxDepth+2),
	} {
		if _, err := amfDecodeAll(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

func TestParseAVCConfig(t *testing.T) {
	rec := []byte{1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 0x64, 0x1f, 1, 0, 2, 0x68, 0xee}
	c, err := parseAVCConfig(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.sps, []byte{0x67, 0x64, 0x1f}) || !bytes.Equal(c.pps, []byte{0x68, 0xee}) || c.nalLengthSize != 4 {
		t.Errorf("got %+v", c)
	}
	for i := 0; i < len(rec); i++ {
		if _, err := parseAVCConfig(rec[:i]); err == nil {
			t.Errorf("truncated at %d: parsed", i)
		}
	}
	// 2-byte NAL unit lengths convert to 4-byte ones.
	out, err := toAVCC4([]byte{0, 2, 0x65, 1, 0, 1, 0x41}, 2)
	if err != nil || !bytes.Equal(out, []byte{0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41}) {
		t.Errorf("toAVCC4 = %x, %v", out, err)
	}
	if err := checkAVCC([]byte{0, 0, 0, 2, 0x65}); err == nil {
		t.Error("short NAL unit accepted")
	}
}

package rtmp

import (
	"bytes"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
)

func TestParseExVideo(t *testing.T) {
	body := []byte{0, 0, 0, 1, 0x26}
	for _, tc := range []struct {
		name   string
		msg    []byte
		want   exVideo
		hasErr bool
	}{
		{"sequence start", append([]byte{0x90, 'h', 'v', 'c', '1'}, body...),
			exVideo{frameType: 1, packetType: exSequenceStart, found: true, fourCC: "hvc1", body: body}, false},
		{"coded frames, negative cts", append([]byte{0xa1, 'h', 'v', 'c', '1', 0xff, 0xff, 0xfe}, body...),
			exVideo{frameType: 2, packetType: exCodedFrames, found: true, fourCC: "hvc1", cts: -2, body: body}, false},
		{"av01 coded frames: no cts", append([]byte{0x91, 'a', 'v', '0', '1'}, body...),
			exVideo{frameType: 1, packetType: exCodedFrames, found: true, fourCC: "av01", body: body}, false},
		{"coded frames X", append([]byte{0xa3, 'h', 'v', 'c', '1'}, body...),
			exVideo{frameType: 2, packetType: exCodedFramesX, found: true, fourCC: "hvc1", body: body}, false},
		{"modex 1-byte size", append([]byte{0x97, 2, 1, 2, 3, 0x03, 'h', 'v', 'c', '1'}, body...),
			exVideo{frameType: 1, packetType: exCodedFramesX, found: true, fourCC: "hvc1", body: body}, false},
		{"modex 16-bit size, twice", append(append(append([]byte{0x97, 255, 0x01, 0x00}, make([]byte, 257)...), 0x07, 0, 9, 0x03, 'h', 'v', 'c', '1'), body...),
			exVideo{frameType: 1, packetType: exCodedFramesX, found: true, fourCC: "hvc1", body: body}, false},
		{"command frame", []byte{0xd1, 0}, exVideo{frameType: 5, command: true}, false},
		{"metadata with FrameType 5", []byte{0xd4, 'h', 'v', 'c', '1', 2},
			exVideo{frameType: 5, packetType: exMetadata, found: true, fourCC: "hvc1", body: []byte{2}}, false},
		{"one track 0", append([]byte{0x96, 0x03, 'h', 'v', 'c', '1', 0}, body...),
			exVideo{frameType: 1, packetType: exCodedFramesX, found: true, fourCC: "hvc1", body: body}, false},
		{"one track 2", append([]byte{0x96, 0x03, 'h', 'v', 'c', '1', 2}, body...),
			exVideo{frameType: 1, packetType: exCodedFramesX, others: 1}, false},
		{"many tracks", append(append([]byte{0x96, 0x13, 'h', 'v', 'c', '1', 1, 0, 0, 1, 9, 0, 0, 0, 5}, body...), 3, 0, 0, 0),
			exVideo{frameType: 1, packetType: exCodedFramesX, found: true, fourCC: "hvc1", body: body, others: 2}, false},
		{"many tracks many codecs", append([]byte{0x96, 0x21, 'v', 'p', '0', '9', 1, 0, 0, 0, 'h', 'v', 'c', '1', 0, 0, 0, 8, 0, 0, 7}, body...),
			exVideo{frameType: 1, packetType: exCodedFrames, found: true, fourCC: "hvc1", cts: 7, body: body, others: 1}, false},
		{"empty", nil, exVideo{}, true},
		{"short fourcc", []byte{0x90, 'h', 'v'}, exVideo{}, true},
		{"short cts", []byte{0x91, 'h', 'v', 'c', '1', 0}, exVideo{}, true},
		{"modex cut", []byte{0x97, 5, 1, 2}, exVideo{}, true},
		{"modex 16-bit cut", []byte{0x97, 255, 0x01}, exVideo{}, true},
		{"modex without packet type", []byte{0x97, 0, 1}, exVideo{}, true},
		{"multitrack in multitrack", []byte{0x96, 0x06, 'h', 'v', 'c', '1', 0}, exVideo{}, true},
		{"multitrack type 3", []byte{0x96, 0x31, 'h', 'v', 'c', '1', 0}, exVideo{}, true},
		{"track larger than the message", []byte{0x96, 0x13, 'h', 'v', 'c', '1', 0, 0, 0, 9, 1}, exVideo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseExVideo(tc.msg)
			if (err != nil) != tc.hasErr {
				t.Fatalf("err %v, want error %v", err, tc.hasErr)
			}
			if tc.hasErr {
				return
			}
			if got.frameType != tc.want.frameType || got.packetType != tc.want.packetType || got.command != tc.want.command ||
				got.found != tc.want.found || got.others != tc.want.others || got.fourCC != tc.want.fourCC ||
				got.cts != tc.want.cts || !bytes.Equal(got.body, tc.want.body) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseHEVCConfig(t *testing.T) {
	src := loadHEVC(t)
	for _, size := range []int{1, 2, 4} {
		c, err := parseHEVCConfig(hvcC(src.vps, src.sps, src.pps, size))
		if err != nil || c.nalLengthSize != size || !bytes.Equal(c.vps, src.vps) || !bytes.Equal(c.sps, src.sps) || !bytes.Equal(c.pps, src.pps) {
			t.Fatalf("size %d: %+v, %v", size, c, err)
		}
	}
	good := hvcC(src.vps, src.sps, src.pps, 4)
	for i := 0; i < len(good); i++ {
		if _, err := parseHEVCConfig(good[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
	three := bytes.Clone(good)
	three[21] = three[21]&^3 | 2
	if _, err := parseHEVCConfig(three); err == nil {
		t.Fatal("3-byte lengths accepted")
	}
	noPPS := hvcC(src.vps, src.sps, src.pps, 4)
	noPPS[22] = 2
	if _, err := parseHEVCConfig(noPPS[:len(noPPS)-5-len(src.pps)]); err == nil {
		t.Fatal("record without a PPS accepted")
	}
	v2 := bytes.Clone(good)
	v2[0] = 2
	if _, err := parseHEVCConfig(v2); err == nil {
		t.Fatal("version 2 accepted")
	}
}

func TestHEVCHasIRAP(t *testing.T) {
	nal := func(typ byte) []byte { return []byte{typ << 1, 1, 0xaa} }
	for _, tc := range []struct {
		nalus [][]byte
		want  bool
	}{
		{[][]byte{nal(35), nal(1)}, false},                   // AUD, TRAIL_R
		{[][]byte{nal(32), nal(33), nal(34), nal(19)}, true}, // params, IDR_W_RADL
		{[][]byte{nal(39), nal(21)}, true},                   // SEI, CRA
		{[][]byte{nal(16)}, true},                            // BLA_W_LP
		{[][]byte{nal(9)}, false},                            // RASL_R
		{[][]byte{nal(24)}, false},                           // reserved non-IRAP
	} {
		if got := hevcHasIRAP(lengthPrefixed(tc.nalus, 4)); got != tc.want {
			t.Errorf("%x: %v, want %v", tc.nalus, got, tc.want)
		}
	}
}

func TestAV1TemporalUnit(t *testing.T) {
	src := loadAV1(t)
	seq, err := parseAV1Config(av1C(src.seqHdr))
	if err != nil || !bytes.Equal(seq, src.seqHdr) {
		t.Fatalf("av1C: %x, %v", seq, err)
	}
	if seq, err := parseAV1Config([]byte{0x81, 0, 0, 0}); seq != nil || err != nil {
		t.Fatalf("record without configOBUs: %x, %v", seq, err)
	}
	if _, err := parseAV1Config([]byte{0x01, 0, 0, 0}); err == nil {
		t.Fatal("record without the marker bit accepted")
	}

	key := src.tus[0]
	inter := src.tus[1]
	sized, _ := av1.Bitstream(key).Marshal()
	// As it comes: sized OBUs, no delimiter: no copy.
	tu, err := scanTemporalUnit(sized)
	if err != nil || tu.rewrite || !tu.isKey(false) || tu.seqHdr == nil || !bytes.Equal(tu.canonicalSeqHdr(), src.seqHdr) {
		t.Fatalf("key unit: %+v, %v", tu, err)
	}
	if out := tu.sample(nil); &out[0] != &sized[0] || len(out) != len(sized) {
		t.Fatal("a unit that is already a sample was copied")
	}
	// A temporal delimiter in front and the last OBU without obu_size.
	interSized, _ := av1.Bitstream(inter).Marshal()
	last := inter[len(inter)-1]
	raw := append([]byte{0x12, 0}, interSized[:len(interSized)-len(last)-av1.LEB128(len(last)-1).MarshalSize()]...)
	raw = append(raw, last...)
	tu, err = scanTemporalUnit(raw)
	if err != nil || !tu.rewrite || tu.isKey(false) || tu.seqHdr != nil || tu.obus != len(inter) {
		t.Fatalf("inter unit: %+v, %v", tu, err)
	}
	if out := tu.sample(nil); !bytes.Equal(out, interSized) {
		t.Fatalf("rewritten sample\n%x\nwant\n%x", out, interSized)
	}
	// A key frame without a sequence header gets one in front.
	noSeq, _ := av1.Bitstream(key[1:]).Marshal()
	tu, err = scanTemporalUnit(noSeq)
	if err != nil || !tu.isKey(false) || tu.seqHdr != nil {
		t.Fatalf("key unit without sequence header: %+v, %v", tu, err)
	}
	if out := tu.sample(src.seqHdr); !bytes.Equal(out, sized) {
		t.Fatal("sequence header not put back in front")
	}
	// Temporal delimiters only.
	if tu, err := scanTemporalUnit([]byte{0x12, 0, 0x10}); err != nil || tu.obus != 0 {
		t.Fatalf("delimiters only: %+v, %v", tu, err)
	}
	for _, bad := range [][]byte{
		{0x92, 0},          // forbidden bit
		{0x32, 5, 1},       // size past the end
		{0x36},             // extension byte missing
		{0x32, 0x80, 0x80}, // leb128 cut
		{0xff},             // forbidden bit, extension byte missing
		append([]byte{0x32}, bytes.Repeat([]byte{0x80}, 8)...), // leb128 of 9 bytes
		{0x32, 0xff, 0xff, 0xff, 0xff, 0x7f},                   // 2^35-1
	} {
		if _, err := scanTemporalUnit(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

func TestLEB128(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1 << 21, 1<<32 - 1} {
		b := appendLEB128(nil, v)
		got, n, err := readLEB128(b)
		if err != nil || got != v || n != len(b) || n != av1.LEB128(uint32(v)).MarshalSize() {
			t.Errorf("%d: %x -> %d, %d, %v", v, b, got, n, err)
		}
	}
}

// FuzzParseExVideo: any message parses or fails without a panic, and what it
// returns lies within the message.
func FuzzParseExVideo(f *testing.F) {
	f.Add([]byte{0x90, 'h', 'v', 'c', '1', 1})
	f.Add([]byte{0x97, 2, 1, 2, 3, 0x01, 'h', 'v', 'c', '1', 0, 0, 1, 2})
	f.Add([]byte{0x97, 255, 0x00, 0x10, 1, 2})
	f.Add([]byte{0x96, 0x13, 'h', 'v', 'c', '1', 1, 0, 0, 1, 9, 0, 0, 0, 1, 5})
	f.Add([]byte{0x96, 0x21, 'v', 'p', '0', '9', 1, 0, 0, 0, 'h', 'v', 'c', '1', 0, 0, 0, 3, 0, 0, 7})
	f.Add([]byte{0xd1, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := parseExVideo(p)
		if err != nil || !v.found {
			return
		}
		if len(v.fourCC) != 4 {
			t.Fatalf("FourCC %q", v.fourCC)
		}
		if len(v.body) > len(p) {
			t.Fatalf("body of %d bytes from a message of %d", len(v.body), len(p))
		}
		if v.cts < -(1<<23) || v.cts >= 1<<23 {
			t.Fatalf("composition time %d out of SI24", v.cts)
		}
	})
}

// FuzzHEVCConfig: parseHEVCConfig never panics; what it accepts has a
// parameter set of each kind, by its own NAL header.
func FuzzHEVCConfig(f *testing.F) {
	src := loadHEVC(f)
	f.Add(hvcC(src.vps, src.sps, src.pps, 4))
	f.Add(hvcC(src.vps, src.sps, src.pps, 2))
	f.Add(make([]byte, 23))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseHEVCConfig(b)
		if err != nil {
			return
		}
		for want, n := range map[byte][]byte{hevcNALVPS: c.vps, hevcNALSPS: c.sps, hevcNALPPS: c.pps} {
			if len(n) < 2 || (n[0]>>1)&0x3f != want {
				t.Fatalf("NAL unit %x for type %d", n, want)
			}
		}
		if c.nalLengthSize != 1 && c.nalLengthSize != 2 && c.nalLengthSize != 4 {
			t.Fatalf("NAL length size %d", c.nalLengthSize)
		}
		_ = hevcHasIRAP(b)
	})
}

// FuzzAV1 checks the AV1 parsers on any input: parseAV1Config and
// scanTemporalUnit never panic, and a unit they accept becomes a sample that
// is a valid low-overhead bitstream (mediacommon agrees) with every OBU
// sized, no temporal delimiter, and nothing else changed.
func FuzzAV1(f *testing.F) {
	src := loadAV1(f)
	f.Add(av1C(src.seqHdr))
	for _, tu := range src.tus[:3] {
		b, _ := av1.Bitstream(tu).Marshal()
		f.Add(append([]byte{0x12, 0}, b...))
	}
	f.Add([]byte{0x81, 0, 0, 0, 0x0a, 1, 0})
	f.Add([]byte{0x34, 0x08, 0x02, 0x10, 0x30})
	f.Fuzz(func(t *testing.T, b []byte) {
		if seq, err := parseAV1Config(b); err == nil && seq != nil && seq[0]&(obuHasSizeField|obuExtensionFlag) != 0 {
			t.Fatalf("sequence header %x not canonical", seq)
		}
		tu, err := scanTemporalUnit(b)
		if err != nil {
			return
		}
		_ = tu.isKey(false)
		var seq []byte
		if tu.seqHdr != nil {
			seq = tu.canonicalSeqHdr()
		}
		for _, prepend := range [][]byte{nil, seq} {
			out := tu.sample(prepend)
			again, err := scanTemporalUnit(out)
			if err != nil {
				t.Fatalf("sample %x does not scan: %v", out, err)
			}
			want := tu.obus
			if prepend != nil {
				want++
			}
			if again.rewrite || again.obus != want {
				t.Fatalf("sample %x: rewrite %v, %d OBUs, want %d", out, again.rewrite, again.obus, want)
			}
			if !tu.rewrite && prepend == nil && !bytes.Equal(out, b) {
				t.Fatal("a sample as it came was changed")
			}
			// mediacommon reads it too when no OBU has an extension header.
			var bs av1.Bitstream
			if len(out) > 0 && !hasExtension(out) {
				if err := bs.Unmarshal(out); err != nil || len(bs) != want {
					t.Fatalf("mediacommon: %d OBUs, %v, want %d", len(bs), err, want)
				}
			}
		}
	})
}

func hasExtension(b []byte) bool {
	for pos := 0; pos < len(b); {
		if b[pos]&obuExtensionFlag != 0 {
			return true
		}
		hl := 1
		v, n, _ := readLEB128(b[pos+hl:])
		pos += hl + n + int(v)
	}
	return false
}

package thumbnail

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// mkbox is a box of type typ holding payload, with a 32-bit size.
func mkbox(typ string, payload ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
	return append(append(b, typ...), payload...)
}

// cat concatenates boxes.
func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestFirstFragment(t *testing.T) {
	moof := mkbox("moof", 1, 2, 3)
	mdat := mkbox("mdat", 4, 5, 6, 7)
	large := cat(binary.BigEndian.AppendUint32(nil, 1), []byte("mdat"), binary.BigEndian.AppendUint64(nil, 16+2), []byte{8, 9})
	toEnd := cat([]byte{0, 0, 0, 0}, []byte("mdat"), []byte{1, 2, 3})
	for _, tc := range []struct {
		name    string
		segment []byte
		want    int // length of the first fragment; 0 for an error
		err     string
	}{
		{"one fragment", cat(moof, mdat), len(moof) + len(mdat), ""},
		{"two fragments", cat(moof, mdat, moof, mdat), len(moof) + len(mdat), ""},
		{"styp, sidx, prft first", cat(mkbox("styp", 0), mkbox("sidx"), mkbox("prft", 1), moof, mdat, moof),
			9 + 8 + 9 + len(moof) + len(mdat), ""},
		{"then garbage", cat(moof, mdat, []byte{0xff, 0, 1}), len(moof) + len(mdat), ""},
		{"64-bit mdat size", cat(moof, large, moof), len(moof) + len(large), ""},
		{"mdat up to the end", cat(moof, toEnd), len(moof) + len(toEnd), ""},
		{"empty", nil, 0, "empty segment"},
		{"short header", []byte{0, 0, 0, 8, 'm'}, 0, "segment: box header at offset 0: 5 bytes left, want 8"},
		{"garbage", []byte{0x12, 0x34, 0x56, 0x78, 0x00, 0x01, 0xfe, 0x80, 1, 2}, 0, "segment: no MP4 box at offset 0 (type 00 01 fe 80)"},
		{"size below the header", cat([]byte{0, 0, 0, 7}, []byte("moof")), 0, `segment: box "moof" at offset 0: size 7 is less than its header`},
		{"size past the end", cat(moof, mdat[:len(mdat)-1]), 0, `segment: box "mdat" at offset 11: size 12, only 11 bytes left`},
		{"64-bit size cut short", cat(moof, []byte{0, 0, 0, 1}, []byte("mdat"), []byte{0, 0}), 0, `segment: box "mdat" at offset 11: 64-bit size cut short`},
		{"64-bit size below the header", cat(moof, []byte{0, 0, 0, 1}, []byte("mdat"), binary.BigEndian.AppendUint64(nil, 15)), 0,
			`segment: box "mdat" at offset 11: size 15 is less than its header`},
		{"64-bit size past int", cat(moof, []byte{0, 0, 0, 1}, []byte("mdat"), binary.BigEndian.AppendUint64(nil, 1<<63)), 0,
			`segment: box "mdat" at offset 11: size 9223372036854775808, only 16 bytes left`},
		{"no moof", cat(mkbox("styp"), mkbox("free")), 0, "segment: no moof box"},
		{"no mdat", cat(mkbox("styp"), moof), 0, "segment: no mdat after its moof"},
		{"mdat first", cat(mdat, moof), 0, "segment: an mdat at offset 0 before any moof"},
		{"two moofs", cat(moof, moof, mdat), 0, "segment: a second moof at offset 11 before any mdat"},
		{"an init segment", cat(mkbox("ftyp"), mkbox("moov"), moof, mdat), 0,
			"segment: a ftyp box at offset 0: want a media segment (the init segment goes apart)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstFragment(tc.segment)
			if errString(err) != tc.err {
				t.Fatalf("error %q, want %q", errString(err), tc.err)
			}
			if len(got) != tc.want || !bytes.Equal(got, tc.segment[:len(got)]) {
				t.Fatalf("%d bytes, want the first %d", len(got), tc.want)
			}
		})
	}
}

func TestCheckInit(t *testing.T) {
	for _, tc := range []struct {
		name string
		init []byte
		err  string
	}{
		{"ftyp and moov", cat(mkbox("ftyp", 1), mkbox("moov", 2)), ""},
		{"moov only", mkbox("moov"), ""},
		{"empty", nil, "empty init segment"},
		{"no moov", mkbox("ftyp"), "init segment: no moov box"},
		{"a fragment", cat(mkbox("ftyp"), mkbox("moov"), mkbox("moof")), "init segment: holds a moof box at offset 16, want ftyp and moov only"},
		{"trailing bytes", cat(mkbox("moov"), []byte{0}), "init segment: box header at offset 8: 1 bytes left, want 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkInit(tc.init); errString(err) != tc.err {
				t.Fatalf("error %q, want %q", errString(err), tc.err)
			}
		})
	}
}

func TestPPMReader(t *testing.T) {
	px := func(n int) []byte { return bytes.Repeat([]byte{1, 2, 3}, n) }
	two := cat([]byte("P6\n2 1\n255\n"), px(2), []byte("P6 # a comment\n1\t1 255\n"), px(1))
	pr := newPPMReader(bytes.NewReader(two), 100)
	var p picture
	for i, want := range []struct{ w, h int }{{2, 1}, {1, 1}} {
		if err := pr.next(&p); err != nil {
			t.Fatalf("picture %d: %v", i, err)
		}
		if p.w != want.w || p.h != want.h || !bytes.Equal(p.pix, px(want.w*want.h)) {
			t.Fatalf("picture %d: %dx%d %v", i, p.w, p.h, p.pix)
		}
	}
	if err := pr.next(&p); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last picture: %v, want io.EOF", err)
	}
	for _, tc := range []struct{ in, err string }{
		{"P", "picture header: unexpected EOF"},
		{"P5\n1 1\n255\n\x00", `picture header "P5": want a binary PPM (P6)`},
		{"P6\n1 1\n65535\n", "picture header: maxval 65535, want 255"},
		{"P6\n11 10\n255\n", "picture header: 11x10: want 1 to 100 pixels"},
		{"P6\n0 10\n255\n", "picture header: 0x10: want 1 to 100 pixels"},
		{"P6\n1234567 1\n255\n", "picture header: number too long"},
		{"P6\n1 x\n255\n", "picture header: unexpected byte 0x78"},
		{"P6\n2 2\n255", "picture header: unexpected EOF"},
		{"P6\n2 2\n255\n\x01\x02", "picture of 2x2: unexpected EOF"},
		{"P6 # no end", "picture header: comment: unexpected EOF"},
	} {
		err := newPPMReader(bytes.NewReader([]byte(tc.in)), 100).next(&p)
		if errString(err) != tc.err {
			t.Errorf("%q: error %q, want %q", tc.in, errString(err), tc.err)
		}
	}
}

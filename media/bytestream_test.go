package media

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// avcc joins NAL units behind 4-byte lengths.
func avcc(units ...[]byte) []byte {
	var p []byte
	for _, u := range units {
		p = binary.BigEndian.AppendUint32(p, uint32(len(u)))
		p = append(p, u...)
	}
	return p
}

func TestSplitAVCC(t *testing.T) {
	a, b := []byte{0x65, 1, 2}, []byte{0x41, 3}
	isA := func(n []byte) bool { return n[0] == 0x65 }
	for _, tc := range []struct {
		name string
		in   []byte
		skip func([]byte) bool
		want [][]byte
	}{
		{"empty", nil, nil, nil},
		{"shorter than a length", []byte{0, 0, 1}, nil, nil},
		{"two units", avcc(a, b), nil, [][]byte{a, b}},
		{"empty unit left out", avcc(a, nil, b), nil, [][]byte{a, b}},
		{"skip", avcc(a, b), isA, [][]byte{b}},
		{"length past the end", append(avcc(a), 0, 0, 0, 9, 1), nil, [][]byte{a}},
		{"length 2^32-1", append(avcc(b), 0xff, 0xff, 0xff, 0xff, 1), nil, [][]byte{b}},
		{"trailing bytes", append(avcc(a), 0, 0), nil, [][]byte{a}},
	} {
		if got := SplitAVCC(tc.in, tc.skip); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.want)
		}
	}
}

func TestPrependParams(t *testing.T) {
	au := [][]byte{{0x65}}
	for _, tc := range []struct {
		name   string
		params [][]byte
		want   [][]byte
	}{
		{"none", nil, [][]byte{{0x65}}},
		{"two", [][]byte{{0x67}, {0x68}}, [][]byte{{0x67}, {0x68}, {0x65}}},
		{"empty left out", [][]byte{{0x40}, nil, {0x67}}, [][]byte{{0x40}, {0x67}, {0x65}}},
	} {
		if got := PrependParams(au, tc.params...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.want)
		}
	}
}

func TestHasNALU(t *testing.T) {
	isSPS := func(n []byte) bool { return n[0]&0x1f == 7 }
	for _, tc := range []struct {
		au   [][]byte
		want bool
	}{
		{nil, false},
		{[][]byte{{0x65}}, false},
		{[][]byte{{0x09}, {0x67}, {0x65}}, true},
	} {
		if got := HasNALU(tc.au, isSPS); got != tc.want {
			t.Errorf("HasNALU(%x) = %v, want %v", tc.au, got, tc.want)
		}
	}
}

func TestVideoNALUs(t *testing.T) {
	sps, pps := []byte{0x67, 0x64, 0, 0x1f}, []byte{0x68, 0xee}
	aud, idr, slice := []byte{0x09, 0xf0}, []byte{0x65, 0x88}, []byte{0x41, 0x9a}
	h264Track := &Track{ID: 1, Codec: &H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	vps, hsps, hpps := []byte{0x40, 1}, []byte{0x42, 1}, []byte{0x44, 1}
	haud, hidr := []byte{0x46, 1, 0x50}, []byte{0x26, 1, 0xaf}
	h265Track := &Track{ID: 1, Codec: &H265{VPS: vps, SPS: hsps, PPS: hpps}, ClockRate: 90000}
	aacTrack := &Track{ID: 2, Codec: &AAC{}, ClockRate: 48000}
	for _, tc := range []struct {
		name string
		f    *Frame
		aud  Delimiters
		want [][]byte
	}{
		{"H.264 key frame gets parameter sets", &Frame{Track: h264Track, Key: true, Payload: avcc(idr)},
			KeepDelimiters, [][]byte{sps, pps, idr}},
		{"H.264 key frame with in-band SPS", &Frame{Track: h264Track, Key: true, Payload: avcc(sps, pps, idr)},
			KeepDelimiters, [][]byte{sps, pps, idr}},
		{"H.264 non-key frame", &Frame{Track: h264Track, Payload: avcc(slice)},
			KeepDelimiters, [][]byte{slice}},
		{"H.264 AUD kept", &Frame{Track: h264Track, Payload: avcc(aud, slice)},
			KeepDelimiters, [][]byte{aud, slice}},
		{"H.264 AUD dropped", &Frame{Track: h264Track, Key: true, Payload: avcc(aud, idr)},
			DropDelimiters, [][]byte{sps, pps, idr}},
		{"H.264 AUD only, dropped", &Frame{Track: h264Track, Key: true, Payload: avcc(aud)},
			DropDelimiters, nil},
		{"H.264 empty payload", &Frame{Track: h264Track, Key: true}, KeepDelimiters, nil},
		{"H.265 key frame gets VPS, SPS, PPS", &Frame{Track: h265Track, Key: true, Payload: avcc(haud, hidr)},
			DropDelimiters, [][]byte{vps, hsps, hpps, hidr}},
		{"H.265 AUD kept", &Frame{Track: h265Track, Payload: avcc(haud, hidr)},
			KeepDelimiters, [][]byte{haud, hidr}},
		{"AAC is not video", &Frame{Track: aacTrack, Key: true, Payload: avcc(idr)}, KeepDelimiters, nil},
	} {
		if got := VideoNALUs(tc.f, tc.aud); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.want)
		}
	}
}

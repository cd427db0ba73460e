package thumbnail

import (
	"encoding/binary"
	"testing"
)

// be32 is the big-endian bytes of the given 32-bit values.
func be32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// trak is a trak box of a track with id and a handler ("vide", "soun"),
// its tkhd of the given version.
func trak(id uint32, handler string, tkhdVersion byte) []byte {
	tkhd := be32(uint32(tkhdVersion)<<24, 0, 0, id, 0)
	if tkhdVersion == 1 {
		tkhd = be32(1<<24, 0, 0, 0, 0, id, 0)
	}
	return mkbox("trak", cat(mkbox("tkhd", tkhd...), mkbox("mdia", mkbox("hdlr", cat(be32(0, 0), []byte(handler))...)...))...)
}

// trex is a trex box for track id with default sample flags.
func trex(id, flags uint32) []byte { return mkbox("trex", be32(0, id, 1, 0, 0, flags)...) }

// traf is a traf box: a tfhd of the track id with the given flags and
// fields after the track id, then the truns.
func traf(id, tfhdFlags uint32, tfhdFields []uint32, truns ...[]byte) []byte {
	tfhd := mkbox("tfhd", be32(append([]uint32{tfhdFlags, id}, tfhdFields...)...)...)
	return mkbox("traf", cat(append([][]byte{tfhd, mkbox("tfdt", be32(0, 0)...)}, truns...)...)...)
}

// trun is a trun box with the given flags and the fields after them.
func trun(flags uint32, fields ...uint32) []byte {
	return mkbox("trun", be32(append([]uint32{flags}, fields...)...)...)
}

// nest wraps inner in boxes of the given types, the first outermost.
func nest(inner []byte, typs ...string) []byte {
	for i := len(typs) - 1; i >= 0; i-- {
		inner = mkbox(typs[i], inner...)
	}
	return inner
}

// mdiaVide is the mdia box of a video track.
func mdiaVide() []byte { return nest(cat(be32(0, 0), []byte("vide")), "mdia", "hdlr") }

func TestCheckKeyFrame(t *testing.T) {
	const sync, nonSync = 0x02000000, 0x01010000 // depends on no other / non-sync, depends on others
	videoInit := func(trexFlags uint32) []byte {
		return cat(mkbox("ftyp"), mkbox("moov", cat(trak(1, "vide", 0), mkbox("mvex", trex(1, trexFlags)...))...))
	}
	frag := func(trafs ...[]byte) []byte {
		return cat(mkbox("moof", cat(append([][]byte{mkbox("mfhd", be32(0, 1)...)}, trafs...)...)...), mkbox("mdat", 1, 2, 3))
	}
	notKey := "segment: the first fragment's first video sample is not a key frame (a part from the middle of a segment?)"
	for _, tc := range []struct {
		name       string
		init, frag []byte
		err        string
	}{
		{"trex says sync", videoInit(sync), frag(traf(1, 0, nil, trun(0x1, 2, 0))), ""},
		{"trex says non-sync", videoInit(nonSync), frag(traf(1, 0, nil, trun(0x1, 2, 0))), notKey},
		{"first sample flags", videoInit(nonSync), frag(traf(1, 0, nil, trun(0x5, 2, 0, sync))), ""},
		{"first sample flags: non-sync", videoInit(sync), frag(traf(1, 0, nil, trun(0x5, 2, 0, nonSync))), notKey},
		{"tfhd default flags after its other fields", videoInit(sync),
			frag(traf(1, 0x3b, []uint32{0, 100, 1, 3000, 500, nonSync}, trun(0x1, 2, 0))), notKey},
		{"tfhd default flags: sync", videoInit(nonSync), frag(traf(1, 0x20, []uint32{sync}, trun(0x1, 2, 0))), ""},
		{"per-sample flags after duration and size", videoInit(sync),
			frag(traf(1, 0, nil, trun(0x701, 2, 0, 3000, 500, nonSync, 3000, 400, sync))), notKey},
		{"per-sample flags: sync", videoInit(nonSync), frag(traf(1, 0, nil, trun(0x401, 1, 0, sync))), ""},
		{"first sample flags before per-sample flags", videoInit(nonSync),
			frag(traf(1, 0, nil, trun(0x405, 2, 0, sync, nonSync, nonSync))), ""},
		{"an empty trun first", videoInit(sync), frag(traf(1, 0, nil, trun(0x1, 0, 0), trun(0x5, 1, 0, nonSync))), notKey},
		{"the video track after an audio one",
			cat(mkbox("ftyp"), mkbox("moov", cat(trak(1, "soun", 0), trak(2, "vide", 1), mkbox("mvex", cat(trex(1, sync), trex(2, nonSync))...))...)),
			frag(traf(1, 0, nil, trun(0x1, 1, 0)), traf(2, 0, nil, trun(0x1, 1, 0))), notKey},
		{"no mvex: flags 0 (sync)", mkbox("moov", trak(1, "vide", 0)...), frag(traf(1, 0, nil, trun(0x1, 1, 0))), ""},
		{"no video track", cat(mkbox("moov", cat(trak(1, "soun", 0), mkbox("mvex", trex(1, sync)...))...)),
			frag(traf(1, 0, nil, trun(0x1, 1, 0))), "init segment: no video track"},
		{"a video trak without tkhd", nest(mdiaVide(), "moov", "trak"), frag(), "init segment: a video trak without tkhd"},
		{"tkhd cut short", nest(cat(mkbox("tkhd", be32(0, 0)...), mdiaVide()), "moov", "trak"), frag(), "init segment: tkhd cut short"},
		{"hdlr cut short", nest(mkbox("hdlr", be32(0, 0)...), "moov", "trak", "mdia"), frag(), "init segment: hdlr cut short"},
		{"trex cut short", mkbox("moov", cat(trak(1, "vide", 0), nest(mkbox("trex", be32(0, 1, 1)...), "mvex"))...),
			frag(), "init segment: trex cut short"},
		{"garbage in the moov", cat(mkbox("moov", 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4)), frag(),
			"init segment: no MP4 box at offset 0 (type 00 01 02 03)"},
		{"no traf of the video track", videoInit(sync), frag(traf(2, 0, nil, trun(0x1, 1, 0))),
			"segment: no sample of the video track (id 1) in the first fragment"},
		{"a traf without tfhd", videoInit(sync), frag(mkbox("traf", trun(0x1, 1, 0)...)), "segment: a traf without tfhd"},
		{"tfhd cut short", videoInit(sync), frag(mkbox("traf", mkbox("tfhd", be32(0x20)...)...)), "segment: tfhd cut short"},
		{"tfhd default flags cut short", videoInit(sync), frag(traf(1, 0x28, []uint32{3000}, trun(0x1, 1, 0))), "segment: tfhd cut short"},
		{"trun cut short", videoInit(sync), frag(traf(1, 0, nil, trun(0x5, 1, 0))), "segment: trun cut short"},
		{"no samples", videoInit(sync), frag(traf(1, 0, nil, trun(0x1, 0, 0))), "segment: traf of the video track without samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkKeyFrame(tc.init, tc.frag); errString(err) != tc.err {
				t.Fatalf("error %q, want %q", errString(err), tc.err)
			}
		})
	}
}

package thumbnail

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// box is one top-level ISO BMFF box of a buffer.
type box struct {
	typ        string
	start, end int // offsets of its first byte and just past its last
	body       int // offset of its payload, after its header
}

// readBox reads the header of the box at off in b and checks that the box
// lies within b. A size of 0 (up to the end) and 64-bit sizes are
// understood; a box type must be four printable ASCII characters, as every
// top-level box type is, so that garbage is refused at its first bytes.
func readBox(b []byte, off int) (box, error) {
	left := len(b) - off
	if left < 8 {
		return box{}, fmt.Errorf("box header at offset %d: %d bytes left, want 8", off, left)
	}
	typ := b[off+4 : off+8]
	for _, c := range typ {
		if c < 0x20 || c > 0x7e {
			return box{}, fmt.Errorf("no MP4 box at offset %d (type % x)", off, typ)
		}
	}
	size := uint64(binary.BigEndian.Uint32(b[off:]))
	header := uint64(8)
	switch size {
	case 0:
		size = uint64(left)
	case 1:
		if left < 16 {
			return box{}, fmt.Errorf("box %q at offset %d: 64-bit size cut short", typ, off)
		}
		size = binary.BigEndian.Uint64(b[off+8:])
		header = 16
	}
	if size < header {
		return box{}, fmt.Errorf("box %q at offset %d: size %d is less than its header", typ, off, size)
	}
	if size > uint64(left) {
		return box{}, fmt.Errorf("box %q at offset %d: size %d, only %d bytes left", typ, off, size, left)
	}
	return box{typ: string(typ), start: off, end: off + int(size), body: off + int(header)}, nil
}

// checkInit checks that init is an init segment: boxes up to its end, a
// moov among them and no media fragment.
func checkInit(init []byte) error {
	if len(init) == 0 {
		return errors.New("empty init segment")
	}
	moov := false
	for off := 0; off < len(init); {
		bx, err := readBox(init, off)
		if err != nil {
			return fmt.Errorf("init segment: %w", err)
		}
		switch bx.typ {
		case "moov":
			moov = true
		case "moof", "mdat":
			return fmt.Errorf("init segment: holds a %s box at offset %d, want ftyp and moov only", bx.typ, off)
		}
		off = bx.end
	}
	if !moov {
		return errors.New("init segment: no moov box")
	}
	return nil
}

// firstFragment returns the start of segment up to the end of its first
// fragment: the boxes before its first moof (styp, sidx, prft, emsg...),
// the moof and the mdat that follows it. A segment's first fragment (its
// first CMAF part) holds its first samples, the key frame first.
func firstFragment(segment []byte) ([]byte, error) {
	if len(segment) == 0 {
		return nil, errors.New("empty segment")
	}
	moof := false
	for off := 0; off < len(segment); {
		bx, err := readBox(segment, off)
		if err != nil {
			return nil, fmt.Errorf("segment: %w", err)
		}
		switch bx.typ {
		case "moov", "ftyp":
			return nil, fmt.Errorf("segment: a %s box at offset %d: want a media segment (the init segment goes apart)", bx.typ, off)
		case "moof":
			if moof {
				return nil, fmt.Errorf("segment: a second moof at offset %d before any mdat", off)
			}
			moof = true
		case "mdat":
			if !moof {
				return nil, fmt.Errorf("segment: an mdat at offset %d before any moof", off)
			}
			return segment[:bx.end], nil
		}
		off = bx.end
	}
	if !moof {
		return nil, errors.New("segment: no moof box")
	}
	return nil, errors.New("segment: no mdat after its moof")
}

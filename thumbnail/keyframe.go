package thumbnail

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ISO BMFF flags read to find whether a fragment's first video sample is a
// sync sample (ISO/IEC 14496-12 8.8).
const (
	tfhdBaseDataOffset    = 0x000001
	tfhdSampleDescription = 0x000002
	tfhdDefaultDuration   = 0x000008
	tfhdDefaultSize       = 0x000010
	tfhdDefaultFlags      = 0x000020
	trunDataOffset        = 0x000001
	trunFirstSampleFlags  = 0x000004
	trunSampleDuration    = 0x000100
	trunSampleSize        = 0x000200
	trunSampleFlags       = 0x000400
	sampleIsNonSync       = 0x010000
	fullBoxHeader         = 4 // version and flags
)

// errNotKeyFrame is the error of a fragment whose first video sample is
// not a sync sample.
var errNotKeyFrame = errors.New("the first fragment's first video sample is not a key frame (a part from the middle of a segment?)")

// child returns the body of the first box of type typ among the boxes
// of b (a container's payload); ok is false when there is none.
func child(b []byte, typ string) (body []byte, ok bool, err error) {
	for off := 0; off < len(b); {
		bx, err := readBox(b, off)
		if err != nil {
			return nil, false, err
		}
		if bx.typ == typ {
			return b[bx.body:bx.end], true, nil
		}
		off = bx.end
	}
	return nil, false, nil
}

// children calls fn with the body of every box of type typ among the
// boxes of b, until fn returns done or an error.
func children(b []byte, typ string, fn func(body []byte) (done bool, err error)) error {
	for off := 0; off < len(b); {
		bx, err := readBox(b, off)
		if err != nil {
			return err
		}
		if bx.typ == typ {
			if done, err := fn(b[bx.body:bx.end]); done || err != nil {
				return err
			}
		}
		off = bx.end
	}
	return nil
}

// field reads the 32-bit field at off of a box body.
func field(body []byte, off int, what string) (uint32, error) {
	if off < 0 || len(body) < off+4 {
		return 0, fmt.Errorf("%s cut short", what)
	}
	return binary.BigEndian.Uint32(body[off:]), nil
}

// fullBoxFlags is a full box's version and flags.
func fullBoxFlags(body []byte, what string) (version byte, flags uint32, err error) {
	v, err := field(body, 0, what)
	return byte(v >> 24), v & 0xffffff, err
}

// videoTrack finds the first video track of an init segment's moov (the
// one ffmpeg's -map 0:v:0 takes): its id and its trex default sample flags.
func videoTrack(init []byte) (id, defaultFlags uint32, err error) {
	moov, _, err := child(init, "moov")
	if err != nil {
		return 0, 0, err
	}
	found := false
	err = children(moov, "trak", func(trak []byte) (bool, error) {
		mdia, _, err := child(trak, "mdia")
		if err != nil {
			return false, fmt.Errorf("trak: %w", err)
		}
		hdlr, ok, err := child(mdia, "hdlr")
		if err != nil || !ok {
			return false, err
		}
		if handler, err := field(hdlr, 8, "hdlr"); err != nil || handler != 0x76696465 { // "vide"
			return false, err
		}
		tkhd, ok, err := child(trak, "tkhd")
		if err != nil {
			return false, err
		}
		if !ok {
			return false, errors.New("a video trak without tkhd")
		}
		version, _, err := fullBoxFlags(tkhd, "tkhd")
		if err != nil {
			return false, err
		}
		idOff := 12 // creation and modification times, 32 bits each
		if version == 1 {
			idOff = 20
		}
		id, err = field(tkhd, idOff, "tkhd")
		found = err == nil
		return true, err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("init segment: %w", err)
	}
	if !found {
		return 0, 0, errors.New("init segment: no video track")
	}
	mvex, _, err := child(moov, "mvex")
	if err != nil {
		return 0, 0, fmt.Errorf("init segment: %w", err)
	}
	err = children(mvex, "trex", func(trex []byte) (bool, error) {
		if tid, err := field(trex, 4, "trex"); err != nil || tid != id {
			return false, err
		}
		defaultFlags, err = field(trex, 20, "trex")
		return true, err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("init segment: %w", err)
	}
	return id, defaultFlags, nil
}

// checkKeyFrame checks that the first sample of the video track in the
// fragment frag (as firstFragment returns it) is a sync sample, per its
// trun's first-sample or per-sample flags, its tfhd's default flags or the
// init segment's trex default flags, the order in which they apply.
func checkKeyFrame(init, frag []byte) error {
	id, flags, err := videoTrack(init)
	if err != nil {
		return err
	}
	moof, _, err := child(frag, "moof")
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	found := false
	err = children(moof, "traf", func(traf []byte) (bool, error) {
		tfhd, ok, err := child(traf, "tfhd")
		if err != nil {
			return false, err
		}
		if !ok {
			return false, errors.New("a traf without tfhd")
		}
		if tid, err := field(tfhd, 4, "tfhd"); err != nil || tid != id {
			return false, err
		}
		if flags, err = trackFlags(traf, tfhd, flags); err != nil {
			return false, err
		}
		found = true
		return true, nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("segment: %w", err)
	case !found:
		return fmt.Errorf("segment: no sample of the video track (id %d) in the first fragment", id)
	case flags&sampleIsNonSync != 0:
		return fmt.Errorf("segment: %w", errNotKeyFrame)
	}
	return nil
}

// trackFlags returns the flags of the first sample of a traf, or
// defaultFlags (trex's) when neither tfhd nor trun sets them.
func trackFlags(traf, tfhd []byte, defaultFlags uint32) (uint32, error) {
	_, hf, err := fullBoxFlags(tfhd, "tfhd")
	if err != nil {
		return 0, err
	}
	if hf&tfhdDefaultFlags != 0 {
		off := 8 // version, flags, track id
		for _, f := range []struct {
			flag uint32
			size int
		}{{tfhdBaseDataOffset, 8}, {tfhdSampleDescription, 4}, {tfhdDefaultDuration, 4}, {tfhdDefaultSize, 4}} {
			if hf&f.flag != 0 {
				off += f.size
			}
		}
		if defaultFlags, err = field(tfhd, off, "tfhd"); err != nil {
			return 0, err
		}
	}
	flags, found := defaultFlags, false
	err = children(traf, "trun", func(trun []byte) (bool, error) {
		_, rf, err := fullBoxFlags(trun, "trun")
		if err != nil {
			return false, err
		}
		count, err := field(trun, 4, "trun")
		if err != nil || count == 0 {
			return false, err
		}
		found = true
		off := 8 // version, flags, sample count
		if rf&trunDataOffset != 0 {
			off += 4
		}
		switch {
		case rf&trunFirstSampleFlags != 0:
			flags, err = field(trun, off, "trun")
		case rf&trunSampleFlags != 0:
			if rf&trunSampleDuration != 0 {
				off += 4
			}
			if rf&trunSampleSize != 0 {
				off += 4
			}
			flags, err = field(trun, off, "trun")
		}
		return true, err
	})
	if err == nil && !found {
		err = errors.New("traf of the video track without samples")
	}
	return flags, err
}

package media

import "testing"

func TestAV1Codec(t *testing.T) {
	// libaom, 320x240 8-bit 4:2:0: profile 0, seq_level_idx 0, main tier.
	c := &AV1{SequenceHeader: []byte{0x08, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40}}
	if c.Kind() != KindVideo || c.Name() != "av1" {
		t.Fatalf("kind %v name %q", c.Kind(), c.Name())
	}
	if got := c.RFC6381(); got != "av01.0.00M.08" {
		t.Errorf("RFC6381 %q", got)
	}
	vi, err := ParseVideoInfo(c)
	if err != nil || vi.Width != 320 || vi.Height != 240 || vi.FrameRate != 0 {
		t.Errorf("video info %+v, %v", vi, err)
	}
	// libaom, 640x360 10-bit: level 2.1 (seq_level_idx 1).
	c10 := &AV1{SequenceHeader: []byte{0x08, 0x00, 0x00, 0x00, 0x0c, 0xc4, 0xff, 0x67, 0x36, 0xbe, 0x50, 0x10}}
	if got := c10.RFC6381(); got != "av01.0.01M.10" {
		t.Errorf("10-bit RFC6381 %q", got)
	}
	if vi, err := ParseVideoInfo(c10); err != nil || vi.Width != 640 || vi.Height != 360 {
		t.Errorf("10-bit video info %+v, %v", vi, err)
	}
	bad := &AV1{SequenceHeader: []byte{0x08, 0x00}}
	if got := bad.RFC6381(); got != "av01" {
		t.Errorf("RFC6381 of a broken sequence header %q", got)
	}
	if _, err := ParseVideoInfo(bad); err == nil {
		t.Error("broken sequence header parsed")
	}
}

package segmenter

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// av1SeqHdr is the sequence header OBU (without obu_size) of a libaom encode
// of 320x240 testsrc2: profile 0, level 0 (2.0), main tier, 8 bits.
var av1SeqHdr = []byte{0x08, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40}

// TestAV1 packages AV1 frames: an av01 sample entry with the sequence header
// in av1C, segments cut at key frames, samples as they came (the frames are
// already ISOBMFF AV1 samples). ingest/rtmp's tests decode a real encode
// packaged this way with ffmpeg.
func TestAV1(t *testing.T) {
	tr := &media.Track{ID: 1, Codec: &media.AV1{SequenceHeader: av1SeqHdr}, ClockRate: 90000}
	h := newHarness(t, store.New(store.Config{Window: 10}), Config{SegmentDuration: time.Second}, tr)
	var frames []*media.Frame
	for i := 0; i < 75; i++ {
		payload := []byte{0x32, 3, byte(i), 1, 2} // an OBU_FRAME of 3 bytes
		frames = append(frames, &media.Frame{Track: tr, DTS: int64(i) * 3600, PTS: int64(i) * 3600,
			Key: i%25 == 0, Received: t0, Payload: payload})
	}
	h.write(frames...)
	h.end()

	snap := h.rendition("video").Snapshot()
	checkSegments(t, snap)
	if len(snap.Segments) != 3 {
		t.Fatalf("%d segments, want 3 (a key frame every second)", len(snap.Segments))
	}
	info := snap.Inits[0].Info
	if info.Width != 320 || info.Height != 240 || info.Timescale != 90000 || info.Codec.RFC6381() != "av01.0.00M.08" {
		t.Fatalf("rendition info %+v (%s)", info, info.Codec.RFC6381())
	}
	var init fmp4.Init
	if err := init.Unmarshal(bytes.NewReader(snap.Inits[0].Data)); err != nil {
		t.Fatal(err)
	}
	c, ok := init.Tracks[0].Codec.(*codecs.AV1)
	if !ok || !bytes.Equal(c.SequenceHeader, av1SeqHdr) {
		t.Fatalf("init codec %T %+v", init.Tracks[0].Codec, init.Tracks[0].Codec)
	}
	i := 0
	for _, seg := range snap.Segments {
		for _, s := range samplesOf(parseSegment(t, seg.Data)) {
			if !bytes.Equal(s.Payload, frames[i].Payload) || s.IsNonSyncSample == frames[i].Key || s.Duration != 3600 {
				t.Fatalf("sample %d: %+v", i, s)
			}
			i++
		}
	}
	if i != len(frames) {
		t.Fatalf("%d samples of %d", i, len(frames))
	}
}

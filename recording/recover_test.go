package recording

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// segmentBytes is a CMAF segment of two parts of 30 samples of 3000 ticks
// (90 kHz video at 30 fps, 2 s), starting at base.
func segmentBytes(t *testing.T, base uint64) []byte {
	t.Helper()
	var out []byte
	for p := range 2 {
		var samples []*fmp4.Sample
		for range 30 {
			samples = append(samples, &fmp4.Sample{Duration: 3000, Payload: []byte{0, 0, 0, 1, 0x65}})
		}
		var buf seekablebuffer.Buffer
		part := fmp4.Part{SequenceNumber: uint32(p), Tracks: []*fmp4.PartTrack{{ID: 1, BaseTime: base + uint64(p)*90000, Samples: samples}}}
		if err := part.Marshal(&buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes()...)
	}
	return out
}

// TestRecoverReindexes: a session left "recording" by a crash, whose index
// stops at segment 11 while segments 12 and 13 were stored, is finalised
// as interrupted with 12 and 13 indexed again from their boxes (decode
// time, duration, size, init and wall-clock time following 11).
func TestRecoverReindexes(t *testing.T) {
	r, b, events := newTestRecorder(t)
	r.cfg.Node = "n"
	ctx := context.Background()
	started := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	sum := Summary{Stream: "live/k", Session: NewSessionID(started), Node: "n", State: StateRecording, Started: started,
		Updated:    started.Add(4 * time.Second),
		Renditions: []RenditionMeta{{Name: "video", Kind: "video", Codec: "avc1.64001f", Timescale: 90000}}}
	put := func(key string, data []byte) {
		if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := json.Marshal(sum)
	put(SummaryKey(sum.Stream, sum.Session), js)
	var chunk Chunk
	for i := range 2 {
		msn := uint64(10 + i)
		seg := segmentBytes(t, uint64(i)*180000)
		put(MediaKey(sum.Stream, sum.Session, "video", SegmentObject(msn)), seg)
		chunk.Entries = append(chunk.Entries, Entry{Rendition: "video", MSN: msn, Time: uint64(i) * 180000, Ticks: 180000,
			PDT: started.Add(time.Duration(i) * 2 * time.Second), Init: "init-1.mp4", Size: len(seg)})
	}
	js, _ = json.Marshal(chunk)
	put(ChunkKey(sum.Stream, sum.Session, 0), js)
	sizes := map[uint64]int{}
	for i := 2; i < 4; i++ {
		seg := segmentBytes(t, uint64(i)*180000)
		sizes[uint64(10+i)] = len(seg)
		put(MediaKey(sum.Stream, sum.Session, "video", SegmentObject(uint64(10+i))), seg)
	}
	if err := r.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	r.Wait() // the finalising it started
	s, err := r.Session(ctx, sum.Stream, sum.Session)
	if err != nil {
		t.Fatal(err)
	}
	if s.Summary.State != StateInterrupted || !s.Summary.Ready || s.Summary.Segments != 4 || s.Summary.Duration.D() != 8*time.Second {
		t.Fatalf("summary %+v", s.Summary)
	}
	segs := s.Renditions[0].Snap.Segments
	if len(segs) != 4 {
		t.Fatalf("%d segments", len(segs))
	}
	for i, seg := range segs[2:] {
		msn := uint64(12 + i)
		if seg.MSN != msn || seg.BaseTime != uint64(2+i)*180000 || seg.DurationTicks != 180000 || seg.Size != sizes[msn] ||
			seg.InitName != "init-1.mp4" || !seg.ProgramDateTime.Equal(started.Add(time.Duration(2+i)*2*time.Second)) {
			t.Errorf("re-indexed segment %d: %+v", msn, *seg)
		}
	}
	if len(*events) != 1 || (*events)[0].Kind != EventReady || (*events)[0].Summary.State != StateInterrupted {
		t.Errorf("events %+v", *events)
	}
}

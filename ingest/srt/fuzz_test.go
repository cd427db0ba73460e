package srt

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// FuzzDemux feeds arbitrary bytes to the whole publisher pipeline (guard,
// mediacommon's demuxer, frame conversion, retiming, publish): it must not
// panic nor hang, and what it publishes must be well-formed.
func FuzzDemux(f *testing.F) {
	ts := benchTS(f)
	f.Add([]byte{})
	f.Add(ts[:188])
	f.Add(ts[:64*188])
	f.Add(ts[:64*188+77])          // not a multiple of 188
	f.Add(ts[1000 : 1000+96*188])  // starts mid-packet, before the PMT repeats
	f.Add(corruptTS(ts[:128*188])) // garbage and broken headers
	f.Add(bytes.Repeat([]byte{0x47}, 188*4))
	f.Fuzz(func(t *testing.T, data []byte) {
		var sub *media.Subscription
		reg := media.NewRegistry(media.RegistryConfig{OnPublish: func(st *media.Stream) {
			sub = st.Subscribe(1 << 16)
		}})
		srv := New(Config{}, reg, nil, nil, nil)
		p := newPublisherFrom(srv, "fuzz", StreamID{Name: "live/fuzz", Mode: ModePublish}, "fuzz",
			slog.New(slog.DiscardHandler), bytes.NewReader(data))
		err := p.serveSafe()
		p.finish()
		if err == nil {
			t.Fatal("session ended without an error")
		}
		if se, ok := err.(*ingest.SessionError); ok && se.Reason == "internal" {
			t.Fatalf("internal error: %v", err)
		}
		if sub == nil {
			return
		}
		var last [3]int64
		var seen [3]bool
		for fr := range sub.Frames() {
			id := fr.Track.ID
			if fr.DTS < 0 || fr.PTS < fr.DTS || len(fr.Payload) == 0 {
				t.Fatalf("bad frame %s", testpeer.FormatFrame(fr))
			}
			if seen[id] && (fr.DTS < last[id] || (id == videoTrackID && fr.DTS == last[id])) {
				t.Fatalf("track %d DTS went from %d to %d", id, last[id], fr.DTS)
			}
			seen[id], last[id] = true, fr.DTS
			if fr.Track.Kind() == media.KindVideo {
				for p := fr.Payload; len(p) > 0; {
					if len(p) < 4 {
						t.Fatalf("AVCC payload with %d trailing bytes", len(p))
					}
					l := int(binary.BigEndian.Uint32(p))
					if l == 0 || l > len(p)-4 {
						t.Fatalf("bad NAL unit length %d", l)
					}
					p = p[4+l:]
				}
			}
		}
	})
}

// readGuard reads everything a guard hands out.
func readGuard(t testing.TB, g *packetGuard) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 1316)
	for {
		n, err := g.Read(buf)
		if n%188 != 0 {
			t.Fatalf("read %d bytes", n)
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestGuardAlignment: the guard hands out aligned packets whatever the read
// sizes, and reports skipped garbage.
func TestGuardAlignment(t *testing.T) {
	t.Parallel()
	ts := benchTS(t)[:50*188]
	in := append(append(append([]byte{}, ts[:10*188+5]...), []byte{1, 2, 3}...), ts[10*188+5:]...)
	var errs int
	g := newPacketGuard(&oneByteReader{r: bytes.NewReader(in)}, func(error) { errs++ })
	out := readGuard(t, g)
	if len(out) < 3*188 {
		t.Errorf("%d packets out", len(out)/188)
	}
	for i := 0; i < len(out); i += 188 {
		if out[i] != 0x47 {
			t.Fatalf("packet %d not aligned", i/188)
		}
	}
	if errs == 0 {
		t.Error("skipped garbage not reported")
	}
}

type oneByteReader struct{ r io.Reader }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return r.r.Read(p)
}

// tsPacket makes a TS packet of PID 0x100 with a payload (padded with 0xff).
func tsPacket(start bool, cc byte, payload []byte) []byte {
	pkt := bytes.Repeat([]byte{0xff}, 188)
	pkt[0], pkt[1], pkt[2], pkt[3] = 0x47, 0x01, 0x00, 0x10|cc&0x0f
	if start {
		pkt[1] |= 0x40
	}
	copy(pkt[4:], payload)
	return pkt
}

// TestGuardBounds: a video PES that never ends is cut at maxVideoPES, and
// the PID comes back at its next unit start.
func TestGuardBounds(t *testing.T) {
	t.Parallel()
	pesStart := []byte{0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1}
	var in []byte
	in = append(in, tsPacket(true, 0, pesStart)...)
	n := maxVideoPES/184 + 100
	for i := range n {
		in = append(in, tsPacket(false, byte(i+1), nil)...)
	}
	in = append(in, tsPacket(true, byte(n+1), pesStart)...)
	var errs int
	g := newPacketGuard(bytes.NewReader(in), func(error) { errs++ })
	out := readGuard(t, g)
	// Only the last PES (one packet, flushed at the end) comes out.
	if got := len(out) / 188; got != 1 {
		t.Errorf("%d packets out, want 1", got)
	}
	if errs != 1 {
		t.Errorf("%d errors reported, want 1", errs)
	}
	if g.held != 0 {
		t.Errorf("%d bytes still held", g.held)
	}
}

// TestGuardStandIn: a large video PES goes through mediacommon as a
// stand-in and comes out whole; small ones and audio go through as they
// came. The guard keeps no payload afterwards.
func TestGuardStandIn(t *testing.T) {
	t.Parallel()
	ts := bigFrameTS(t, 3, 3<<20)
	var frames []demuxFrame
	d := demuxer{log: slog.New(slog.DiscardHandler), emit: func(df demuxFrame) error { frames = append(frames, df); return nil }}
	if err := d.init(bytes.NewReader(ts)); err != nil {
		t.Fatal(err)
	}
	for {
		if err := d.step(); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
	if len(frames) != 3 {
		t.Fatalf("%d frames, want 3", len(frames))
	}
	for i, df := range frames {
		types := testpeer.NALUTypes(df.f.Payload, false)
		if len(types) != 3 || types[0] != 7 || types[1] != 8 || types[2] != 5 {
			t.Fatalf("frame %d: NAL units %v", i, types)
		}
		if n := len(df.f.Payload); n != 4+len(testSPS)+4+len(testPPS)+4+3<<20 {
			t.Fatalf("frame %d: %d bytes", i, n)
		}
	}
	if len(d.guard.standIns) != 0 || d.guard.standInSize != 0 || d.guard.held != 0 {
		t.Errorf("guard keeps %d stand-ins (%d bytes), %d bytes held", len(d.guard.standIns), d.guard.standInSize, d.guard.held)
	}
}

var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0x48}
	testPPS = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
)

// bigFrameTS muxes n H.264 IDR frames of size bytes with mediacommon's
// Writer.
func bigFrameTS(tb testing.TB, n, size int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tr := &mpegts.Track{Codec: &codecs.H264{}}
	w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{tr}}
	if err := w.Initialize(); err != nil {
		tb.Fatal(err)
	}
	idr := bytes.Repeat([]byte{0x65, 0x88, 0x84}, size/3)
	for i := range n {
		ts := int64(90000 + i*3000)
		if err := w.WriteH264(tr, ts, ts, [][]byte{testSPS, testPPS, idr}); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// BenchmarkDemuxLargeFrames demuxes 1 MiB frames (4K I-frames): linear
// thanks to the guard's stand-ins, where astits alone is quadratic.
func BenchmarkDemuxLargeFrames(b *testing.B) {
	ts := bigFrameTS(b, 4, 1<<20)
	b.SetBytes(int64(len(ts)))
	b.ReportAllocs()
	for b.Loop() {
		d := demuxer{log: slog.New(slog.DiscardHandler), emit: func(demuxFrame) error { return nil }}
		if err := d.init(bytes.NewReader(ts)); err != nil {
			b.Fatal(err)
		}
		for d.step() == nil {
		}
	}
}

// BenchmarkDemux measures the demuxer alone (guard, mediacommon's Reader,
// Annex-B to AVCC, ADTS split) over the committed test file.
func BenchmarkDemux(b *testing.B) {
	ts := benchTS(b)
	b.SetBytes(int64(len(ts)))
	b.ReportAllocs()
	frames := 0
	for b.Loop() {
		d := demuxer{log: slog.New(slog.DiscardHandler), emit: func(demuxFrame) error { frames++; return nil }}
		if err := d.init(bytes.NewReader(ts)); err != nil {
			b.Fatal(err)
		}
		for {
			if err := d.step(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
	b.ReportMetric(float64(frames)/float64(b.N), "frames/op")
}

// BenchmarkPublish measures the whole publisher pipeline: demuxing,
// retiming and writing to a registry stream with one subscriber.
func BenchmarkPublish(b *testing.B) {
	ts := benchTS(b)
	b.SetBytes(int64(len(ts)))
	b.ReportAllocs()
	reg := media.NewRegistry(media.RegistryConfig{OnPublish: func(st *media.Stream) {
		sub := st.Subscribe(1 << 16)
		go func() {
			for range sub.Frames() {
			}
		}()
	}})
	srv := New(Config{}, reg, nil, nil, nil)
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		p := newPublisherFrom(srv, "bench", StreamID{Name: "live/bench", Mode: ModePublish}, "bench", log, bytes.NewReader(ts))
		if err := p.serveSafe(); err != io.EOF {
			b.Fatal(err)
		}
		p.finish()
	}
}

// TestParamsInOwnPES: parameter sets sent in a PES of their own go with
// the next picture instead of making a frame without one.
func TestParamsInOwnPES(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tr := &mpegts.Track{Codec: &codecs.H264{}}
	w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{tr}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	idr := []byte{0x65, 0x88, 0x84, 0x21}
	slice := []byte{0x41, 0x9a, 0x02}
	write := func(ts int64, au ...[]byte) {
		if err := w.WriteH264(tr, ts, ts, au); err != nil {
			t.Fatal(err)
		}
	}
	write(90000, testSPS, testPPS)
	write(90000, idr)
	write(93000, slice)
	write(96000, testSPS, testPPS)
	write(96000, idr)
	write(99000, slice)

	var frames []demuxFrame
	d := demuxer{log: slog.New(slog.DiscardHandler), emit: func(df demuxFrame) error { frames = append(frames, df); return nil }}
	if err := d.init(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	for d.step() == nil {
	}
	if len(frames) != 4 {
		t.Fatalf("%d frames, want 4", len(frames))
	}
	for i, want := range [][]int{{7, 8, 5}, {1}, {7, 8, 5}, {1}} {
		got := testpeer.NALUTypes(frames[i].f.Payload, false)
		if len(got) != len(want) {
			t.Fatalf("frame %d: NAL units %v, want %v", i, got, want)
		}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("frame %d: NAL units %v, want %v", i, got, want)
			}
		}
		if key := want[0] == 7; frames[i].f.Key != key {
			t.Errorf("frame %d key %v", i, frames[i].f.Key)
		}
	}
}

package rtsp

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// Fuzz inputs are sequences of RTP packets, each encoded as
//
//	flags (1 byte): bit 0 advance the timestamp by (bits 1-5) * 375 ticks,
//	                bit 6 marker, bit 7 skip a sequence number (a loss)
//	length (2 bytes, big endian), payload
//
// decodeFuzz turns them back into packets.
func decodeFuzz(data []byte, pt uint8) []*rtp.Packet {
	var pkts []*rtp.Packet
	ts := uint32(0x7fff0000) // wraps during long inputs
	seq := uint16(65530)
	for len(data) >= 3 {
		flags := data[0]
		n := int(binary.BigEndian.Uint16(data[1:3]))
		data = data[3:]
		n = min(n, len(data))
		payload := data[:n]
		data = data[n:]
		if flags&1 != 0 {
			ts += uint32(flags>>1&0x1f) * 375
		}
		seq++
		if flags&0x80 != 0 {
			seq++
		}
		pkts = append(pkts, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: pt, Marker: flags&0x40 != 0, SequenceNumber: seq, Timestamp: ts},
			Payload: payload,
		})
	}
	return pkts
}

// encodeFuzz is decodeFuzz's inverse for packets whose timestamps advance
// by multiples of 375 ticks (at most 31 of them).
func encodeFuzz(pkts []*rtp.Packet) []byte {
	var out []byte
	var last uint32
	for i, p := range pkts {
		var flags byte
		if i > 0 && p.Timestamp != last {
			flags = 1 | byte((p.Timestamp-last)/375)<<1
		}
		if p.Marker {
			flags |= 0x40
		}
		last = p.Timestamp
		out = append(out, flags)
		out = binary.BigEndian.AppendUint16(out, uint16(len(p.Payload)))
		out = append(out, p.Payload...)
	}
	return out
}

// seedAUs reads an Annex-B seed file of testdata into access units (split
// at access unit delimiters, which are kept).
func seedAUs(t testing.TB, path string, h265 bool) [][][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	for _, n := range splitAnnexB(b) {
		aud := (!h265 && n[0]&0x1f == 9) || (h265 && (n[0]>>1)&0x3f == 35)
		if aud || len(aus) == 0 {
			aus = append(aus, nil)
		}
		aus[len(aus)-1] = append(aus[len(aus)-1], n)
	}
	return aus
}

// videoSeeds packetizes seed access units (a frame every 3000 ticks).
func videoSeeds(t testing.TB, f format.Format, aus [][][]byte) [][]byte {
	var pkts []*rtp.Packet
	for i, au := range aus {
		var ps []*rtp.Packet
		var err error
		switch f := f.(type) {
		case *format.H264:
			enc, _ := f.CreateEncoder()
			enc.PayloadMaxSize = 300 // fragment (FU-A) and aggregate (STAP-A)
			ps, err = enc.Encode(au)
		case *format.H265:
			enc, _ := f.CreateEncoder()
			enc.PayloadMaxSize = 300
			ps, err = enc.Encode(au)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.Timestamp = uint32(i * 3000)
		}
		pkts = append(pkts, ps...)
	}
	noMarker := make([]*rtp.Packet, len(pkts))
	for i, p := range pkts {
		c := *p
		c.Marker = false
		noMarker[i] = &c
	}
	return [][]byte{encodeFuzz(pkts), encodeFuzz(pkts[:len(pkts)/2]), encodeFuzz(noMarker), encodeFuzz(pkts[3:])}
}

// checkVideoFrames checks the invariants of an assembler's video output.
func checkVideoFrames(t *testing.T, frames []*media.Frame) {
	t.Helper()
	for i, f := range frames {
		if f.Track == nil || f.Track.ClockRate != 90000 {
			t.Fatalf("frame %d: track %v", i, f.Track)
		}
		if len(f.Payload) == 0 {
			t.Fatalf("frame %d: empty payload", i)
		}
		for rest := f.Payload; len(rest) > 0; {
			if len(rest) < 4 {
				t.Fatalf("frame %d: %d trailing bytes", i, len(rest))
			}
			l := int(binary.BigEndian.Uint32(rest))
			if l == 0 || l > len(rest)-4 {
				t.Fatalf("frame %d: NAL unit length %d with %d bytes left", i, l, len(rest)-4)
			}
			rest = rest[4+l:]
		}
		if f.PTS < f.DTS {
			t.Fatalf("frame %d: PTS %d < DTS %d", i, f.PTS, f.DTS)
		}
		if i > 0 && f.DTS <= frames[i-1].DTS {
			t.Fatalf("frame %d: DTS %d after %d", i, f.DTS, frames[i-1].DTS)
		}
		if i == 0 && !f.Key {
			t.Fatal("the first frame is not a key frame")
		}
	}
}

// pushAll feeds packets to an assembler with the PTS gortsplib's timeline
// would give (the timestamp, unwrapped).
func pushAll(a assembler, pkts []*rtp.Packet) ([]*media.Frame, int) {
	var out []*media.Frame
	errs := 0
	var pts int64
	var prev uint32
	for i, p := range pkts {
		if i > 0 {
			pts += int64(int32(p.Timestamp - prev))
		}
		prev = p.Timestamp
		frames, err := a.push(p, pts, time.Time{})
		if err != nil {
			errs++
		}
		out = append(out, frames...)
	}
	return out, errs
}

func fuzzVideo(f *testing.F, newFormat func() format.Format, seed string, h265 bool) {
	aus := seedAUs(f, seed, h265)
	for _, s := range videoSeeds(f, newFormat(), aus) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0x41, 0, 1, 0x65})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := newAssembler(trackPlan{format: newFormat(), id: videoTrackID}, func(string, string, ...any) {})
		if err != nil {
			t.Fatal(err)
		}
		frames, _ := pushAll(a, decodeFuzz(data, 96))
		checkVideoFrames(t, frames)
	})
}

func FuzzAssembleH264(f *testing.F) {
	fuzzVideo(f, func() format.Format { return &format.H264{PayloadTyp: 96, PacketizationMode: 1} }, "testdata/seed.h264", false)
}

func FuzzAssembleH265(f *testing.F) {
	fuzzVideo(f, func() format.Format { return &format.H265{PayloadTyp: 96} }, "testdata/seed.h265", true)
}

func FuzzAssembleAAC(f *testing.F) {
	cfg := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}
	newFormat := func() *format.MPEG4Audio {
		return &format.MPEG4Audio{PayloadTyp: 97, Config: &cfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	}
	enc, _ := newFormat().CreateEncoder()
	enc.PayloadMaxSize = 100
	var pkts []*rtp.Packet
	for i := 0; i < 8; i++ {
		aus := [][]byte{make([]byte, 40+i*30), make([]byte, 20)}
		ps, _ := enc.Encode(aus)
		for _, p := range ps {
			p.Timestamp += uint32(i * 2048 / 375 * 375)
		}
		pkts = append(pkts, ps...)
	}
	f.Add(encodeFuzz(pkts))
	f.Add([]byte{0, 0, 4, 0, 16, 0, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := newAssembler(trackPlan{format: newFormat(), id: audioTrackID}, nil)
		if err != nil {
			t.Fatal(err)
		}
		frames, _ := pushAll(a, decodeFuzz(data, 97))
		for i, f := range frames {
			if len(f.Payload) == 0 || !f.Key || f.PTS != f.DTS {
				t.Fatalf("frame %d: %s", i, testpeer.FormatFrame(f))
			}
			if i > 0 && f.DTS <= frames[i-1].DTS {
				t.Fatalf("frame %d: DTS %d after %d", i, f.DTS, frames[i-1].DTS)
			}
		}
	})
}

// FuzzAssembleLATM feeds MP4A-LATM packets to the assemblers of ffmpeg's
// config (one AAC frame per audioMuxElement) and of the same with 3
// subframes per element. Seeds: ffmpeg's packets (testdata/gen.sh), whole and in
// fragments.
func FuzzAssembleLATM(f *testing.F) {
	var lf *format.MPEG4AudioLATM // the same config in both captures
	for _, name := range []string{"testdata/seed.latm", "testdata/seed-frag.latm"} {
		var pkts []*rtp.Packet
		lf, pkts = latmSeed(f, name)
		f.Add(encodeFuzz(pkts))
		f.Add(encodeFuzz(pkts[1:]))
	}
	sub := *lf.StreamMuxConfig
	sub.NumSubFrames = 2
	formats := []*format.MPEG4AudioLATM{lf, {PayloadTyp: 97, StreamMuxConfig: &sub}}
	f.Add([]byte{0x40, 0, 5, 2, 0xa1, 0xa2, 1, 0xb1})
	f.Add([]byte{0, 0, 3, 0xff, 0xff, 0x10, 0x40, 0, 2, 0xaa, 0xbb})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lf := range formats {
			a, err := newAssembler(trackPlan{format: lf, id: audioTrackID}, nil)
			if err != nil {
				t.Fatal(err)
			}
			frames, _ := pushAll(a, decodeFuzz(data, 97))
			for i, f := range frames {
				if aac, ok := f.Track.Codec.(*media.AAC); !ok || f.Track != a.track() || f.Track.ClockRate != uint32(aac.Config.SampleRate) {
					t.Fatalf("frame %d: track %+v", i, f.Track)
				}
				if len(f.Payload) == 0 || len(f.Payload) > mpeg4audio.MaxAccessUnitSize || !f.Key || f.PTS != f.DTS {
					t.Fatalf("frame %d: %s", i, testpeer.FormatFrame(f))
				}
				if i > 0 && f.DTS <= frames[i-1].DTS {
					t.Fatalf("frame %d: DTS %d after %d", i, f.DTS, frames[i-1].DTS)
				}
			}
		}
	})
}

// FuzzPublisher feeds interleaved H.264 and Opus packets to a publisher and
// checks what reaches the stream.
func FuzzPublisher(f *testing.F) {
	aus := seedAUs(f, "testdata/seed.h264", false)
	for _, s := range videoSeeds(f, &format.H264{PayloadTyp: 96, PacketizationMode: 1}, aus) {
		f.Add(s, []byte{1, 0, 3, 1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, vdata, adata []byte) {
		var sub *media.Subscription
		reg := media.NewRegistry(media.RegistryConfig{OnPublish: func(st *media.Stream) { sub = st.Subscribe(1 << 16) }})
		srv := New(Config{}, reg, nil, nil, nil)
		video := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}
		audio := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{&format.Opus{PayloadTyp: 97, ChannelCount: 2}}}
		plans, _ := planTracks(&description.Session{Medias: []*description.Media{video, audio}})
		p, err := newPublisher(srv, "live/fuzz", media.PublishInfo{}, srv.log, plans)
		if err != nil {
			t.Fatal(err)
		}
		var out []*media.Frame
		drain := func() {
			if sub == nil {
				return
			}
			for {
				select {
				case f, ok := <-sub.Frames():
					if !ok {
						return
					}
					out = append(out, f)
				default:
					return
				}
			}
		}
		vp, ap := decodeFuzz(vdata, 96), decodeFuzz(adata, 97)
		vt, at := p.tracks[0], p.tracks[1]
		var vpts, apts int64
		for i := 0; i < len(vp) || i < len(ap); i++ {
			if i < len(vp) {
				if i > 0 {
					vpts += int64(int32(vp[i].Timestamp - vp[i-1].Timestamp))
				}
				_ = p.handle(vt, vp[i], vpts, true)
			}
			if i < len(ap) {
				if i > 0 {
					apts += int64(int32(ap[i].Timestamp - ap[i-1].Timestamp))
				}
				_ = p.handle(at, ap[i], apts, true)
			}
			drain()
		}
		p.close()
		drain()
		last := map[int]int64{}
		for i, f := range out {
			if f.DTS < 0 || f.PTS < f.DTS {
				t.Fatalf("frame %d: %s", i, testpeer.FormatFrame(f))
			}
			if l, ok := last[f.Track.ID]; ok && f.DTS <= l {
				t.Fatalf("frame %d: DTS %d after %d", i, f.DTS, l)
			}
			last[f.Track.ID] = f.DTS
		}
		if reg.Len() != 0 {
			t.Fatal("stream still live after close")
		}
	})
}

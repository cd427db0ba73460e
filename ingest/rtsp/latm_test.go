package rtsp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/sdp"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/media"
)

// ffmpegLATMConfig is the StreamMuxConfig ffmpeg's SDP gives for AAC-LC at
// 48 kHz, stereo (config=400023203fc0).
const ffmpegLATMConfig = "400023203fc0"

// latmSeed reads a capture of testdata/genlatm.go: the format of its SDP
// and the RTP packets.
func latmSeed(t testing.TB, path string) (*format.MPEG4AudioLATM, []*rtp.Packet) {
	t.Helper()
	body, err := os.ReadFile(path + ".sdp")
	if err != nil {
		t.Fatal(err)
	}
	var ssd sdp.SessionDescription
	if err := ssd.Unmarshal(body); err != nil {
		t.Fatal(err)
	}
	var desc description.Session
	if err := desc.Unmarshal(&ssd); err != nil {
		t.Fatal(err)
	}
	f, ok := desc.Medias[0].Formats[0].(*format.MPEG4AudioLATM)
	if !ok {
		t.Fatalf("%s: format %T", path, desc.Medias[0].Formats[0])
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []*rtp.Packet
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		var p rtp.Packet
		if err := p.Unmarshal(b[2 : 2+n]); err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, &p)
		b = b[2+n:]
	}
	return f, pkts
}

// streamMuxConfig builds a StreamMuxConfig of programs × layers of cfg.
func streamMuxConfig(cfg mpeg4audio.AudioSpecificConfig, subFrames uint, programs, layers int) *mpeg4audio.StreamMuxConfig {
	c := &mpeg4audio.StreamMuxConfig{NumSubFrames: subFrames}
	for range programs {
		p := &mpeg4audio.StreamMuxConfigProgram{}
		for range layers {
			p.Layers = append(p.Layers, &mpeg4audio.StreamMuxConfigLayer{AudioSpecificConfig: &cfg, LatmBufferFullness: 255})
		}
		c.Programs = append(c.Programs, p)
	}
	return c
}

func marshalHex(t *testing.T, c *mpeg4audio.StreamMuxConfig) string {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestLATMAudioConfig maps StreamMuxConfigs (as the SDP's config= gives
// them) to the AudioSpecificConfig of the AAC track.
func TestLATMAudioConfig(t *testing.T) {
	lc := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 44100, ChannelConfig: 1}
	he := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 24000, ChannelConfig: 2,
		ExtensionType: mpeg4audio.ObjectTypeSBR, ExtensionSampleRate: 48000}
	short := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 16000, ChannelConfig: 1, FrameLengthFlag: true}
	fixed := streamMuxConfig(lc, 0, 1, 1)
	fixed.Programs[0].Layers[0].FrameLengthType = 1
	fixed.Programs[0].Layers[0].FrameLength = 100
	other := streamMuxConfig(lc, 0, 1, 1)
	other.OtherDataPresent, other.OtherDataLenBits = true, 8
	reuse := streamMuxConfig(lc, 0, 1, 2)
	reuse.Programs[0].Layers[1].AudioSpecificConfig = nil // useSameConfig=1

	for _, tc := range []struct {
		name   string
		config string // hex, as in the SDP
		want   *mpeg4audio.AudioSpecificConfig
		why    string // in the refusal
	}{
		{"ffmpeg AAC-LC 48k stereo", ffmpegLATMConfig, &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2}, ""},
		{"AAC-LC 44.1k mono", marshalHex(t, streamMuxConfig(lc, 0, 1, 1)), &lc, ""},
		{"HE-AAC", marshalHex(t, streamMuxConfig(he, 0, 1, 1)), &he, ""},
		{"960-sample frames", marshalHex(t, streamMuxConfig(short, 0, 1, 1)), &short, ""},
		{"4 subframes", marshalHex(t, streamMuxConfig(lc, 3, 1, 1)), &lc, ""},
		{"2 layers", marshalHex(t, streamMuxConfig(lc, 0, 1, 2)), nil, "1 programs and 2 layers"},
		{"2 layers, the second reusing the config", marshalHex(t, reuse), nil, "1 programs and 2 layers"},
		{"2 programs", marshalHex(t, streamMuxConfig(lc, 0, 2, 1)), nil, "2 programs and 2 layers"},
		{"fixed frame length", marshalHex(t, fixed), nil, "frameLengthType 1"},
		{"other data", marshalHex(t, other), nil, "other data"},
		{"AAC Main", "400013203fc0", nil, "object type"}, // object type 1
		{"audioMuxVersion 1", "c00023203fc0", nil, "audioMuxVersion"},
		{"garbage", "ff", nil, "not enough bits"},
		{"empty", "", nil, "not enough bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			var smc mpeg4audio.StreamMuxConfig
			err = smc.Unmarshal(b)
			var got *mpeg4audio.AudioSpecificConfig
			if err == nil {
				got, err = latmAudioConfig(&smc)
			}
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				if !strings.Contains(err.Error(), tc.why) {
					t.Errorf("refused with %q, want %q", err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := *tc.want
			w.ChannelCount = got.ChannelCount //nolint:staticcheck // SA1019: Unmarshal still fills the deprecated count; compare the rest
			if *got != w {
				t.Errorf("config %+v, want %+v", *got, w)
			}
		})
	}
	if _, err := latmAudioConfig(nil); err == nil {
		t.Error("nil StreamMuxConfig accepted")
	}
	noASC := streamMuxConfig(lc, 0, 1, 1)
	noASC.Programs[0].Layers[0].AudioSpecificConfig = nil
	if _, err := latmAudioConfig(noASC); err == nil {
		t.Error("layer without AudioSpecificConfig accepted")
	}
	if _, err := latmAudioConfig(&mpeg4audio.StreamMuxConfig{Programs: []*mpeg4audio.StreamMuxConfigProgram{nil}}); err == nil {
		t.Error("nil program accepted")
	}
}

// TestLATMPlan: LATM with the config in the SDP is ingested as AAC; the
// in-band config (cpresent=1) and unsupported shapes are ignored, with the
// reason.
func TestLATMPlan(t *testing.T) {
	lc := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}
	good := &format.MPEG4AudioLATM{PayloadTyp: 98, StreamMuxConfig: streamMuxConfig(lc, 0, 1, 1)}
	inband := &format.MPEG4AudioLATM{PayloadTyp: 97, CPresent: true}
	layers := &format.MPEG4AudioLATM{PayloadTyp: 99, StreamMuxConfig: streamMuxConfig(lc, 0, 1, 2)}
	desc := &description.Session{Medias: []*description.Media{
		{Type: "audio", Formats: []format.Format{inband}},
		{Type: "audio", Formats: []format.Format{layers}},
		{Type: "audio", Formats: []format.Format{inband, good}},
	}}
	plans, ignored := planTracks(desc)
	if len(plans) != 1 || plans[0].format != good || plans[0].id != audioTrackID {
		t.Fatalf("plans %+v", plans)
	}
	if len(ignored) != 2 || !strings.Contains(ignored[0], "unsupported codec: LATM with in-band StreamMuxConfig is not supported") ||
		!strings.Contains(ignored[1], "unsupported codec: LATM with 1 programs and 2 layers") {
		t.Errorf("ignored %q", ignored)
	}
	a, err := newAssembler(plans[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := a.track()
	if c, ok := tr.Codec.(*media.AAC); !ok || c.Config != lc || tr.ClockRate != 48000 || tr.ID != audioTrackID || c.RFC6381() != "mp4a.40.2" || !a.ready() {
		t.Errorf("track %+v codec %+v", tr, tr.Codec)
	}
	short := &format.MPEG4AudioLATM{PayloadTyp: 98, StreamMuxConfig: streamMuxConfig(mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 16000, ChannelConfig: 1, FrameLengthFlag: true}, 0, 1, 1)}
	if a, err := newAssembler(trackPlan{format: short, id: audioTrackID}, nil); err != nil ||
		a.(*aacAssembler).clock.FrameSamples != 960 || a.track().ClockRate != 16000 {
		t.Errorf("960-sample frames: %v", err)
	}
	if _, err := newAssembler(trackPlan{format: inband, id: audioTrackID}, nil); err == nil {
		t.Error("assembler for an in-band config")
	}
	if _, ignored := planTracks(&description.Session{Medias: desc.Medias[:2]}); len(ignored) != 2 {
		t.Errorf("ignored %q", ignored)
	}
}

// TestLATMSeeds assembles ffmpeg's packets, whole and fragmented: the same
// frames, 1024 samples apart, whose payloads are those mediacommon's
// AudioMuxElement parser finds.
func TestLATMSeeds(t *testing.T) {
	var first []*media.Frame
	for _, name := range []string{"testdata/seed.latm", "testdata/seed-frag.latm"} {
		f, pkts := latmSeed(t, name)
		if marshalHex(t, f.StreamMuxConfig) != ffmpegLATMConfig || f.CPresent {
			t.Fatalf("%s: format %+v", name, f)
		}
		// The reference: mediacommon's parser on the joined payloads.
		var want [][]byte
		var joined []byte
		for _, p := range pkts {
			joined = append(joined, p.Payload...)
			if p.Marker {
				ame := mpeg4audio.AudioMuxElement{StreamMuxConfig: f.StreamMuxConfig}
				if err := ame.Unmarshal(joined); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				want = append(want, ame.Payloads[0][0][0])
				joined = nil
			}
		}
		t.Logf("%s: %d packets, %d elements", name, len(pkts), len(want))
		if len(want) < 8 || (name == "testdata/seed-frag.latm") == (len(pkts) == len(want)) {
			t.Fatalf("%s: %d packets, %d elements", name, len(pkts), len(want))
		}

		a, err := newAssembler(trackPlan{format: f, id: audioTrackID}, nil)
		if err != nil {
			t.Fatal(err)
		}
		frames, errs := pushAll(a, pkts)
		if errs != 0 || len(frames) != len(want) {
			t.Fatalf("%s: %d frames, %d errors; want %d frames", name, len(frames), errs, len(want))
		}
		for i, fr := range frames {
			if !bytes.Equal(fr.Payload, want[i]) {
				t.Errorf("%s: frame %d differs from mediacommon's", name, i)
			}
			if fr.DTS != int64(i)*1024 || fr.PTS != fr.DTS || !fr.Key || fr.Track != a.track() {
				t.Errorf("%s: frame %d: DTS %d PTS %d key %v", name, i, fr.DTS, fr.PTS, fr.Key)
			}
			if first != nil && !bytes.Equal(fr.Payload, first[i].Payload) {
				t.Errorf("%s: frame %d differs from the unfragmented one", name, i)
			}
		}
		first = frames
	}
}

// TestLATMDecoder round-trips AAC frames through mediacommon's
// AudioMuxElement and gortsplib's LATM packetizer: subframes, lengths
// around 255, fragments, several elements in a packet, and broken input.
func TestLATMDecoder(t *testing.T) {
	lc := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}
	sizes := []int{1, 254, 255, 256, 509, 510, 600, mpeg4audio.MaxAccessUnitSize, 7}
	frame := func(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, sizes[i%len(sizes)]) }

	for _, subFrames := range []uint{0, 2} {
		f := &format.MPEG4AudioLATM{PayloadTyp: 97, StreamMuxConfig: streamMuxConfig(lc, subFrames, 1, 1)}
		per := int(subFrames) + 1
		enc, err := f.CreateEncoder()
		if err != nil {
			t.Fatal(err)
		}
		enc.PayloadMaxSize = 300
		var pkts []*rtp.Packet
		var want [][]byte
		for e := 0; e < 6; e++ {
			ame := mpeg4audio.AudioMuxElement{StreamMuxConfig: f.StreamMuxConfig, Payloads: make([][][][]byte, per)}
			for s := range per {
				fr := frame(len(want))
				ame.Payloads[s] = [][][]byte{{fr}}
				want = append(want, fr)
			}
			b, err := ame.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			ps, err := enc.Encode(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				p.Timestamp = uint32(e * per * 1024)
			}
			pkts = append(pkts, ps...)
		}
		a, err := newAssembler(trackPlan{format: f, id: audioTrackID}, nil)
		if err != nil {
			t.Fatal(err)
		}
		frames, errs := pushAll(a, pkts)
		if errs != 0 || len(frames) != len(want) {
			t.Fatalf("subframes %d: %d frames, %d errors; want %d", per, len(frames), errs, len(want))
		}
		for i, fr := range frames {
			if !bytes.Equal(fr.Payload, want[i]) || fr.DTS != int64(i)*1024 {
				t.Errorf("subframes %d: frame %d: %d bytes, DTS %d", per, i, len(fr.Payload), fr.DTS)
			}
		}
	}

	// Two elements in one packet: two frames, 1024 samples apart; then
	// broken packets, each lost alone.
	f := &format.MPEG4AudioLATM{PayloadTyp: 97, StreamMuxConfig: streamMuxConfig(lc, 0, 1, 1)}
	a, err := newAssembler(trackPlan{format: f, id: audioTrackID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := uint16(0)
	push := func(ts uint32, marker bool, payload []byte) ([]*media.Frame, error) {
		seq++
		return a.push(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 97, Marker: marker, SequenceNumber: seq, Timestamp: ts}, Payload: payload}, int64(ts), time.Time{})
	}
	frames, err := push(0, true, []byte{2, 0xa1, 0xa2, 1, 0xb1})
	if err != nil || len(frames) != 2 || !bytes.Equal(frames[0].Payload, []byte{0xa1, 0xa2}) ||
		!bytes.Equal(frames[1].Payload, []byte{0xb1}) || frames[1].DTS != 1024 {
		t.Fatalf("two elements: %v %v", frames, err)
	}
	big := append([]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1}, make([]byte, 21*255+1)...)
	for _, bad := range [][]byte{
		{5, 1, 2},       // shorter than its length
		{255, 255},      // truncated PayloadLengthInfo
		{1, 0xa1, 3, 1}, // a second element cut short
		big,             // longer than an AAC access unit can be
		{},              // empty
	} {
		if frames, err := push(2048, true, bad); err == nil || len(frames) != 0 {
			t.Errorf("% x: %d frames, error %v", bad[:min(len(bad), 8)], len(frames), err)
		}
	}
	// A lost fragment loses the frame; the next one comes out.
	if _, err := push(4096, false, []byte{3, 1}); err != nil {
		t.Fatal(err)
	}
	seq++ // the lost middle fragment
	if _, err := push(4096, true, []byte{3}); err == nil {
		t.Error("no error for a frame with a lost fragment")
	}
	frames, err = push(5120, true, []byte{1, 0xc1})
	if err != nil || len(frames) != 1 || frames[0].DTS != 5120 {
		t.Errorf("after a loss: %v %v", frames, err)
	}
}

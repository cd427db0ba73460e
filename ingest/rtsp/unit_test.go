package rtsp

import (
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// TestAssembleSeeds assembles the seed files: every frame comes out, the
// key frames where the encoder put them, with and without marker bits
// (access units then end when the timestamp changes).
func TestAssembleSeeds(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func() format.Format
		path string
		h265 bool
	}{
		{"h264", func() format.Format { return &format.H264{PayloadTyp: 96, PacketizationMode: 1} }, "testdata/seed.h264", false},
		{"h265", func() format.Format { return &format.H265{PayloadTyp: 96} }, "testdata/seed.h265", true},
	} {
		aus := seedAUs(t, tc.path, tc.h265)
		seeds := videoSeeds(t, tc.f(), aus)
		for i, markers := range []bool{true, false} {
			if markers == false && tc.h265 {
				continue // rtph265 needs the marker bit
			}
			a, err := newAssembler(trackPlan{format: tc.f(), id: videoTrackID}, func(k, msg string, args ...any) { t.Logf("%s: %s %v", k, msg, args) })
			if err != nil {
				t.Fatal(err)
			}
			frames, errs := pushAll(a, decodeFuzz(seeds[2*i], 96))
			if errs != 0 {
				t.Errorf("%s markers=%v: %d decode errors", tc.name, markers, errs)
			}
			want := len(aus)
			if !markers {
				want-- // the last one waits for a next timestamp
			}
			if len(frames) != want {
				t.Fatalf("%s markers=%v: %d frames, want %d", tc.name, markers, len(frames), want)
			}
			checkVideoFrames(t, frames)
			for j, f := range frames {
				if f.PTS != int64(j)*3000 {
					t.Errorf("%s markers=%v: frame %d PTS %d", tc.name, markers, j, f.PTS)
				}
				if f.Key != isKeyAU(aus[j], tc.h265) {
					t.Errorf("%s markers=%v: frame %d key %v", tc.name, markers, j, f.Key)
				}
				for _, typ := range testpeer.NALUTypes(f.Payload, tc.h265) {
					if (!tc.h265 && typ == 9) || (tc.h265 && typ == 35) {
						t.Errorf("%s: frame %d kept an access unit delimiter", tc.name, j)
					}
				}
			}
			if a.track() == nil {
				t.Fatalf("%s: no track", tc.name)
			}
			if _, err := media.ParseVideoInfo(a.track().Codec); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		}
	}
}

func isKeyAU(au [][]byte, h265 bool) bool {
	for _, n := range au {
		if typ := int(n[0]>>1) & 0x3f; h265 && typ >= 16 && typ <= 21 {
			return true
		}
		if !h265 && n[0]&0x1f == 5 {
			return true
		}
	}
	return false
}

// TestAssembleParamChange: new in-band parameter sets make a new Track with
// the same id.
func TestAssembleParamChange(t *testing.T) {
	aus := seedAUs(t, "testdata/seed.h264", false)
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	a, err := newAssembler(trackPlan{format: f, id: videoTrackID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := f.CreateEncoder()
	var tracks []*media.Track
	for i, au := range aus {
		if i == 6 {
			// Another PPS (a changed pic_init_qp, say): a byte flipped at the end.
			for j, n := range au {
				if n[0]&0x1f == 8 {
					c := append([]byte(nil), n...)
					c[len(c)-1] ^= 0x40
					au[j] = c
				}
			}
		}
		pkts, _ := enc.Encode(au)
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3000)
			frames, err := a.push(p, int64(i*3000), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, fr := range frames {
				if len(tracks) == 0 || tracks[len(tracks)-1] != fr.Track {
					tracks = append(tracks, fr.Track)
				}
			}
		}
	}
	if len(tracks) != 2 || tracks[0].ID != tracks[1].ID {
		t.Fatalf("tracks %v", tracks)
	}
	if string(tracks[0].Codec.(*media.H264).PPS) == string(tracks[1].Codec.(*media.H264).PPS) {
		t.Error("same PPS")
	}
}

func TestPlanTracks(t *testing.T) {
	cfg := &mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 44100, ChannelConfig: 2}
	h264 := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	desc := &description.Session{Medias: []*description.Media{
		{Type: "video", Formats: []format.Format{&format.VP8{PayloadTyp: 98}}},
		{Type: "video", Formats: []format.Format{&format.H264{PayloadTyp: 97, PacketizationMode: 2}, h264}},
		{Type: "audio", Formats: []format.Format{&format.G711{PayloadTyp: 0}}},
		{Type: "video", Formats: []format.Format{&format.H265{PayloadTyp: 99}}},
		{Type: "audio", Formats: []format.Format{&format.MPEG4Audio{PayloadTyp: 100, Config: cfg, SizeLength: 13}}},
		{Type: "audio", Formats: []format.Format{&format.Opus{PayloadTyp: 101, ChannelCount: 2}}},
		{Type: "application", Formats: []format.Format{&format.Generic{PayloadTyp: 102, RTPMa: "x/90000", ClockRat: 90000}}},
	}}
	plans, ignored := planTracks(desc)
	if len(plans) != 2 || plans[0].format != h264 || plans[0].id != videoTrackID ||
		plans[1].id != audioTrackID || plans[1].media != desc.Medias[4] {
		t.Fatalf("plans %+v", plans)
	}
	if len(ignored) != 5 {
		t.Errorf("ignored %v", ignored)
	}
	for _, want := range []string{"VP8", "G711", "only one video track", "only one audio track", "application"} {
		if !strings.Contains(strings.Join(ignored, "\n"), want) {
			t.Errorf("ignored %v: no %q", ignored, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{UDPRTPAddress: ":8000", UDPRTCPAddress: ":8001", Sources: []Source{
		{Name: "live/a", URL: "rtsp://u:p@cam/x"}, {Name: "live/b", URL: "rtsps://cam:322/y", Transport: "udp", OnDemand: true},
	}}
	if err := ok.withDefaults().Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{UDPRTPAddress: ":8000"}, "together"},
		{Config{UDPRTPAddress: ":8001", UDPRTCPAddress: ":8002"}, "even"},
		{Config{UDPRTPAddress: ":8000", UDPRTCPAddress: ":8003"}, "plus one"},
		{Config{UDPRTPAddress: "8000", UDPRTCPAddress: ":8001"}, "udp_rtp_address"},
		{Config{Sources: []Source{{Name: "bad name", URL: "rtsp://x/y"}}}, "name"},
		{Config{Sources: []Source{{Name: "a", URL: "rtsp://x/y"}, {Name: "a", URL: "rtsp://x/z"}}}, "used twice"},
		{Config{Sources: []Source{{Name: "a", URL: "http://x/y"}}}, "scheme"},
		{Config{Sources: []Source{{Name: "a", URL: "rtsp:///y"}}}, "no host"},
		{Config{Sources: []Source{{Name: "a", URL: "rtsp://u:secret@x/y", Transport: "sctp"}}}, "transport"},
		{Config{Sources: []Source{{Name: "a", URL: "rtsp://u:secret@x:bad/y"}}}, "invalid url"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the password is in the error: %v", err)
		}
	}
	// Start refuses an invalid configuration.
	s := New(Config{Address: "127.0.0.1:0", UDPRTPAddress: ":8001", UDPRTCPAddress: ":8002"}, media.NewRegistry(media.RegistryConfig{}), nil, nil, nil)
	if err := s.Start(); err == nil {
		t.Error("Start with an odd RTP port")
	}
	_ = s.Close()
}

func TestBackoff(t *testing.T) {
	src := &source{srv: New(Config{}, nil, nil, nil, nil)}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		w *= time.Second
		for range 20 {
			d := src.backoff(i + 1)
			if d > w || d < w*3/4 {
				t.Fatalf("retry %d: %s, want %s minus up to 25%%", i+1, d, w)
			}
		}
	}
	if d := src.backoff(1000); d > 30*time.Second {
		t.Errorf("retry 1000: %s", d)
	}
}

func TestTimestampHelpers(t *testing.T) {
	// 2026-01-01T00:00:00.5Z in NTP.
	want := time.Date(2026, 1, 1, 0, 0, 0, 500000000, time.UTC)
	v := uint64(want.Unix()+ntpEpochOffset)<<32 | 1<<31
	if got := ntpTime(v); !got.Equal(want) {
		t.Errorf("ntpTime = %s, want %s", got, want)
	}
	if got := pathName("/live/key/"); got != "live/key" {
		t.Errorf("pathName = %q", got)
	}
}

// TestPacketize: frames of every codec become RTP packets readers can
// decode back, parameter sets in front of key frames that lack them.
func TestPacketize(t *testing.T) {
	aus := seedAUs(t, "testdata/seed.h264", false)
	var sps, pps []byte
	for _, n := range aus[0] {
		switch n[0] & 0x1f {
		case 7:
			sps = n
		case 8:
			pps = n
		}
	}
	vt := &media.Track{ID: 1, Codec: &media.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	at := &media.Track{ID: 2, Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2}}, ClockRate: 48000}
	ot := &media.Track{ID: 3, Codec: &media.Opus{ChannelCount: 2}, ClockRate: 48000}
	desc, outs, err := describe([]*media.Track{vt, at, ot}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Medias) != 3 || desc.Medias[2].Control != "trackID=2" {
		t.Fatalf("medias %+v", desc.Medias)
	}
	if _, err := desc.Marshal(); err != nil {
		t.Fatal(err)
	}
	// A key frame without its parameter sets (as RTMP delivers them).
	var idr [][]byte
	for _, n := range aus[0] {
		if typ := n[0] & 0x1f; typ == 5 || typ == 6 {
			idr = append(idr, n)
		}
	}
	payload := []byte{0, 0, 0, 2, 9, 0xf0} // an AUD, dropped
	for _, n := range idr {
		payload = append(payload, byte(len(n)>>24), byte(len(n)>>16), byte(len(n)>>8), byte(len(n)))
		payload = append(payload, n...)
	}
	pkts, err := outs[0].packetize(&media.Frame{Track: vt, Key: true, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := desc.Medias[0].Formats[0].(*format.H264).CreateDecoder()
	var au [][]byte
	for _, p := range pkts {
		if au, err = dec.Decode(p); err != nil && len(au) == 0 && p.Marker {
			t.Fatal(err)
		}
	}
	if len(au) != 2+len(idr) || au[0][0]&0x1f != 7 || au[1][0]&0x1f != 8 {
		t.Errorf("decoded %d NAL units", len(au))
	}
	if pkts, err := outs[1].packetize(&media.Frame{Track: at, Key: true, Payload: []byte{1, 2, 3}}); err != nil || len(pkts) != 1 {
		t.Errorf("aac: %v %d", err, len(pkts))
	}
	if pkts, err := outs[2].packetize(&media.Frame{Track: ot, Key: true, Payload: []byte{0xfc, 1}}); err != nil || len(pkts) != 1 ||
		pkts[0].Payload[0] != 0xfc {
		t.Errorf("opus: %v %d", err, len(pkts))
	}
	_ = rtp.Packet{}
}

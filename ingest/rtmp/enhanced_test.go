package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// gortmplibPublisher connects gortmplib's client (a real, independent
// enhanced RTMP implementation) to the test server as a publisher of key.
func gortmplibPublisher(t *testing.T, e *testEnv, key string, tracks ...*gortmplib.Track) (*gortmplib.Client, *gortmplib.Writer) {
	t.Helper()
	// gortmplib takes the app from the path and the stream key from the fragment.
	u, err := url.Parse("rtmp://" + e.addr() + "/live#" + key)
	if err != nil {
		t.Fatal(err)
	}
	c := &gortmplib.Client{URL: u, Publish: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		t.Fatalf("gortmplib publish: %v", err)
	}
	t.Cleanup(c.Close)
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	w := &gortmplib.Writer{Conn: c, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		t.Fatalf("gortmplib writer: %v", err)
	}
	return c, w
}

// checkVideoTimeline checks that DTS never goes back and that PTS >= DTS.
func checkVideoTimeline(t *testing.T, frames []*media.Frame) {
	t.Helper()
	for i, f := range frames {
		if f.Track.Kind() != media.KindVideo {
			t.Fatalf("frame %d is %s", i, f.Track.Kind())
		}
		if i > 0 && f.DTS < frames[i-1].DTS {
			t.Fatalf("frame %d: DTS %d after %d", i, f.DTS, frames[i-1].DTS)
		}
		if f.PTS < f.DTS {
			t.Fatalf("frame %d: PTS %d before DTS %d", i, f.PTS, f.DTS)
		}
	}
}

// TestEnhancedHEVCFromGortmplib publishes the H.265 encode (B-frames) with
// gortmplib's client: hvcC sequence start, then CodedFrames with composition
// times or CodedFramesX, all with FrameType 0 (gortmplib does not set it), so
// key frames must come from the bitstream.
func TestEnhancedHEVCFromGortmplib(t *testing.T) {
	src := loadHEVC(t)
	e := newEnv(t, Config{})
	track := &gortmplib.Track{Codec: &rtmpcodecs.H265{VPS: src.vps, SPS: src.sps, PPS: src.pps}}
	c, w := gortmplibPublisher(t, e, "hevc", track)
	for i, au := range src.aus {
		if err := w.WriteH265(track, au.pts, au.dts, au.nalus); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	c.Close()

	cp := e.waitPublished("live/hevc", 1, 5*time.Second)
	cp.Wait(t, 5*time.Second)
	tracks := cp.Stream.Tracks()
	if len(tracks) != 1 {
		t.Fatalf("%d tracks announced", len(tracks))
	}
	codec, ok := tracks[0].Codec.(*media.H265)
	if !ok || !bytes.Equal(codec.VPS, src.vps) || !bytes.Equal(codec.SPS, src.sps) || !bytes.Equal(codec.PPS, src.pps) {
		t.Fatalf("announced codec %T %+v", tracks[0].Codec, tracks[0].Codec)
	}
	if got := codec.RFC6381(); got != "hvc1.1.6.L60.90" {
		t.Errorf("RFC6381 %q", got)
	}
	if vi, err := media.ParseVideoInfo(codec); err != nil || vi.Width != 320 || vi.Height != 240 {
		t.Errorf("video info %+v, %v", vi, err)
	}

	frames := cp.Frames()
	if len(frames) != len(src.aus) {
		t.Fatalf("%d frames, want %d", len(frames), len(src.aus))
	}
	checkVideoTimeline(t, frames)
	keys := 0
	for i, f := range frames {
		au := src.aus[i]
		if f.Track != tracks[0] {
			t.Fatalf("frame %d on another track", i)
		}
		if want := au.dts.Milliseconds() * 90; f.DTS != want {
			t.Fatalf("frame %d: DTS %d, want %d", i, f.DTS, want)
		}
		if want := au.pts.Milliseconds() * 90; f.PTS != want {
			t.Fatalf("frame %d: PTS %d, want %d", i, f.PTS, want)
		}
		if f.Key != au.key {
			t.Fatalf("frame %d: key %v, want %v", i, f.Key, au.key)
		}
		if f.Key {
			keys++
		}
		testpeer.CheckAVCC(t, f.Payload)
		var got h264.AVCC
		if err := got.Unmarshal(f.Payload); err != nil || len(got) != len(au.nalus) {
			t.Fatalf("frame %d: %d NAL units (%v), want %d", i, len(got), err, len(au.nalus))
		}
		for j := range got {
			if !bytes.Equal(got[j], au.nalus[j]) {
				t.Fatalf("frame %d NAL unit %d differs", i, j)
			}
		}
	}
	if keys != 3 {
		t.Fatalf("%d key frames, want 3", keys)
	}
	testpeer.WaitLog(e.t, e.logs, "codec=hvc1.1.6.L60.90", time.Second)

	snap := segmentFrames(t, frames)
	if len(snap.Segments) < 2 { // key frames 1 s apart, cut by decode time
		t.Fatalf("%d segments", len(snap.Segments))
	}
	if codec, tag, n := decodeRendition(t, snap); codec != "hevc" || tag != "hvc1" || n != len(src.aus) {
		t.Fatalf("ffprobe: codec %s, sample entry %s, %d frames of %d", codec, tag, n, len(src.aus))
	}
}

// TestEnhancedAV1FromGortmplib publishes the AV1 encode with gortmplib's
// writer, which sends a placeholder AV1CodecConfigurationRecord (a fixed
// sequence header, not the stream's) and a temporal delimiter in front of
// every temporal unit. The in-band sequence header of the first key frame
// must replace the placeholder before any frame, delimiters must go, and the
// frames must package into an fMP4 rendition that ffmpeg decodes.
func TestEnhancedAV1FromGortmplib(t *testing.T) {
	src := loadAV1(t)
	e := newEnv(t, Config{})
	track := &gortmplib.Track{Codec: &rtmpcodecs.AV1{}}
	c, w := gortmplibPublisher(t, e, "av1", track)
	for i, tu := range src.tus {
		if err := w.WriteAV1(track, time.Duration(i)*40*time.Millisecond, tu); err != nil {
			t.Fatalf("temporal unit %d: %v", i, err)
		}
	}
	c.Close()

	cp := e.waitPublished("live/av1", 1, 5*time.Second)
	cp.Wait(t, 5*time.Second)
	frames := cp.Frames()
	checkAV1Frames(t, src, frames)
	// The placeholder was announced at publish, the real one came with the first frame.
	if ann := cp.Stream.Tracks()[0]; ann == frames[0].Track {
		t.Fatal("the announced track is the frames' track: the placeholder record was not recognised as different")
	}
	testpeer.WaitLog(e.t, e.logs, "from=\"in band\"", time.Second)
	checkAV1Playable(t, src, frames)
}

// checkAV1Frames checks the frames of a publish of src: one track with the
// real sequence header, a frame per temporal unit holding its OBUs (sized,
// without temporal delimiters), key frames where the encoder put them.
func checkAV1Frames(t *testing.T, src *av1Source, frames []*media.Frame) {
	t.Helper()
	if len(frames) != len(src.tus) {
		t.Fatalf("%d frames, want %d", len(frames), len(src.tus))
	}
	checkVideoTimeline(t, frames)
	codec, ok := frames[0].Track.Codec.(*media.AV1)
	if !ok || !bytes.Equal(codec.SequenceHeader, src.seqHdr) {
		t.Fatalf("frames' codec %T %+v, want the stream's sequence header", frames[0].Track.Codec, frames[0].Track.Codec)
	}
	if got := codec.RFC6381(); got != "av01.0.00M.08" {
		t.Errorf("RFC6381 %q", got)
	}
	if vi, err := media.ParseVideoInfo(codec); err != nil || vi.Width != 320 || vi.Height != 240 {
		t.Errorf("video info %+v, %v", vi, err)
	}
	var keyAt []int
	for i, f := range frames {
		if f.Track != frames[0].Track {
			t.Fatalf("frame %d on another track", i)
		}
		if want := int64(i) * 40 * 90; f.DTS != want || f.PTS != want {
			t.Fatalf("frame %d: DTS %d PTS %d, want %d", i, f.DTS, f.PTS, want)
		}
		var got av1.Bitstream
		if err := got.Unmarshal(f.Payload); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		tu := src.tus[i]
		if len(got) != len(tu) {
			t.Fatalf("frame %d: %d OBUs, want %d", i, len(got), len(tu))
		}
		for j := range got {
			if !bytes.Equal(got[j], tu[j]) {
				t.Fatalf("frame %d OBU %d differs", i, j)
			}
		}
		// Every key frame of this encode carries a sequence header, so
		// mediacommon's test agrees with the frame header's.
		if f.Key != av1.IsRandomAccess2(tu) {
			t.Fatalf("frame %d: key %v, mediacommon says %v", i, f.Key, av1.IsRandomAccess2(tu))
		}
		if f.Key {
			keyAt = append(keyAt, i)
		}
	}
	if len(keyAt) != 3 || keyAt[0] != 0 || keyAt[1] != 25 || keyAt[2] != 50 {
		t.Fatalf("key frames at %v, want [0 25 50]", keyAt)
	}
}

// checkAV1Playable segments the frames and has ffmpeg decode the rendition.
func checkAV1Playable(t *testing.T, src *av1Source, frames []*media.Frame) {
	t.Helper()
	snap := segmentFrames(t, frames)
	if len(snap.Segments) != 3 || !bytes.Contains(snap.Inits[0].Data, []byte("av01")) || !bytes.Contains(snap.Inits[0].Data, []byte("av1C")) {
		t.Fatalf("%d segments; init %q", len(snap.Segments), snap.Inits[0].Data)
	}
	if got := snap.Info.Codec.RFC6381(); got != "av01.0.00M.08" || snap.Info.Width != 320 || snap.Info.Height != 240 {
		t.Fatalf("rendition info %+v (%s)", snap.Info, got)
	}
	// A temporal unit shows exactly one frame (hidden alt-refs are shown
	// later by a show_existing_frame unit): one output frame per unit.
	codec, tag, n := decodeRendition(t, snap)
	if codec != "av1" || tag != "av01" || n != len(src.tus) {
		t.Fatalf("ffprobe: codec %s, sample entry %s, %d frames (of %d temporal units)", codec, tag, n, len(src.tus))
	}
}

// rawPublish connects a raw client and publishes key; the caller sends media.
func rawPublish(t *testing.T, e *testEnv, key string) *rawClient {
	t.Helper()
	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish(key); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	return c
}

// exHeader is the first byte of an enhanced video message.
func exHeader(frameType, packetType byte) byte { return 0x80 | frameType<<4 | packetType }

func si24(v int32) []byte { return []byte{byte(v >> 16), byte(v >> 8), byte(v)} }

// TestEnhancedHEVCOBSStyle sends H.265 the way OBS does, which gortmplib
// does not: FrameType set, 2-byte NAL unit lengths announced in hvcC (OBS
// keeps the encoder's), the FourCC number in onMetaData, and the v2 wrappers:
// a ModEx nanosecond offset, single-track and many-track Multitrack messages.
func TestEnhancedHEVCOBSStyle(t *testing.T) {
	src := loadHEVC(t)
	e := newEnv(t, Config{})
	c := rawPublish(t, e, "obs")
	meta := amfEncode(nil, "@setDataFrame", "onMetaData", amfObj{
		{"videocodecid", float64(binary.BigEndian.Uint32([]byte("hvc1")))}, {"width", 320.0}, {"height", 240.0},
	})
	if err := c.send(5, msgDataAMF0, 1, 0, meta); err != nil {
		t.Fatal(err)
	}
	seq := append([]byte{exHeader(flvFrameKey, exSequenceStart), 'h', 'v', 'c', '1'}, hvcC(src.vps, src.sps, src.pps, 2)...)
	if err := c.send(6, msgVideo, 1, 0, seq); err != nil {
		t.Fatal(err)
	}
	for i, au := range src.aus {
		ft := byte(2)
		if au.key {
			ft = flvFrameKey
		}
		data := lengthPrefixed(au.nalus, 2)
		cts := int32((au.pts - au.dts).Milliseconds())
		var msg []byte
		switch {
		case i%5 == 1: // ModEx: TimestampOffsetNano (3 bytes of data), then CodedFrames
			msg = append([]byte{exHeader(ft, exModEx), 2, 0x01, 0x02, 0x03, 0<<4 | exCodedFrames}, "hvc1"...)
			msg = append(append(msg, si24(cts)...), data...)
		case i%5 == 2: // Multitrack, one track (0)
			msg = append([]byte{exHeader(ft, exMultitrack), mtOneTrack<<4 | exCodedFrames}, "hvc1"...)
			msg = append(append(append(msg, 0), si24(cts)...), data...)
		case i%5 == 3: // Multitrack, many tracks: 1 (ignored) then 0
			other := append(si24(0), 0, 0, 0, 1, 0x26) // a 1-byte "NAL unit"
			body := append(si24(cts), data...)
			msg = append([]byte{exHeader(ft, exMultitrack), mtManyTracks<<4 | exCodedFrames}, "hvc1"...)
			msg = append(append(append(msg, 1), si24(int32(len(other)))...), other...)
			msg = append(append(append(msg, 0), si24(int32(len(body)))...), body...)
		case cts == 0:
			msg = append(append([]byte{exHeader(ft, exCodedFramesX)}, "hvc1"...), data...)
		default:
			msg = append(append(append([]byte{exHeader(ft, exCodedFrames)}, "hvc1"...), si24(cts)...), data...)
		}
		if err := c.send(6, msgVideo, 1, uint32(au.dts.Milliseconds()), msg); err != nil {
			t.Fatal(err)
		}
	}
	// Metadata (colorInfo), a command frame and the end of the sequence: no frames.
	_ = c.send(6, msgVideo, 1, 3000, append(append([]byte{exHeader(0, exMetadata)}, "hvc1"...), amfEncode(nil, "colorInfo", amfObj{})...))
	_ = c.send(6, msgVideo, 1, 3000, []byte{exHeader(flvFrameInfo, exCodedFrames), 0})
	_ = c.send(6, msgVideo, 1, 3000, append([]byte{exHeader(0, exSequenceEnd)}, "hvc1"...))
	_ = c.command(1, "deleteStream", nil, 1.0)
	c.waitClosed(5 * time.Second)

	cp := e.waitPublished("live/obs", 1, 5*time.Second)
	cp.Wait(t, 5*time.Second)
	frames := cp.Frames()
	if len(frames) != len(src.aus) {
		t.Fatalf("%d frames, want %d", len(frames), len(src.aus))
	}
	checkVideoTimeline(t, frames)
	for i, f := range frames {
		au := src.aus[i]
		if f.DTS != au.dts.Milliseconds()*90 || f.PTS != au.pts.Milliseconds()*90 || f.Key != au.key {
			t.Fatalf("frame %d: %s, want dts %d pts %d key %v", i, testpeer.FormatFrame(f), au.dts.Milliseconds()*90, au.pts.Milliseconds()*90, au.key)
		}
		if !bytes.Equal(f.Payload, lengthPrefixed(au.nalus, 4)) {
			t.Fatalf("frame %d: payload not the NAL units with 4-byte lengths", i)
		}
	}
	if !strings.Contains(e.logs.String(), "only track 0 is ingested") {
		t.Error("no warning about the ignored multitrack track")
	}
}

// TestEnhancedAV1ConfigRecord sends AV1 with the stream's own
// AV1CodecConfigurationRecord, OBS's way: FrameType set, CodedFrames without
// temporal delimiters, and one temporal unit whose last OBU has no obu_size.
// The track announced at publish is the one of every frame.
func TestEnhancedAV1ConfigRecord(t *testing.T) {
	src := loadAV1(t)
	e := newEnv(t, Config{})
	c := rawPublish(t, e, "av1obs")
	seq := append([]byte{exHeader(flvFrameKey, exSequenceStart), 'a', 'v', '0', '1'}, av1C(src.seqHdr)...)
	if err := c.send(6, msgVideo, 1, 0, seq); err != nil {
		t.Fatal(err)
	}
	for i, tu := range src.tus {
		ft := byte(2)
		if av1.IsRandomAccess2(tu) {
			ft = flvFrameKey
		}
		data, err := av1.Bitstream(tu).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 { // drop the last OBU's size field
			last := tu[len(tu)-1]
			data = append(data[:len(data)-len(last)-av1.LEB128(len(last)-1).MarshalSize()], last...)
		}
		msg := append(append([]byte{exHeader(ft, exCodedFrames)}, "av01"...), data...)
		if err := c.send(6, msgVideo, 1, uint32(i*40), msg); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.command(1, "deleteStream", nil, 1.0)
	c.waitClosed(5 * time.Second)

	cp := e.waitPublished("live/av1obs", 1, 5*time.Second)
	cp.Wait(t, 5*time.Second)
	frames := cp.Frames()
	checkAV1Frames(t, src, frames)
	if cp.Stream.Tracks()[0] != frames[0].Track {
		t.Fatal("frames on another track than the one announced")
	}
	if strings.Contains(e.logs.String(), "changed=true") {
		t.Fatal("the track changed although the record holds the stream's sequence header")
	}
}

// TestEnhancedUnsupportedFourCC: VP9 (and any FourCC but avc1, hvc1, av01)
// ends the session as an unsupported codec, with a message naming it.
func TestEnhancedUnsupportedFourCC(t *testing.T) {
	e := newEnv(t, Config{})
	for i, fourCC := range []string{"vp09", "\x00\xffzz"} {
		c := rawPublish(t, e, "vp9")
		if err := c.send(6, msgVideo, 1, 0, append([]byte{exHeader(flvFrameKey, exSequenceStart)}, fourCC...)); err != nil {
			t.Fatal(err)
		}
		c.waitClosed(5 * time.Second)
		e.metrics.WaitErrors(ingest.ReasonUnsupportedCodec, float64(i+1))
	}
	testpeer.WaitLog(e.t, e.logs, `unsupported video codec \"vp09\" (enhanced RTMP)`, time.Second) // quoted again by the log handler
}

// TestEnhancedMalformed: broken enhanced messages end the session as
// protocol errors, never as panics.
func TestEnhancedMalformed(t *testing.T) {
	src := loadHEVC(t)
	good := hvcC(src.vps, src.sps, src.pps, 4)
	for i, msg := range [][]byte{
		{exHeader(flvFrameKey, exSequenceStart), 'h', 'v'},                                              // truncated FourCC
		append([]byte{exHeader(flvFrameKey, exSequenceStart)}, append([]byte("hvc1"), good[:30]...)...), // truncated hvcC
		append([]byte{exHeader(flvFrameKey, exSequenceStart)}, "av01\x81\x00\x00\x00\x0a\x7f"...),       // OBU larger than the record
		{exHeader(flvFrameKey, exModEx), 0xff},                                                          // ModEx data cut short
		{exHeader(flvFrameKey, exMultitrack), 0x3f, 'h', 'v', 'c', '1'},                                 // multitrack type 3
	} {
		e := newEnv(t, Config{})
		c := rawPublish(t, e, "bad")
		if err := c.send(6, msgVideo, 1, 0, msg); err != nil {
			t.Fatal(err)
		}
		c.waitClosed(5 * time.Second)
		e.metrics.WaitErrors(ingest.ReasonProtocol, 1)
		if e.metrics.Value("headwater_ingest_errors_total", "reason", string(ingest.ReasonInternal)) != 0 {
			t.Fatalf("case %d: internal error", i)
		}
	}
}

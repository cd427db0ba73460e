package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	mpegtscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
)

// Real encodes for the enhanced RTMP tests (ffmpeg 5.1 cannot publish them
// over RTMP itself), 3 s of 320x240 at 25 fps, key frames every 25 frames:
//
//	ffmpeg -f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libx265 \
//	  -x265-params keyint=25:min-keyint=25 -pix_fmt yuv420p -f mpegts testdata/h265.ts
//	ffmpeg -f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libaom-av1 -cpu-used 8 -g 25 \
//	  -pix_fmt yuv420p -f obu testdata/av1.obu
//
// The H.265 stream has B-frames (x265 defaults) and open GOPs (CRA key
// frames after the first IDR); the AV1 one hidden alt-ref frames, shown later
// by 5-byte show_existing_frame temporal units.

// hevcAU is one access unit of testdata/h265.ts.
type hevcAU struct {
	dts, pts time.Duration // from the first DTS
	nalus    [][]byte      // without access unit delimiters
	key      bool          // holds an IRAP picture (mediacommon's h265.IsRandomAccess or BLA)
}

type hevcSource struct {
	vps, sps, pps []byte
	aus           []hevcAU
}

// av1Source is testdata/av1.obu: temporal units as OBUs without obu_size
// (mediacommon's form), temporal delimiters removed.
type av1Source struct {
	seqHdr []byte
	tus    [][][]byte
}

var (
	hevcOnce sync.Once
	hevcSrc  *hevcSource
	hevcErr  error
	av1Once  sync.Once
	av1Src   *av1Source
	av1Err   error
)

func loadHEVC(t testing.TB) *hevcSource {
	t.Helper()
	hevcOnce.Do(func() { hevcSrc, hevcErr = readHEVC("testdata/h265.ts") })
	if hevcErr != nil {
		t.Fatal(hevcErr)
	}
	return hevcSrc
}

func readHEVC(path string) (*hevcSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd := &mpegts.Reader{R: f}
	if err := rd.Initialize(); err != nil {
		return nil, err
	}
	src := &hevcSource{}
	var first int64
	var have bool
	for _, tr := range rd.Tracks() {
		if _, ok := tr.Codec.(*mpegtscodecs.H265); !ok {
			continue
		}
		rd.OnDataH265(tr, func(pts, dts int64, au [][]byte) error {
			if !have {
				first, have = dts, true
			}
			var keep [][]byte
			for _, n := range au {
				if len(n) < 2 {
					continue
				}
				switch h265.NALUType((n[0] >> 1) & 0x3f) {
				case h265.NALUType_AUD_NUT:
					continue
				case h265.NALUType_VPS_NUT:
					if src.vps == nil {
						src.vps = bytes.Clone(n)
					}
				case h265.NALUType_SPS_NUT:
					if src.sps == nil {
						src.sps = bytes.Clone(n)
					}
				case h265.NALUType_PPS_NUT:
					if src.pps == nil {
						src.pps = bytes.Clone(n)
					}
				}
				keep = append(keep, bytes.Clone(n))
			}
			src.aus = append(src.aus, hevcAU{
				dts:   time.Duration(dts-first) * time.Second / 90000,
				pts:   time.Duration(pts-first) * time.Second / 90000,
				nalus: keep,
				key:   h265.IsRandomAccess(keep),
			})
			return nil
		})
	}
	for {
		if err := rd.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	if src.vps == nil || src.sps == nil || src.pps == nil || len(src.aus) == 0 {
		return nil, errors.New("no H.265 parameter sets or access units in " + path)
	}
	return src, nil
}

func loadAV1(t testing.TB) *av1Source {
	t.Helper()
	av1Once.Do(func() { av1Src, av1Err = readAV1("testdata/av1.obu") })
	if av1Err != nil {
		t.Fatal(av1Err)
	}
	return av1Src
}

func readAV1(path string) (*av1Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bs av1.Bitstream
	if err := bs.Unmarshal(b); err != nil {
		return nil, err
	}
	src := &av1Source{}
	for _, obu := range bs {
		switch av1.OBUType((obu[0] >> 3) & 0x0f) {
		case av1.OBUTypeTemporalDelimiter:
			src.tus = append(src.tus, nil)
			continue
		case av1.OBUTypeSequenceHeader:
			if src.seqHdr == nil {
				src.seqHdr = obu
			}
		}
		if len(src.tus) == 0 {
			return nil, errors.New("OBU before the first temporal delimiter")
		}
		src.tus[len(src.tus)-1] = append(src.tus[len(src.tus)-1], obu)
	}
	if src.seqHdr == nil || len(src.tus) == 0 {
		return nil, errors.New("no sequence header or temporal units in " + path)
	}
	return src, nil
}

// hvcC builds an HEVCDecoderConfigurationRecord as OBS does (ffmpeg's
// writer), with NAL unit lengths of lengthSize bytes.
func hvcC(vps, sps, pps []byte, lengthSize int) []byte {
	b := make([]byte, 23, 64+len(vps)+len(sps)+len(pps))
	b[0] = 1
	copy(b[1:13], sps[3:15]) // general profile_tier_level (no emulation prevention in these bytes)
	b[13], b[14] = 0xf0, 0x00
	b[15], b[16], b[17], b[18] = 0xfc, 0xfd, 0xf8, 0xf8
	b[21] = 1<<3 | 1<<2 | byte(lengthSize-1)
	b[22] = 3
	for _, n := range [][]byte{vps, sps, pps} {
		b = append(b, 0x80|(n[0]>>1)&0x3f, 0, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
		b = append(b, n...)
	}
	return b
}

// av1C builds an AV1CodecConfigurationRecord with the sequence header OBU
// (mediacommon's form) in configOBUs.
func av1C(seqHdr []byte) []byte {
	var sh av1.SequenceHeader
	if err := sh.Unmarshal(seqHdr); err != nil {
		panic(err)
	}
	b := []byte{0x81, sh.SeqProfile<<5 | sh.SeqLevelIdx[0]&0x1f, 0x0c, 0}
	obu, err := av1.Bitstream{seqHdr}.Marshal()
	if err != nil {
		panic(err)
	}
	return append(b, obu...)
}

// lengthPrefixed joins NAL units with big-endian length prefixes of size bytes.
func lengthPrefixed(nalus [][]byte, size int) []byte {
	var b []byte
	for _, n := range nalus {
		switch size {
		case 2:
			b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
		default:
			b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
		}
		b = append(b, n...)
	}
	return b
}

// segmentFrames runs frames through the segmenter into a fresh store and
// returns the video rendition's snapshot once the publish has ended.
func segmentFrames(t *testing.T, frames []*media.Frame) *store.Snapshot {
	t.Helper()
	reg := media.NewRegistry(media.RegistryConfig{})
	st, err := reg.Publish("live/seg", media.PublishInfo{Protocol: "test"}, []*media.Track{frames[0].Track})
	if err != nil {
		t.Fatal(err)
	}
	sub := st.Subscribe(len(frames) + 8)
	dst := store.New(store.Config{Window: 100}).Begin("live/seg")
	seg := segmenter.New(segmenter.Config{SegmentDuration: time.Second}, nil, nil)
	done := make(chan error, 1)
	go func() { done <- seg.Run(context.Background(), sub, dst) }()
	for _, f := range frames {
		st.WriteFrame(f)
	}
	st.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("segmenter still running")
	}
	dst.End()
	r, ok := dst.Rendition("video")
	if !ok {
		t.Fatal("no video rendition")
	}
	return r.Snapshot()
}

// decodeRendition writes init and segments back to back and has ffprobe
// decode them: it returns the codec name, the sample entry tag and the
// number of frames decoded. ffmpeg decodes the file too, and must say nothing.
func decodeRendition(t *testing.T, snap *store.Snapshot) (codec, tag string, frames int) {
	t.Helper()
	testpeer.NeedFFmpeg(t)
	var file bytes.Buffer
	file.Write(snap.Inits[0].Data)
	for _, seg := range snap.Segments {
		file.Write(seg.Data)
	}
	path := filepath.Join(t.TempDir(), "out.mp4")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v", "-count_frames",
		"-show_entries", "stream=codec_name,codec_tag_string,nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	fields := strings.Split(strings.TrimSpace(string(out)), ",")
	if len(fields) != 3 {
		t.Fatalf("ffprobe said %q", out)
	}
	frames, _ = strconv.Atoi(fields[2])
	if msg, err := testpeer.FFmpeg(ctx, "-i", path, "-f", "null", "-"); err != nil || strings.TrimSpace(msg) != "" {
		t.Fatalf("ffmpeg decoding the rendition: %v: %s", err, msg)
	}
	return fields[0], fields[1], frames
}

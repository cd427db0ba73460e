package segmenter

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// testMedia is what testdata/testsrc.mp4 holds: 4 s of 320x180 30 fps H.264
// with B-frames (GOP 60) and 48 kHz stereo AAC, made with
//
//	ffmpeg -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
//	  -t 4 -c:v libx264 -preset veryfast -crf 35 -g 60 -bf 2 -pix_fmt yuv420p -c:a aac -b:a 32k -ac 2 \
//	  -movflags frag_keyframe+empty_moov+default_base_moof -frag_duration 500000 testsrc.mp4
//
// testdata/small.mp4 is 256x144 25 fps H.264 without B-frames (another SPS),
// testdata/hevc.mp4 0.4 s of 192x108 25 fps H.265:
//
//	ffmpeg -f lavfi -i testsrc2=size=256x144:rate=25 -t 0.2 -c:v libx264 -preset veryfast -crf 40 -g 60 -bf 0 \
//	  -movflags frag_keyframe+empty_moov+default_base_moof small.mp4
//	ffmpeg -f lavfi -i testsrc2=size=192x108:rate=25 -t 0.4 -c:v libx265 -preset ultrafast -tag:v hvc1 \
//	  -movflags frag_keyframe+empty_moov+default_base_moof hevc.mp4
type testMedia struct {
	vps      []byte // H.265 only
	sps, pps []byte
	aac      mpeg4audio.AudioSpecificConfig
	video    []testSample // decode order, DTS/PTS in 90 kHz
	audio    [][]byte     // AAC access units
}

type testSample struct {
	dts, pts int64
	key      bool
	payload  []byte
}

var (
	loadOnce sync.Once
	testsrc  *testMedia
	smallSrc *testMedia
	loadErr  error
)

func loadMedia(t testing.TB) (*testMedia, *testMedia) {
	t.Helper()
	loadOnce.Do(func() {
		testsrc, loadErr = readMP4("testdata/testsrc.mp4")
		if loadErr == nil {
			smallSrc, loadErr = readMP4("testdata/small.mp4")
		}
	})
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return testsrc, smallSrc
}

// readMP4 reads a fragmented MP4 made by ffmpeg with mediacommon's readers.
func readMP4(path string) (*testMedia, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(b, []byte("moof")) - 4
	if i < 0 {
		return nil, fmt.Errorf("%s: no moof", path)
	}
	var init fmp4.Init
	if err := init.Unmarshal(bytes.NewReader(b[:i])); err != nil {
		return nil, err
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(b[i:]); err != nil {
		return nil, err
	}
	m := &testMedia{}
	scales := map[int]uint32{}
	for _, tr := range init.Tracks {
		scales[tr.ID] = tr.TimeScale
		switch c := tr.Codec.(type) {
		case *codecs.H264:
			m.sps, m.pps = c.SPS, c.PPS
		case *codecs.H265:
			m.vps, m.sps, m.pps = c.VPS, c.SPS, c.PPS
		case *codecs.MPEG4Audio:
			m.aac = c.Config
		}
	}
	for _, p := range parts {
		for _, pt := range p.Tracks {
			ts := int64(scales[pt.ID])
			dts := int64(pt.BaseTime)
			for _, s := range pt.Samples {
				if pt.ID == 1 {
					var au h264.AVCC
					if err := au.Unmarshal(s.Payload); err != nil {
						return nil, err
					}
					key := h264.IsRandomAccess(au)
					if m.vps != nil {
						key = h265.IsRandomAccess(au)
					}
					m.video = append(m.video, testSample{
						dts:     dts * 90000 / ts,
						pts:     (dts + int64(s.PTSOffset)) * 90000 / ts,
						key:     key,
						payload: s.Payload,
					})
				} else {
					m.audio = append(m.audio, s.Payload)
				}
				dts += int64(s.Duration)
			}
		}
	}
	return m, nil
}

func h264Track(t testing.TB, id int) *media.Track {
	m, _ := loadMedia(t)
	return &media.Track{ID: id, Codec: &media.H264{SPS: m.sps, PPS: m.pps}, ClockRate: 90000}
}

func smallTrack(t testing.TB, id int) *media.Track {
	_, m := loadMedia(t)
	return &media.Track{ID: id, Codec: &media.H264{SPS: m.sps, PPS: m.pps}, ClockRate: 90000}
}

func aacTrack(id int, rate int) *media.Track {
	return &media.Track{ID: id, ClockRate: uint32(rate), Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: rate, ChannelConfig: 2,
	}}}
}

// fakeAU is an AVCC access unit of size bytes: one IDR or non-IDR slice NALU.
func fakeAU(size int, key bool) []byte {
	if size < 5 {
		size = 5
	}
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(size-4))
	b[4] = 0x41
	if key {
		b[4] = 0x65
	}
	for i := 5; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

// videoSpec describes synthetic video frames.
type videoSpec struct {
	frames   int
	frameDur int64 // 90 kHz ticks, 3000 = 30 fps
	gop      int   // frames per GOP
	size     int   // payload bytes
	bframes  bool  // I P B B pattern with PTS offsets
	startDTS int64
}

// videoFrames makes frames in decode order with real SPS/PPS and fake slices.
func videoFrames(tr *media.Track, s videoSpec, t0 time.Time) []*media.Frame {
	if s.frameDur == 0 {
		s.frameDur = 3000
	}
	if s.size == 0 {
		s.size = 1000
	}
	out := make([]*media.Frame, 0, s.frames)
	for i := 0; i < s.frames; i++ {
		k := i % s.gop
		key := k == 0
		dts := s.startDTS + int64(i)*s.frameDur
		off := int64(0)
		if s.bframes {
			switch {
			case k == 0:
				off = s.frameDur
			case (k-1)%3 == 0:
				off = 3 * s.frameDur
			}
		}
		out = append(out, &media.Frame{
			Track:    tr,
			DTS:      dts,
			PTS:      dts + off,
			Key:      key,
			Received: t0.Add(media.TicksToDuration(dts-s.startDTS, 90000)),
			Payload:  fakeAU(s.size, key),
		})
	}
	return out
}

// audioFrames makes n AAC frames 1024 samples apart.
func audioFrames(tr *media.Track, n int, startDTS int64, t0 time.Time) []*media.Frame {
	out := make([]*media.Frame, 0, n)
	for i := 0; i < n; i++ {
		dts := startDTS + int64(i)*1024
		out = append(out, &media.Frame{
			Track: tr, DTS: dts, PTS: dts, Key: true,
			Received: t0.Add(media.TicksToDuration(dts-startDTS, tr.ClockRate)),
			Payload:  bytes.Repeat([]byte{0x21, byte(i)}, 100),
		})
	}
	return out
}

// interleave merges frame lists in DTS (seconds) order.
func interleave(lists ...[]*media.Frame) []*media.Frame {
	var out []*media.Frame
	idx := make([]int, len(lists))
	for {
		best := -1
		var bestT time.Duration
		for i, l := range lists {
			if idx[i] >= len(l) {
				continue
			}
			if tt := l[idx[i]].DTSDuration(); best < 0 || tt < bestT {
				best, bestT = i, tt
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, lists[best][idx[best]])
		idx[best]++
	}
}

// harness runs a Segmenter on a hub publish into a store stream.
type harness struct {
	t      testing.TB
	hub    *media.Stream
	sub    *media.Subscription
	dst    *store.Stream
	reg    *prometheus.Registry
	m      *Metrics
	cancel context.CancelFunc
	done   chan error
	ended  bool
}

func newHarness(t testing.TB, st *store.Store, cfg Config, tracks ...*media.Track) *harness {
	t.Helper()
	reg := media.NewRegistry(media.RegistryConfig{})
	hub, err := reg.Publish("live/test", media.PublishInfo{Protocol: "test"}, tracks)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:    t,
		hub:  hub,
		sub:  hub.Subscribe(1 << 16),
		dst:  st.Begin("live/test"),
		reg:  prometheus.NewRegistry(),
		done: make(chan error, 1),
	}
	h.m = NewMetrics(h.reg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	s := New(cfg, h.m, slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	go func() { h.done <- s.Run(ctx, h.sub, h.dst) }()
	t.Cleanup(func() {
		cancel()
		if !h.ended {
			h.hub.Close()
			if err := <-h.done; err != nil {
				t.Logf("segmenter run: %v", err)
			}
		}
	})
	return h
}

func (h *harness) write(frames ...*media.Frame) {
	for _, f := range frames {
		h.hub.WriteFrame(f)
	}
}

// end closes the publish and waits for Run to return.
func (h *harness) end() {
	h.t.Helper()
	h.hub.Close()
	select {
	case err := <-h.done:
		h.ended = true
		if err != nil {
			h.t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return after the subscription closed")
	}
	if d := h.sub.Dropped(); d != 0 {
		h.t.Fatalf("the hub dropped %d frames", d)
	}
	h.dst.End()
}

func (h *harness) rendition(name string) *store.Rendition {
	h.t.Helper()
	r, ok := h.dst.Rendition(name)
	if !ok {
		h.t.Fatalf("no rendition %q", name)
	}
	return r
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// parseSegment parses a segment's bytes into its parts' single track.
func parseSegment(t testing.TB, data []byte) []*fmp4.PartTrack {
	t.Helper()
	var ps fmp4.Parts
	if err := ps.Unmarshal(data); err != nil {
		t.Fatalf("unmarshal segment: %v", err)
	}
	out := make([]*fmp4.PartTrack, 0, len(ps))
	for _, p := range ps {
		if len(p.Tracks) != 1 || p.Tracks[0].ID != 1 {
			t.Fatalf("part with %d tracks", len(p.Tracks))
		}
		out = append(out, p.Tracks[0])
	}
	return out
}

// checkSegments verifies the invariants every rendition must satisfy:
// parts back to back are the segment, tfdt continuity within segments and
// across them, base times and durations consistent.
func checkSegments(t testing.TB, snap *store.Snapshot) {
	t.Helper()
	for i, seg := range snap.Segments {
		var cat []byte
		for _, p := range seg.Parts {
			cat = append(cat, p.Data...)
		}
		if !bytes.Equal(cat, seg.Data) {
			t.Fatalf("segment %d: parts concatenated differ from the segment data", seg.MSN)
		}
		tracks := parseSegment(t, seg.Data)
		if len(tracks) != len(seg.Parts) {
			t.Fatalf("segment %d: %d moofs for %d parts", seg.MSN, len(tracks), len(seg.Parts))
		}
		if tracks[0].BaseTime != seg.BaseTime {
			t.Fatalf("segment %d: first tfdt %d, BaseTime %d", seg.MSN, tracks[0].BaseTime, seg.BaseTime)
		}
		if !seg.Parts[0].Independent {
			t.Fatalf("segment %d: first part not independent", seg.MSN)
		}
		if i > 0 && !seg.Discontinuity {
			prev := snap.Segments[i-1]
			if prev.BaseTime+prev.DurationTicks != seg.BaseTime {
				t.Fatalf("segment %d: base %d, previous ends at %d", seg.MSN, seg.BaseTime, prev.BaseTime+prev.DurationTicks)
			}
			if prev.MSN+1 != seg.MSN {
				t.Fatalf("MSN %d after %d", seg.MSN, prev.MSN)
			}
		}
		for j, tr := range tracks {
			if j > 0 && tr.BaseTime <= tracks[j-1].BaseTime {
				t.Fatalf("segment %d part %d: tfdt %d not after %d", seg.MSN, j, tr.BaseTime, tracks[j-1].BaseTime)
			}
			if seg.Parts[j].Independent != !tr.Samples[0].IsNonSyncSample {
				t.Fatalf("segment %d part %d: independent %v but first sample non-sync %v",
					seg.MSN, j, seg.Parts[j].Independent, tr.Samples[0].IsNonSyncSample)
			}
		}
		last := tracks[len(tracks)-1]
		var sum uint64
		for _, s := range last.Samples[:len(last.Samples)-1] {
			sum += uint64(s.Duration)
		}
		if end := last.BaseTime + sum; end >= seg.BaseTime+seg.DurationTicks {
			t.Fatalf("segment %d: last sample starts at %d, after the segment's end %d", seg.MSN, end, seg.BaseTime+seg.DurationTicks)
		}
	}
}

func samplesOf(tracks []*fmp4.PartTrack) []*fmp4.Sample {
	var out []*fmp4.Sample
	for _, tr := range tracks {
		out = append(out, tr.Samples...)
	}
	return out
}

func waitFor(t testing.TB, r *store.Rendition, msn uint64, part int) *store.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := r.Wait(ctx, msn, part)
	if err != nil {
		t.Fatalf("waiting for %d.%d: %v", msn, part, err)
	}
	return snap
}

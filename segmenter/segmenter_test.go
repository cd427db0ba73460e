package segmenter

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestVideoSegmentsCutOnKeyFrames(t *testing.T) {
	tests := []struct {
		name     string
		gop      int // frames at 30 fps
		frames   int
		wantSegs []int64 // durations in 90 kHz ticks
	}{
		{"gop 1s", 30, 180, []int64{180000, 180000, 180000}},
		{"gop 2s", 60, 180, []int64{180000, 180000, 180000}},
		{"gop 1.5s cuts at 3s", 45, 180, []int64{270000, 270000}},
		{"gop 4s makes 4s segments", 120, 360, []int64{360000, 360000, 360000}},
		{"gop 0.5s", 15, 100, []int64{180000, 120000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, store.New(store.Config{Window: 10}), Config{}, h264Track(t, 1))
			frames := videoFrames(h264Track(t, 1), videoSpec{frames: tc.frames, gop: tc.gop, bframes: true}, t0)
			for _, f := range frames {
				f.Track = h.hub.Tracks()[0]
			}
			h.write(frames...)
			h.end()
			snap := h.rendition("video").Snapshot()
			checkSegments(t, snap)
			if len(snap.Segments) != len(tc.wantSegs) {
				t.Fatalf("%d segments, want %d", len(snap.Segments), len(tc.wantSegs))
			}
			var base uint64
			for i, seg := range snap.Segments {
				if seg.MSN != uint64(i) || seg.BaseTime != base || seg.DurationTicks != uint64(tc.wantSegs[i]) {
					t.Fatalf("segment %d: msn %d base %d duration %d, want base %d duration %d",
						i, seg.MSN, seg.BaseTime, seg.DurationTicks, base, tc.wantSegs[i])
				}
				if seg.Duration != media.TicksToDuration(tc.wantSegs[i], 90000) {
					t.Fatalf("segment %d: Duration %v", i, seg.Duration)
				}
				if want := t0.Add(media.TicksToDuration(int64(base), 90000)); !seg.ProgramDateTime.Equal(want) {
					t.Fatalf("segment %d: PDT %v, want %v", i, seg.ProgramDateTime, want)
				}
				base += seg.DurationTicks
				// 6 frames (200 ms) per part, the last part of a segment may be shorter.
				for j, p := range seg.Parts {
					if p.Duration > 200*time.Millisecond || j < len(seg.Parts)-1 && p.Duration != 200*time.Millisecond {
						t.Fatalf("segment %d part %d: duration %v", i, j, p.Duration)
					}
					if want := (int(parseSegment(t, p.Data)[0].BaseTime)/3000)%tc.gop == 0; p.Independent != want {
						t.Fatalf("segment %d part %d: independent %v", i, j, p.Independent)
					}
				}
				samples := samplesOf(parseSegment(t, seg.Data))
				if want := int(seg.DurationTicks / 3000); len(samples) != want {
					t.Fatalf("segment %d: %d samples, want %d", i, len(samples), want)
				}
				for j, s := range samples {
					if s.Duration != 3000 {
						t.Fatalf("segment %d sample %d: duration %d", i, j, s.Duration)
					}
					k := (int(seg.BaseTime)/3000 + j) % tc.gop
					want := int32(0)
					switch {
					case k == 0:
						want = 3000
					case (k-1)%3 == 0:
						want = 9000
					}
					if s.PTSOffset != want {
						t.Fatalf("segment %d sample %d: PTS offset %d, want %d", i, j, s.PTSOffset, want)
					}
					if s.IsNonSyncSample != (k != 0) {
						t.Fatalf("segment %d sample %d: non-sync %v", i, j, s.IsNonSyncSample)
					}
				}
			}
			if !snap.Ended || snap.Open != nil {
				t.Fatalf("rendition not ended: %+v", snap)
			}
			if got := testutil.ToFloat64(h.m.segments.WithLabelValues("video")); int(got) != len(tc.wantSegs) {
				t.Fatalf("segments_total %v", got)
			}
		})
	}
}

// TestRealStream packages the ffmpeg capture (B-frames, AAC) and checks the
// samples carry exactly the source timestamps, then has ffprobe decode the
// result when it is installed.
func TestRealStream(t *testing.T) {
	src, _ := loadMedia(t)
	vt := h264Track(t, 1)
	at := aacTrack(2, 48000)
	at.Codec.(*media.AAC).Config = src.aac
	h := newHarness(t, store.New(store.Config{Window: 10}), Config{SegmentDuration: time.Second}, vt, at)
	var vf, af []*media.Frame
	for _, s := range src.video {
		vf = append(vf, &media.Frame{Track: vt, DTS: s.dts, PTS: s.pts, Key: s.key, Received: t0, Payload: s.payload})
	}
	for i, p := range src.audio {
		af = append(af, &media.Frame{Track: at, DTS: int64(i) * 1024, PTS: int64(i) * 1024, Key: true, Received: t0, Payload: p})
	}
	h.write(interleave(vf, af)...)
	h.end()

	video := h.rendition("video").Snapshot()
	audio := h.rendition("audio").Snapshot()
	checkSegments(t, video)
	checkSegments(t, audio)
	// GOP of 60 frames: 2 s segments despite the 1 s target.
	if len(video.Segments) != 2 || video.Segments[0].DurationTicks != 180000 {
		t.Fatalf("video segments: %d, first %d ticks", len(video.Segments), video.Segments[0].DurationTicks)
	}
	if len(audio.Segments) != len(video.Segments) {
		t.Fatalf("%d audio segments for %d video segments", len(audio.Segments), len(video.Segments))
	}
	var i int
	for _, seg := range video.Segments {
		for _, tr := range parseSegment(t, seg.Data) {
			dts := int64(tr.BaseTime)
			for _, s := range tr.Samples {
				want := src.video[i]
				if dts != want.dts || dts+int64(s.PTSOffset) != want.pts || !bytes.Equal(s.Payload, want.payload) || s.IsNonSyncSample == want.key {
					t.Fatalf("sample %d: dts %d pts %d non-sync %v, want dts %d pts %d key %v",
						i, dts, dts+int64(s.PTSOffset), s.IsNonSyncSample, want.dts, want.pts, want.key)
				}
				dts += int64(s.Duration)
				i++
			}
		}
	}
	if i != len(src.video) {
		t.Fatalf("%d video samples out of %d", i, len(src.video))
	}
	init, _ := video.Init("init.mp4")
	if init.Info.Width != 320 || init.Info.Height != 180 || init.Info.Timescale != 90000 || init.Info.Codec.RFC6381() != "avc1.64000d" {
		t.Fatalf("video info %+v", init.Info)
	}
	if a := audio.Info; a.SampleRate != 48000 || a.Channels != 2 || a.Timescale != 48000 {
		t.Fatalf("audio info %+v", a)
	}

	ffprobeCount(t, video, "v", len(src.video))
	ffprobeCount(t, audio, "a", len(src.audio))
}

// ffprobeCount has ffprobe, when installed, decode the rendition (init and
// segments back to back) and checks the number of frames.
func ffprobeCount(t *testing.T, snap *store.Snapshot, stream string, frames int) {
	t.Helper()
	testpeer.NeedFFmpeg(t)
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	file.Write(snap.Inits[0].Data)
	for _, seg := range snap.Segments {
		file.Write(seg.Data)
	}
	path := filepath.Join(t.TempDir(), "out.mp4")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", stream, "-count_frames",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(out))); n != frames {
		t.Fatalf("ffprobe decoded %q frames of %s, want %d", out, stream, frames)
	}
}

func TestAudioBoundariesFollowVideo(t *testing.T) {
	vt, at := h264Track(t, 1), aacTrack(2, 48000)
	h := newHarness(t, store.New(store.Config{Window: 20}), Config{}, vt, at)
	vf := videoFrames(vt, videoSpec{frames: 300, gop: 60}, t0) // 10 s
	af := audioFrames(at, 469, 0, t0)                          // 10.005 s
	h.write(interleave(vf, af)...)
	h.end()
	video := h.rendition("video").Snapshot()
	audio := h.rendition("audio").Snapshot()
	checkSegments(t, video)
	checkSegments(t, audio)
	if len(video.Segments) != 5 || len(audio.Segments) != 5 {
		t.Fatalf("%d video and %d audio segments", len(video.Segments), len(audio.Segments))
	}
	frame := media.TicksToDuration(1024, 48000)
	for i := range video.Segments {
		v, a := video.Segments[i], audio.Segments[i]
		if v.MSN != a.MSN {
			t.Fatalf("MSN %d vs %d", v.MSN, a.MSN)
		}
		vs := media.TicksToDuration(int64(v.BaseTime), 90000)
		as := media.TicksToDuration(int64(a.BaseTime), 48000)
		if i > 0 && (as < vs || as >= vs+frame) {
			t.Fatalf("segment %d: audio starts at %v, video at %v", i, as, vs)
		}
		samples := samplesOf(parseSegment(t, a.Data))
		var sum uint64
		for _, s := range samples {
			if s.Duration != 1024 || s.IsNonSyncSample || s.PTSOffset != 0 {
				t.Fatalf("audio sample %+v", s)
			}
			sum += uint64(s.Duration)
		}
		if sum != a.DurationTicks {
			t.Fatalf("audio segment %d: samples last %d, segment %d", i, sum, a.DurationTicks)
		}
		for j, p := range a.Parts {
			if p.Duration > 200*time.Millisecond || !p.Independent {
				t.Fatalf("audio part %d.%d: %v independent %v", i, j, p.Duration, p.Independent)
			}
		}
	}
	if got := testutil.ToFloat64(h.m.parts.WithLabelValues("audio")); int(got) == 0 {
		t.Fatal("no audio parts counted")
	}
}

func TestAudioOnly(t *testing.T) {
	at := aacTrack(1, 44100)
	h := newHarness(t, store.New(store.Config{}), Config{}, at)
	h.write(audioFrames(at, 300, 0, t0)...) // ~6.97 s
	h.end()
	snap := h.rendition("audio").Snapshot()
	checkSegments(t, snap)
	// 2 s at 44100 Hz is 86.13 frames: segments of 87 frames.
	if len(snap.Segments) != 4 {
		t.Fatalf("%d segments", len(snap.Segments))
	}
	for i, seg := range snap.Segments {
		want := uint64(87 * 1024)
		if i == 3 {
			want = uint64((300 - 3*87) * 1024)
		}
		if seg.DurationTicks != want || seg.BaseTime != uint64(i*87*1024) {
			t.Fatalf("segment %d: base %d duration %d", i, seg.BaseTime, seg.DurationTicks)
		}
		for j, p := range seg.Parts {
			// 8 frames (185.8 ms): a 9th would take the part past 200 ms.
			if n := len(parseSegment(t, p.Data)[0].Samples); n > 8 || j < len(seg.Parts)-1 && n != 8 {
				t.Fatalf("segment %d part %d: %d samples", i, j, n)
			}
		}
	}
}

func TestOpusDurations(t *testing.T) {
	ot := &media.Track{ID: 1, ClockRate: 48000, Codec: &media.Opus{ChannelCount: 2}}
	h := newHarness(t, store.New(store.Config{}), Config{}, ot)
	var dts int64
	for i := 0; i < 100; i++ {
		toc := byte(0xfc) // CELT FB 20 ms, one frame
		if i%2 == 1 {
			toc = 0xf4 // CELT FB 10 ms... as code 0: 480 samples
		}
		h.write(&media.Frame{Track: ot, DTS: dts, PTS: dts, Key: true, Received: t0, Payload: []byte{toc, 1, 2, 3}})
		if toc == 0xfc {
			dts += 960
		} else {
			dts += 480
		}
	}
	h.end()
	snap := h.rendition("audio").Snapshot()
	checkSegments(t, snap)
	var total uint64
	for _, seg := range snap.Segments {
		for i, s := range samplesOf(parseSegment(t, seg.Data)) {
			want := uint32(960)
			if i%2 == 1 {
				want = 480
			}
			if s.Duration != want {
				t.Fatalf("sample %d: %d", i, s.Duration)
			}
		}
		total += seg.DurationTicks
	}
	if total != uint64(dts) || snap.Info.Timescale != 48000 {
		t.Fatalf("total %d, want %d", total, dts)
	}
}

func TestRepublishContinuesTimeline(t *testing.T) {
	st := store.New(store.Config{Window: 20})
	vt, at := h264Track(t, 1), aacTrack(2, 48000)
	h := newHarness(t, st, Config{}, vt, at)
	h.write(interleave(
		videoFrames(vt, videoSpec{frames: 130, gop: 60}, t0), // 4.33 s
		audioFrames(at, 210, 0, t0),                          // 4.48 s
	)...)
	h.end()
	v1 := h.rendition("video").Snapshot()
	a1 := h.rendition("audio").Snapshot()
	vEnd := media.TicksToDuration(int64(v1.Segments[len(v1.Segments)-1].BaseTime+v1.Segments[len(v1.Segments)-1].DurationTicks), 90000)
	aEnd := media.TicksToDuration(int64(a1.Segments[len(a1.Segments)-1].BaseTime+a1.Segments[len(a1.Segments)-1].DurationTicks), 48000)
	start := max(vEnd, aEnd)

	// The publisher comes back with timestamps starting anywhere.
	vt2, at2 := h264Track(t, 1), aacTrack(2, 48000)
	h2 := newHarness(t, st, Config{}, vt2, at2)
	if h2.dst != h.dst || h2.dst.Epoch() != 1 {
		t.Fatalf("republish within grace made a new stream (epoch %d)", h2.dst.Epoch())
	}
	t1 := t0.Add(10 * time.Second)
	h2.write(interleave(
		videoFrames(vt2, videoSpec{frames: 130, gop: 60, startDTS: 90000 * 1000}, t1),
		audioFrames(at2, 210, 48000*1000+480, t1), // audio starts 10 ms after video
	)...)
	h2.end()
	v2 := h.rendition("video").Snapshot()
	a2 := h.rendition("audio").Snapshot()
	checkSegments(t, v2)
	checkSegments(t, a2)
	for _, c := range []struct {
		name       string
		before     *store.Snapshot
		after      *store.Snapshot
		firstStart time.Duration
	}{{"video", v1, v2, start}, {"audio", a1, a2, start + 10*time.Millisecond}} {
		n := len(c.before.Segments)
		first := c.after.Segments[n]
		prev := c.after.Segments[n-1]
		if !first.Discontinuity || first.Epoch != 1 || first.MSN != prev.MSN+1 {
			t.Fatalf("%s: first segment after republish: disc %v epoch %d msn %d after %d",
				c.name, first.Discontinuity, first.Epoch, first.MSN, prev.MSN)
		}
		for _, seg := range c.after.Segments[n+1:] {
			if seg.Discontinuity {
				t.Fatalf("%s: discontinuity on %d", c.name, seg.MSN)
			}
		}
		got := media.TicksToDuration(int64(first.BaseTime), c.after.Info.Timescale)
		if got < c.firstStart || got > c.firstStart+time.Millisecond/10 {
			t.Fatalf("%s: continues at %v, want %v", c.name, got, c.firstStart)
		}
		if first.BaseTime < prev.BaseTime+prev.DurationTicks {
			t.Fatalf("%s: overlaps the earlier publish", c.name)
		}
		if len(c.after.Inits) != 1 || first.InitName != "init.mp4" {
			t.Fatalf("%s: inits %d, %s", c.name, len(c.after.Inits), first.InitName)
		}
	}
	if len(v2.Segments) != len(a2.Segments) {
		t.Fatalf("%d video and %d audio segments", len(v2.Segments), len(a2.Segments))
	}
	for i := range v2.Segments {
		if v2.Segments[i].MSN != a2.Segments[i].MSN {
			t.Fatalf("MSNs differ at %d", i)
		}
	}
}

func TestCodecChange(t *testing.T) {
	vt := h264Track(t, 1)
	h := newHarness(t, store.New(store.Config{}), Config{}, vt)
	first := videoFrames(vt, videoSpec{frames: 75, gop: 30}, t0) // 2.5 s
	vt2 := smallTrack(t, 1)
	second := videoFrames(vt2, videoSpec{frames: 100, gop: 50, frameDur: 3600, startDTS: 75 * 3000}, t0)
	h.write(first...)
	h.write(second...)
	h.end()
	snap := h.rendition("video").Snapshot()
	checkSegments(t, snap)
	if len(snap.Inits) != 2 || snap.Inits[1].Name != "init-1.mp4" {
		t.Fatalf("inits %+v", snap.Inits)
	}
	if snap.Info.Width != 256 || snap.Info.FrameRate != 25 {
		t.Fatalf("info %+v", snap.Info)
	}
	var names []string
	for _, seg := range snap.Segments {
		names = append(names, seg.InitName+":"+strconv.FormatBool(seg.Discontinuity)+":"+strconv.FormatUint(seg.DurationTicks, 10))
	}
	// 2 s, then the 0.5 s left of the first configuration, then 2 s GOPs of 25 fps.
	want := "init.mp4:false:180000 init.mp4:false:45000 init-1.mp4:true:180000 init-1.mp4:false:180000"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("segments\n got %s\nwant %s", got, want)
	}
	// The same parameters in a new Track value change nothing.
	h2 := newHarness(t, store.New(store.Config{}), Config{}, vt)
	h2.write(videoFrames(vt, videoSpec{frames: 60, gop: 30}, t0)...)
	h2.write(videoFrames(h264Track(t, 1), videoSpec{frames: 30, gop: 30, startDTS: 60 * 3000}, t0)...)
	h2.end()
	snap = h2.rendition("video").Snapshot()
	if len(snap.Inits) != 1 || len(snap.Segments) != 2 || snap.Segments[1].Discontinuity || snap.Segments[0].DurationTicks != 180000 {
		t.Fatalf("identical parameters changed something: %d inits, %d segments", len(snap.Inits), len(snap.Segments))
	}
}

func TestDroppedFrames(t *testing.T) {
	vt, at := h264Track(t, 1), aacTrack(2, 48000)
	h := newHarness(t, store.New(store.Config{}), Config{}, vt, at)
	frames := videoFrames(vt, videoSpec{frames: 100, gop: 30}, t0)
	// Start mid-GOP: 10 frames before the first key frame.
	h.write(frames[20:30]...)
	h.write(frames[30:50]...)
	// A frame going back in time, and one without payload.
	back := *frames[40]
	h.write(&back, &media.Frame{Track: vt, DTS: frames[50].DTS, Payload: nil})
	h.write(frames[50:]...)
	aac := audioFrames(at, 20, 0, t0)
	h.write(aac[10], aac[5], aac[11])
	h.write(&media.Frame{Track: &media.Track{ID: 7, ClockRate: 8000, Codec: fakeCodec{}}, Payload: []byte{1}})
	h.end()
	// The hub cannot carry a frame without a track: hand it to a run directly.
	r := newRun(New(Config{}, h.m, nil), h.dst)
	r.handle(&media.Frame{})
	r.close()
	for reason, want := range map[string]float64{
		DropBeforeKeyframe:   10,
		DropNonMonotonicDTS:  2,
		DropEmptyPayload:     1,
		DropUnknownTrack:     1,
		DropUnsupportedCodec: 1,
	} {
		if got := testutil.ToFloat64(h.m.dropped.WithLabelValues(reason)); got != want {
			t.Errorf("dropped{%s} = %v, want %v", reason, got, want)
		}
	}
	snap := h.rendition("video").Snapshot()
	checkSegments(t, snap)
	if n := len(samplesOf(parseSegment(t, snap.Segments[0].Data))); n != 60 {
		t.Fatalf("first segment has %d samples", n)
	}
	if snap.Segments[0].BaseTime != 30*3000-20*3000 {
		t.Fatalf("first segment at %d", snap.Segments[0].BaseTime)
	}
	if _, ok := h.dst.Rendition("unknown"); ok {
		t.Fatal("rendition for an unsupported codec")
	}
}

type fakeCodec struct{}

func (fakeCodec) Kind() media.Kind { return media.KindAudio }
func (fakeCodec) Name() string     { return "g711" }
func (fakeCodec) RFC6381() string  { return "" }

// TestLowLatency checks a part is servable as soon as its last frame has
// arrived, without waiting for the next frame, long before its segment ends.
func TestLowLatency(t *testing.T) {
	vt := h264Track(t, 1)
	h := newHarness(t, store.New(store.Config{}), Config{}, vt)
	frames := videoFrames(vt, videoSpec{frames: 90, gop: 60}, time.Now())
	r := (*store.Rendition)(nil)
	h.write(frames[:6]...)
	for r == nil {
		r, _ = h.dst.Rendition("video")
		runtime.Gosched()
	}
	snap := waitFor(t, r, 0, 0)
	if len(snap.Segments) != 0 || snap.Open == nil || len(snap.Open.Parts) != 1 {
		t.Fatalf("after 6 frames: %d segments, open %+v", len(snap.Segments), snap.Open)
	}
	p := snap.Open.Parts[0]
	if p.Duration != 200*time.Millisecond || !p.Independent {
		t.Fatalf("first part %+v", p)
	}
	tracks := parseSegment(t, p.Data)
	if s := tracks[0].Samples; len(s) != 6 || s[5].Duration != 3000 {
		t.Fatalf("first part samples %d", len(s))
	}
	// The second part, whose last sample's duration is also estimated.
	h.write(frames[6:12]...)
	snap = waitFor(t, r, 0, 1)
	if tr := parseSegment(t, snap.Open.Parts[1].Data)[0]; tr.BaseTime != 18000 {
		t.Fatalf("second part at %d", tr.BaseTime)
	}
	// The segment is complete once the next key frame arrives.
	h.write(frames[12:61]...)
	snap = waitFor(t, r, 0, -1)
	if len(snap.Segments) != 1 || snap.Segments[0].DurationTicks != 180000 || len(snap.Segments[0].Parts) != 10 {
		t.Fatalf("segment %+v", snap.Segments)
	}
	if n := testutil.CollectAndCount(h.m.partLatency); n != 1 {
		t.Fatalf("latency histogram: %d series", n)
	}
	h.end()
}

func TestRunReturns(t *testing.T) {
	before := runtime.NumGoroutine()
	st := store.New(store.Config{})
	vt := h264Track(t, 1)

	// The subscription closes.
	h := newHarness(t, st, Config{}, vt)
	h.write(videoFrames(vt, videoSpec{frames: 20, gop: 30}, t0)...)
	h.end()
	snap := h.rendition("video").Snapshot()
	if !snap.Ended || snap.Open != nil || len(snap.Segments) != 1 || snap.Segments[0].DurationTicks != 20*3000 {
		t.Fatalf("after close: ended %v open %v segments %d", snap.Ended, snap.Open, len(snap.Segments))
	}

	// The context ends.
	reg := media.NewRegistry(media.RegistryConfig{})
	hub, _ := reg.Publish("x", media.PublishInfo{}, []*media.Track{vt})
	sub := hub.Subscribe(100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	dst := st.Begin("x")
	go func() { done <- New(Config{}, nil, nil).Run(ctx, sub, dst) }()
	for _, f := range videoFrames(vt, videoSpec{frames: 20, gop: 30}, t0) {
		hub.WriteFrame(f)
	}
	for {
		if r, ok := dst.Rendition("video"); ok && r.Snapshot().Open != nil && len(r.Snapshot().Open.Parts) == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v", err)
	}
	r, _ := dst.Rendition("video")
	if s := r.Snapshot(); !s.Ended || len(s.Segments) != 1 {
		t.Fatal("rendition not ended after cancel")
	}
	sub.Close()
	hub.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestRenditionNames(t *testing.T) {
	a1, a2 := aacTrack(1, 48000), aacTrack(2, 48000)
	h := newHarness(t, store.New(store.Config{}), Config{}, a1, a2)
	h.write(interleave(audioFrames(a1, 10, 0, t0), audioFrames(a2, 10, 0, t0))...)
	h.end()
	h.rendition("audio")
	h.rendition("audio-2")

	named := Config{RenditionName: func(tr *media.Track) string { return "v" + strconv.Itoa(tr.ID) }}
	vt := h264Track(t, 3)
	h = newHarness(t, store.New(store.Config{}), named, vt)
	h.write(videoFrames(vt, videoSpec{frames: 10, gop: 30}, t0)...)
	h.end()
	h.rendition("v3")
}

func TestMetricsRegisterTwice(t *testing.T) {
	h := newHarness(t, store.New(store.Config{}), Config{}, aacTrack(1, 48000))
	m2 := NewMetrics(h.reg)
	if m2.segments != h.m.segments {
		t.Fatal("second NewMetrics did not reuse the registered collectors")
	}
	h.end()
	want := `# HELP headwater_segments_total CMAF segments completed, by track kind.
# TYPE headwater_segments_total counter
headwater_segments_total{kind="audio"} 0
headwater_segments_total{kind="video"} 0
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "headwater_segments_total"); err != nil {
		t.Fatal(err)
	}
}

// TestAACFrameLength960 checks the 960-sample AAC variant.
func TestAACFrameLength960(t *testing.T) {
	tr := &media.Track{ID: 1, ClockRate: 48000, Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 1, FrameLengthFlag: true,
	}}}
	h := newHarness(t, store.New(store.Config{}), Config{}, tr)
	for i := 0; i < 50; i++ {
		h.write(&media.Frame{Track: tr, DTS: int64(i) * 960, PTS: int64(i) * 960, Key: true, Received: t0, Payload: []byte{1, 2}})
	}
	h.end()
	snap := h.rendition("audio").Snapshot()
	for _, s := range samplesOf(parseSegment(t, snap.Segments[0].Data)) {
		if s.Duration != 960 {
			t.Fatalf("duration %d", s.Duration)
		}
	}
	if snap.Info.Channels != 1 {
		t.Fatalf("channels %d", snap.Info.Channels)
	}
	var ps fmp4.Parts
	if err := ps.Unmarshal(snap.Segments[0].Data); err != nil {
		t.Fatal(err)
	}
}

// TestTimestampRestart covers a source whose clock restarts: after a second
// of frames behind the timeline, the tracks continue after what they wrote.
func TestTimestampRestart(t *testing.T) {
	vt, at := h264Track(t, 1), aacTrack(2, 48000)
	h := newHarness(t, store.New(store.Config{Window: 20}), Config{}, vt, at)
	h.write(interleave(videoFrames(vt, videoSpec{frames: 90, gop: 30}, t0), audioFrames(at, 141, 0, t0))...)
	h.write(interleave(videoFrames(vt, videoSpec{frames: 150, gop: 30}, t0), audioFrames(at, 235, 0, t0))...)
	h.end()
	video := h.rendition("video").Snapshot()
	audio := h.rendition("audio").Snapshot()
	checkSegments(t, video)
	checkSegments(t, audio)
	n := 0
	for _, seg := range video.Segments {
		n += len(samplesOf(parseSegment(t, seg.Data)))
	}
	if n != 90+120 {
		t.Fatalf("%d video samples", n)
	}
	last := video.Segments[len(video.Segments)-1]
	if end := last.BaseTime + last.DurationTicks; end != 210*3000 {
		t.Fatalf("video ends at %d", end)
	}
	if dropped := testutil.ToFloat64(h.m.dropped.WithLabelValues(DropNonMonotonicDTS)); dropped != 30+47 {
		t.Fatalf("%v frames dropped", dropped)
	}
	if len(audio.Segments) != len(video.Segments) {
		t.Fatalf("%d audio segments, %d video", len(audio.Segments), len(video.Segments))
	}
}

// TestAudioGap checks audio follows the sample count and jumps over a gap.
func TestAudioGap(t *testing.T) {
	at := aacTrack(1, 48000)
	h := newHarness(t, store.New(store.Config{}), Config{}, at)
	frames := audioFrames(at, 200, 0, t0)
	for i, f := range frames {
		if i%3 == 1 {
			f.DTS += 30 // jitter below half a frame
		}
		if i >= 100 {
			f.DTS += 4800 // 100 ms lost
		}
	}
	h.write(frames...)
	h.end()
	snap := h.rendition("audio").Snapshot()
	checkSegments(t, snap)
	var tfdts []uint64
	for _, seg := range snap.Segments {
		for _, tr := range parseSegment(t, seg.Data) {
			tfdts = append(tfdts, tr.BaseTime)
			for _, s := range tr.Samples {
				if s.Duration != 1024 {
					t.Fatalf("duration %d", s.Duration)
				}
			}
		}
	}
	// The part after the gap starts at the 100th frame's DTS, the timeline
	// follows the sample count before and after it.
	gap := uint64(frames[100].DTS)
	found := false
	for _, v := range tfdts {
		if v < gap && v%1024 != 0 || v >= gap && (v-gap)%1024 != 0 {
			t.Fatalf("tfdt %d off the sample grid", v)
		}
		found = found || v == gap
	}
	if !found {
		t.Fatalf("no part at the gap: %v", tfdts)
	}
}

func TestH265(t *testing.T) {
	m, err := readMP4("testdata/hevc.mp4")
	if err != nil {
		t.Fatal(err)
	}
	vt := &media.Track{ID: 1, ClockRate: 90000, Codec: &media.H265{VPS: m.vps, SPS: m.sps, PPS: m.pps}}
	h := newHarness(t, store.New(store.Config{}), Config{}, vt)
	for _, s := range m.video {
		h.write(&media.Frame{Track: vt, DTS: s.dts, PTS: s.pts, Key: s.key, Received: t0, Payload: s.payload})
	}
	h.end()
	snap := h.rendition("video").Snapshot()
	checkSegments(t, snap)
	if snap.Info.Width != 192 || snap.Info.Height != 108 || !strings.HasPrefix(snap.Info.Codec.RFC6381(), "hvc1.") {
		t.Fatalf("info %+v", snap.Info)
	}
	n := 0
	for _, seg := range snap.Segments {
		n += len(samplesOf(parseSegment(t, seg.Data)))
	}
	if n != len(m.video) || n == 0 {
		t.Fatalf("%d samples of %d", n, len(m.video))
	}
	ffprobeCount(t, snap, "v", len(m.video))
}

// TestMillisecondClock packages video whose timestamps are in milliseconds
// (an RTMP-style clock) with the usual 33/34 ms jitter.
func TestMillisecondClock(t *testing.T) {
	vt := h264Track(t, 1)
	vt.ClockRate = 1000
	h := newHarness(t, store.New(store.Config{}), Config{}, vt)
	for i := 0; i < 150; i++ {
		ms := int64(i) * 1000 / 30
		h.write(&media.Frame{Track: vt, DTS: ms, PTS: ms, Key: i%60 == 0, Received: t0, Payload: fakeAU(100, i%60 == 0)})
	}
	h.end()
	snap := h.rendition("video").Snapshot()
	checkSegments(t, snap)
	if len(snap.Segments) != 3 || snap.Segments[1].BaseTime != 2000*90 || snap.Segments[0].DurationTicks != 2000*90 {
		t.Fatalf("segments %d, second at %d", len(snap.Segments), snap.Segments[1].BaseTime)
	}
	for _, seg := range snap.Segments {
		for i, p := range seg.Parts {
			if p.Duration > 202*time.Millisecond || i < len(seg.Parts)-1 && p.Duration < 190*time.Millisecond {
				t.Fatalf("part %d.%d lasts %v", seg.MSN, i, p.Duration)
			}
		}
	}
}

func TestEqualDTSNudged(t *testing.T) {
	vt := h264Track(t, 1)
	h := newHarness(t, store.New(store.Config{}), Config{}, vt)
	frames := videoFrames(vt, videoSpec{frames: 30, gop: 30}, t0)
	frames[10].DTS, frames[10].PTS = frames[9].DTS, frames[9].DTS
	h.write(frames...)
	h.end()
	snap := h.rendition("video").Snapshot()
	samples := samplesOf(parseSegment(t, snap.Segments[0].Data))
	if len(samples) != 30 || samples[9].Duration != 1 || samples[10].Duration != 5999 {
		t.Fatalf("%d samples, durations %d %d", len(samples), samples[9].Duration, samples[10].Duration)
	}
}

func TestTimeConversions(t *testing.T) {
	for _, c := range []struct {
		v        int64
		from, to uint32
		down, up int64
	}{
		{90000, 90000, 90000, 90000, 90000},
		{1001, 44100, 90000, 2042, 2043},
		{-1, 48000, 90000, -2, -1},
		{33, 1000, 90000, 2970, 2970},
		{1 << 40, 48000, 90000, (1<<40)/48000*90000 + (1<<40)%48000*90000/48000, 0},
	} {
		if got := media.Rescale(c.v, c.from, c.to); got != c.down {
			t.Errorf("media.Rescale(%d, %d, %d) = %d, want %d", c.v, c.from, c.to, got, c.down)
		}
		if c.up != 0 {
			if got := media.RescaleUp(c.v, c.from, c.to); got != c.up {
				t.Errorf("media.RescaleUp(%d, %d, %d) = %d, want %d", c.v, c.from, c.to, got, c.up)
			}
		}
	}
	if !later(90001, 90000, 48000, 48000) || later(90000, 90000, 48000, 48000) || !later(1, 1, 0, 1) {
		t.Fatal("later")
	}
}

// TestFrameRateLearnt checks a video whose SPS has no timing information
// gets its frame rate from the first segment.
func TestFrameRateLearnt(t *testing.T) {
	st := store.New(store.Config{})
	vt := h264Track(t, 1)
	r := newRun(New(Config{}, nil, nil), st.Begin("x"))
	frames := videoFrames(vt, videoSpec{frames: 70, gop: 60, frameDur: 3600}, t0)
	r.handle(frames[0])
	r.tracks[1].info.FrameRate = 0 // as if the SPS had no VUI timing
	for _, f := range frames[1:] {
		r.handle(f)
	}
	r.close()
	rd, _ := st.Begin("x").Rendition("video")
	snap := rd.Snapshot()
	if snap.Info.FrameRate != 25 || len(snap.Inits) != 1 || snap.Inits[0].Info.FrameRate != 25 {
		t.Fatalf("frame rate %v, %d inits", snap.Info.FrameRate, len(snap.Inits))
	}
}

// TestAudioSampleRateChange switches AAC from 44.1 to 48 kHz mid-stream.
func TestAudioSampleRateChange(t *testing.T) {
	a1, a2 := aacTrack(1, 44100), aacTrack(1, 48000)
	h := newHarness(t, store.New(store.Config{}), Config{}, a1)
	first := audioFrames(a1, 100, 0, t0) // 2.32 s
	end := media.TicksToDuration(100*1024, 44100)
	second := audioFrames(a2, 100, media.DurationToTicks(end, 48000), t0)
	h.write(first...)
	h.write(second...)
	h.end()
	snap := h.rendition("audio").Snapshot()
	checkSegments(t, snap)
	var got []string
	for _, seg := range snap.Segments {
		got = append(got, seg.InitName+":"+strconv.FormatBool(seg.Discontinuity)+":"+strconv.FormatUint(seg.BaseTime, 10))
	}
	// 87 frames of 44.1 kHz, the 13 left, then 48 kHz from where they end.
	want := "init.mp4:false:0 init.mp4:false:89088 init-1.mp4:true:111456 init-1.mp4:false:207712"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("segments\n got %s\nwant %s", s, want)
	}
	if snap.Info.SampleRate != 48000 || snap.Info.Timescale != 48000 {
		t.Fatalf("info %+v", snap.Info)
	}
}

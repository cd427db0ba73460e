package srt

import (
	"bytes"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// expect describes what a test publish should have produced.
type expect struct {
	video   string // "h264", "h265" or "" for none
	audio   string // "aac", "opus" or "" for none
	seconds int    // of 30 fps video
	// exact requires exactly 30*seconds video frames (a whole file sent
	// without loss, or an ffmpeg publish over SRT with linger set) with
	// regular timestamp steps. Otherwise (audio-only checks) half of them
	// are enough and up to maxGaps irregular steps per track are accepted.
	exact   bool
	bframes bool
	// gop is the key frame interval in frames (0: not checked).
	gop int
}

// maxGaps is the number of irregular timestamp steps a track may have in a
// publish over SRT (see expect.exact).
const maxGaps = 3

// irregular counts an irregular timestamp step and tells whether it is one
// too many.
func (w expect) irregular(gaps *int) bool {
	*gaps++
	return w.exact || *gaps > maxGaps
}

// checkStream checks the frames of a captured publish.
func checkStream(t *testing.T, c *testpeer.Capture, want expect) {
	t.Helper()
	tracks := c.Stream.Tracks()
	var vt, at *media.Track
	for i, tr := range tracks {
		switch tr.Kind() {
		case media.KindVideo:
			if i != 0 || tr.ID != videoTrackID || tr.ClockRate != 90000 {
				t.Fatalf("video track %d: id %d clock %d", i, tr.ID, tr.ClockRate)
			}
			vt = tr
		case media.KindAudio:
			if tr.ID != audioTrackID {
				t.Fatalf("audio track %d: id %d", i, tr.ID)
			}
			at = tr
		}
	}
	if (vt != nil) != (want.video != "") || (at != nil) != (want.audio != "") {
		t.Fatalf("tracks %v, want video %q audio %q", tracks, want.video, want.audio)
	}
	hevc := want.video == "h265"
	if vt != nil {
		if vt.Codec.Name() != want.video {
			t.Fatalf("video codec %s, want %s", vt.Codec.Name(), want.video)
		}
		switch c := vt.Codec.(type) {
		case *media.H264:
			if len(c.SPS) == 0 || len(c.PPS) == 0 {
				t.Fatal("H.264 track without SPS/PPS")
			}
		case *media.H265:
			if len(c.VPS) == 0 || len(c.SPS) == 0 || len(c.PPS) == 0 {
				t.Fatal("H.265 track without VPS/SPS/PPS")
			}
		}
		info, err := media.ParseVideoInfo(vt.Codec)
		if err != nil {
			t.Fatal(err)
		}
		if info.Width != 640 || info.Height != 360 {
			t.Errorf("video %dx%d, want 640x360", info.Width, info.Height)
		}
	}
	if at != nil {
		if at.Codec.Name() != want.audio || at.ClockRate != 48000 {
			t.Fatalf("audio codec %s clock %d, want %s 48000", at.Codec.Name(), at.ClockRate, want.audio)
		}
		if aac, ok := at.Codec.(*media.AAC); ok && aac.Config.SampleRate != 48000 {
			t.Fatalf("AAC config sample rate %d", aac.Config.SampleRate)
		}
	}

	var video, audio []*media.Frame
	for _, f := range c.Frames() {
		switch f.Track.ID {
		case videoTrackID:
			video = append(video, f)
		case audioTrackID:
			audio = append(audio, f)
		default:
			t.Fatalf("frame of track %d", f.Track.ID)
		}
	}

	if vt != nil {
		n := 30 * want.seconds
		if want.exact && len(video) != n {
			t.Errorf("%d video frames, want %d", len(video), n)
		}
		if !want.exact && len(video) < n/2 {
			t.Errorf("%d video frames, want about %d", len(video), n)
		}
		if len(video) == 0 {
			t.Fatal("no video frames")
		}
		if !video[0].Key {
			t.Errorf("first video frame is not a key frame: %s", testpeer.FormatFrame(video[0]))
		}
		var keys []int
		reordered, gaps := 0, 0
		aud, param, key := 9, []int{7, 8}, []int{5}
		if hevc {
			aud, param, key = 35, []int{32, 33, 34}, []int{16, 17, 18, 19, 20, 21}
		}
		for i, f := range video {
			if f.Track.ID != vt.ID || f.Track.Codec.Name() != want.video {
				t.Fatalf("video frame %d has track %v", i, f.Track)
			}
			testpeer.CheckAVCC(t, f.Payload)
			types := testpeer.NALUTypes(f.Payload, hevc)
			if hasType(types, aud) {
				t.Errorf("video frame %d has an AUD: %v", i, types)
			}
			if f.Key {
				keys = append(keys, i)
				if !hasType(types, key...) {
					t.Errorf("key frame %d has no IDR/IRAP NAL unit: %v", i, types)
				}
				for _, p := range param {
					if !hasType(types, p) {
						t.Errorf("key frame %d lacks parameter set %d in-band: %v", i, p, types)
					}
				}
			} else if hasType(types, key...) {
				t.Errorf("frame %d has an IDR but is not key: %v", i, types)
			}
			if i > 0 && f.DTS <= video[i-1].DTS {
				t.Errorf("video DTS not increasing at %d: %s after %s", i, testpeer.FormatFrame(f), testpeer.FormatFrame(video[i-1]))
			}
			if f.PTS < f.DTS {
				t.Errorf("video frame %d: PTS < DTS: %s", i, testpeer.FormatFrame(f))
			}
			if f.PTS != f.DTS {
				reordered++
			}
			if f.Received.IsZero() {
				t.Errorf("video frame %d without reception time", i)
			}
			if i > 0 && !want.bframes {
				if d := f.DTS - video[i-1].DTS; d != 3000 && want.irregular(&gaps) {
					t.Errorf("video DTS step %d at %d, want 3000", d, i)
				}
			}
		}
		if want.gop > 0 {
			for i, k := range keys {
				if want.exact && k != want.gop*i {
					t.Errorf("key frames at %v, want every %d frames from 0", keys, want.gop)
					break
				}
				// Over SRT, whole GOPs may be lost: key frames stay on the grid.
				if d := video[k].DTS - video[keys[0]].DTS; d%int64(want.gop*3000) != 0 {
					t.Errorf("key frame %d at %s, off the %d-frame grid", k, media.TicksToDuration(d, 90000), want.gop)
				}
			}
		}
		if want.bframes && reordered == 0 {
			t.Error("no frame with PTS != DTS in a stream with B-frames")
		}
		if !want.bframes && reordered != 0 {
			t.Errorf("%d frames with PTS != DTS without B-frames", reordered)
		}
	}

	if at != nil {
		step := int64(1024)
		if want.audio == "opus" {
			step = 960
		}
		if min := 48000 * want.seconds / int(step) / 2; len(audio) < min {
			t.Errorf("%d audio frames, want at least %d", len(audio), min)
		}
		gaps := 0
		for i, f := range audio {
			if !f.Key || f.PTS != f.DTS || len(f.Payload) == 0 || f.Track.ID != at.ID {
				t.Errorf("audio frame %d: %s", i, testpeer.FormatFrame(f))
			}
			if i > 0 && f.DTS-audio[i-1].DTS != step && want.irregular(&gaps) {
				t.Errorf("audio DTS step %d at frame %d, want %d", f.DTS-audio[i-1].DTS, i, step)
			}
			if want.audio == "aac" && len(f.Payload) >= 2 && f.Payload[0] == 0xff && f.Payload[1]&0xf0 == 0xf0 {
				t.Fatalf("audio frame %d still has an ADTS header", i)
			}
		}
	}

	// The publish starts at 0, audio and video together (within 100 ms).
	if vt != nil && at != nil && len(audio) > 0 {
		v0 := media.TicksToDuration(video[0].DTS, 90000)
		a0 := media.TicksToDuration(audio[0].DTS, 48000)
		if d := v0 - a0; d > 100*time.Millisecond || d < -100*time.Millisecond {
			t.Errorf("audio starts %s away from video", d)
		}
		if min(v0, a0) != 0 {
			t.Errorf("publish starts at video %s audio %s, want 0", v0, a0)
		}
	}
}

// publishBytes runs a publisher session on TS bytes (no SRT) and returns
// how it ended.
func (e *testEnv) publishBytes(name string, ts []byte) error {
	p := newPublisherFrom(e.srv, "pipe", StreamID{Name: name, Mode: ModePublish}, "pipe",
		e.srv.log.With("stream", name), bytes.NewReader(ts))
	err := p.serveSafe()
	p.finish()
	p.report(err)
	return err
}

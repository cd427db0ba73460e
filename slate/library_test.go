package slate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
)

// small is a quick parameter set for the tests that count encodes.
func small(w int) Params {
	return Params{Codec: "h264", Profile: "main", Width: w, Height: 64, FrameDuration: 40 * time.Millisecond,
		AudioCodec: "aac", SampleRate: 48000, Channels: 1}
}

func TestLibraryEncodesOnce(t *testing.T) {
	l := NewLibrary(Config{GOP: time.Second})
	a := mustClip(t, l, small(64))
	if n := l.encodes.Load(); n != 1 {
		t.Fatalf("%d encodes, want 1", n)
	}
	if b := mustClip(t, l, small(64)); b != a {
		t.Fatal("second call returned another clip")
	}
	if n := l.encodes.Load(); n != 1 {
		t.Fatalf("%d encodes after a second call, want 1", n)
	}

	// ten callers at once for new params: one encode, one clip
	var wg sync.WaitGroup
	clips := make([]*Clip, 10)
	errs := make([]error, 10)
	for i := range clips {
		wg.Go(func() { clips[i], errs[i] = l.Clip(context.Background(), small(96)) })
	}
	wg.Wait()
	for i := range clips {
		if errs[i] != nil || clips[i] != clips[0] {
			t.Fatalf("caller %d: %p %v, want %p", i, clips[i], errs[i], clips[0])
		}
	}
	if n := l.encodes.Load(); n != 2 {
		t.Fatalf("%d encodes after ten concurrent calls, want 2", n)
	}
	if clips[0] == a || clips[0].Params != small(96) {
		t.Fatal("different params share a clip")
	}
	checkClip(t, clips[0], small(96), time.Second, 1)
	if l.Len() != 2 {
		t.Fatalf("Len %d, want 2", l.Len())
	}
}

func TestLibraryLRU(t *testing.T) {
	l := NewLibrary(Config{GOP: 200 * time.Millisecond, MaxClips: 2})
	a := mustClip(t, l, small(64))
	mustClip(t, l, small(80))
	mustClip(t, l, small(64)) // a is now the most recently used
	mustClip(t, l, small(96)) // evicts 80
	if l.Len() != 2 || l.encodes.Load() != 3 {
		t.Fatalf("Len %d encodes %d, want 2 and 3", l.Len(), l.encodes.Load())
	}
	if mustClip(t, l, small(64)) != a || l.encodes.Load() != 3 {
		t.Fatal("the most recently used clip was evicted")
	}
	mustClip(t, l, small(80)) // evicted: encoded again, evicts 96
	if l.Len() != 2 || l.encodes.Load() != 4 {
		t.Fatalf("Len %d encodes %d, want 2 and 4", l.Len(), l.encodes.Load())
	}
	mustClip(t, l, small(96))
	if l.encodes.Load() != 5 {
		t.Fatalf("encodes %d, want 5", l.encodes.Load())
	}
}

func TestLibraryInvalidParams(t *testing.T) {
	l := NewLibrary(Config{})
	for _, tc := range []struct {
		p   Params
		err string
	}{
		{Params{}, "slate : no video codec and no audio codec"},
		{Params{Codec: "av1", Width: 64, Height: 64, FrameDuration: 40 * time.Millisecond}, `unsupported video codec "av1"`},
		{Params{Codec: "h264", Width: 65, Height: 64, FrameDuration: 40 * time.Millisecond}, "picture size 65x64 is odd"},
		{Params{Codec: "h264", Width: 64, Height: 64}, "frame duration 0s out of range"},
		{Params{Codec: "h264", Profile: "high10", Width: 64, Height: 64, FrameDuration: 40 * time.Millisecond}, `unsupported h264 profile "high10"`},
		{Params{AudioCodec: "aac", SampleRate: 44000, Channels: 2}, "unsupported AAC sample rate 44000"},
		{Params{AudioCodec: "aac", SampleRate: 44100, Channels: 7}, "unsupported AAC channel count 7"},
		{Params{AudioCodec: "opus", SampleRate: 48000, Channels: 2}, `unsupported audio codec "opus"`},
	} {
		_, err := l.Clip(context.Background(), tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Clip(%+v) = %v, want %q", tc.p, err, tc.err)
		}
	}
	if l.encodes.Load() != 0 {
		t.Errorf("%d encodes for invalid params", l.encodes.Load())
	}
}

func TestImageSource(t *testing.T) {
	dir := t.TempDir()
	png, jpg := filepath.Join(dir, "logo.png"), filepath.Join(dir, "logo.jpg")
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", png)
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=400x400", "-frames:v", "1", jpg)
	p := Params{Codec: "h264", Profile: "high", Width: 640, Height: 360, FrameDuration: 40 * time.Millisecond, AudioCodec: "aac", SampleRate: 48000, Channels: 2}
	builtin := mustClip(t, NewLibrary(Config{}), p)
	for _, path := range []string{png, jpg} {
		src, err := ParseSource(path)
		if err != nil {
			t.Fatal(err)
		}
		c := mustClip(t, NewLibrary(Config{Source: src}), p)
		checkClip(t, c, p, 2*time.Second, 1)
		if string(c.video[0].Payload) == string(builtin.video[0].Payload) {
			t.Errorf("%s: the clip shows the built-in card", path)
		}
		ts := filepath.Join(t.TempDir(), "s.ts")
		writeTS(t, ts, c, c.Frames)
		if msg := decodeErrors(t, ts); msg != "" {
			t.Errorf("%s: decoding: %s", path, msg)
		}
		// the 4:3 and 1:1 images are pillarboxed in 16:9: black on the left
		// edge, the test pattern (not black) in the middle
		pic := firstPicture(t, ts, 640, 360)
		if !near(pic, 640, 10, 180, 0, 0, 0) || near(pic, 640, 320, 100, 0, 0, 0) {
			t.Errorf("%s: the picture is not the image pillarboxed", path)
		}
	}
}

func TestMediaSource(t *testing.T) {
	dir := t.TempDir()
	withAudio, videoOnly := filepath.Join(dir, "promo.mp4"), filepath.Join(dir, "silent.mkv")
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=r=44100:f=440",
		"-t", "3.5", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", "-shortest", withAudio)
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "1.2", "-pix_fmt", "yuv420p", "-c:v", "libx264", videoOnly)
	p := Params{Codec: "h264", Profile: "main", Width: 640, Height: 360, FrameDuration: time.Second / 30, AudioCodec: "aac", SampleRate: 48000, Channels: 2}
	avgAudio := func(c *Clip) int {
		n := 0
		for _, f := range c.audio {
			n += len(f.Payload)
		}
		return n / len(c.audio)
	}
	silence := avgAudio(mustClip(t, NewLibrary(Config{GOP: time.Second}), p))

	for _, tc := range []struct {
		name     string
		path     string
		maxMedia time.Duration
		p        Params
		gops     int
		tone     bool
	}{
		{"3.5s of media: 4 GOPs of 1s", withAudio, 0, p, 4, true},
		{"MaxMedia 2s", withAudio, 2 * time.Second, p, 2, true},
		{"no audio in the file: silence", videoOnly, 0, p, 2, false},
		{"audio only", withAudio, 0, Params{AudioCodec: "aac", SampleRate: 44100, Channels: 1}, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := ParseSource(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			c := mustClip(t, NewLibrary(Config{Source: src, GOP: time.Second, MaxMedia: tc.maxMedia}), tc.p)
			checkClip(t, c, tc.p, time.Second, tc.gops)
			if a := avgAudio(c); tc.tone != (a > 2*silence) {
				t.Errorf("average AAC frame %d bytes (silence %d): tone %v, want %v", a, silence, !tc.tone, tc.tone)
			}
			ts := filepath.Join(t.TempDir(), "s.ts")
			cur := c.Cursor()
			writeTS(t, ts, c, cur.Next(2*c.Duration+c.Duration/2, time.Now()))
			if msg := decodeErrors(t, ts); msg != "" {
				t.Errorf("decoding: %s", msg)
			}
		})
	}
}

func TestBrokenSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "broken.png")
	if err := os.WriteFile(path, []byte("not a png at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := ParseSource(path)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLibrary(Config{Source: src, GOP: time.Second})
	p := small(64)
	_, err = l.Clip(context.Background(), p)
	if err == nil || !strings.HasPrefix(err.Error(), "slate h264 main 64x64 40ms + aac 48000Hz 1ch: source "+path+": ffmpeg: exit status 1: ") ||
		!strings.Contains(err.Error(), "Invalid PNG signature") {
		t.Fatalf("err = %v, want ffmpeg's complaint about %s", err, path)
	}
	// failures are not kept: the fixed file works, and so does the library
	ffmpeg(t, "-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", "-f", "image2", path)
	checkClip(t, mustClip(t, l, p), p, time.Second, 1)

	// a media source without video: clear error for video, audio-only works
	audio := filepath.Join(dir, "radio.mp4")
	ffmpeg(t, "-f", "lavfi", "-i", "sine=r=48000", "-t", "1", "-c:a", "aac", audio)
	if src, err = ParseSource(audio); err != nil {
		t.Fatal(err)
	}
	l = NewLibrary(Config{Source: src, GOP: time.Second})
	if _, err := l.Clip(context.Background(), p); err == nil || err.Error() != "slate h264 main 64x64 40ms + aac 48000Hz 1ch: slate source "+audio+" has no video stream" {
		t.Fatalf("err = %v", err)
	}
	ap := Params{AudioCodec: "aac", SampleRate: 48000, Channels: 1}
	checkClip(t, mustClip(t, l, ap), ap, time.Second, 1)

	// no ffmpeg at all
	l = NewLibrary(Config{FFmpeg: filepath.Join(dir, "no-ffmpeg")})
	if _, err := l.Clip(context.Background(), p); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("err = %v", err)
	}
}

// slow is a parameter set whose encode takes seconds: a long GOP of 1080p
// H.265.
var slow = Params{Codec: "h265", Profile: "main", Width: 1920, Height: 1080, FrameDuration: time.Second / 60}

func TestClipCancel(t *testing.T) {
	l := NewLibrary(Config{GOP: 60 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := l.Clip(ctx, slow)
		done <- err
	}()
	if !waitFor(10*time.Second, func() bool { return len(ffmpegChildren(t)) > 0 }) {
		t.Fatal("ffmpeg did not start")
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "slate h265 main 1920x1080 ") {
			t.Fatalf("err = %v, want the params and context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Clip did not return after its context was cancelled")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Clip took %v to return after cancel", d)
	}
	if pids := ffmpegChildren(t); len(pids) != 0 {
		t.Fatalf("ffmpeg processes left: %v", pids)
	}
	if l.Len() != 0 {
		t.Fatal("a cancelled encode was kept")
	}
	// the library goes on working
	checkClip(t, mustClip(t, l, small(64)), small(64), 60*time.Second, 1)
}

func TestClipCancelOneOfTwo(t *testing.T) {
	l := NewLibrary(Config{GOP: 2 * time.Second})
	p := Params{Codec: "h265", Profile: "main", Width: 1280, Height: 720, FrameDuration: time.Second / 30}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := l.Clip(ctx, p)
		first <- err
	}()
	if !waitFor(10*time.Second, func() bool { return len(ffmpegChildren(t)) > 0 }) {
		t.Fatal("ffmpeg did not start")
	}
	second := make(chan *Clip, 1)
	go func() { second <- mustClip(t, l, p) }()
	if !waitFor(5*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.flights[p] != nil && l.flights[p].waiters == 2
	}) {
		t.Fatal("the second caller did not join the encode")
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want context.Canceled", err)
	}
	c := <-second
	checkClip(t, c, p, 2*time.Second, 1)
	if l.encodes.Load() != 1 {
		t.Fatalf("%d encodes, want 1", l.encodes.Load())
	}
}

// fakeClip is a clip built without ffmpeg: numbered payloads, 29.97 fps
// video and 44.1 kHz audio, whose loop is no whole number of audio frames.
func fakeClip(videoN int) *Clip {
	p := Params{Codec: "h264", Width: 64, Height: 64, FrameDuration: 33366667, AudioCodec: "aac", SampleRate: 44100, Channels: 1}
	vtr := &media.Track{Codec: &media.H264{}, ClockRate: 90000}
	atr := &media.Track{ID: 1, Codec: &media.AAC{}, ClockRate: 44100}
	ft := int64(3003)
	loop := int64(videoN) * ft
	var video, audio []*media.Frame
	for i := range videoN {
		video = append(video, &media.Frame{Track: vtr, DTS: int64(i) * ft, PTS: int64(i) * ft, Key: i%30 == 0, Payload: []byte{byte(i)}})
	}
	den := int64(90000 * 1024)
	for j := range (loop*44100 + den - 1) / den {
		audio = append(audio, &media.Frame{Track: atr, DTS: j * 1024, PTS: j * 1024, Key: true, Payload: []byte{byte(j)}})
	}
	return newClip(p, media.TicksToDuration(30*ft, 90000), vtr, atr, video, audio, ft, loop)
}

func TestCursorContinuity(t *testing.T) {
	c := fakeClip(60) // 2.002 s: 86.2 audio frames per loop
	if len(c.audio) != 87 || c.Duration != 2002*time.Millisecond {
		t.Fatalf("%d audio frames, duration %v", len(c.audio), c.Duration)
	}
	cur := c.Cursor()
	if f := cur.Next(0, time.Time{}); f != nil {
		t.Fatalf("Next(0) = %d frames", len(f))
	}
	// the first frames: until is exclusive
	got := cur.Next(media.TicksToDuration(3003, 90000), time.Time{})
	// video 0 (0 ms), audio 0 (0 ms), audio 1 (23.2 ms); video 1 is at 33.37 ms
	if len(got) != 3 || got[0].Track != c.Video || got[0].DTS != 0 || got[1].Track != c.Audio || got[1].DTS != 0 ||
		got[2].Track != c.Audio || got[2].DTS != 1024 {
		t.Fatalf("first step: %+v", got)
	}
	var frames []*media.Frame
	frames = append(frames, got...)
	for until := 50 * time.Millisecond; until <= 10*time.Second; until += 50 * time.Millisecond {
		frames = append(frames, cur.Next(until, time.Time{})...)
	}
	var vn, an int64
	var last time.Duration
	for _, f := range frames {
		if f.DTSDuration() < last {
			t.Fatalf("frame at %v after %v", f.DTSDuration(), last)
		}
		last = f.DTSDuration()
		if f.DTSDuration() >= 10*time.Second {
			t.Fatalf("frame at %v returned for until 10s", f.DTSDuration())
		}
		if f.Track == c.Video {
			if f.DTS != vn*3003 || f.Payload[0] != byte(vn%60) || f.Key != (vn%30 == 0) {
				t.Fatalf("video %d: DTS %d payload %d key %v", vn, f.DTS, f.Payload[0], f.Key)
			}
			vn++
			continue
		}
		// audio j carries the loop's frame at the same place in the loop
		pos := (an * 1024 * 90000) % (c.loopTicks * 44100)
		if f.DTS != an*1024 || int64(f.Payload[0]) != pos/(1024*90000) {
			t.Fatalf("audio %d: DTS %d payload %d, want %d and %d", an, f.DTS, f.Payload[0], an*1024, pos/(1024*90000))
		}
		an++
	}
	// 10 s: video frames k with k×3003/90000 < 10 (k ≤ 299), audio j×1024/44100 < 10 (j ≤ 430)
	if vn != 300 || an != 431 {
		t.Fatalf("%d video and %d audio frames in 10 s, want 300 and 431", vn, an)
	}
}

func TestCard(t *testing.T) {
	for _, size := range [][2]int{{1920, 1080}, {640, 360}, {64, 64}, {16, 16}, {480, 854}} {
		b, err := cardPNG(size[0], size[1])
		if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Fatalf("%v: %v", size, err)
		}
	}
}

func BenchmarkCursor100Streams(b *testing.B) {
	p := Params{Codec: "h264", Profile: "high", Width: 1280, Height: 720, FrameDuration: time.Second / 30, AudioCodec: "aac", SampleRate: 48000, Channels: 2}
	c := mustClip(b, NewLibrary(Config{}), p)
	cursors := make([]*Cursor, 100)
	for i := range cursors {
		cursors[i] = c.Cursor()
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	// one op: one second of media for 100 streams, in 100 ms steps
	for i := 0; b.Loop(); i++ {
		for step := 1; step <= 10; step++ {
			until := time.Duration(i)*time.Second + time.Duration(step)*100*time.Millisecond
			for _, cur := range cursors {
				if cur.Next(until, now) == nil {
					b.Fatal("no frames")
				}
			}
		}
	}
}

func BenchmarkClipEncode(b *testing.B) {
	p := Params{Codec: "h264", Profile: "high", Width: 1280, Height: 720, FrameDuration: time.Second / 30, AudioCodec: "aac", SampleRate: 48000, Channels: 2}
	b.ReportAllocs()
	for b.Loop() {
		mustClip(b, NewLibrary(Config{}), p)
	}
}

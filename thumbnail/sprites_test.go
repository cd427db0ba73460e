package thumbnail

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"image"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// span is a cue's expected times.
type span struct{ start, end time.Duration }

func TestSprites(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	s := time.Second
	for _, tc := range []struct {
		name   string
		fx     fixture
		o      SpriteOptions
		height int
		sheets []image.Point // each sheet's size
		cues   []span
	}{
		{"12 s at 5 s", fxH264, SpriteOptions{Duration: 12 * s, Interval: 5 * s}, 90,
			[]image.Point{{480, 90}}, []span{{0, 5 * s}, {5 * s, 10 * s}, {10 * s, 12 * s}}},
		{"12 s at 5 s, every frame", fxH264, SpriteOptions{Duration: 12 * s, Interval: 5 * s, AllFrames: true}, 90,
			[]image.Point{{480, 90}}, []span{{0, 5 * s}, {5 * s, 10 * s}, {10 * s, 12 * s}}},
		{"defaults: 10 s", fxH264, SpriteOptions{Duration: 12 * s}, 90,
			[]image.Point{{320, 90}}, []span{{0, 10 * s}, {10 * s, 12 * s}}},
		{"12 s at 1 s on 2x3 sheets", fxH264, SpriteOptions{Duration: 12 * s, Interval: s, Columns: 2, Rows: 3}, 90,
			[]image.Point{{320, 270}, {320, 270}}, seconds(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)},
		{"a full sheet and part of a row", fxH264, SpriteOptions{Duration: 11 * s, Interval: s, Columns: 3, Rows: 3}, 90,
			[]image.Point{{480, 270}, {320, 90}}, seconds(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"width 320", fxH264, SpriteOptions{Duration: 12 * s, Interval: 4 * s, Width: 320}, 180,
			[]image.Point{{960, 180}}, []span{{0, 4 * s}, {4 * s, 8 * s}, {8 * s, 12 * s}}},
		{"duration past the media's end", fxH264, SpriteOptions{Duration: 20 * s, Interval: 5 * s}, 90,
			[]image.Point{{640, 90}}, []span{{0, 5 * s}, {5 * s, 10 * s}, {10 * s, 15 * s}, {15 * s, 20 * s}}},
		{"duration before the media's end", fxH264, SpriteOptions{Duration: 7500 * time.Millisecond, Interval: 5 * s}, 90,
			[]image.Point{{320, 90}}, []span{{0, 5 * s}, {5 * s, 7500 * time.Millisecond}}},
		{"portrait", fxPortrait, SpriteOptions{Duration: 2 * s, Interval: s}, 284,
			[]image.Point{{320, 284}}, seconds(0, 1, 2)},
		{"anamorphic", fxAnamorphic, SpriteOptions{Duration: 2 * s, Interval: s}, 90,
			[]image.Point{{320, 90}}, seconds(0, 1, 2)},
		{"h265", fxH265, SpriteOptions{Duration: 2 * s, Interval: s}, 90,
			[]image.Point{{320, 90}}, seconds(0, 1, 2)},
		{"av1", fxAV1, SpriteOptions{Duration: 2 * s, Interval: s}, 90,
			[]image.Point{{320, 90}}, seconds(0, 1, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			set, err := m.Sprites(ctx, bytes.NewReader(tc.fx.bytes(t)), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if set.Width != orDefault(tc.o.Width, DefaultWidth) || set.Height != tc.height {
				t.Fatalf("thumbnails of %dx%d, want %dx%d", set.Width, set.Height, orDefault(tc.o.Width, DefaultWidth), tc.height)
			}
			if set.Tiles() != len(tc.cues) {
				t.Fatalf("%d thumbnails, want %d", set.Tiles(), len(tc.cues))
			}
			if len(set.Sheets) != len(tc.sheets) {
				t.Fatalf("%d sheets, want %d", len(set.Sheets), len(tc.sheets))
			}
			sheets := make([]image.Image, len(set.Sheets))
			for i, b := range set.Sheets {
				sheets[i] = decodeJPEG(t, b)
				if got := sheets[i].Bounds().Size(); got != tc.sheets[i] {
					t.Fatalf("sheet %d is %v, want %v", i, got, tc.sheets[i])
				}
			}
			cues, err := ParseVTT(set.VTT(func(i int) string { return fmt.Sprintf("thumbs/sprite-%d.jpg", i) }))
			if err != nil {
				t.Fatal(err)
			}
			checkCues(t, cues, tc.cues, sheets, set)
		})
	}
	noChildren(t)
}

// seconds is the spans between whole seconds of the given times.
func seconds(at ...int) []span {
	var out []span
	for i := 1; i < len(at); i++ {
		out = append(out, span{time.Duration(at[i-1]) * time.Second, time.Duration(at[i]) * time.Second})
	}
	return out
}

// checkCues checks a track's cues against the expected spans, and that
// they name the set's thumbnails in order: sheet after sheet, row by row,
// each rectangle inside its sheet.
func checkCues(t *testing.T, cues []Cue, want []span, sheets []image.Image, set *SpriteSet) {
	t.Helper()
	if len(cues) != len(want) {
		t.Fatalf("%d cues, want %d", len(cues), len(want))
	}
	per := set.Columns * set.Rows
	for k, c := range cues {
		if c.Start != want[k].start || c.End != want[k].end {
			t.Fatalf("cue %d: %s to %s, want %s to %s", k, c.Start, c.End, want[k].start, want[k].end)
		}
		url, r, err := c.Sprite()
		if err != nil {
			t.Fatal(err)
		}
		sheet, i := k/per, k%per
		at := image.Pt(i%set.Columns*set.Width, i/set.Columns*set.Height)
		wantR := image.Rectangle{Min: at, Max: at.Add(image.Pt(set.Width, set.Height))}
		if wantURL := fmt.Sprintf("thumbs/sprite-%d.jpg", sheet); url != wantURL || r != wantR {
			t.Fatalf("cue %d: %s %v, want %s %v", k, url, r, wantURL, wantR)
		}
		if !r.In(sheets[sheet].Bounds()) {
			t.Fatalf("cue %d: %v outside sheet %d's %v", k, r, sheet, sheets[sheet].Bounds())
		}
	}
}

// TestSpritesPictures checks which picture each thumbnail is: the last
// key frame at or before its time, or with AllFrames the frame on screen
// at its time; and the last thumbnail again for times past the media's
// end.
func TestSpritesPictures(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	path := fxH264.path(t)
	// Candidates: the frames at 0, 4, 5, 6, 8, 10 and 11.967 s.
	refs := referenceFrames(t, path, 160, 90, 0, 120, 150, 180, 240, 300, 359)
	for _, tc := range []struct {
		name string
		o    SpriteOptions
		want []int // frame numbers
	}{
		{"key frames", SpriteOptions{Duration: 12 * time.Second, Interval: 5 * time.Second}, []int{0, 120, 300}},
		{"every frame", SpriteOptions{Duration: 12 * time.Second, Interval: 5 * time.Second, AllFrames: true}, []int{0, 150, 300}},
		{"past the end", SpriteOptions{Duration: 24 * time.Second, Interval: 5 * time.Second, AllFrames: true},
			[]int{0, 150, 300, 300, 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := m.Sprites(context.Background(), bytes.NewReader(fxH264.bytes(t)), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if set.Width != 160 || set.Height != 90 {
				t.Fatalf("thumbnails of %dx%d, want 160x90", set.Width, set.Height)
			}
			sheet := decodeJPEG(t, set.Sheets[0])
			for k, want := range tc.want {
				_, r := set.tile(k)
				best, diff := closest(sheet, r, refs)
				if best != want {
					t.Errorf("thumbnail %d is closest to frame %d (mean difference %.2f), want frame %d", k, best, diff, want)
				}
				if diff > 5.5 {
					t.Errorf("thumbnail %d: mean difference %.2f from frame %d, want at most 5.5 (JPEG loss)", k, diff, best)
				}
			}
		})
	}
}

func TestSpritesBadInput(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	garbage := make([]byte, 256<<10)
	_, _ = rand.Read(garbage)
	audio := mediaFiles.Get(t, "audio-only", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2",
		"-c:a", "aac", "-movflags", "+frag_keyframe+empty_moov+default_base_moof")
	init, frags := split(t, fxParts.bytes(t))
	for _, tc := range []struct {
		name  string
		media []byte
		want  string
	}{
		{"garbage", garbage, "thumbnail: sprites: ffmpeg: exit status 1: "},
		{"empty", nil, "thumbnail: sprites: ffmpeg: exit status 1: "},
		{"no video", audio, "thumbnail: sprites: ffmpeg: exit status 1: "},
		{"init only", init, "thumbnail: sprites: ffmpeg: exit status 1: "},
		{"no key frame", append(append([]byte(nil), init...), frags[1]...), "thumbnail: sprites: ffmpeg: exit status 1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			set, err := m.Sprites(ctx, bytes.NewReader(tc.media), SpriteOptions{Duration: 10 * time.Second})
			if err == nil {
				t.Fatalf("%d sheets, want an error", len(set.Sheets))
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to start with %q", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatal("returned after the context's deadline")
			}
		})
	}
	noChildren(t)
}

// ctxReader reads r, then blocks until ctx ends, as a network reader
// bounded by ctx does when no more data comes.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if n, err := c.r.Read(p); err == nil || !errors.Is(err, io.EOF) {
		return n, err
	}
	<-c.ctx.Done()
	return 0, c.ctx.Err()
}

func TestSpritesCancel(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	init, frags := split(t, fxH264.bytes(t))
	half := append(append([]byte(nil), init...), frags[0]...)
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := m.Sprites(ctx, &ctxReader{ctx: ctx, r: bytes.NewReader(half)}, SpriteOptions{Duration: 12 * time.Second})
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("returned %s after its start, want soon after its 1 s deadline", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) ||
		err.Error() != "thumbnail: sprites: ffmpeg did not finish: context deadline exceeded" {
		t.Fatalf("error %v, want the deadline", err)
	}
	noChildren(t)
	testpeer.WaitGoroutines(t, goroutines)

	// A sprite job waiting for the one slot ends with its context.
	m = newMaker(t, Config{})
	m.sprites <- struct{}{}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = m.Sprites(ctx2, bytes.NewReader(nil), SpriteOptions{Duration: time.Second})
	if err == nil || err.Error() != "thumbnail: sprites: waiting for a free ffmpeg slot (1 busy): context deadline exceeded" {
		t.Fatalf("error %v, want the wait for a slot to end", err)
	}
}

func TestSpriteOptionsValidate(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		o    SpriteOptions
		want string
	}{
		{SpriteOptions{Duration: s}, ""},
		{SpriteOptions{Duration: 24 * time.Hour, Interval: s, Width: 1920, Columns: 32, Rows: 32}, ""},
		{SpriteOptions{Duration: 0}, "thumbnail: sprites: duration 0s: must be positive"},
		{SpriteOptions{Duration: s, Interval: 50 * time.Millisecond},
			"thumbnail: sprites: interval 50ms: want whole milliseconds from 100ms to 1h0m0s"},
		{SpriteOptions{Duration: s, Interval: 2 * time.Hour},
			"thumbnail: sprites: interval 2h0m0s: want whole milliseconds from 100ms to 1h0m0s"},
		{SpriteOptions{Duration: s, Interval: 1500 * time.Microsecond * 100},
			""},
		{SpriteOptions{Duration: s, Interval: 100*time.Millisecond + time.Microsecond},
			"thumbnail: sprites: interval 100.001ms: want whole milliseconds from 100ms to 1h0m0s"},
		{SpriteOptions{Duration: s, Width: 161}, "thumbnail: sprites: width 161: want an even number from 16 to 1920"},
		{SpriteOptions{Duration: s, Width: 14}, "thumbnail: sprites: width 14: want an even number from 16 to 1920"},
		{SpriteOptions{Duration: s, Width: 1922}, "thumbnail: sprites: width 1922: want an even number from 16 to 1920"},
		{SpriteOptions{Duration: s, Columns: 33}, "thumbnail: sprites: grid 33x5: want 1 to 32 each way"},
		{SpriteOptions{Duration: s, Rows: -1}, "thumbnail: sprites: grid 5x-1: want 1 to 32 each way"},
		{SpriteOptions{Duration: 24*time.Hour + time.Millisecond, Interval: s},
			"thumbnail: sprites: 24h0m0.001s at 1s makes 86401 thumbnails, more than 86400"},
	} {
		if got := errString(tc.o.Validate()); got != tc.want {
			t.Errorf("%+v: error %q, want %q", tc.o, got, tc.want)
		}
	}
}

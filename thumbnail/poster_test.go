package thumbnail

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func TestPosterSizes(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	for _, tc := range []struct {
		name     string
		fx       fixture
		segment  int // fragment index of the segment's start
		maxWidth int
		w, h     int
	}{
		{"720p to 640", fxH264, 0, 640, 640, 360},
		{"720p second segment", fxH264, 1, 640, 640, 360},
		{"odd max width rounds down to even", fxH264, 0, 641, 640, 360},
		{"max width 0 keeps the source's", fxH264, 0, 0, 1280, 720},
		{"never enlarged", fxH264, 0, 1920, 1280, 720},
		{"small", fxH264, 0, 160, 160, 90},
		{"anamorphic shown at its display aspect", fxAnamorphic, 0, 640, 640, 360},
		{"anamorphic at its display width", fxAnamorphic, 0, 0, 1920, 1080},
		{"portrait", fxPortrait, 0, 320, 320, 568},
		{"h265", fxH265, 0, 320, 320, 180},
		{"av1", fxAV1, 0, 320, 320, 180},
		{"LL-HLS parts: the segment's first part", fxParts, 0, 640, 640, 360},
	} {
		t.Run(tc.name, func(t *testing.T) {
			init, frags := split(t, tc.fx.bytes(t))
			segment := frags[tc.segment]
			if tc.fx.name == fxParts.name {
				segment = bytes.Join(frags[:4], nil) // a 2 s segment of four parts
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			jpg, err := m.Poster(ctx, init, segment, tc.maxWidth)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(jpg))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != tc.w || cfg.Height != tc.h {
				t.Fatalf("poster is %dx%d, want %dx%d", cfg.Width, cfg.Height, tc.w, tc.h)
			}
			if b := decodeJPEG(t, jpg).Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
				t.Fatalf("decoded poster is %v, want %dx%d", b, tc.w, tc.h)
			}
		})
	}
	noChildren(t)
}

// TestPosterPicture checks that a poster is the segment's first picture:
// of the frames it could be, the segment's key frame is the closest.
func TestPosterPicture(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	path := fxH264.path(t)
	init, frags := split(t, fxH264.bytes(t))
	refs := referenceFrames(t, path, 320, 180, 0, 30, 60, 61, 90, 120, 121, 150)
	for seg, want := range []int{0, 60, 120} { // each GOP's first frame
		jpg, err := m.Poster(context.Background(), init, frags[seg], 320)
		if err != nil {
			t.Fatal(err)
		}
		best, diff := closest(decodeJPEG(t, jpg), image.Rect(0, 0, 320, 180), refs)
		if best != want {
			t.Errorf("segment %d: the poster is closest to frame %d (mean difference %.2f), want frame %d", seg, best, diff, want)
		}
		if diff > 4 {
			t.Errorf("segment %d: mean difference %.2f from frame %d, want at most 4 (JPEG loss)", seg, diff, best)
		}
	}
}

// TestPosterReadsFirstFragment checks that only the segment's first
// fragment is read: what follows it may be anything.
func TestPosterReadsFirstFragment(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	init, frags := split(t, fxParts.bytes(t))
	junk := make([]byte, 4096)
	_, _ = rand.Read(junk)
	jpg, err := m.Poster(context.Background(), init, append(append([]byte(nil), frags[0]...), junk...), 640)
	if err != nil {
		t.Fatal(err)
	}
	if b := decodeJPEG(t, jpg).Bounds(); b.Dx() != 640 || b.Dy() != 360 {
		t.Fatalf("poster is %v, want 640x360", b)
	}
}

func TestPosterBadInput(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	m := newMaker(t, Config{})
	init, frags := split(t, fxParts.bytes(t))
	garbage := make([]byte, 64<<10)
	_, _ = rand.Read(garbage)
	box := func(typ string, payload []byte) []byte {
		b := []byte{0, 0, 0, 0, typ[0], typ[1], typ[2], typ[3]}
		n := len(b) + len(payload)
		b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return append(b, payload...)
	}
	for _, tc := range []struct {
		name          string
		init, segment []byte
		maxWidth      int
		want          string
	}{
		{"random init", garbage, frags[0], 640, "thumbnail: poster: init segment: no MP4 box at offset 0"},
		{"random segment", init, garbage, 640, "thumbnail: poster: segment: no MP4 box at offset 0"},
		{"empty segment", init, nil, 640, "thumbnail: poster: empty segment"},
		{"init without moov", box("ftyp", []byte("isom")), frags[0], 640, "thumbnail: poster: init segment: no moov box"},
		{"segment cut short", init, frags[0][:len(frags[0])-1], 640, "thumbnail: poster: segment: box \"mdat\""},
		{"negative width", init, frags[0], -1, "thumbnail: poster: max width -1"},
		{"garbage in the moov", append(box("ftyp", []byte("isom\x00\x00\x02\x00isom")), box("moov", garbage[:512])...),
			frags[0], 640, "thumbnail: poster: init segment: "},
		// The right boxes, the samples' bytes garbage: ffmpeg fails.
		{"garbage samples", init, ffSamples(t, frags[0]), 640, "thumbnail: poster: ffmpeg: exit status 1: "},
		// A part from the middle of a segment: no key frame to decode.
		{"no key frame", init, frags[1], 640,
			"thumbnail: poster: segment: the first fragment's first video sample is not a key frame (a part from the middle of a segment?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			jpg, err := m.Poster(ctx, tc.init, tc.segment, tc.maxWidth)
			if err == nil {
				t.Fatalf("a %d-byte poster, want an error", len(jpg))
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to start with %q", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatalf("returned after the context's deadline (%s)", time.Since(start))
			}
		})
	}
	noChildren(t)
}

// ffSamples is the fragment frag with every byte of its mdat's payload
// set to 0xff (AVCC NAL unit lengths far past the sample).
func ffSamples(t *testing.T, frag []byte) []byte {
	t.Helper()
	out := append([]byte(nil), frag...)
	for off := 0; off < len(out); {
		bx, err := readBox(out, off)
		if err != nil {
			t.Fatal(err)
		}
		if bx.typ == "mdat" {
			for i := bx.body; i < bx.end; i++ {
				out[i] = 0xff
			}
		}
		off = bx.end
	}
	return out
}

func TestPosterFFmpegFails(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	init, frags := split(t, fxParts.bytes(t))
	m := newMaker(t, Config{FFmpeg: fakeFFmpeg(t, "cat >/dev/null; printf '\\nInvalid data found \\n\\n  at offset 0\\n' >&2; exit 3")})
	_, err := m.Poster(context.Background(), init, frags[0], 640)
	if want := "thumbnail: poster: ffmpeg: exit status 3: Invalid data found | at offset 0"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	m = newMaker(t, Config{FFmpeg: filepath.Join(t.TempDir(), "no-such-ffmpeg")})
	if _, err := m.Poster(context.Background(), init, frags[0], 640); err == nil ||
		!errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "thumbnail: poster: ffmpeg: fork/exec ") {
		t.Fatalf("error %v, want ffmpeg's start to fail with a missing file", err)
	}
}

// TestPosterHung checks that a hung ffmpeg ends with its poster's context
// or Config.PosterTimeout, is killed, and frees its slot for the next
// poster.
func TestPosterHung(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(t.TempDir(), "hang")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Hangs while the flag file exists, else is ffmpeg.
	script := "if [ -e '" + flag + "' ]; then exec sleep 60; fi\nexec '" + ffmpeg + "' \"$@\""
	m := newMaker(t, Config{FFmpeg: fakeFFmpeg(t, script), PosterProcesses: 1, PosterTimeout: 500 * time.Millisecond})
	init, frags := split(t, fxH264.bytes(t))
	goroutines := runtime.NumGoroutine()

	start := time.Now()
	_, err = m.Poster(context.Background(), init, frags[0], 640)
	el := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) ||
		err.Error() != "thumbnail: poster: ffmpeg did not finish: poster timeout (500ms): context deadline exceeded" {
		t.Fatalf("error %v, want the poster timeout", err)
	}
	if el < 500*time.Millisecond || el > 2*time.Second {
		t.Fatalf("returned after %s, want 500ms and a little", el)
	}
	noChildren(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = m.Poster(ctx, init, frags[0], 640)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) ||
		err.Error() != "thumbnail: poster: ffmpeg did not finish: context deadline exceeded" {
		t.Fatalf("error %v, want the caller's deadline", err)
	}
	noChildren(t)

	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	m.cfg.PosterTimeout = 30 * time.Second
	jpg, err := m.Poster(context.Background(), init, frags[0], 640)
	if err != nil {
		t.Fatalf("the poster after the hung ones: %v", err)
	}
	if b := decodeJPEG(t, jpg).Bounds(); b.Dx() != 640 || b.Dy() != 360 {
		t.Fatalf("poster is %v, want 640x360", b)
	}
	testpeer.WaitGoroutines(t, goroutines)
}

// TestPosterProcessCap checks that no more than PosterProcesses ffmpeg
// processes run at once: the other posters wait for a slot, until their
// context ends.
func TestPosterProcessCap(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	init, frags := split(t, fxParts.bytes(t))
	st := &recordingStarter{execStarter: execStarter{path: fakeFFmpeg(t, "exec sleep 60")}}
	m := newMaker(t, Config{Starter: st, PosterProcesses: 2, PosterTimeout: time.Minute})
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 5
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := m.Poster(ctx, init, frags[0], 640)
			errs <- err
		})
	}
	testpeer.WaitFor(t, 10*time.Second, "2 ffmpeg processes", func() bool { return st.counts().live == 2 })
	time.Sleep(300 * time.Millisecond)
	if d := testpeer.Descendants(os.Getpid()); len(d) != 2 {
		t.Fatalf("%d processes running, want 2", len(d))
	}
	cancel()
	wg.Wait()
	close(errs)
	// Once the context ends, a poster that was waiting may still take a
	// slot freed by a killed one before its own context is cancelled (the
	// posters' contexts end one by one): its process is killed at once.
	var killed, waited int
	for err := range errs {
		switch {
		case err == nil:
			t.Fatal("a poster from a hung ffmpeg")
		case err.Error() == "thumbnail: poster: ffmpeg did not finish: context canceled":
			killed++
		case err.Error() == "thumbnail: poster: waiting for a free ffmpeg slot (2 busy): context canceled":
			waited++
		default:
			t.Fatalf("error %v", err)
		}
	}
	c := st.counts()
	if c.peak != 2 || c.live != 0 || killed != c.started || killed+waited != n {
		t.Fatalf("at most %d processes at once, %d left, %d started; %d posters killed and %d waiting: "+
			"want at most 2 at once, none left, a killed poster per process and %d posters", c.peak, c.live, c.started, killed, waited, n)
	}
	noChildren(t)
	testpeer.WaitGoroutines(t, goroutines)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{PosterProcesses: 4, SpriteProcesses: 2, PosterTimeout: time.Second}, ""},
		{Config{PosterProcesses: -1}, "thumbnail: poster processes -1: must not be negative"},
		{Config{SpriteProcesses: -1}, "thumbnail: sprite processes -1: must not be negative"},
		{Config{PosterTimeout: -time.Second}, "thumbnail: poster timeout -1s: must not be negative"},
	} {
		err := tc.cfg.Validate()
		if got := errString(err); got != tc.want {
			t.Errorf("%+v: error %q, want %q", tc.cfg, got, tc.want)
		}
		if _, nerr := New(tc.cfg); errString(nerr) != tc.want {
			t.Errorf("New(%+v): error %v, want %q", tc.cfg, nerr, tc.want)
		}
	}
	m := newMaker(t, Config{})
	if m.cfg.FFmpeg != DefaultFFmpeg || cap(m.posters) != DefaultPosterProcesses ||
		cap(m.sprites) != DefaultSpriteProcesses || m.cfg.PosterTimeout != DefaultPosterTimeout {
		t.Fatalf("defaults: %+v, %d poster and %d sprite slots", m.cfg, cap(m.posters), cap(m.sprites))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recordingStarter starts ffmpeg through execStarter, standing for
// another Starter (a fork server's), and records the processes: their
// arguments, how many live and the most at once.
type recordingStarter struct {
	execStarter
	mu         sync.Mutex
	args       [][]string
	live, peak int
}

// starterCounts are a recordingStarter's counts.
type starterCounts struct{ started, live, peak int }

func (r *recordingStarter) counts() starterCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return starterCounts{len(r.args), r.live, r.peak}
}

func (r *recordingStarter) StartFFmpeg(args []string, stdin, stdout, stderr *os.File) (Process, error) {
	p, err := r.execStarter.StartFFmpeg(args, stdin, stdout, stderr)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.args = append(r.args, args)
	r.live++
	r.peak = max(r.peak, r.live)
	return &recordedProcess{Process: p, r: r}, nil
}

// recordedProcess counts its exit in its recordingStarter.
type recordedProcess struct {
	Process
	r *recordingStarter
}

func (p *recordedProcess) Wait() error {
	err := p.Process.Wait()
	p.r.mu.Lock()
	p.r.live--
	p.r.mu.Unlock()
	return err
}

// TestStarter checks that a Config.Starter starts every process, and
// that its processes are killed through it.
func TestStarter(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	init, frags := split(t, fxH264.bytes(t))
	st := &recordingStarter{execStarter: execStarter{path: "ffmpeg"}}
	m := newMaker(t, Config{FFmpeg: "/nonexistent/ffmpeg", Starter: st})
	jpg, err := m.Poster(context.Background(), init, frags[0], 320)
	if err != nil {
		t.Fatal(err)
	}
	if b := decodeJPEG(t, jpg).Bounds(); b.Dx() != 320 || b.Dy() != 180 {
		t.Fatalf("poster is %v, want 320x180", b)
	}
	set, err := m.Sprites(context.Background(), bytes.NewReader(fxH264.bytes(t)), SpriteOptions{Duration: 12 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Sheets) != 1 || set.Tiles() != 2 {
		t.Fatalf("%d sheets, %d thumbnails, want 1 and 2", len(set.Sheets), set.Tiles())
	}
	if c := st.counts(); c.started != 2 || c.live != 0 || c.peak != 1 || !slices.Equal(st.args[0], posterArgs(320)) ||
		!slices.Equal(st.args[1], spriteArgs(SpriteOptions{Duration: 12 * time.Second}.withDefaults())) {
		t.Fatalf("started %q", st.args)
	}

	hung := &recordingStarter{execStarter: execStarter{path: fakeFFmpeg(t, "exec sleep 60")}}
	m = newMaker(t, Config{Starter: hung})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := m.Poster(ctx, init, frags[0], 320); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the deadline", err)
	}
	if c := hung.counts(); c.started != 1 || c.live != 0 {
		t.Fatalf("%d started, %d live, want 1 killed and waited for", c.started, c.live)
	}
	noChildren(t)
}

package thumbnail

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// mediaFiles are the fragmented MP4 files the tests decode, encoded once
// per test binary.
var mediaFiles = &testpeer.FFmpegFiles{Pattern: "thumbnail-test", Format: "mp4", Timeout: 3 * time.Minute}

func TestMain(m *testing.M) {
	code := m.Run()
	mediaFiles.RemoveAll()
	os.Exit(code)
}

// fragmented is the muxer flags of every fixture: an empty moov, a
// fragment at each key frame, base offsets in the moof (as CMAF has them).
var fragmented = []string{"-movflags", "+frag_keyframe+empty_moov+default_base_moof"}

// fixture is a video-only fragmented MP4 of a testsrc2 pattern.
type fixture struct {
	name    string
	size    string // WxH of the coded pictures
	seconds int
	codec   []string // codec arguments; a key frame every 2 s at 30 fps
	extra   []string // more output arguments (filters, muxer flags)
}

// Fixtures. Every one has a key frame every 60 frames (2 s) at 30 fps.
var (
	// h264 720p with B-frames (the first picture's PTS is after its DTS),
	// one fragment per GOP.
	fxH264 = fixture{name: "h264-720p", size: "1280x720", seconds: 12,
		codec: []string{"-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60", "-keyint_min", "60",
			"-sc_threshold", "0", "-pix_fmt", "yuv420p"}}
	// h264 720p cut into 0.5 s fragments, as LL-HLS parts: a segment is
	// four of them, and only the first starts with a key frame.
	fxParts = fixture{name: "h264-720p-parts", size: "1280x720", seconds: 4,
		codec: fxH264.codec, extra: []string{"-frag_duration", "500000"}}
	// 1440x1080 pictures of pixel aspect ratio 4:3: shown as 1920x1080.
	fxAnamorphic = fixture{name: "h264-anamorphic", size: "1440x1080", seconds: 2,
		codec: []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p"},
		extra: []string{"-vf", "setsar=4/3"}}
	// A portrait phone stream.
	fxPortrait = fixture{name: "h264-portrait", size: "360x640", seconds: 2,
		codec: []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p"}}
	fxH265 = fixture{name: "h265-360p", size: "640x360", seconds: 2,
		codec: []string{"-c:v", "libx265", "-preset", "ultrafast", "-g", "60", "-x265-params", "log-level=error",
			"-tag:v", "hvc1", "-pix_fmt", "yuv420p"}}
	fxAV1 = fixture{name: "av1-360p", size: "640x360", seconds: 2,
		codec: []string{"-c:v", "libsvtav1", "-preset", "12", "-g", "60", "-pix_fmt", "yuv420p"}}
)

// bytes encodes the fixture (once per test binary) and returns the file.
func (f fixture) bytes(t testing.TB) []byte {
	t.Helper()
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=" + f.size + ":rate=30", "-t", strconv.Itoa(f.seconds)}
	args = append(args, f.codec...)
	args = append(args, f.extra...)
	args = append(args, fragmented...)
	return mediaFiles.Get(t, f.name, args...)
}

// path is the fixture's file.
func (f fixture) path(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), f.name+".mp4")
	if err := os.WriteFile(p, f.bytes(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// split cuts a fragmented MP4 file into its init segment (the boxes
// before the first moof) and its fragments (each moof with the boxes up to
// the next moof). It walks the top-level boxes itself, apart from the code
// under test.
func split(t testing.TB, b []byte) (init []byte, frags [][]byte) {
	t.Helper()
	var starts []int
	off := 0
	for off < len(b) {
		if len(b)-off < 8 {
			t.Fatalf("trailing %d bytes", len(b)-off)
		}
		size := int(binary.BigEndian.Uint32(b[off:]))
		if size < 8 || off+size > len(b) {
			t.Fatalf("box %q at %d: size %d", b[off+4:off+8], off, size)
		}
		if string(b[off+4:off+8]) == "moof" {
			starts = append(starts, off)
		}
		off += size
	}
	if len(starts) == 0 {
		t.Fatal("no moof")
	}
	starts = append(starts, len(b))
	for i := range len(starts) - 1 {
		frags = append(frags, b[starts[i]:starts[i+1]])
	}
	return b[:starts[0]], frags
}

// decodeJPEG decodes a JPEG, failing t.
func decodeJPEG(t testing.TB, b []byte) image.Image {
	t.Helper()
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding the JPEG (%d bytes): %v", len(b), err)
	}
	return img
}

// referenceFrames are the frames ns of the file at path (numbered in
// presentation order, ascending) scaled to w×h by ffmpeg, as RGB pictures.
func referenceFrames(t testing.TB, path string, w, h int, ns ...int) map[int]*picture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sel := make([]string, len(ns))
	for i, n := range ns {
		sel[i] = "eq(n\\," + strconv.Itoa(n) + ")"
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", path,
		"-vf", fmt.Sprintf("select=%s,scale=w=%d:h=%d", strings.Join(sel, "+"), w, h), "-fps_mode", "passthrough",
		"-c:v", "ppm", "-f", "image2pipe", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg reference frames %v: %v: %s", ns, err, stderr.String())
	}
	pr := newPPMReader(bytes.NewReader(out), 1<<24)
	refs := make(map[int]*picture, len(ns))
	for _, n := range ns {
		p := &picture{}
		if err := pr.next(p); err != nil {
			t.Fatalf("reference frame %d: %v", n, err)
		}
		if p.w != w || p.h != h {
			t.Fatalf("reference frame %d is %dx%d, want %dx%d", n, p.w, p.h, w, h)
		}
		refs[n] = p
	}
	return refs
}

// closest returns which of the pictures refs the region r of img is
// closest to, and its mean difference from it.
func closest(img image.Image, r image.Rectangle, refs map[int]*picture) (n int, diff float64) {
	n = -1
	for k, p := range refs {
		if d := meanDiff(img, r, p); n < 0 || d < diff {
			n, diff = k, d
		}
	}
	return n, diff
}

// meanDiff is the mean absolute difference, per channel, between the
// region r of img and the picture p (of r's size).
func meanDiff(img image.Image, r image.Rectangle, p *picture) float64 {
	var sum, n float64
	for y := range r.Dy() {
		for x := range r.Dx() {
			cr, cg, cb, _ := img.At(r.Min.X+x, r.Min.Y+y).RGBA()
			i := (y*p.w + x) * 3
			for c, v := range []uint32{cr >> 8, cg >> 8, cb >> 8} {
				d := float64(v) - float64(p.pix[i+c])
				if d < 0 {
					d = -d
				}
				sum += d
				n++
			}
		}
	}
	return sum / n
}

// fakeFFmpeg writes a shell script standing for ffmpeg and returns its
// path.
func fakeFFmpeg(t testing.TB, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// noChildren fails t if this process has live child processes.
func noChildren(t testing.TB) {
	t.Helper()
	testpeer.RequireLinux(t, "counting child processes in /proc")
	if d := testpeer.Descendants(os.Getpid()); len(d) != 0 {
		t.Fatalf("processes left behind: %v", d)
	}
}

// newMaker returns a Maker for cfg, failing t.
func newMaker(t testing.TB, cfg Config) *Maker {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

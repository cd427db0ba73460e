package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// maxPosterBytes caps a poster's JPEG (a 4K picture at the quality used
// takes about 2 MiB).
const maxPosterBytes = 16 << 20

// posterQuality is the mjpeg encoder's quantizer (-q:v, 2 best to 31).
const posterQuality = "3"

// errNoPicture is the error of an ffmpeg run that decoded no picture.
var errNoPicture = errors.New("ffmpeg decoded no picture")

// Poster returns a JPEG of the first picture of segment, a media segment
// (or a segment's first part) of the video rendition whose init segment is
// init, starting with a key frame: moof+mdat fragments, H.264, H.265 or AV1
// as ffmpeg decodes them. Only the segment's first fragment is read, and
// its first video sample must be a sync sample (else an error before any
// process starts). The picture is scaled to fit maxWidth, keeping its
// display aspect ratio (pixel aspect ratio applied), with even dimensions
// and never enlarged; maxWidth 0 keeps the source's width. The call waits for one of
// Config.PosterProcesses slots and is bounded by ctx and
// Config.PosterTimeout; an ffmpeg that fails or hangs fails this poster
// only.
func (m *Maker) Poster(ctx context.Context, init, segment []byte, maxWidth int) ([]byte, error) {
	if maxWidth < 0 || maxWidth == 1 {
		return nil, fmt.Errorf("thumbnail: poster: max width %d: want 0 (the source's) or at least 2", maxWidth)
	}
	if err := checkInit(init); err != nil {
		return nil, fmt.Errorf("thumbnail: poster: %w", err)
	}
	first, err := firstFragment(segment)
	if err != nil {
		return nil, fmt.Errorf("thumbnail: poster: %w", err)
	}
	if err := checkKeyFrame(init, first); err != nil {
		return nil, fmt.Errorf("thumbnail: poster: %w", err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, m.cfg.PosterTimeout,
		fmt.Errorf("poster timeout (%s): %w", m.cfg.PosterTimeout, context.DeadlineExceeded))
	defer cancel()
	if err := acquire(ctx, m.posters); err != nil {
		return nil, fmt.Errorf("thumbnail: poster: %w", err)
	}
	defer release(m.posters)

	var jpg []byte
	read := func(out io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(out, maxPosterBytes+1))
		switch {
		case err != nil:
			return fmt.Errorf("reading the poster: %w", err)
		case len(b) > maxPosterBytes:
			return fmt.Errorf("ffmpeg wrote more than %d bytes", maxPosterBytes)
		case len(b) == 0:
			return fmt.Errorf("%w (does the segment start with a key frame?)", errNoPicture)
		case !bytes.HasPrefix(b, []byte{0xff, 0xd8}):
			return fmt.Errorf("ffmpeg wrote %d bytes that are not a JPEG", len(b))
		}
		jpg = b
		return nil
	}
	in := io.MultiReader(bytes.NewReader(init), bytes.NewReader(first))
	if err := m.run(ctx, posterArgs(maxWidth), in, read); err != nil {
		return nil, fmt.Errorf("thumbnail: poster: %w", err)
	}
	return jpg, nil
}

// posterArgs is ffmpeg's command line for a poster: fMP4 on stdin, one
// thread, key frames only, the first picture scaled to fit maxWidth, a
// JPEG on stdout.
func posterArgs(maxWidth int) []string {
	// Display width (sar applied), capped and made even; the height from
	// the display aspect, even, at least 2.
	w := "iw*sar"
	if maxWidth > 0 {
		w = "min(iw*sar," + strconv.Itoa(maxWidth) + ")"
	}
	scale := "scale=w='2*trunc(" + w + "/2)':h='max(2,2*round(ow*ih/(iw*sar)/2))',setsar=1"
	return []string{
		"-hide_banner", "-nostdin", "-loglevel", "error",
		"-threads", "1", "-skip_frame", "nokey",
		"-f", "mp4", "-i", "pipe:0",
		"-map", "0:v:0", "-frames:v", "1",
		"-filter_threads", "1", "-vf", scale,
		"-c:v", "mjpeg", "-q:v", posterQuality,
		"-f", "image2pipe", "pipe:1",
	}
}

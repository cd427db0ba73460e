package thumbnail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"strconv"
	"time"
)

// Defaults of SpriteOptions.
const (
	// DefaultInterval is the time between thumbnails.
	DefaultInterval = 10 * time.Second
	// DefaultWidth is a thumbnail's width in pixels.
	DefaultWidth = 160
	// DefaultColumns is the number of thumbnails across a sheet.
	DefaultColumns = 5
	// DefaultRows is the number of thumbnails down a sheet.
	DefaultRows = 5
)

// Bounds of SpriteOptions.
const (
	// MaxInterval is the longest time between thumbnails.
	MaxInterval = time.Hour
	// MinInterval is the shortest time between thumbnails.
	MinInterval = 100 * time.Millisecond
	// MaxWidth is the widest thumbnail.
	MaxWidth = 1920
	// MaxGrid is the most thumbnails across or down a sheet.
	MaxGrid = 32
	// MaxTiles is the most thumbnails of one recording (a day at 1 s).
	MaxTiles = 86400
)

// maxTileHeight bounds a thumbnail's height (a portrait source of a
// MaxWidth thumbnail fits).
const maxTileHeight = 4096

// spriteQuality is the JPEG quality of the sheets.
const spriteQuality = 80

// SpriteOptions says which thumbnails Sprites makes. Zero fields but
// Duration take their defaults.
type SpriteOptions struct {
	// Duration is the recording's duration: thumbnails and cues cover
	// [0, Duration). It is required.
	Duration time.Duration
	// Interval is the time between thumbnails (DefaultInterval), a whole
	// number of milliseconds from MinInterval to MaxInterval.
	Interval time.Duration
	// Width is a thumbnail's width in pixels (DefaultWidth), even, from
	// 16 to MaxWidth; its height follows the picture's display aspect
	// ratio (even).
	Width int
	// Columns and Rows are the grid of thumbnails of one sheet
	// (DefaultColumns, DefaultRows), each from 1 to MaxGrid.
	Columns, Rows int
	// AllFrames decodes every frame so that thumbnail k is the frame on
	// screen at k×Interval. By default only key frames are decoded and
	// thumbnail k is the last key frame at or before k×Interval, at a
	// fraction of the CPU.
	AllFrames bool
}

func (o SpriteOptions) withDefaults() SpriteOptions {
	o.Interval = orDefault(o.Interval, DefaultInterval)
	o.Width = orDefault(o.Width, DefaultWidth)
	o.Columns = orDefault(o.Columns, DefaultColumns)
	o.Rows = orDefault(o.Rows, DefaultRows)
	return o
}

// Validate checks the options (zero fields stand for their defaults).
func (o SpriteOptions) Validate() error {
	o = o.withDefaults()
	switch {
	case o.Duration <= 0:
		return fmt.Errorf("thumbnail: sprites: duration %s: must be positive", o.Duration)
	case o.Interval < MinInterval || o.Interval > MaxInterval || o.Interval%time.Millisecond != 0:
		return fmt.Errorf("thumbnail: sprites: interval %s: want whole milliseconds from %s to %s", o.Interval, MinInterval, MaxInterval)
	case o.Width < 16 || o.Width > MaxWidth || o.Width%2 != 0:
		return fmt.Errorf("thumbnail: sprites: width %d: want an even number from 16 to %d", o.Width, MaxWidth)
	case o.Columns < 1 || o.Columns > MaxGrid || o.Rows < 1 || o.Rows > MaxGrid:
		return fmt.Errorf("thumbnail: sprites: grid %dx%d: want 1 to %d each way", o.Columns, o.Rows, MaxGrid)
	}
	if n := tileCount(o.Duration, o.Interval); n > MaxTiles {
		return fmt.Errorf("thumbnail: sprites: %s at %s makes %d thumbnails, more than %d", o.Duration, o.Interval, n, MaxTiles)
	}
	return nil
}

// tileCount is the number of thumbnails covering d: ceil(d/interval).
func tileCount(d, interval time.Duration) int {
	return int((d + interval - 1) / interval)
}

// SpriteSet is a recording's thumbnails: JPEG sheets of Columns×Rows
// thumbnails of Width×Height pixels, filled row by row, and the WebVTT
// track that points at them (VTT).
type SpriteSet struct {
	// Sheets are the JPEG sprite sheets, in order. Every sheet but the
	// last is Columns×Width by Rows×Height pixels; the last is as small as
	// its thumbnails allow (fewer columns when it holds less than a row,
	// fewer rows when it holds less than a sheet).
	Sheets [][]byte
	// Width and Height are one thumbnail's size in pixels.
	Width, Height int
	// Columns and Rows are the grid of a full sheet.
	Columns, Rows int
	// Interval is the time between thumbnails.
	Interval time.Duration
	// Duration is the recording's duration, the last cue's end.
	Duration time.Duration
}

// Tiles is the number of thumbnails: ceil(Duration/Interval).
func (s *SpriteSet) Tiles() int { return tileCount(s.Duration, s.Interval) }

// tile places thumbnail k: its sheet and its rectangle there.
func (s *SpriteSet) tile(k int) (sheet int, r image.Rectangle) {
	per := s.Columns * s.Rows
	sheet, i := k/per, k%per
	x, y := (i%s.Columns)*s.Width, (i/s.Columns)*s.Height
	return sheet, image.Rect(x, y, x+s.Width, y+s.Height)
}

// sheetSize is the size of sheet i: its thumbnails' bounding box.
func (s *SpriteSet) sheetSize(i int) image.Point {
	per := s.Columns * s.Rows
	n := min(per, s.Tiles()-i*per)
	cols := min(n, s.Columns)
	rows := (n + s.Columns - 1) / s.Columns
	return image.Pt(cols*s.Width, rows*s.Height)
}

// Sprites makes the thumbnails of a recording: media is its video
// rendition as one fragmented MP4 stream (the init segment, then every
// media segment in order), read to its end, and o says which thumbnails
// to make. One ffmpeg process decodes it (with one thread; key frames only
// unless o.AllFrames) and writes the scaled thumbnails, which are tiled
// into sheets here. There are ceil(o.Duration/o.Interval) thumbnails:
// when the media ends before the last of them, the last thumbnail made
// stands for the rest. The call waits for one of Config.SpriteProcesses slots and is
// bounded by ctx, which should also end a media reader that blocks.
func (m *Maker) Sprites(ctx context.Context, media io.Reader, o SpriteOptions) (*SpriteSet, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if err := acquire(ctx, m.sprites); err != nil {
		return nil, fmt.Errorf("thumbnail: sprites: %w", err)
	}
	defer release(m.sprites)

	var set *SpriteSet
	read := func(out io.Reader) error {
		var err error
		set, err = tileSheets(newPPMReader(out, o.Width*maxTileHeight), o)
		return err
	}
	if err := m.run(ctx, spriteArgs(o), media, read); err != nil {
		return nil, fmt.Errorf("thumbnail: sprites: %w", err)
	}
	return set, nil
}

// spriteArgs is ffmpeg's command line for sprites: fMP4 on stdin, one
// thread, a picture every interval scaled to the thumbnail width, PPM
// pictures on stdout, no more than the thumbnails needed.
func spriteArgs(o SpriteOptions) []string {
	// fps with round=up gives slot k the last frame whose time is at or
	// before k×interval; start_time=0 makes the first slot 0 even when
	// the first frame's time is later (B-frame delay).
	fps := "fps=fps=1000/" + strconv.FormatInt(o.Interval.Milliseconds(), 10) + ":start_time=0:round=up"
	w := strconv.Itoa(o.Width)
	scale := "scale=w=" + w + ":h='max(2,2*round(" + w + "*ih/(iw*sar)/2))',setsar=1"
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1"}
	if !o.AllFrames {
		args = append(args, "-skip_frame", "nokey")
	}
	return append(args,
		"-f", "mp4", "-i", "pipe:0",
		"-map", "0:v:0", "-frames:v", strconv.Itoa(tileCount(o.Duration, o.Interval)),
		"-filter_threads", "1", "-vf", fps+","+scale, "-fps_mode", "passthrough",
		"-c:v", "ppm", "-f", "image2pipe", "pipe:1",
	)
}

// tileSheets reads the thumbnails from pr and tiles them into sheets, the
// last one read standing for those past the end of the pictures.
func tileSheets(pr *ppmReader, o SpriteOptions) (*SpriteSet, error) {
	set := &SpriteSet{Width: o.Width, Columns: o.Columns, Rows: o.Rows, Interval: o.Interval, Duration: o.Duration}
	n := set.Tiles()
	var (
		pic, last picture
		have      bool // last holds a picture
		ended     bool // no more pictures
		sheet     *image.RGBA
	)
	for k := range n {
		if !ended {
			switch err := pr.next(&pic); {
			case errors.Is(err, io.EOF):
				ended = true
			case err != nil:
				return nil, fmt.Errorf("thumbnail %d: %w", k, err)
			default:
				if !have {
					set.Height = pic.h
				}
				if pic.w != set.Width || pic.h != set.Height {
					return nil, fmt.Errorf("thumbnail %d is %dx%d, want %dx%d (did the picture size change?)",
						k, pic.w, pic.h, set.Width, set.Height)
				}
				pic, last, have = last, pic, true
			}
		}
		if !have {
			return nil, errNoPicture
		}
		i, r := set.tile(k)
		if set.tileStartsSheet(k) {
			sheet = image.NewRGBA(image.Rectangle{Max: set.sheetSize(i)})
		}
		drawRGB(sheet, r.Min, &last)
		if k == n-1 || set.tileStartsSheet(k+1) {
			var b bytes.Buffer
			if err := jpeg.Encode(&b, sheet, &jpeg.Options{Quality: spriteQuality}); err != nil {
				return nil, fmt.Errorf("sheet %d: %w", i, err)
			}
			set.Sheets = append(set.Sheets, b.Bytes())
		}
	}
	return set, nil
}

// tileStartsSheet reports whether thumbnail k is the first of its sheet.
func (s *SpriteSet) tileStartsSheet(k int) bool { return k%(s.Columns*s.Rows) == 0 }

// drawRGB copies the RGB picture p into dst at at.
func drawRGB(dst *image.RGBA, at image.Point, p *picture) {
	for y := range p.h {
		src := p.pix[y*p.w*3 : (y+1)*p.w*3]
		row := dst.Pix[dst.PixOffset(at.X, at.Y+y):]
		for x := range p.w {
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = src[3*x], src[3*x+1], src[3*x+2], 0xff
		}
	}
}

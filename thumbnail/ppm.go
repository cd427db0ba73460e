package thumbnail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// picture is one RGB picture, 3 bytes a pixel, rows back to back.
type picture struct {
	w, h int
	pix  []byte
}

// ppmReader reads the binary PPM pictures (P6, maxval 255) that ffmpeg's
// image2pipe muxer writes back to back.
type ppmReader struct {
	r         *bufio.Reader
	maxPixels int
}

func newPPMReader(r io.Reader, maxPixels int) *ppmReader {
	return &ppmReader{r: bufio.NewReaderSize(r, 64<<10), maxPixels: maxPixels}
}

// next reads the next picture into p (its pixel buffer reused). It returns
// io.EOF at the end of the stream, between pictures, and another error for
// anything that is not a whole picture.
func (pr *ppmReader) next(p *picture) error {
	magic := make([]byte, 2)
	if _, err := io.ReadFull(pr.r, magic); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("picture header: %w", err)
	}
	if magic[0] != 'P' || magic[1] != '6' {
		return fmt.Errorf("picture header %q: want a binary PPM (P6)", magic)
	}
	var hdr [3]int // width, height, maxval
	for i := range hdr {
		n, err := pr.number()
		if err != nil {
			return fmt.Errorf("picture header: %w", err)
		}
		hdr[i] = n
	}
	w, h, maxval := hdr[0], hdr[1], hdr[2]
	if maxval != 255 {
		return fmt.Errorf("picture header: maxval %d, want 255", maxval)
	}
	if w < 1 || h < 1 || w > pr.maxPixels/h {
		return fmt.Errorf("picture header: %dx%d: want 1 to %d pixels", w, h, pr.maxPixels)
	}
	n := w * h * 3
	if cap(p.pix) < n {
		p.pix = make([]byte, n)
	}
	p.w, p.h, p.pix = w, h, p.pix[:n]
	if _, err := io.ReadFull(pr.r, p.pix); err != nil {
		return fmt.Errorf("picture of %dx%d: %w", w, h, noEOF(err))
	}
	return nil
}

// number reads a header field: whitespace and comments, then decimal
// digits, then the one whitespace byte that ends it.
func (pr *ppmReader) number() (int, error) {
	n, digits := 0, 0
	for {
		c, err := pr.r.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		switch {
		case c >= '0' && c <= '9':
			if digits == 6 {
				return 0, errors.New("number too long")
			}
			n = n*10 + int(c-'0')
			digits++
		case digits > 0 && isSpace(c):
			return n, nil
		case digits == 0 && isSpace(c):
		case digits == 0 && c == '#':
			if _, err := pr.r.ReadSlice('\n'); err != nil {
				return 0, fmt.Errorf("comment: %w", noEOF(err))
			}
		default:
			return 0, fmt.Errorf("unexpected byte %#x", c)
		}
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// noEOF turns an end of stream in the middle of a picture into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

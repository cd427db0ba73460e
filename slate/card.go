package slate

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
)

// glyphs is a 5×7 block font for the card's words: each row is five bits,
// the most significant of the five on the left.
var glyphs = map[rune][7]uint8{
	'A': {0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001},
	'B': {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110},
	'C': {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110},
	'D': {0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110},
	'K': {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001},
	'N': {0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b10001},
	'O': {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110},
	'S': {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110},
	'T': {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100},
	'Y': {0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100},
	' ': {},
}

// bars are 75% colour bars (white, yellow, cyan, green, magenta, red, blue).
var bars = []color.RGBA{
	{191, 191, 191, 255}, {191, 191, 0, 255}, {0, 191, 191, 255}, {0, 191, 0, 255},
	{191, 0, 191, 255}, {191, 0, 0, 255}, {0, 0, 191, 255},
}

// cardPNG draws the built-in card at w×h: a dark background, a band of
// colour bars, "STAND BY" and, smaller, "BACK SOON"; PNG-encoded.
func cardPNG(w, h int) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{color.RGBA{18, 22, 30, 255}}, image.Point{}, draw.Src)
	bandTop, bandBottom := h*14/100, h*30/100
	for i, c := range bars {
		x0, x1 := w*i/len(bars), w*(i+1)/len(bars)
		draw.Draw(img, image.Rect(x0, bandTop, x1, bandBottom), &image.Uniform{c}, image.Point{}, draw.Src)
	}
	big := textScale("STAND BY", w*8/10, h*18/100)
	drawText(img, "STAND BY", h*44/100, big, color.RGBA{235, 235, 235, 255})
	small := max(1, big/2)
	drawText(img, "BACK SOON", h*44/100+8*big+2*small, small, color.RGBA{150, 160, 175, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// textScale is the largest whole block size at which s fits in maxW×maxH
// (at least 1).
func textScale(s string, maxW, maxH int) int {
	cols := 6*len(s) - 1
	return max(1, min(maxW/cols, maxH/7))
}

// drawText draws s centred horizontally with its top at y, each font pixel
// a scale×scale block.
func drawText(img *image.RGBA, s string, y, scale int, c color.RGBA) {
	w := img.Bounds().Dx()
	x := (w - (6*len(s)-1)*scale) / 2
	u := &image.Uniform{c}
	for _, r := range s {
		g := glyphs[r]
		for row, bits := range g {
			for col := 0; col < 5; col++ {
				if bits&(1<<(4-col)) != 0 {
					px, py := x+col*scale, y+row*scale
					draw.Draw(img, image.Rect(px, py, px+scale, py+scale), u, image.Point{}, draw.Src)
				}
			}
		}
		x += 6 * scale
	}
}

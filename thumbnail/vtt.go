package thumbnail

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"strconv"
	"strings"
	"time"
)

// VTT returns the WebVTT thumbnail track of the set: one cue per
// thumbnail, from k×Interval to (k+1)×Interval and the last to Duration,
// whose text is the URL of its sheet (sheetURL(i) for sheet i; nil names
// them "sprite-<i>.jpg") with a #xywh= fragment, the thumbnail's rectangle
// in the sheet:
//
//	WEBVTT
//
//	00:00:00.000 --> 00:00:10.000
//	sprite-0.jpg#xywh=0,0,160,90
//
// Times are written to the millisecond; the last cue's end is Duration
// rounded up, so that the track covers the whole recording.
func (s *SpriteSet) VTT(sheetURL func(i int) string) []byte {
	if sheetURL == nil {
		sheetURL = func(i int) string { return "sprite-" + strconv.Itoa(i) + ".jpg" }
	}
	var b bytes.Buffer
	b.WriteString("WEBVTT\n")
	n := s.Tiles()
	url, urlOf := "", -1
	for k := range n {
		start, end := time.Duration(k)*s.Interval, time.Duration(k+1)*s.Interval
		if k == n-1 {
			end = s.Duration
		}
		sheet, r := s.tile(k)
		if sheet != urlOf {
			url, urlOf = sheetURL(sheet), sheet
		}
		fmt.Fprintf(&b, "\n%s --> %s\n%s#xywh=%d,%d,%d,%d\n",
			vttTime(start, false), vttTime(end, true), url, r.Min.X, r.Min.Y, r.Dx(), r.Dy())
	}
	return b.Bytes()
}

// vttTime formats d as hh:mm:ss.ttt, truncated to the millisecond or, when
// up is set, rounded up to it.
func vttTime(d time.Duration, up bool) string {
	ms := d / time.Millisecond
	if up && d%time.Millisecond != 0 {
		ms++
	}
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3600000, ms/60000%60, ms/1000%60, ms%1000)
}

// Cue is one cue of a WebVTT track.
type Cue struct {
	// Start and End are the cue's times.
	Start, End time.Duration
	// Text is its payload, lines joined by "\n".
	Text string
}

// ParseVTT parses a WebVTT track (such as SpriteSet.VTT's) into its cues,
// in file order: the WEBVTT header, then blocks separated by blank lines;
// a cue block is an optional identifier, its timing line ("start --> end",
// settings ignored) and its payload. NOTE, STYLE and REGION blocks are
// skipped. A malformed timing line, or a cue that does not end after it
// starts, is an error naming its line.
func ParseVTT(b []byte) ([]Cue, error) {
	text := strings.TrimPrefix(string(b), "\ufeff")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	if h := lines[0]; h != "WEBVTT" && !strings.HasPrefix(h, "WEBVTT ") && !strings.HasPrefix(h, "WEBVTT\t") {
		return nil, fmt.Errorf("webvtt: line 1: %q: want a WEBVTT header", h)
	}
	var cues []Cue
	i := 1
	for i < len(lines) && lines[i] != "" { // header lines
		i++
	}
	for i < len(lines) {
		if lines[i] == "" {
			i++
			continue
		}
		blockStart := i
		end := i
		for end < len(lines) && lines[end] != "" {
			end++
		}
		block := lines[i:end]
		i = end
		if kind, _, _ := strings.Cut(block[0], " "); !strings.Contains(block[0], "-->") &&
			(kind == "NOTE" || kind == "STYLE" || kind == "REGION" || strings.HasPrefix(block[0], "NOTE\t")) {
			continue
		}
		timing := 0
		if !strings.Contains(block[0], "-->") {
			timing = 1 // an identifier first
		}
		if timing >= len(block) || !strings.Contains(block[timing], "-->") {
			return nil, fmt.Errorf("webvtt: line %d: a cue block without a timing line", blockStart+1)
		}
		c, err := parseTiming(block[timing])
		if err != nil {
			return nil, fmt.Errorf("webvtt: line %d: %w", blockStart+timing+1, err)
		}
		c.Text = strings.Join(block[timing+1:], "\n")
		cues = append(cues, c)
	}
	return cues, nil
}

// parseTiming parses a cue timing line: "start --> end [settings]".
func parseTiming(line string) (Cue, error) {
	startText, rest, _ := strings.Cut(line, "-->")
	startText = strings.TrimRight(startText, " \t")
	rest = strings.TrimLeft(rest, " \t")
	endText, _, _ := strings.Cut(strings.ReplaceAll(rest, "\t", " "), " ")
	start, err := parseVTTTime(startText)
	if err != nil {
		return Cue{}, fmt.Errorf("start %q: %w", startText, err)
	}
	end, err := parseVTTTime(endText)
	if err != nil {
		return Cue{}, fmt.Errorf("end %q: %w", endText, err)
	}
	if end <= start {
		return Cue{}, fmt.Errorf("cue ends at %s, not after its start %s", endText, startText)
	}
	return Cue{Start: start, End: end}, nil
}

// parseVTTTime parses a WebVTT timestamp: [hh:]mm:ss.ttt, hours at least
// two digits.
func parseVTTTime(s string) (time.Duration, error) {
	hms, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 3 {
		return 0, errors.New("want [hh:]mm:ss.ttt")
	}
	parts := strings.Split(hms, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, errors.New("want [hh:]mm:ss.ttt")
	}
	var h int64
	if len(parts) == 3 {
		if len(parts[0]) < 2 {
			return 0, errors.New("hours need two digits or more")
		}
		var err error
		if h, err = digits(parts[0], 0); err != nil {
			return 0, err
		}
		parts = parts[1:]
	}
	if len(parts[0]) != 2 || len(parts[1]) != 2 {
		return 0, errors.New("minutes and seconds need two digits")
	}
	m, err := digits(parts[0], 59)
	if err != nil {
		return 0, err
	}
	sec, err := digits(parts[1], 59)
	if err != nil {
		return 0, err
	}
	ms, err := digits(frac, 999)
	if err != nil {
		return 0, err
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond, nil
}

// digits parses a run of ASCII digits no greater than limit (0: no limit
// but an hour count that fits a time.Duration).
func digits(s string, limit int64) (int64, error) {
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q: not a number", s)
		}
		n = n*10 + int64(c-'0')
		if n > 999999 {
			return 0, fmt.Errorf("%q: too large", s)
		}
	}
	if s == "" {
		return 0, errors.New("a number is missing")
	}
	if limit > 0 && n > limit {
		return 0, fmt.Errorf("%d: more than %d", n, limit)
	}
	return n, nil
}

// Sprite splits a thumbnail cue's text, "<url>#xywh=x,y,w,h" (or
// "#xywh=pixel:x,y,w,h"), into the sheet's URL and the thumbnail's
// rectangle in it.
func (c Cue) Sprite() (url string, r image.Rectangle, err error) {
	i := strings.LastIndex(c.Text, "#xywh=")
	if i < 0 {
		return "", image.Rectangle{}, fmt.Errorf("cue text %q: no #xywh= fragment", c.Text)
	}
	url = c.Text[:i]
	frag := strings.TrimPrefix(c.Text[i+len("#xywh="):], "pixel:")
	f := strings.Split(frag, ",")
	if len(f) != 4 {
		return "", image.Rectangle{}, fmt.Errorf("cue text %q: want #xywh=x,y,w,h in pixels", c.Text)
	}
	var v [4]int
	for j, s := range f {
		n, err := digits(s, 1<<20)
		if err != nil {
			return "", image.Rectangle{}, fmt.Errorf("cue text %q: %w", c.Text, err)
		}
		v[j] = int(n)
	}
	if v[2] == 0 || v[3] == 0 {
		return "", image.Rectangle{}, fmt.Errorf("cue text %q: an empty rectangle", c.Text)
	}
	return url, image.Rect(v[0], v[1], v[0]+v[2], v[1]+v[3]), nil
}

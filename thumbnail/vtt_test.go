package thumbnail

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVTTGolden checks SpriteSet.VTT's text against testdata/*.vtt
// (rewritten with -update), and that ParseVTT reads it back as cues that
// cover the duration without gap or overlap.
func TestVTTGolden(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	for _, tc := range []struct {
		name string
		set  SpriteSet
		url  func(i int) string
	}{
		{"12s-at-5s", SpriteSet{Width: 160, Height: 90, Columns: 5, Rows: 5, Interval: 5 * s, Duration: 12 * s}, nil},
		{"exact-multiple", SpriteSet{Width: 160, Height: 90, Columns: 5, Rows: 5, Interval: 10 * s, Duration: 30 * s}, nil},
		{"shorter-than-interval", SpriteSet{Width: 160, Height: 90, Columns: 5, Rows: 5, Interval: 10 * s, Duration: 2500 * ms}, nil},
		{"sub-millisecond-duration", SpriteSet{Width: 160, Height: 90, Columns: 5, Rows: 5, Interval: 5 * s, Duration: 10*s + 400*time.Microsecond}, nil},
		{"several-sheets", SpriteSet{Width: 120, Height: 68, Columns: 2, Rows: 2, Interval: 500 * ms, Duration: 4200 * ms},
			func(i int) string { return fmt.Sprintf("https://cdn.example/rec/thumbs/sprite-%d.jpg", i) }},
		{"hours", SpriteSet{Width: 160, Height: 284, Columns: 3, Rows: 2, Interval: 10 * time.Minute, Duration: 2*time.Hour + 3*time.Minute + 4*s + 56*ms}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.set.VTT(tc.url)
			path := filepath.Join("testdata", tc.name+".vtt")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if string(got) != string(want) {
				t.Fatalf("VTT:\n%s\nwant (%s):\n%s", got, path, want)
			}
			cues, err := ParseVTT(got)
			if err != nil {
				t.Fatal(err)
			}
			if len(cues) != tc.set.Tiles() {
				t.Fatalf("%d cues, want %d", len(cues), tc.set.Tiles())
			}
			end := tc.set.Duration.Truncate(ms)
			if end < tc.set.Duration {
				end += ms
			}
			for k, c := range cues {
				wantEnd := time.Duration(k+1) * tc.set.Interval
				if k == len(cues)-1 {
					wantEnd = end
				}
				if c.Start != time.Duration(k)*tc.set.Interval || c.End != wantEnd {
					t.Fatalf("cue %d: %s to %s, want %s to %s", k, c.Start, c.End, time.Duration(k)*tc.set.Interval, wantEnd)
				}
				sheet, r := tc.set.tile(k)
				url, gotR, err := c.Sprite()
				if err != nil {
					t.Fatal(err)
				}
				if !gotR.In(image.Rectangle{Max: tc.set.sheetSize(sheet)}) || gotR != r {
					t.Fatalf("cue %d: %v, want %v in sheet %d of %v", k, gotR, r, sheet, tc.set.sheetSize(sheet))
				}
				if !strings.HasSuffix(url, fmt.Sprintf("sprite-%d.jpg", sheet)) {
					t.Fatalf("cue %d: sheet %s, want sheet %d", k, url, sheet)
				}
			}
		})
	}
}

func TestVTTTime(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		up   bool
		want string
	}{
		{0, false, "00:00:00.000"},
		{0, true, "00:00:00.000"},
		{time.Millisecond, false, "00:00:00.001"},
		{999 * time.Microsecond, false, "00:00:00.000"},
		{999 * time.Microsecond, true, "00:00:00.001"},
		{59*time.Minute + 59*time.Second + 999*time.Millisecond, false, "00:59:59.999"},
		{time.Hour, true, "01:00:00.000"},
		{101*time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond + 1, false, "101:02:03.004"},
		{101*time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond + 1, true, "101:02:03.005"},
	} {
		if got := vttTime(tc.d, tc.up); got != tc.want {
			t.Errorf("vttTime(%s, %v) = %s, want %s", tc.d, tc.up, got, tc.want)
		}
		if back, err := parseVTTTime(tc.want); err != nil || back > tc.d+time.Millisecond || back < tc.d-time.Millisecond {
			t.Errorf("parseVTTTime(%s) = %s, %v", tc.want, back, err)
		}
	}
}

func TestSheetSize(t *testing.T) {
	set := SpriteSet{Width: 160, Height: 90, Columns: 5, Rows: 5, Interval: time.Second}
	for _, tc := range []struct {
		tiles int
		sizes []image.Point
	}{
		{1, []image.Point{{160, 90}}},
		{5, []image.Point{{800, 90}}},
		{6, []image.Point{{800, 180}}},
		{25, []image.Point{{800, 450}}},
		{26, []image.Point{{800, 450}, {160, 90}}},
		{53, []image.Point{{800, 450}, {800, 450}, {480, 90}}},
	} {
		set.Duration = time.Duration(tc.tiles) * time.Second
		for i, want := range tc.sizes {
			if got := set.sheetSize(i); got != want {
				t.Errorf("%d thumbnails: sheet %d is %v, want %v", tc.tiles, i, got, want)
			}
		}
	}
}

func TestParseVTT(t *testing.T) {
	ms := time.Millisecond
	in := "\ufeffWEBVTT - thumbnails\r\nKind: metadata\r\n\r\n" +
		"NOTE made by a test\r\nover two lines\r\n\r\n" +
		"STYLE\n::cue { color: red }\n\n" +
		"cue-1\n00:01.500 --> 00:00:02.250 align:start\nfirst\nsecond line\n\n\n" +
		"100:00:00.000\t-->\t100:00:00.001\nlast#xywh=pixel:1,2,3,4\n"
	cues, err := ParseVTT([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Cue{
		{Start: 1500 * ms, End: 2250 * ms, Text: "first\nsecond line"},
		{Start: 100 * time.Hour, End: 100*time.Hour + ms, Text: "last#xywh=pixel:1,2,3,4"},
	}
	if fmt.Sprint(cues) != fmt.Sprint(want) {
		t.Fatalf("cues %v, want %v", cues, want)
	}
	url, r, err := cues[1].Sprite()
	if err != nil || url != "last" || r != image.Rect(1, 2, 4, 6) {
		t.Fatalf("Sprite: %q %v %v", url, r, err)
	}

	for _, tc := range []struct{ in, want string }{
		{"", `webvtt: line 1: "": want a WEBVTT header`},
		{"WEBVTTX\n", `webvtt: line 1: "WEBVTTX": want a WEBVTT header`},
		{"WEBVTT\n\nid\ntext\n", "webvtt: line 3: a cue block without a timing line"},
		{"WEBVTT\n\n00:00.000 -> 00:01.000\n", "webvtt: line 3: a cue block without a timing line"},
		{"WEBVTT\n\n00:00.00 --> 00:01.000\n", `webvtt: line 3: start "00:00.00": want [hh:]mm:ss.ttt`},
		{"WEBVTT\n\n00:00.000 --> 00:60.000\n", `webvtt: line 3: end "00:60.000": 60: more than 59`},
		{"WEBVTT\n\n0:00:00.000 --> 00:01.000\n", `webvtt: line 3: start "0:00:00.000": hours need two digits or more`},
		{"WEBVTT\n\n00:0a.000 --> 00:01.000\n", `webvtt: line 3: start "00:0a.000": "0a": not a number`},
		{"WEBVTT\n\nid\n00:02.000 --> 00:01.000\n", "webvtt: line 4: cue ends at 00:01.000, not after its start 00:02.000"},
		{"WEBVTT\n\n00:01.000 --> 00:01.000\n", "webvtt: line 3: cue ends at 00:01.000, not after its start 00:01.000"},
	} {
		if _, err := ParseVTT([]byte(tc.in)); errString(err) != tc.want {
			t.Errorf("%q: error %q, want %q", tc.in, errString(err), tc.want)
		}
	}
}

func TestCueSprite(t *testing.T) {
	for _, tc := range []struct {
		text, url string
		r         image.Rectangle
		err       string
	}{
		{"sprite-0.jpg#xywh=0,0,160,90", "sprite-0.jpg", image.Rect(0, 0, 160, 90), ""},
		{"a#b.jpg#xywh=160,90,160,90", "a#b.jpg", image.Rect(160, 90, 320, 180), ""},
		{"sprite-0.jpg", "", image.Rectangle{}, `cue text "sprite-0.jpg": no #xywh= fragment`},
		{"s.jpg#xywh=0,0,160", "", image.Rectangle{}, `cue text "s.jpg#xywh=0,0,160": want #xywh=x,y,w,h in pixels`},
		{"s.jpg#xywh=percent:0,0,10,10", "", image.Rectangle{}, `cue text "s.jpg#xywh=percent:0,0,10,10": "percent:0": not a number`},
		{"s.jpg#xywh=0,0,0,90", "", image.Rectangle{}, `cue text "s.jpg#xywh=0,0,0,90": an empty rectangle`},
		{"s.jpg#xywh=0,-1,1,1", "", image.Rectangle{}, `cue text "s.jpg#xywh=0,-1,1,1": "-1": not a number`},
	} {
		url, r, err := Cue{Text: tc.text}.Sprite()
		if url != tc.url || r != tc.r || errString(err) != tc.err {
			t.Errorf("%q: %q %v %q, want %q %v %q", tc.text, url, r, errString(err), tc.url, tc.r, tc.err)
		}
	}
}

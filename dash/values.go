package dash

import (
	"math"
	"strconv"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
)

// presentation is the MPD time (since availabilityStartTime) of media time
// t in Period p.
func presentation(p *period, t mediaTime) time.Duration {
	return p.start + t.duration() - p.t.duration()
}

// frameRate formats a frame rate as DASH wants it: "30", "30000/1001", or
// thousandths.
func frameRate(f float64) string {
	if !(f > 0) || math.IsInf(f, 0) {
		return ""
	}
	if n := math.Round(f); math.Abs(f-n) < 0.01 {
		return strconv.FormatInt(int64(n), 10)
	}
	if n := math.Round(f * 1.001); math.Abs(f*1.001-n) < 0.01 {
		return strconv.FormatInt(int64(n)*1000, 10) + "/1001"
	}
	num, den := int64(math.Round(f*1000)), int64(1000)
	g := gcd(num, den)
	return strconv.FormatInt(num/g, 10) + "/" + strconv.FormatInt(den/g, 10)
}

// gcd is the greatest common divisor of a and b.
func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// dateTime formats t as an MPD date-time, UTC with milliseconds.
func dateTime(t time.Time) mpd.DateTime {
	return mpd.DateTime(t.UTC().Format(mpd.RFC3339MS))
}

// dur is d as an MPD duration.
func dur(d time.Duration) *mpd.Duration {
	md := mpd.Duration(d)
	return &md
}

// ceilMillis rounds d up to a whole millisecond.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

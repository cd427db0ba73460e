package playlist

import (
	"strconv"
	"time"
)

// appendSeconds appends d as seconds with exactly five decimals, rounded to
// the nearest 10µs ("2.00000"), the precision of EXTINF and EXT-X-PART
// DURATION. Negative durations are written as zero.
func appendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	u := uint64((d + 5*time.Microsecond) / (10 * time.Microsecond)) // units of 10µs
	b = strconv.AppendUint(b, u/100000, 10)
	frac := u % 100000
	b = append(b, '.',
		byte('0'+frac/10000),
		byte('0'+frac/1000%10),
		byte('0'+frac/100%10),
		byte('0'+frac/10%10),
		byte('0'+frac%10))
	return b
}

// appendSecondsShort is appendSeconds without trailing zeros, keeping one
// decimal ("0.5", "12.0"); used for the attributes of EXT-X-SERVER-CONTROL
// and EXT-X-PART-INF.
func appendSecondsShort(b []byte, d time.Duration) []byte {
	b = appendSeconds(b, d)
	n := len(b)
	for n > 0 && b[n-1] == '0' && b[n-2] != '.' {
		n--
	}
	return b[:n]
}

// appendDateTime appends t in UTC as RFC 3339 with milliseconds
// ("2024-01-02T03:04:05.678Z").
func appendDateTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
}

// roundSeconds rounds d to the nearest whole second, halves up.
func roundSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second/2) / time.Second)
}

// ceilMillis rounds d up to a whole millisecond.
func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r > 0 {
		d += time.Millisecond - r
	}
	return d
}

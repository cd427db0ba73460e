package store

import "time"

// TicksToDuration converts ticks of a track timescale (ticks per second) to
// a duration, without overflow for any tick count a live stream reaches. A
// zero timescale gives 0.
func TicksToDuration(ticks uint64, timescale uint32) time.Duration {
	if timescale == 0 {
		return 0
	}
	ts := uint64(timescale)
	return time.Duration(ticks/ts)*time.Second + time.Duration(ticks%ts)*time.Second/time.Duration(ts)
}

// DurationToTicks converts d to ticks of a track timescale, rounding down;
// a duration that is not positive gives 0.
func DurationToTicks(d time.Duration, timescale uint32) uint64 {
	if d <= 0 {
		return 0
	}
	ts := uint64(timescale)
	return uint64(d/time.Second)*ts + uint64(d%time.Second)*ts/uint64(time.Second)
}

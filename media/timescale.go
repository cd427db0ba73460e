package media

// Rescale converts v ticks of a clock of rate from into ticks of a clock of
// rate to, rounding down (towards minus infinity, also for negative v): the
// result is the last tick of the new clock at or before the instant v.
// It is exact when from == to, and returns v unchanged when from is 0 (an
// unknown clock). No intermediate value overflows: only a result that does
// not fit in an int64 would, so any stream age at 90 kHz or nanosecond
// rates converts safely.
//
// Rounding down is what every caller wants for an instant on a timeline
// (a frame's DTS or PTS, an offset between tracks). RescaleUp and
// RescaleNearest are the two exceptions, for the reasons their comments
// give.
func Rescale(v int64, from, to uint32) int64 {
	return rescale(v, from, to, roundDown)
}

// RescaleUp is Rescale rounding up (towards plus infinity): the first tick
// of the new clock at or after the instant v. It is for lower bounds: the
// segmenter places a track no earlier than where its rendition ended, and a
// bound rounded down would let the next sample start before that end.
func RescaleUp(v int64, from, to uint32) int64 {
	return rescale(v, from, to, roundUp)
}

// RescaleNearest is Rescale rounding to the nearest tick, halves up
// (towards plus infinity). It is for round trips: a timestamp converted
// from a clock of at most the rate to and back, both ways to the nearest,
// comes back to the tick it started from, which rounding down does not
// guarantee (48 kHz → 90 kHz → 48 kHz loses a tick). The transcoder hands
// ffmpeg 90 kHz MPEG-TS timestamps and maps ffmpeg's back onto the source's
// clock this way.
func RescaleNearest(v int64, from, to uint32) int64 {
	return rescale(v, from, to, roundNearest)
}

// rounding is how rescale rounds a result between two ticks.
type rounding int

const (
	roundDown rounding = iota
	roundUp
	roundNearest
)

// rescale computes v*to/from as q*to + r*to/from with v = q*from + r,
// 0 <= r < from, so that the only product that could overflow, r*to, is
// below 2^64 and computed in unsigned arithmetic.
func rescale(v int64, from, to uint32, mode rounding) int64 {
	if from == to || from == 0 {
		return v
	}
	f := int64(from)
	q, r := v/f, v%f
	if r < 0 {
		q--
		r += f
	}
	prod := uint64(r) * uint64(to)
	frac, rem := prod/uint64(from), prod%uint64(from)
	switch mode {
	case roundUp:
		if rem != 0 {
			frac++
		}
	case roundNearest:
		if rem >= uint64(from)-uint64(from)/2 { // rem/from >= 1/2
			frac++
		}
	}
	return q*int64(to) + int64(frac)
}

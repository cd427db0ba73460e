package media

import "time"

// Track is one elementary stream of a publish.
//
// A Track is immutable once frames referencing it have been written. A change
// of codec parameters mid-stream (a new SPS, a new AudioSpecificConfig) is
// signalled by frames that point to a new *Track with the same ID.
type Track struct {
	// ID identifies the track within its stream; stable across parameter changes.
	ID int
	// Codec with its parameters.
	Codec Codec
	// ClockRate is the number of timestamp ticks per second (90000 for video,
	// the sample rate for audio).
	ClockRate uint32
}

// Kind is the track's kind, from its codec.
func (t *Track) Kind() Kind { return t.Codec.Kind() }

// Frame is one access unit of one track.
//
// Payloads are shared by reference between all subscribers: nobody may modify
// a Frame or its Payload once it has been written to a Stream.
type Frame struct {
	// Track the frame belongs to (its codec parameters at this frame).
	Track *Track
	// DTS is the decode timestamp in Track.ClockRate ticks, relative to the
	// publish's start; it never goes backwards within a track.
	DTS int64
	// PTS is the presentation timestamp in Track.ClockRate ticks (PTS >= DTS with B-frames).
	PTS int64
	// Key is true for random access points (IDR frames; every audio frame).
	Key bool
	// Received is the wall-clock time the frame arrived at ingest.
	Received time.Time
	// Payload is the access unit: AVCC (4-byte length-prefixed NAL units) for
	// H.264/H.265, a raw access unit for AAC, a raw packet for Opus.
	Payload []byte
}

// PTSDuration converts the frame's PTS to a duration.
func (f *Frame) PTSDuration() time.Duration {
	return TicksToDuration(f.PTS, f.Track.ClockRate)
}

// DTSDuration converts the frame's DTS to a duration.
func (f *Frame) DTSDuration() time.Duration {
	return TicksToDuration(f.DTS, f.Track.ClockRate)
}

// TicksToDuration converts ticks of a clock of the given rate to a duration
// without overflowing for any realistic stream age.
func TicksToDuration(ticks int64, rate uint32) time.Duration {
	r := int64(rate)
	sec := ticks / r
	rem := ticks % r
	return time.Duration(sec)*time.Second + time.Duration(rem)*time.Second/time.Duration(r)
}

// DurationToTicks converts a duration to ticks of a clock of the given rate.
func DurationToTicks(d time.Duration, rate uint32) int64 {
	r := int64(rate)
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*r + rem*r/int64(time.Second)
}

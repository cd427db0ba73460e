package ingest

// SampleClock regenerates the timestamps of a constant-frame-size audio codec
// (AAC: 1024 samples per frame) from the sample count, so that consecutive
// frames are exactly FrameSamples ticks apart (ticks = samples, the track's
// clock rate being its sample rate), whatever the jitter and rounding of the
// source timestamps (RTMP's are whole milliseconds).
//
// The clock starts at the first frame's source timestamp and follows the
// sample count from there. When the source runs ahead of it by more than
// MaxDrift (an encoder gap, lost audio) it jumps forward to the source
// timestamp. It never jumps backwards, so the timestamps it hands out never
// decrease; a source that falls behind is only reported.
type SampleClock struct {
	// FrameSamples is the number of samples per frame (1024 for AAC, 960 for
	// AAC with frameLengthFlag).
	FrameSamples int64
	// MaxDrift is the distance in ticks between source and regenerated
	// timestamps beyond which the clock re-syncs. 0 means two frames.
	MaxDrift int64

	next    int64
	started bool
}

// Reset forgets the timeline: the next frame starts it again.
func (c *SampleClock) Reset() { c.started = false }

// Next returns the timestamp of the next frame, whose source timestamp is src
// (in the same ticks). drift is src minus the regenerated timestamp before any
// re-sync; resynced tells that the clock jumped forward to src.
func (c *SampleClock) Next(src int64) (ts, drift int64, resynced bool) {
	frame := c.FrameSamples
	if frame <= 0 {
		frame = 1024
	}
	maxDrift := c.MaxDrift
	if maxDrift <= 0 {
		maxDrift = 2 * frame
	}
	if !c.started {
		c.started = true
		c.next = src
	}
	drift = src - c.next
	if drift > maxDrift {
		c.next = src
		resynced = true
	}
	ts = c.next
	c.next += frame
	return ts, drift, resynced
}

package slate

import (
	"sort"
	"time"

	"github.com/headwater-live/headwater/media"
)

// aacFrameSamples is the length of an AAC-LC access unit in samples.
const aacFrameSamples = 1024

// Clip is one encoded loop of a slate. It is immutable and shared by every
// stream on slate with the same Params: cursors hand out new frames that
// share its payloads, never copies.
type Clip struct {
	// Params the clip was made for.
	Params Params
	// Video is the H.264/H.265 track with the clip's SPS/PPS (and VPS),
	// ClockRate 90000; nil for an audio-only clip.
	Video *media.Track
	// Audio is the AAC track with its AudioSpecificConfig, ClockRate the
	// sample rate; nil without audio.
	Audio *media.Track
	// Duration is the loop's length: a whole number of GOPs.
	Duration time.Duration
	// GOP is the key frame interval (the loop's first frame and every GOP
	// after it are IDR frames).
	GOP time.Duration
	// Frames is one loop, DTS from 0, in time order (video before audio at
	// the same instant); it starts with a video key frame when there is
	// video. PTS equals DTS: the clip has no B-frames.
	Frames []*media.Frame

	video []*media.Frame // the loop's video frames, DTS k×frameTicks
	audio []*media.Frame // the loop's audio frames, DTS j×1024

	frameTicks int64 // video frame duration, 90 kHz
	loopTicks  int64 // loop length, 90 kHz
	// An audio frame j of the endless stream starts at sample j×1024; its
	// payload is the loop's frame at the same place in the loop:
	// ((j×1024×90000) mod (loopTicks×rate)) / (1024×90000). audioPeriod is
	// the number of frames after which that pattern repeats.
	audioPeriod int64
}

// newClip assembles a clip from one loop of video frames (AVCC, key flags
// set, DTS k×frameTicks) and audio frames (raw AAC, DTS j×1024).
func newClip(p Params, gop time.Duration, vtr, atr *media.Track, video, audio []*media.Frame, frameTicks, loopTicks int64) *Clip {
	c := &Clip{
		Params: p, Video: vtr, Audio: atr, GOP: gop,
		Duration:   media.TicksToDuration(loopTicks, 90000),
		video:      video,
		audio:      audio,
		frameTicks: frameTicks,
		loopTicks:  loopTicks,
	}
	if atr != nil {
		num := int64(aacFrameSamples) * 90000
		den := loopTicks * int64(atr.ClockRate)
		c.audioPeriod = den / gcd(num, den)
	}
	c.Frames = make([]*media.Frame, 0, len(video)+len(audio))
	c.Frames = append(append(c.Frames, video...), audio...)
	sort.SliceStable(c.Frames, func(i, j int) bool {
		return c.Frames[i].DTSDuration() < c.Frames[j].DTSDuration()
	})
	return c
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// audioIndex is the loop frame whose payload audio frame j of the endless
// stream carries.
func (c *Clip) audioIndex(j int64) int {
	j %= c.audioPeriod
	num := int64(aacFrameSamples) * 90000
	return int((j * num) % (c.loopTicks * int64(c.Audio.ClockRate)) / num)
}

// Cursor is a position in a clip played on and on from time 0. It is not
// safe for concurrent use; each stream on slate has its own.
type Cursor struct {
	clip   *Clip
	nv, na int64 // next video and audio frame of the endless stream
}

// Cursor returns a cursor at time 0 of the endless loop.
func (c *Clip) Cursor() *Cursor { return &Cursor{clip: c} }

// Next returns the frames not returned before whose DTS time is before
// until, in time order (video before audio at the same instant). They are
// new frames sharing the clip's payloads and tracks, DTS = PTS, shifted by
// the loop count × Duration for video; audio goes on on its own 1024-sample
// grid, exactly continuous across loops. Received is now. The caller may
// change a returned frame's fields (its Track, its timestamps) before
// writing it to a stream, never its Payload.
func (cur *Cursor) Next(until time.Duration, now time.Time) []*media.Frame {
	c := cur.clip
	nv, na := cur.nv, cur.na
	var vtimes, atimes int
	if len(c.video) > 0 {
		for media.TicksToDuration(nv*c.frameTicks, 90000) < until {
			nv++
		}
		vtimes = int(nv - cur.nv)
	}
	if len(c.audio) > 0 {
		for media.TicksToDuration(na*aacFrameSamples, c.Audio.ClockRate) < until {
			na++
		}
		atimes = int(na - cur.na)
	}
	n := vtimes + atimes
	if n == 0 {
		return nil
	}
	frames := make([]media.Frame, n)
	out := make([]*media.Frame, n)
	for i := range out {
		vt, at := time.Duration(1<<62), time.Duration(1<<62)
		if cur.nv < nv {
			vt = media.TicksToDuration(cur.nv*c.frameTicks, 90000)
		}
		if cur.na < na {
			at = media.TicksToDuration(cur.na*aacFrameSamples, c.Audio.ClockRate)
		}
		f := &frames[i]
		if vt <= at {
			src := c.video[cur.nv%int64(len(c.video))]
			dts := cur.nv * c.frameTicks
			*f = media.Frame{Track: src.Track, DTS: dts, PTS: dts, Key: src.Key, Received: now, Payload: src.Payload}
			cur.nv++
		} else {
			src := c.audio[c.audioIndex(cur.na)]
			dts := cur.na * aacFrameSamples
			*f = media.Frame{Track: src.Track, DTS: dts, PTS: dts, Key: true, Received: now, Payload: src.Payload}
			cur.na++
		}
		out[i] = f
	}
	return out
}

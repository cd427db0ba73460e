package transcoder

import (
	"fmt"
	"strconv"
	"strings"
)

// Template is the ffmpeg command line of a job shape: the renditions it
// produces, in output order. A warm worker is started for a template and
// can only run jobs of that template (its arguments are fixed at exec), so
// the argument list must not depend on anything else than the renditions:
// not on the source's size, timestamps or stream.
type Template struct {
	Key  string   // identifies the template (same renditions, same arguments)
	Args []string // ffmpeg arguments, without the program name
	N    int      // number of outputs
}

// buildTemplate returns the command producing every rendition of rs (already
// validated) from one input in one ffmpeg run: the decoded source is split
// and scaled per rendition, each encoded to its own stream of one MPEG-TS
// written to stdout.
//
// Timestamps: -copyts keeps the input's PTS, -fps_mode passthrough keeps
// every frame (no duplication or drop), -muxdelay 0 -muxpreload 0 stops the
// MPEG-TS muxer from shifting them.
func buildTemplate(rs []Rendition, loglevel string) Template {
	if loglevel == "" {
		loglevel = "error"
	}
	a := []string{
		"-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel,
		// One decoder thread: frame-threaded decoding of one GOP cost
		// ~15% more CPU per job for no gain in job time.
		"-threads", "1",
		"-f", "mpegts", "-copyts", "-i", "pipe:0",
	}
	var fc strings.Builder
	fc.WriteString("[0:v:0]")
	if len(rs) > 1 {
		fmt.Fprintf(&fc, "split=%d", len(rs))
		for i := range rs {
			fmt.Fprintf(&fc, "[s%d]", i)
		}
		fc.WriteString(";")
	} else {
		fc.Reset()
	}
	for i, r := range rs {
		if len(rs) > 1 {
			fmt.Fprintf(&fc, "[s%d]", i)
		} else {
			fc.WriteString("[0:v:0]")
		}
		fmt.Fprintf(&fc, "scale=-2:%d,format=yuv420p[o%d]", r.Height, i)
		if i < len(rs)-1 {
			fc.WriteString(";")
		}
	}
	a = append(a, "-filter_complex", fc.String(), "-filter_complex_threads", "1")
	for i, r := range rs {
		s := strconv.Itoa(i)
		a = append(a, "-map", "[o"+s+"]",
			"-c:v:"+s, r.Encoder,
			"-b:v:"+s, strconv.FormatInt(r.bitrate, 10),
			"-maxrate:v:"+s, strconv.FormatInt(r.maxrate, 10),
			"-bufsize:v:"+s, strconv.FormatInt(r.bufsize, 10),
		)
		if r.Preset != "" {
			a = append(a, "-preset:v:"+s, r.Preset)
		}
		if r.Profile != "" {
			a = append(a, "-profile:v:"+s, r.Profile)
		}
		bf := 0
		if r.BFrames != nil {
			bf = *r.BFrames
		}
		threads := r.Threads
		switch threads {
		case 0:
			threads = 1
		case -1:
			threads = 0 // ffmpeg's automatic choice
		}
		a = append(a,
			"-bf:v:"+s, strconv.Itoa(bf),
			"-threads:v:"+s, strconv.Itoa(threads),
			// Key frames exactly where the source has them (a job is one
			// GOP, or several short ones): an IDR at every source key
			// frame, none elsewhere (no keyint, no scene-cut).
			"-g:v:"+s, "100000",
			"-sc_threshold:v:"+s, "0",
			"-force_key_frames:v:"+s, "source",
		)
		for k := 0; k+1 < len(r.ExtraArgs); k += 2 {
			a = append(a, r.ExtraArgs[k]+":v:"+s, r.ExtraArgs[k+1])
		}
	}
	// -flush_packets 1: each muxed packet is written at once, so that
	// frames stream out of the job as they are encoded.
	a = append(a, "-fps_mode", "passthrough", "-muxdelay", "0", "-muxpreload", "0",
		"-flush_packets", "1", "-f", "mpegts", "pipe:1")
	return Template{Key: strings.Join(a, "\x00"), Args: a, N: len(rs)}
}

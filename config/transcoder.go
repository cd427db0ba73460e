package config

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/headwater-live/headwater/transcoder"
)

// validateTranscoder checks the transcoder section (the ladders are parsed
// and validated even when the transcoder is disabled).
func (c *Config) validateTranscoder(v *validator) {
	t := c.Transcoder
	if t.Enabled && strings.TrimSpace(t.FFmpeg) == "" {
		v.add("transcoder.ffmpeg", "must be set when transcoder.enabled is true")
	}
	if _, err := transcoder.ParseForkServerMode(t.ForkServer); err != nil {
		v.add("transcoder.fork_server", "%v", err)
	}
	v.atLeast("transcoder.pool_size", t.PoolSize, 0)
	v.atLeast("transcoder.pool_warm", t.PoolWarm, -1)
	v.atLeast("transcoder.queue_size", t.QueueSize, 0)
	if !(t.MaxWait > 0) || math.IsInf(t.MaxWait, 0) {
		v.add("transcoder.max_wait", "must be greater than 0, got %s", formatFloat(t.MaxWait))
	}
	v.atLeast("transcoder.deadline", t.Deadline, 1)
	def, err := ParseLadder(t.Ladder)
	if err != nil {
		v.add("transcoder.ladder", "%v", err)
	}
	ladders := []transcoder.Ladder{def}
	for i, e := range t.PrefixLadders {
		_, l, err := ParsePrefixLadder(e)
		if err != nil {
			v.add("transcoder.prefix_ladders", "item %d: %v", i+1, err)
		}
		ladders = append(ladders, l)
	}
	laddersOK := !v.bad["transcoder.ladder"] && !v.bad["transcoder.prefix_ladders"]

	reserved, itemsOK := 0, true
	for i, e := range t.Reserve {
		r, err := ParseReservation(e)
		if err != nil {
			v.add("transcoder.reserve", "item %d: %v", i+1, err)
			itemsOK = false
			continue
		}
		reserved += r.Workers
		for _, name := range r.Renditions {
			if laddersOK && !slices.ContainsFunc(ladders, func(l transcoder.Ladder) bool {
				return slices.ContainsFunc(l, func(x transcoder.Rendition) bool { return x.Name == name })
			}) {
				v.add("transcoder.reserve", "item %d: rendition %q is in no ladder (transcoder.ladder, transcoder.prefix_ladders)", i+1, name)
			}
		}
	}
	if size := t.effectivePoolSize(); itemsOK && reserved >= size {
		how := fmt.Sprintf("transcoder.pool_size %d", size)
		if t.PoolSize == 0 {
			how = fmt.Sprintf("transcoder.pool_size 0 = %d CPUs", size)
		}
		v.add("transcoder.reserve", "%d workers reserved of %d (%s): leave at least one unreserved", reserved, size, how)
	}
}

// effectivePoolSize is the number of workers: pool_size, or the number of
// CPUs when it is 0 (as transcoder.PoolConfig does).
func (t TranscoderConfig) effectivePoolSize() int {
	if t.PoolSize > 0 {
		return t.PoolSize
	}
	return runtime.NumCPU()
}

// Reservations returns the transcoder's reserved workers, parsed from
// transcoder.reserve (nil when there are none). Config.Validate also checks
// that they leave at least one worker unreserved and name renditions of
// the ladders.
func (t TranscoderConfig) Reservations() ([]transcoder.Reservation, error) {
	var out []transcoder.Reservation
	for i, e := range t.Reserve {
		r, err := ParseReservation(e)
		if err != nil {
			return nil, fmt.Errorf("transcoder.reserve: item %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseReservation parses one transcoder.reserve item,
// <stream prefix>=<workers>[:<rendition>,<rendition>...]: "live/vip/=1:720p,480p"
// reserves one worker for the jobs of streams under live/vip/ (matched at a
// '/'-element boundary, transcoder.UnderPrefix) that include
// 720p or 480p, "=1:360p" one for 360p of any stream, "live/vip/=2" two for
// any rendition of streams under live/vip/. Renditions may be separated by
// ',' or ';' (the environment variable, a comma-separated list, needs ';').
func ParseReservation(s string) (transcoder.Reservation, error) {
	item := strings.TrimSpace(s)
	prefix, rest, ok := strings.Cut(item, "=")
	if !ok {
		return transcoder.Reservation{}, fmt.Errorf("%q: want <stream prefix>=<workers>[:<rendition>,<rendition>...]", s)
	}
	if prefix != "" && !validPrefix(prefix) {
		return transcoder.Reservation{}, fmt.Errorf("%q: stream prefix %q is not the start of a stream name (letters, digits, '_', '.', '-' and '/')", s, prefix)
	}
	if err := transcoder.CheckStreamPrefix(prefix); err != nil {
		return transcoder.Reservation{}, fmt.Errorf("%q: %w", s, err)
	}
	workers, names, hasNames := strings.Cut(rest, ":")
	n, err := strconv.Atoi(strings.TrimSpace(workers))
	if err != nil {
		return transcoder.Reservation{}, fmt.Errorf("%q: workers %q is not an integer", s, workers)
	}
	if n < 1 {
		return transcoder.Reservation{}, fmt.Errorf("%q: workers must be at least 1, got %d", s, n)
	}
	r := transcoder.Reservation{Streams: prefix, Workers: n}
	if !hasNames {
		return r, nil
	}
	for name := range strings.SplitSeq(strings.ReplaceAll(names, ";", ","), ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return transcoder.Reservation{}, fmt.Errorf("%q: empty rendition name", s)
		}
		if err := transcoder.CheckRenditionName(name); err != nil {
			return transcoder.Reservation{}, fmt.Errorf("%q: %w", s, err)
		}
		if !slices.Contains(r.Renditions, name) {
			r.Renditions = append(r.Renditions, name)
		}
	}
	return r, nil
}

// Ladders returns the transcoder's validated ladders by stream-name prefix
// ("" is the default ladder).
func (t TranscoderConfig) Ladders() (transcoder.Ladders, error) {
	def, err := ParseLadder(t.Ladder)
	if err != nil {
		return nil, fmt.Errorf("transcoder.ladder: %w", err)
	}
	ls := transcoder.Ladders{"": def}
	for i, e := range t.PrefixLadders {
		p, l, err := ParsePrefixLadder(e)
		if err != nil {
			return nil, fmt.Errorf("transcoder.prefix_ladders: item %d: %w", i+1, err)
		}
		ls[p] = l
	}
	return ls, nil
}

// ParseLadder parses and validates renditions written
// name=height:bitrate[:encoder[:preset]].
func ParseLadder(items []string) (transcoder.Ladder, error) {
	var l transcoder.Ladder
	for i, s := range items {
		r, err := parseRendition(s)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i+1, err)
		}
		l = append(l, r)
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return l, nil
}

// ParsePrefixLadder parses prefix=rendition;rendition;... where each
// rendition is written as in ParseLadder.
func ParsePrefixLadder(s string) (string, transcoder.Ladder, error) {
	prefix, rest, ok := strings.Cut(s, "=")
	if !ok || prefix == "" || rest == "" {
		return "", nil, fmt.Errorf("%q: want prefix=name=height:bitrate[;name=height:bitrate]", s)
	}
	if !validPrefix(prefix) {
		return "", nil, fmt.Errorf("%q is not the start of a stream name (letters, digits, '_', '.', '-' and '/')", prefix)
	}
	l, err := ParseLadder(strings.Split(rest, ";"))
	if err != nil {
		return "", nil, fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return prefix, l, nil
}

func parseRendition(s string) (transcoder.Rendition, error) {
	name, spec, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return transcoder.Rendition{}, fmt.Errorf("%q: want name=height:bitrate[:encoder[:preset]]", s)
	}
	f := strings.Split(spec, ":")
	if len(f) < 2 || len(f) > 4 {
		return transcoder.Rendition{}, fmt.Errorf("%q: want name=height:bitrate[:encoder[:preset]]", s)
	}
	h, err := strconv.Atoi(f[0])
	if err != nil {
		return transcoder.Rendition{}, fmt.Errorf("%q: height %q is not an integer", s, f[0])
	}
	r := transcoder.Rendition{Name: name, Height: h, Bitrate: f[1]}
	if len(f) > 2 {
		r.Encoder = f[2]
	}
	if len(f) > 3 {
		r.Preset = f[3]
	}
	return r, nil
}

// formatLadder writes a ladder as ladder items, the inverse of
// [ParseLadder] (a preset without an encoder keeps an empty encoder
// field).
func formatLadder(l transcoder.Ladder) []string {
	out := make([]string, 0, len(l))
	for _, r := range l {
		item := r.Name + "=" + strconv.Itoa(r.Height) + ":" + r.Bitrate
		switch {
		case r.Preset != "":
			item += ":" + r.Encoder + ":" + r.Preset
		case r.Encoder != "":
			item += ":" + r.Encoder
		}
		out = append(out, item)
	}
	return out
}

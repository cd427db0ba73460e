package config

import (
	"fmt"
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
	v.atLeast("transcoder.pool_size", t.PoolSize, 0)
	v.atLeast("transcoder.pool_warm", t.PoolWarm, -1)
	v.atLeast("transcoder.deadline", t.Deadline, 1)
	if _, err := ParseLadder(t.Ladder); err != nil {
		v.add("transcoder.ladder", "%v", err)
	}
	for i, e := range t.PrefixLadders {
		if _, _, err := ParsePrefixLadder(e); err != nil {
			v.add("transcoder.prefix_ladders", "item %d: %v", i+1, err)
		}
	}
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
		return "", nil, fmt.Errorf("%q: want prefix=name=height:bitrate;...", s)
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

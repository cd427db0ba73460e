package transcoder

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Rendition is one rung of an ABR ladder.
type Rendition struct {
	// Name names the rendition (its playlist directory), e.g. "480p".
	Name string `yaml:"name" json:"name"`
	// Height is the output height in pixels; the width follows the source's
	// aspect ratio, rounded to an even number. A rendition is produced only
	// for sources taller than Height.
	Height int `yaml:"height" json:"height"`
	// Bitrate is the target video bitrate: "1400k", "3M" or bits per second.
	Bitrate string `yaml:"bitrate" json:"bitrate"`
	// Maxrate and Bufsize are the VBV constraints; they default to
	// 1.1×Bitrate and 1×Maxrate (one second of buffer, for live).
	Maxrate string `yaml:"maxrate,omitempty" json:"maxrate,omitempty"`
	Bufsize string `yaml:"bufsize,omitempty" json:"bufsize,omitempty"`
	// Encoder is an ffmpeg video encoder; libx264 by default. The encoder
	// must produce H.264 or H.265.
	Encoder string `yaml:"encoder,omitempty" json:"encoder,omitempty"`
	// Preset and Profile are passed as -preset and -profile:v when set;
	// for libx264 they default to "veryfast" and "high" (≥ 720) or "main".
	Preset  string `yaml:"preset,omitempty" json:"preset,omitempty"`
	Profile string `yaml:"profile,omitempty" json:"profile,omitempty"`
	// BFrames is the number of B-frames (-bf); nil means 0. With 0 the
	// rendition's DTS follow the source's exactly (see DTS in the package
	// documentation).
	BFrames *int `yaml:"bframes,omitempty" json:"bframes,omitempty"`
	// Threads is the encoder's thread count (-threads): 0 means 1, -1
	// leaves it to ffmpeg (x264: 1.5 × cores). The pool runs one job per
	// core and parallelizes across GOPs and streams; one thread per
	// encoder measured 0–9% less CPU per job than automatic threads and,
	// unlike them, does not oversubscribe a many-core host running a
	// job per core. -1 shortens a job on an otherwise idle machine.
	Threads int `yaml:"threads,omitempty" json:"threads,omitempty"`
	// ExtraArgs are more encoder options as option/value pairs, e.g.
	// ["-x264-params", "rc-lookahead=20", "-tune", "film"]. They apply to
	// this rendition's stream only: the stream specifier is added (all the
	// renditions of a GOP are outputs of one ffmpeg run), so options must
	// be given without one.
	ExtraArgs []string `yaml:"extra_args,omitempty" json:"extra_args,omitempty"`
	// Priority orders renditions for load shedding: the lowest priority
	// is shed first. 0 means the default: the lowest resolution has the
	// highest priority (it is the rung of last resort for bad networks)
	// and the most expensive rung is shed first; the source passthrough is
	// never shed.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`

	bitrate, maxrate, bufsize int64 // bits per second, set by Validate
}

// Ladder is an ordered list of renditions, highest first by convention.
type Ladder []Rendition

// DefaultLadder is 720p/480p/360p at 3000k/1400k/800k, x264 veryfast.
func DefaultLadder() Ladder {
	return Ladder{
		{Name: "720p", Height: 720, Bitrate: "3000k"},
		{Name: "480p", Height: 480, Bitrate: "1400k"},
		{Name: "360p", Height: 360, Bitrate: "800k"},
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// reservedNames are the existing pipeline's renditions.
var reservedNames = map[string]bool{"video": true, "audio": true}

// ParseBitrate parses "1400k", "3M", "2.5M" or "800000" into bits per second.
func ParseBitrate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty bitrate")
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'k', 'K':
		mult, s = 1e3, s[:len(s)-1]
	case 'm', 'M':
		mult, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("bitrate %q: not a number", s)
	}
	b := int64(v * mult)
	if b <= 0 {
		return 0, fmt.Errorf("bitrate %q: must be positive", s)
	}
	if b > 1e9 {
		return 0, fmt.Errorf("bitrate %q: more than 1 Gbit/s", s)
	}
	return b, nil
}

// CheckRenditionName checks the syntax of a rendition name: 1-32
// characters of [A-Za-z0-9_.-].
func CheckRenditionName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("rendition name %q: want 1-32 characters of [A-Za-z0-9_.-]", name)
	}
	return nil
}

// Validate checks the rendition and fills its defaults.
func (r *Rendition) Validate() error {
	if err := CheckRenditionName(r.Name); err != nil {
		return err
	}
	if reservedNames[r.Name] {
		return fmt.Errorf("rendition name %q is reserved for the source", r.Name)
	}
	if r.Height < 16 || r.Height > 4320 || r.Height%2 != 0 {
		return fmt.Errorf("rendition %s: height %d: want an even number in 16..4320", r.Name, r.Height)
	}
	var err error
	if r.bitrate, err = ParseBitrate(r.Bitrate); err != nil {
		return fmt.Errorf("rendition %s: %w", r.Name, err)
	}
	r.maxrate = r.bitrate * 11 / 10
	if r.Maxrate != "" {
		if r.maxrate, err = ParseBitrate(r.Maxrate); err != nil {
			return fmt.Errorf("rendition %s: maxrate: %w", r.Name, err)
		}
		if r.maxrate < r.bitrate {
			return fmt.Errorf("rendition %s: maxrate %s below bitrate %s", r.Name, r.Maxrate, r.Bitrate)
		}
	}
	r.bufsize = r.maxrate
	if r.Bufsize != "" {
		if r.bufsize, err = ParseBitrate(r.Bufsize); err != nil {
			return fmt.Errorf("rendition %s: bufsize: %w", r.Name, err)
		}
	}
	if r.Encoder == "" {
		r.Encoder = "libx264"
	}
	if !argRE.MatchString(r.Encoder) {
		return fmt.Errorf("rendition %s: encoder %q is not an ffmpeg encoder name", r.Name, r.Encoder)
	}
	if r.Encoder == "libx264" {
		if r.Preset == "" {
			r.Preset = "veryfast"
		}
		if r.Profile == "" {
			r.Profile = "main"
			if r.Height >= 720 {
				r.Profile = "high"
			}
		}
	}
	for _, v := range []string{r.Preset, r.Profile} {
		if v != "" && !argRE.MatchString(v) {
			return fmt.Errorf("rendition %s: %q is not a valid preset/profile", r.Name, v)
		}
	}
	if r.BFrames != nil && (*r.BFrames < 0 || *r.BFrames > 16) {
		return fmt.Errorf("rendition %s: bframes %d not in 0..16", r.Name, *r.BFrames)
	}
	if r.Threads < -1 || r.Threads > 64 {
		return fmt.Errorf("rendition %s: threads %d not in -1..64", r.Name, r.Threads)
	}
	if len(r.ExtraArgs)%2 != 0 {
		return fmt.Errorf("rendition %s: extra_args must be option/value pairs", r.Name)
	}
	for i := 0; i < len(r.ExtraArgs); i += 2 {
		opt := r.ExtraArgs[i]
		if !optRE.MatchString(opt) {
			return fmt.Errorf("rendition %s: extra_args: %q is not an option without stream specifier", r.Name, opt)
		}
		if forbiddenArgs[opt] {
			return fmt.Errorf("rendition %s: extra_args may not contain %q", r.Name, opt)
		}
	}
	return nil
}

var argRE = regexp.MustCompile(`^[A-Za-z0-9_.+-]{1,64}$`)

var optRE = regexp.MustCompile(`^-[A-Za-z0-9_-]{1,64}$`)

// forbiddenArgs would break the job's command line.
var forbiddenArgs = map[string]bool{
	"-i": true, "-f": true, "-map": true, "-filter_complex": true, "-lavfi": true, "-c": true,
	"-codec": true, "-vf": true, "-filter": true, "-y": true, "-n": true, "-an": true, "-vn": true,
	"-fps_mode": true, "-vsync": true, "-copyts": true, "-ss": true, "-t": true, "-to": true,
	"-force_key_frames": true, "-g": true,
}

// PrewarmFor returns the rendition sets of every ladder for sources of the
// given heights: PoolConfig.Prewarm for streams expected to be that tall.
func PrewarmFor(ls Ladders, heights ...int) []Ladder {
	var out []Ladder
	seen := map[string]bool{}
	for _, l := range ls {
		for _, h := range heights {
			rs := l.For(h)
			if len(rs) == 0 {
				continue
			}
			k := buildTemplate(rs, "").Key
			if !seen[k] {
				seen[k] = true
				out = append(out, rs)
			}
		}
	}
	return out
}

// BitrateBPS is the validated target bitrate in bits per second.
func (r *Rendition) BitrateBPS() int64 { return r.bitrate }

// Validate checks every rendition, fills defaults and priorities.
func (l Ladder) Validate() error {
	seen := map[string]bool{}
	for i := range l {
		if err := l[i].Validate(); err != nil {
			return err
		}
		if seen[l[i].Name] {
			return fmt.Errorf("rendition name %q used twice", l[i].Name)
		}
		seen[l[i].Name] = true
	}
	// Default priorities: by height, lowest height = highest priority.
	idx := make([]int, len(l))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return l[idx[a]].Height > l[idx[b]].Height })
	for rank, i := range idx {
		if l[i].Priority == 0 {
			l[i].Priority = rank + 1
		}
	}
	return nil
}

// For returns the renditions to produce for a source of the given height:
// those strictly below it, in ladder order.
func (l Ladder) For(sourceHeight int) Ladder {
	var out Ladder
	for _, r := range l {
		if r.Height < sourceHeight {
			out = append(out, r)
		}
	}
	return out
}

// Ladders maps stream-name prefixes to ladders; the longest matching
// prefix wins (matched at a '/'-element boundary, see UnderPrefix) and ""
// is the default.
type Ladders map[string]Ladder

// Validate validates every ladder.
func (ls Ladders) Validate() error {
	for p, l := range ls {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("ladder %q: %w", p, err)
		}
	}
	return nil
}

// For returns the ladder of a stream: the one of the longest prefix of the
// name, the default ("") otherwise, nil when there is none.
func (ls Ladders) For(stream string) Ladder {
	best, found := "", false
	for p := range ls {
		if !UnderPrefix(p, stream) {
			continue
		}
		// "live/vip" and "live/vip/" are the same prefix: the first in
		// byte order wins, whatever the map's order.
		if !found || prefixLen(p) > prefixLen(best) || prefixLen(p) == prefixLen(best) && p < best {
			best, found = p, true
		}
	}
	if !found {
		return nil
	}
	return ls[best]
}

package media

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Errors returned by Registry.Publish.
var (
	ErrAlreadyPublishing = errors.New("stream is already being published")
	ErrTooManyStreams    = errors.New("too many concurrent streams")
	ErrInvalidName       = errors.New("invalid stream name")
	// ErrNameCollision refuses a name whose objects' URLs would collide
	// with another stream's: it extends a live stream's name, a live
	// stream's name extends it (at a '/' boundary: "live/a" and
	// "live/a/x" collide, "live/a" and "live/ab" do not), or its last
	// element is a rendition or object name. It wraps ErrInvalidName.
	ErrNameCollision = fmt.Errorf("%w: it collides with another stream's URLs", ErrInvalidName)
)

// ReservedLastElements are the last path elements a stream name cannot
// have: the rendition names the segmenter gives tracks
// ("/live/a/video/index.m3u8" is the rendition video of live/a) and the
// origin's object names (as are names ending in .m4s or .mp4). Ladder
// rendition names are not reserved: the origin resolves a rendition of a
// stream before a stream of the same path.
var ReservedLastElements = []string{"video", "audio", "index.m3u8", "manifest.mpd", "time", "init.mp4"}

// MaxNameLength is the longest stream name accepted.
const MaxNameLength = 128

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// MaxStreams limits concurrent publishes; 0 means no limit.
	MaxStreams int
	// OnPublish runs synchronously inside Publish, before the publisher writes
	// its first frame, so that pipelines can subscribe without missing frames.
	OnPublish func(*Stream)
	// OnUnpublish runs once a stream has been closed.
	OnUnpublish func(*Stream)
	// FramesDropped counts frames lost by slow subscribers. It may be nil.
	FramesDropped Counter
}

// Registry tracks the live streams by name.
type Registry struct {
	cfg     RegistryConfig
	mu      sync.Mutex
	streams map[string]*Stream
	// nested counts, per name prefix ending before a '/', the live streams
	// under it: "live/a" -> 1 while "live/a/x" is live.
	nested map[string]int
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg RegistryConfig) *Registry {
	return &Registry{cfg: cfg, streams: make(map[string]*Stream), nested: make(map[string]int)}
}

// CheckName checks a name as Publish does, before the publisher sends its
// tracks: ValidateName, then ErrNameCollision.
func (r *Registry) CheckName(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.collisionLocked(name)
}

// collisionLocked returns ErrNameCollision (wrapped with the reason) when
// name's URLs would collide with a live stream's or with object names.
func (r *Registry) collisionLocked(name string) error {
	last := name[strings.LastIndexByte(name, '/')+1:]
	if slices.Contains(ReservedLastElements, last) ||
		strings.HasSuffix(last, ".m4s") || strings.HasSuffix(last, ".mp4") {
		return fmt.Errorf("publish %s: %w: its last element %q names a rendition or object of a stream", name, ErrNameCollision, last)
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if _, ok := r.streams[name[:i]]; ok {
			return fmt.Errorf("publish %s: %w: it extends the live stream %s", name, ErrNameCollision, name[:i])
		}
	}
	if r.nested[name] > 0 {
		return fmt.Errorf("publish %s: %w: live streams extend it (%d)", name, ErrNameCollision, r.nested[name])
	}
	return nil
}

// Nested reports whether the stream names a and b nest: one extends the
// other at a '/' boundary ("live/a" and "live/a/x" do; "live/a" and
// "live/ab" do not, nor do equal names). It is the rule by which Publish
// refuses a name among the live streams (ErrNameCollision), for those who
// apply it to names live elsewhere (a cluster's other nodes).
func Nested(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return len(b) > len(a) && b[len(a)] == '/' && strings.HasPrefix(b, a)
}

// nestLocked adds d to the nested count of every prefix of name.
func (r *Registry) nestLocked(name string, d int) {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if r.nested[name[:i]] += d; r.nested[name[:i]] <= 0 {
			delete(r.nested, name[:i])
		}
	}
}

// ValidateName checks that a stream name is made of 1 to MaxNameLength
// characters from [A-Za-z0-9_.-] in '/'-separated non-empty elements, none of
// them "." or "..".
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrInvalidName, len(name), MaxNameLength)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			elem := name[start:i]
			if elem == "" || elem == "." || elem == ".." {
				return fmt.Errorf("%w: %q has an empty or dot element", ErrInvalidName, name)
			}
			start = i + 1
			continue
		}
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("%w: %q has character %q", ErrInvalidName, name, c)
		}
	}
	return nil
}

// Publish registers a new live stream. It fails with ErrInvalidName (and
// ErrNameCollision, which wraps it), ErrAlreadyPublishing (the current
// publisher keeps going) or ErrTooManyStreams.
func (r *Registry) Publish(name string, info PublishInfo, tracks []*Track) (*Stream, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if len(tracks) == 0 {
		return nil, fmt.Errorf("publish %s: no tracks", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		name:     name,
		info:     info,
		tracks:   tracks,
		started:  time.Now(),
		registry: r,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}

	r.mu.Lock()
	if _, ok := r.streams[name]; ok {
		r.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("publish %s: %w", name, ErrAlreadyPublishing)
	}
	if err := r.collisionLocked(name); err != nil {
		r.mu.Unlock()
		cancel()
		return nil, err
	}
	if r.cfg.MaxStreams > 0 && len(r.streams) >= r.cfg.MaxStreams {
		r.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("publish %s: %w (limit %d)", name, ErrTooManyStreams, r.cfg.MaxStreams)
	}
	r.streams[name] = s
	r.nestLocked(name, 1)
	r.mu.Unlock()

	if r.cfg.OnPublish != nil {
		r.cfg.OnPublish(s)
	}
	return s, nil
}

// SetMaxStreams changes the concurrent stream limit (0: unlimited). Live
// streams beyond a lowered limit keep going; new publishes are refused.
func (r *Registry) SetMaxStreams(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.MaxStreams = n
}

// Get returns the live stream with that name.
func (r *Registry) Get(name string) (*Stream, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.streams[name]
	return s, ok
}

// List returns the live streams sorted by name.
func (r *Registry) List() []*Stream {
	r.mu.Lock()
	out := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Len is the number of live streams.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

func (r *Registry) remove(s *Stream) {
	r.mu.Lock()
	if r.streams[s.name] == s {
		delete(r.streams, s.name)
		r.nestLocked(s.name, -1)
	}
	r.mu.Unlock()
	if r.cfg.OnUnpublish != nil {
		r.cfg.OnUnpublish(s)
	}
}

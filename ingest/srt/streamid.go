package srt

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Mode is what a connection wants to do with its stream.
type Mode int

// Connection modes.
const (
	// ModeRequest reads a live stream (SRT access control m=request).
	ModeRequest Mode = iota + 1
	// ModePublish publishes a stream (m=publish).
	ModePublish
)

// String returns the access-control spelling: "request" or "publish".
func (m Mode) String() string {
	switch m {
	case ModeRequest:
		return "request"
	case ModePublish:
		return "publish"
	}
	return "unknown"
}

// MaxStreamIDLength is the longest streamid SRT carries (SRTO_STREAMID).
const MaxStreamIDLength = 512

// Errors of ParseStreamID besides media.ErrInvalidName (wrapped when the
// name is not acceptable).
var (
	// ErrStreamID: empty, too long or malformed streamid.
	ErrStreamID = errors.New("malformed streamid")
	// ErrUnsupportedMode: m=bidirectional, which a live server cannot honour.
	ErrUnsupportedMode = errors.New("unsupported streamid mode")
	// ErrUnsupportedType: t other than "stream" (file transfer, auth).
	ErrUnsupportedType = errors.New("unsupported streamid type")
)

// accessControlPrefix starts the SRT access control syntax.
const accessControlPrefix = "#!::"

// StreamID is a parsed SRT streamid.
//
// Three forms are understood:
//
//   - the SRT access control syntax, "#!::r=live/key,m=publish": a comma
//     separated list of key=value pairs where r is the resource (the stream
//     name, required), m the mode ("request", the default, or "publish"), u
//     the user, s a session id, t the type ("stream", the default; "file" and
//     "auth" are refused) and h the host. Other keys are kept in Extra.
//     Duplicate keys, empty keys and items without '=' are malformed;
//     m=bidirectional is refused.
//   - short forms "publish:live/key", "read:live/key" and
//     "request:live/key".
//   - a bare name, "live/key", which publishes.
//
// The name must pass media.ValidateName.
type StreamID struct {
	Name    string // the stream name (r)
	Mode    Mode
	User    string // u
	Session string // s
	Type    string // t; "stream" when absent
	Host    string // h
	// Extra holds the keys of the access control syntax not listed above,
	// with their values. Nil when there are none.
	Extra map[string]string
}

// ParseStreamID parses a streamid as sent by an SRT caller. It is pure.
func ParseStreamID(s string) (StreamID, error) {
	id := StreamID{Type: "stream"}
	switch {
	case s == "":
		return StreamID{}, fmt.Errorf("%w: empty", ErrStreamID)
	case len(s) > MaxStreamIDLength:
		return StreamID{}, fmt.Errorf("%w: %d bytes, at most %d", ErrStreamID, len(s), MaxStreamIDLength)
	case strings.HasPrefix(s, accessControlPrefix):
		if err := id.parseAccessControl(s[len(accessControlPrefix):]); err != nil {
			return StreamID{}, err
		}
	default:
		id.Mode, id.Name = ModePublish, s
		if verb, name, ok := strings.Cut(s, ":"); ok {
			switch verb {
			case "publish":
				id.Mode = ModePublish
			case "read", "request":
				id.Mode = ModeRequest
			default:
				return StreamID{}, fmt.Errorf("%w: unknown verb %q (want publish:, read: or request:)", ErrStreamID, truncate(verb))
			}
			id.Name = name
		}
	}
	if err := media.ValidateName(id.Name); err != nil {
		return StreamID{}, fmt.Errorf("streamid: %w", err)
	}
	return id, nil
}

func (id *StreamID) parseAccessControl(s string) error {
	seen := make(map[string]bool)
	hasName := false
	for item := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("%w: item %q is not key=value", ErrStreamID, truncate(item))
		}
		if key == "" {
			return fmt.Errorf("%w: empty key", ErrStreamID)
		}
		if seen[key] {
			return fmt.Errorf("%w: key %q given twice", ErrStreamID, truncate(key))
		}
		seen[key] = true
		switch key {
		case "r":
			id.Name, hasName = value, true
		case "m":
			switch value {
			case "publish":
				id.Mode = ModePublish
			case "request":
				id.Mode = ModeRequest
			case "bidirectional":
				return fmt.Errorf("%w: m=bidirectional", ErrUnsupportedMode)
			default:
				return fmt.Errorf("%w: unknown mode m=%q", ErrStreamID, truncate(value))
			}
		case "u":
			id.User = value
		case "s":
			id.Session = value
		case "t":
			if value != "stream" {
				return fmt.Errorf("%w: t=%q (only stream)", ErrUnsupportedType, truncate(value))
			}
		case "h":
			id.Host = value
		default:
			if id.Extra == nil {
				id.Extra = make(map[string]string)
			}
			id.Extra[key] = value
		}
	}
	if !hasName {
		return fmt.Errorf("%w: no resource (r=) in the access control syntax", ErrStreamID)
	}
	if id.Mode == 0 {
		id.Mode = ModeRequest // the SRT access control default
	}
	return nil
}

// String returns the streamid in the access control syntax, with the keys
// in a canonical order (r, m, u, s, t, h, then the others sorted); parsing it
// gives back id.
func (id StreamID) String() string {
	var b strings.Builder
	b.WriteString(accessControlPrefix)
	b.WriteString("r=" + id.Name + ",m=" + id.Mode.String())
	for _, kv := range [][2]string{{"u", id.User}, {"s", id.Session}, {"h", id.Host}} {
		if kv[1] != "" {
			b.WriteString("," + kv[0] + "=" + kv[1])
		}
	}
	if id.Type != "" && id.Type != "stream" {
		b.WriteString(",t=" + id.Type)
	}
	keys := make([]string, 0, len(id.Extra))
	for k := range id.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("," + k + "=" + id.Extra[k])
	}
	return b.String()
}

// truncate shortens peer-provided text quoted in errors and logs.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// Backup reports whether the caller asked to publish as the stream's
// backup: the access control key role=backup ("#!::r=live/a,m=publish,role=backup").
func (id StreamID) Backup() bool { return id.Extra[ingest.RoleParam] == ingest.RoleBackup }

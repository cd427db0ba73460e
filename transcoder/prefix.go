package transcoder

import (
	"fmt"
	"strings"

	"github.com/headwater-live/headwater/media"
)

// UnderPrefix reports whether a stream is under a stream-name prefix, the
// one rule of every prefix the transcoder matches (transcoder.reserve,
// transcoder.prefix_ladders): at a '/'-element boundary, as playback
// tokens match paths. "live/vip" and "live/vip/" both cover live/vip and
// live/vip/x, not live/vipx; "" covers every stream.
func UnderPrefix(prefix, stream string) bool {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		return prefix == ""
	}
	return stream == p || strings.HasPrefix(stream, p) && stream[len(p)] == '/'
}

// prefixLen is the number of bytes of a stream name a prefix covers, to
// rank prefixes that cover the same stream (the longest wins).
func prefixLen(prefix string) int { return len(strings.TrimSuffix(prefix, "/")) }

// CheckStreamPrefix checks that a stream-name prefix can cover streams:
// "" (every stream), or a valid stream name (media.ValidateName) with an
// optional trailing '/'.
func CheckStreamPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := media.ValidateName(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("stream prefix %q: want whole stream-name elements, optionally ending in '/': %w", prefix, err)
	}
	return nil
}

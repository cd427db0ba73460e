package config

import (
	"fmt"
	"strings"
	"time"
)

// SlateBuiltin is the streams.slate value of the built-in stand-by card.
const SlateBuiltin = "builtin"

// minFailoverAfter is the shortest streams.failover_after: a publisher's
// frames come in bursts of a few tens of milliseconds.
const minFailoverAfter = 100 * time.Millisecond

// PrefixDuration is one parsed "<prefix>=<duration>" rule.
type PrefixDuration struct {
	Prefix   string
	Duration time.Duration
}

// ParsePrefixDurations parses "<prefix>=<duration>" rules
// (streams.reconnect_windows).
func ParsePrefixDurations(rules []string) ([]PrefixDuration, error) {
	out := make([]PrefixDuration, 0, len(rules))
	seen := make(map[string]bool)
	for _, s := range rules {
		prefix, text, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want <prefix>=<duration>", s)
		}
		if seen[prefix] {
			return nil, fmt.Errorf("%q: prefix %q given twice", s, prefix)
		}
		seen[prefix] = true
		if prefix != "" && !validPrefix(prefix) {
			return nil, fmt.Errorf("%q: %q is not a stream-name prefix", s, prefix)
		}
		d, err := time.ParseDuration(text)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q: %q is not a duration such as 10s", s, text)
		}
		out = append(out, PrefixDuration{Prefix: prefix, Duration: d})
	}
	return out, nil
}

func (c StreamsConfig) reconnectWindow(rules []PrefixDuration, name string) time.Duration {
	best, d := -1, c.ReconnectWindow.Duration()
	for _, r := range rules {
		if strings.HasPrefix(name, r.Prefix) && len(r.Prefix) > best {
			best, d = len(r.Prefix), r.Duration
		}
	}
	return d
}

// ReconnectWindowFunc returns ReconnectWindow with the rules parsed once.
func (c StreamsConfig) ReconnectWindowFunc() func(name string) time.Duration {
	rules, _ := ParsePrefixDurations(c.ReconnectWindows)
	return func(name string) time.Duration { return c.reconnectWindow(rules, name) }
}

// validateStreams checks the always-on keys of streams.*.
func (c *Config) validateStreams(v *validator) {
	s := c.Streams
	v.notNegative("streams.reconnect_window", s.ReconnectWindow)
	if _, err := ParsePrefixDurations(s.ReconnectWindows); err != nil {
		v.add("streams.reconnect_windows", "%v", err)
	}
	v.notNegative("streams.failover_after", s.FailoverAfter)
	if d := s.FailoverAfter.Duration(); d > 0 && d < minFailoverAfter {
		v.add("streams.failover_after", "must be 0 or at least %s, got %s", minFailoverAfter, d)
	}
	if s.Slate != "" && s.Slate != SlateBuiltin {
		v.file("streams.slate", s.Slate)
	}
}

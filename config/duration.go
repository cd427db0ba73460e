package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in configuration as a Go duration
// string such as "200ms", "2s" or "1m30s". Its zero value is 0s.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d as a whole number of seconds when it is one ("2s",
// "60s", "86400s", matching Cache-Control max-age), and like
// time.Duration.String otherwise ("200ms", "1.5s").
func (d Duration) String() string {
	if d != 0 && time.Duration(d)%time.Second == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/time.Second), 10) + "s"
	}
	return time.Duration(d).String()
}

// ParseDuration parses a Go duration string such as "200ms" or "2s". Unlike
// time.ParseDuration its error is a short, user-facing reason naming the
// value, e.g. `"abc" is not a duration (e.g. 200ms, 2s)`.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 200ms, 2s)", s)
	}
	return Duration(d), nil
}

// MarshalYAML writes d as a duration string (see [Duration.String]).
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string (see [ParseDuration]).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a duration (e.g. 200ms, 2s), not %s", describeNode(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes d as a duration string, for encodings other than YAML.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration string, for encodings other than YAML.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

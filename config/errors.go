package config

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one configuration problem. [Load], [Config.Set] and
// [Config.Validate] return FieldErrors, several joined with errors.Join;
// use errors.As, or iterate the joined error's Unwrap() []error, to inspect
// them. Its Error text reads "source:line: path: reason", omitting the parts
// that are empty, e.g.
//
//	headwater.yaml:12: segmenter.part_duration: "abc" is not a duration (e.g. 200ms, 2s)
//	HEADWATER_RTMP_ADDRESS: rtmp.address: "1935" is not host:port (missing port in address)
//	segmenter.window: must be at least 3, got 2
type FieldError struct {
	// Source is where the value came from: the configuration file name, an
	// environment variable name, a flag such as "--log-level", or "" when
	// unknown (e.g. from a bare [Config.Validate]).
	Source string
	// Line is the 1-based line in Source, or 0 when not known.
	Line int
	// Path is the dotted key path, e.g. "origin.cors.allowed_origins", or
	// "" when the problem is not about one key (e.g. a YAML syntax error).
	Path string
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// splitErrors flattens errors joined with errors.Join into a list.
func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// asFieldError returns err as a *FieldError, wrapping other errors in one
// with the given source.
func asFieldError(err error, source string) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return &FieldError{Source: source, Reason: err.Error()}
}

// describeNode names a YAML node's kind for error messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a document"
	}
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to name,
// or "" when none is close.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 4
	for _, c := range candidates {
		limit := max(1, min(3, len(c)/3))
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d <= limit && d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// defaultHeader opens the output of DefaultYAML.
const defaultHeader = `Headwater configuration, showing every key with its default.
Every key is optional. Durations are written like 200ms, 2s, 1m30s.
Each key can be overridden by an environment variable named after its path,
e.g. segmenter.part_duration -> HEADWATER_SEGMENTER_PART_DURATION
(lists are comma-separated). Precedence: defaults < file < environment < flags.`

// YAML returns the configuration as a YAML document, without comments, in
// the same layout as [DefaultYAML]. [Load] reads it back to an equal Config.
func (c *Config) YAML() ([]byte, error) {
	return encode(c, false, "")
}

// DefaultYAML returns the default configuration as a YAML document with a
// short comment above every section and key; `headwater config defaults`
// prints it. Loading it yields a Config equal to [Default].
func DefaultYAML() []byte {
	b, err := encode(Default(), true, defaultHeader)
	if err != nil {
		// Encoding a Config built by Default cannot fail; TestDefaultYAMLRoundTrip
		// guards this.
		panic(fmt.Sprintf("config: encoding defaults: %v", err))
	}
	return b
}

// encode renders c as YAML, optionally with per-key comments from the doc
// struct tags and a header comment.
func encode(c *Config, comments bool, header string) ([]byte, error) {
	root, err := toNode(reflect.ValueOf(c).Elem(), comments)
	if err != nil {
		return nil, err
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}, HeadComment: header}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	return separateSections(buf.Bytes()), nil
}

// toNode builds the YAML node for v: a mapping for sections, quoted
// scalars for strings, plain scalars otherwise, and flow-style lists.
func toNode(v reflect.Value, comments bool) (*yaml.Node, error) {
	t := v.Type()
	switch {
	case isSection(t):
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "" || name == "-" {
				continue
			}
			key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}
			if comments {
				key.HeadComment = sf.Tag.Get("doc")
			}
			val, err := toNode(v.Field(i), comments)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			m.Content = append(m.Content, key, val)
		}
		return m, nil
	case t == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: Duration(v.Int()).String()}, nil
	case t.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String(), Style: yaml.DoubleQuotedStyle}, nil
	case t.Kind() == reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}, nil
	case t.Kind() == reflect.Float64:
		s, tag := formatFloat(v.Float()), "!!int"
		if strings.ContainsAny(s, ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s}, nil
	case t.Kind() == reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}, nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := range v.Len() {
			s.Content = append(s.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.Index(i).String(), Style: yaml.DoubleQuotedStyle})
		}
		return s, nil
	default:
		return nil, fmt.Errorf("cannot encode a value of type %s", t)
	}
}

// separateSections inserts a blank line before each top-level section after
// the first, for readability.
func separateSections(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	indented := false // previous line belonged to a section body
	for _, line := range lines {
		top := line != "" && line != "\n" && line[0] != ' '
		if top && indented {
			out.WriteString("\n")
		}
		if line != "" && line != "\n" {
			indented = line[0] == ' '
		}
		out.WriteString(line)
	}
	return []byte(out.String())
}

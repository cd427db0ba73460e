package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Override is one setting given on the command line, applied by [Load] after
// the environment.
type Override struct {
	// Path is the key to set, e.g. "rtmp.address" (see [Flags]).
	Path string
	// Value is parsed as by [Config.Set].
	Value string
	// Source names the setting in error messages, e.g. "--rtmp-address".
	Source string
}

// Load builds the effective configuration: [Default], then the YAML file at
// path (skipped when path is ""), then HEADWATER_* variables from env (in
// os.Environ form, "NAME=value"; other variables are ignored), then the
// command-line overrides in order, and finally [Config.Validate].
//
// Unknown keys in the file and unknown HEADWATER_* variables are errors. All
// problems found are returned together, joined with errors.Join; each is a
// *[FieldError] naming its source (file and line, variable or flag), the key
// path and the reason. On error the returned Config is nil.
func Load(path string, env []string, overrides ...Override) (*Config, error) {
	c := Default()
	var (
		errs    []error
		lines   map[string]int
		sources = map[string]string{} // key path → env var or flag that set it last
	)
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		lines, err = decodeFile(path, data, c)
		errs = append(errs, splitErrors(err)...)
	}

	keys := envKeys()
	for _, kv := range environment(env) {
		name, value, _ := strings.Cut(kv, "=")
		key, ok := keys[name]
		if !ok {
			errs = append(errs, &FieldError{Source: name, Reason: "unknown configuration variable" + suggest(name, envNames())})
			continue
		}
		if err := c.Set(key, value); err != nil {
			fe := asFieldError(err, name)
			fe.Source = name
			errs = append(errs, fe)
			continue
		}
		sources[key] = name
	}

	for _, o := range overrides {
		src := o.Source
		if src == "" {
			src = "flag " + o.Path
		}
		if err := c.Set(o.Path, o.Value); err != nil {
			fe := asFieldError(err, src)
			fe.Source = src
			errs = append(errs, fe)
			continue
		}
		sources[o.Path] = src
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	if err := c.Validate(); err != nil {
		errs = splitErrors(err)
		for _, e := range errs {
			var fe *FieldError
			if !errors.As(e, &fe) {
				continue
			}
			if src, ok := sources[fe.Path]; ok {
				fe.Source = src
			} else if path != "" {
				fe.Source, fe.Line = path, lines[fe.Path]
			}
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// environment returns the HEADWATER_* entries of env sorted by name, keeping
// the relative order of duplicates so the last one wins.
func environment(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, EnvPrefix) && strings.Contains(kv, "=") {
			out = append(out, kv)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		an, _, _ := strings.Cut(a, "=")
		bn, _, _ := strings.Cut(b, "=")
		return strings.Compare(an, bn)
	})
	return out
}

// envKeys maps each environment variable name to its key path.
func envKeys() map[string]string {
	m := map[string]string{}
	for _, k := range Keys() {
		m[EnvName(k)] = k
	}
	return m
}

// envNames lists every environment variable name, for suggestions.
func envNames() []string {
	var out []string
	for _, k := range Keys() {
		out = append(out, EnvName(k))
	}
	return out
}

// decodeFile decodes the YAML document in data over c. It first walks the
// document's node tree against Config to report every unknown key and badly
// typed value with its path and line, then decodes strictly with a
// yaml.Decoder with KnownFields(true). It returns the line of each key found
// in the file, for annotating later validation errors.
func decodeFile(file string, data []byte, c *Config) (map[string]int, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil // empty file, or only comments
		}
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, syntaxError(file, err)
		}
		return nil, &FieldError{Source: file, Line: extra.Line, Reason: "more than one YAML document; a configuration file holds exactly one"}
	}

	w := &walker{file: file, lines: map[string]int{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w.walk(root, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil && err != io.EOF {
		// The walk accepts only what the decoder accepts, so this is not
		// expected; report the decoder's own words.
		return nil, syntaxError(file, err)
	}
	return w.lines, nil
}

// syntaxError turns a yaml package error into a *FieldError naming file and,
// when the message carries one, the line.
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, reason, ok := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); ok && err == nil {
			return &FieldError{Source: file, Line: line, Reason: reason}
		}
	}
	return &FieldError{Source: file, Reason: msg}
}

// walker checks a YAML node tree against the Config type.
type walker struct {
	file  string
	lines map[string]int
	errs  []error
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{Source: w.file, Line: n.Line, Path: path, Reason: fmt.Sprintf(format, args...)})
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// walk checks node n, found at path, against type t.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if !isSection(t) {
		w.leaf(n, t, path)
		return
	}
	if isNull(n) {
		return // an empty section keeps its defaults
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			w.fail(n, "", "the file must be a mapping of sections (log, rtmp, streams, segmenter, origin, admin), not %s", describeNode(n))
		} else {
			w.fail(n, path, "must be a section of keys, not %s", describeNode(n))
		}
		return
	}
	var known []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		known = append(known, name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, path, "keys must be plain names, not %s", describeNode(k))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			w.merge(v, t, path)
			continue
		}
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k, p, "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		idx := slices.Index(known, k.Value)
		if idx < 0 {
			w.fail(k, p, "unknown key%s", suggest(k.Value, known))
			continue
		}
		w.lines[p] = k.Line
		w.walk(v, t.Field(idx).Type, p)
	}
}

// merge checks the value of a YAML merge key ("<<: *anchor").
func (w *walker) merge(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.SequenceNode {
		for _, item := range n.Content {
			w.walk(item, t, path)
		}
		return
	}
	w.walk(n, t, path)
}

// leaf checks that n decodes into a key of type t.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		def, _ := Default().get(path)
		if t.Kind() == reflect.String {
			w.fail(n, path, "no value; write \"\" for an empty string, or remove the key for the default (%q)", def)
		} else {
			w.fail(n, path, "no value; remove the key for the default (%s)", def)
		}
		return
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil && t.Kind() == reflect.Int && n.ShortTag() != "!!int" {
		// yaml.v3 truncates floats such as 1.5 into integers; refuse them.
		err = errors.New("not an integer")
	}
	if err == nil && t.Kind() == reflect.Float64 {
		// Refuse .inf and .nan, which yaml.v3 decodes, as Set does.
		if _, perr := parseFloat(n.Value); perr != nil || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			err = errors.New("not a number")
		}
	}
	if err == nil {
		return
	}
	quoted := ""
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		quoted = " (remove the quotes)"
	}
	switch {
	case t == durationType:
		w.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	case n.Kind != yaml.ScalarNode && t.Kind() != reflect.Slice:
		w.fail(n, path, "must be a single value, not %s", describeNode(n))
	case t.Kind() == reflect.Int:
		w.fail(n, path, "%q is not an integer%s", n.Value, quoted)
	case t.Kind() == reflect.Float64:
		w.fail(n, path, "%q is not a number%s", n.Value, quoted)
	case t.Kind() == reflect.Bool:
		w.fail(n, path, "%q is not a boolean (true or false)%s", n.Value, quoted)
	case t.Kind() == reflect.Slice && n.Kind != yaml.SequenceNode:
		w.fail(n, path, "must be a list, e.g. [\"a\", \"b\"], not %s", describeNode(n))
	case t.Kind() == reflect.Slice:
		w.fail(n, path, "list items must be strings")
	default:
		w.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
}

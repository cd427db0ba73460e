package config

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "HEADWATER_"

// EnvName returns the environment variable overriding the key at path:
// EnvPrefix followed by the path upper-cased with dots replaced by
// underscores, e.g. "segmenter.part_duration" → HEADWATER_SEGMENTER_PART_DURATION.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Keys returns the dotted path of every settable key, in file order, e.g.
// "log.level", ..., "admin.address".
func Keys() []string {
	var out []string
	for _, f := range fields() {
		if !f.section {
			out = append(out, f.path)
		}
	}
	return out
}

// Flag describes one command-line flag of `headwater serve` that overrides a
// key. See [Flags].
type Flag struct {
	// Name is the flag name without dashes, e.g. "rtmp-address".
	Name string
	// Path is the key the flag sets, e.g. "rtmp.address".
	Path string
	// Usage is a one-line help text naming the default and the environment
	// variable.
	Usage string
}

// Flags returns the command-line flags of `headwater serve` that override
// keys: --rtmp-address, --origin-address, --admin-address, --log-level and
// --log-format. Register each as a string flag and, for those the user set,
// pass an [Override] to [Load] (or call [Config.Set] and then
// [Config.Validate]).
func Flags() []Flag {
	def := Default()
	var out []Flag
	for _, path := range []string{"rtmp.address", "origin.address", "admin.address", "log.level", "log.format"} {
		f, _ := lookup(path)
		v, _ := def.get(path)
		out = append(out, Flag{
			Name:  strings.ReplaceAll(path, ".", "-"),
			Path:  path,
			Usage: fmt.Sprintf("%s (default %q; env %s)", strings.TrimSuffix(f.doc, "."), v, EnvName(path)),
		})
	}
	return out
}

// field describes one section or key of Config found by reflection.
type field struct {
	path    string       // dotted yaml path
	index   []int        // reflect field index from Config
	typ     reflect.Type // Go type
	doc     string       // doc struct tag
	section bool         // a nested struct rather than a settable key
}

var durationType = reflect.TypeFor[Duration]()

// isSection reports whether t is a nested configuration struct.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != durationType
}

// fields lists every section and key of Config in declaration order.
func fields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "" || name == "-" {
				continue
			}
			f := field{
				path:    prefix + name,
				index:   append(append([]int(nil), index...), i),
				typ:     sf.Type,
				doc:     sf.Tag.Get("doc"),
				section: isSection(sf.Type),
			}
			out = append(out, f)
			if f.section {
				walk(sf.Type, f.path+".", f.index)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// lookup finds the section or key at path.
func lookup(path string) (field, bool) {
	for _, f := range fields() {
		if f.path == path {
			return f, true
		}
	}
	return field{}, false
}

// Set parses value and stores it in the key at path (e.g. "rtmp.address"),
// the way an environment variable or flag would: strings are taken
// verbatim, durations as "200ms"/"2s", integers in decimal, numbers as
// "1.5" (finite), booleans as true/false, and lists as comma-separated
// items ("" is an empty list).
// It does not validate the result against other keys; call
// [Config.Validate] after the last Set. Errors are *[FieldError].
func (c *Config) Set(path, value string) error {
	f, ok := lookup(path)
	if !ok {
		return &FieldError{Path: path, Reason: "unknown key" + suggest(path, Keys())}
	}
	if f.section {
		return &FieldError{Path: path, Reason: "is a section, not a key; set one of its keys instead"}
	}
	v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
	if err := setString(v, value); err != nil {
		return &FieldError{Path: path, Reason: err.Error()}
	}
	return nil
}

// get formats the key at path the way Set parses it.
func (c *Config) get(path string) (string, bool) {
	f, ok := lookup(path)
	if !ok || f.section {
		return "", false
	}
	v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
	switch {
	case v.Type() == durationType:
		return Duration(v.Int()).String(), true
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ","), true
	case v.Kind() == reflect.Float64:
		return formatFloat(v.Float()), true
	default:
		return fmt.Sprint(v.Interface()), true
	}
}

// setString parses s into v according to v's type.
func setString(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := parseFloat(s)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		items := []string{}
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		// Only reachable if a key of an unsupported type is added to Config;
		// TestKeyTypes guards against that.
		return fmt.Errorf("keys of type %s cannot be set", v.Type())
	}
	return nil
}

// parseFloat parses a finite decimal number such as "1", "0.5" or "1e3".
func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}

// formatFloat writes f the way parseFloat reads it, as short as possible
// ("1", "0.5").
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Change is one key whose value differs between two configurations.
type Change struct {
	Key      string
	Old, New string
}

// Diff lists the keys whose values differ from a to b, in file order.
// Passwords in URLs (rtsp://user:pass@host) are masked so that a Change can
// be logged.
func Diff(a, b *Config) []Change {
	var out []Change
	for _, key := range Keys() {
		av, _ := a.get(key)
		bv, _ := b.get(key)
		if av != bv {
			out = append(out, Change{Key: key, Old: maskURLPasswords(av), New: maskURLPasswords(bv)})
		}
	}
	return out
}

var urlPassword = regexp.MustCompile(`(://[^/@:\s,]*):[^/@\s,]*@`)

// maskURLPasswords replaces the password of every URL in s with "xxxxx".
func maskURLPasswords(s string) string {
	return urlPassword.ReplaceAllString(s, "$1:xxxxx@")
}

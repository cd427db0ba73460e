package local

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxKeyLength is the longest key, in bytes, that ValidateKey accepts: S3's
// limit on object key names.
const MaxKeyLength = 1024

// ErrInvalidKey is wrapped by the errors of ValidateKey and of every
// operation given a key (or a List prefix) that it rejects.
var ErrInvalidKey = errors.New("invalid object key")

// tmpPrefix starts the names of the files Put writes before renaming them
// into place and of Check's probe file. Keys with an element starting with
// it are rejected, and List leaves such files out.
const tmpPrefix = ".objstore-tmp-"

// ValidateKey checks that key is usable as an object key by every backend
// (the local directory, S3) and by the spool: 1 to MaxKeyLength bytes of
// valid UTF-8 without NUL or backslash, '/'-separated elements none of
// which is empty, "." or "..", or starts with ".objstore-tmp-" (the names
// of the local backend's temporary files). So a key never starts or ends
// with '/' and never leaves the directory it is resolved in.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLength {
		return fmt.Errorf("%w %q: length %d not in 1..%d", ErrInvalidKey, key, len(key), MaxKeyLength)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidKey, key)
	}
	if i := strings.IndexAny(key, "\x00\\"); i >= 0 {
		return fmt.Errorf("%w %q: character %q at %d", ErrInvalidKey, key, key[i], i)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w %q: an absolute path", ErrInvalidKey, key)
	}
	for elem := range strings.SplitSeq(key, "/") {
		switch {
		case elem == "":
			return fmt.Errorf("%w %q: an empty element", ErrInvalidKey, key)
		case elem == "." || elem == "..":
			return fmt.Errorf("%w %q: a %q element", ErrInvalidKey, key, elem)
		case strings.HasPrefix(elem, tmpPrefix):
			return fmt.Errorf("%w %q: element %q is reserved for temporary files", ErrInvalidKey, key, elem)
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix: "" (every key), or a string that
// ValidateKey accepts once one trailing '/' is removed.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

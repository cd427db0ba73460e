package slate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// sourceKind tells the three kinds of Source apart.
type sourceKind int

const (
	kindBuiltin sourceKind = iota // the zero Source
	kindImage
	kindMedia
)

// Source is what slates are made from: the built-in card (the zero Source),
// an image file (png, jpg) or a short media file (mp4, m4v, mov, mkv, ts,
// flv: its first Config.MaxMedia of video, and its audio if it has some,
// else silence).
type Source struct {
	kind sourceKind
	path string
}

// Builtin is the built-in card: colour bars and "STAND BY / BACK SOON",
// drawn without fonts.
var Builtin = Source{}

// imageExts and mediaExts are the file types a Source may be.
var (
	imageExts = []string{".png", ".jpg", ".jpeg"}
	mediaExts = []string{".mp4", ".m4v", ".mov", ".mkv", ".ts", ".flv"}
)

// ParseSource reads a slate source setting: "builtin" or the path of an
// existing, readable image or media file. The error says what is wrong
// (empty, missing, a directory, an unsupported file type, unreadable).
func ParseSource(s string) (Source, error) {
	if s == "" {
		return Source{}, errors.New(`slate source is empty: want "builtin" or the path of an image (png, jpg) or media file (mp4, mov, mkv, ts, flv)`)
	}
	if s == "builtin" {
		return Builtin, nil
	}
	ext := strings.ToLower(filepath.Ext(s))
	var kind sourceKind
	switch {
	case slices.Contains(imageExts, ext):
		kind = kindImage
	case slices.Contains(mediaExts, ext):
		kind = kindMedia
	}
	st, err := os.Stat(s)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Source{}, fmt.Errorf("slate source %q: no such file", s)
		}
		return Source{}, fmt.Errorf("slate source %q: %w", s, err)
	}
	if st.IsDir() {
		return Source{}, fmt.Errorf("slate source %q is a directory, not a file", s)
	}
	if kind == kindBuiltin {
		return Source{}, fmt.Errorf("slate source %q: unsupported file type %q (want png, jpg, mp4, m4v, mov, mkv, ts or flv)", s, ext)
	}
	f, err := os.Open(s)
	if err != nil {
		return Source{}, fmt.Errorf("slate source %q is not readable: %w", s, err)
	}
	f.Close()
	return Source{kind: kind, path: s}, nil
}

// String returns "builtin" or the source's path.
func (s Source) String() string {
	if s.kind == kindBuiltin {
		return "builtin"
	}
	return s.path
}

// IsBuiltin reports whether s is the built-in card.
func (s Source) IsBuiltin() bool { return s.kind == kindBuiltin }

// IsImage reports whether s is an image file.
func (s Source) IsImage() bool { return s.kind == kindImage }

// IsMedia reports whether s is a media file.
func (s Source) IsMedia() bool { return s.kind == kindMedia }

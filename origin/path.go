package origin

import (
	"strconv"
	"strings"

	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/media"
)

// objectKind is what a request path names.
type objectKind uint8

const (
	objNone    objectKind = iota
	objHealth             // /healthz
	objIndex              // <prefix>/index.m3u8: multivariant or media playlist
	objInit               // <stream>/<rendition>/init.mp4, init-N.mp4
	objSegment            // <stream>/<rendition>/segN.m4s
	objPart               // <stream>/<rendition>/partN.P.m4s
	objMPD                // <stream>/manifest.mpd: the DASH MPD
	objTime               // /time and <stream>/time: the origin's clock for DASH UTCTiming
	objKey                // /keys/<stream>/<id>.key: an HLS AES-128 key
	objDVR                // <prefix>/dvr.m3u8: the DVR view's multivariant or media playlist
	objPoster             // <stream>/poster.jpg: a recent key frame as JPEG
)

const (
	// maxRenditionName bounds a rendition name in a URL.
	maxRenditionName = 64
	// maxObjectName bounds the last path element ("part18446744073709551615.99999.m4s" is 35).
	maxObjectName = 40
	// maxPathLen bounds a whole request path.
	maxPathLen = 1 + media.MaxNameLength + 1 + maxRenditionName + 1 + maxObjectName
	// maxPartIndexURL bounds the part index accepted in a part URL.
	maxPartIndexURL = 99999
)

// target is a parsed request path.
type target struct {
	kind objectKind
	// prefix is everything between the leading '/' and the last '/': the
	// stream name for a multivariant playlist, "<stream>/<rendition>"
	// otherwise. It is valid per media.ValidateName except for its length.
	// For a key file it is the stream name (after "/keys/"), valid.
	prefix string
	// split is the index in prefix of the '/' between stream and rendition,
	// or -1 when prefix has a single element.
	split int
	// object is the last path element.
	object string
	// msn and part are the numbers in segN.m4s and partN.P.m4s.
	msn  uint64
	part int
}

// keyID returns the key id of a key file ("<id>.key").
func (t *target) keyID() string { return strings.TrimSuffix(t.object, ".key") }

// stream returns the stream name when the prefix is "<stream>/<rendition>".
func (t *target) stream() string { return t.prefix[:t.split] }

// rendition returns the rendition name when the prefix is "<stream>/<rendition>".
func (t *target) rendition() string { return t.prefix[t.split+1:] }

// multivariantOK reports whether prefix can be a stream name.
func (t *target) multivariantOK() bool { return len(t.prefix) <= media.MaxNameLength }

// renditionOK reports whether prefix can be "<stream>/<rendition>".
func (t *target) renditionOK() bool {
	return t.split > 0 && t.split <= media.MaxNameLength && len(t.prefix)-t.split-1 <= maxRenditionName
}

// parsePath parses a request path (the decoded URL path, which the caller
// has checked came without percent-escapes that change it). It returns the
// target or an HTTP status: 400 for malformed names (bad characters, empty,
// "." or ".." elements, too long), 404 for well-formed paths that cannot
// name an object. It never touches a file system; it only slices p.
func parsePath(p string) (target, int) {
	switch p {
	case "/healthz":
		return target{kind: objHealth}, 0
	case "/time":
		return target{kind: objTime, split: -1}, 0
	}
	if len(p) > maxPathLen {
		return target{}, 400
	}
	if len(p) == 0 || p[0] != '/' {
		return target{}, 400
	}
	// Every byte must be in the stream-name alphabet or a '/', every
	// element non-empty and neither "." nor "..".
	start := 1
	last := -1 // index of the last '/' after the leading one
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			elem := p[start:i]
			if elem == "" || elem == "." || elem == ".." {
				if i == len(p) && elem == "" {
					return target{}, 404 // trailing slash: a "directory"
				}
				return target{}, 400
			}
			if i < len(p) {
				last = i
			}
			start = i + 1
			continue
		}
		if !nameByte(p[i]) {
			return target{}, 400
		}
	}
	if last < 0 {
		return target{}, 404 // a single element: no stream
	}
	if strings.HasPrefix(p, hlsenc.KeyPrefix) && strings.HasSuffix(p, ".key") {
		return parseKeyPath(p, last)
	}
	t := target{prefix: p[1:last], object: p[last+1:], split: strings.LastIndexByte(p[1:last], '/')}
	if len(t.object) > maxObjectName {
		return target{}, 404
	}
	if !parseObject(&t) {
		return target{}, 404
	}
	switch t.kind {
	case objIndex, objDVR:
		if !t.multivariantOK() && !t.renditionOK() {
			return target{}, 400
		}
		return t, 0
	case objMPD, objTime, objPoster:
		// Stream-level objects: the prefix is a stream name.
		if !t.multivariantOK() {
			return target{}, 400
		}
		return t, 0
	}
	if t.split < 0 {
		return target{}, 404 // a media object needs a rendition
	}
	if !t.renditionOK() {
		return target{}, 400
	}
	return t, 0
}

// parseKeyPath parses "/keys/<stream>/<id>.key", whose bytes parsePath has
// checked; last is the index of its last '/'.
func parseKeyPath(p string, last int) (target, int) {
	stream, _, ok := hlsenc.ParseKeyPath(p)
	if !ok || media.ValidateName(stream) != nil {
		return target{}, 404
	}
	return target{kind: objKey, prefix: stream, split: -1, object: p[last+1:]}, 0
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// parseObject recognises the object names, in their canonical spelling only
// (no sign, no leading zeros), so that every object has exactly one URL.
func parseObject(t *target) bool {
	o := t.object
	switch {
	case o == "index.m3u8":
		t.kind = objIndex
		return true
	case o == "manifest.mpd":
		t.kind = objMPD
		return true
	case o == "dvr.m3u8":
		t.kind = objDVR
		return true
	case o == "poster.jpg":
		t.kind = objPoster
		return true
	case o == "time":
		t.kind = objTime
		return true
	case o == "init.mp4":
		t.kind = objInit
		return true
	case strings.HasPrefix(o, "init-") && strings.HasSuffix(o, ".mp4"):
		n, ok := parseUint(o[len("init-") : len(o)-len(".mp4")])
		if !ok || n == 0 {
			return false
		}
		t.kind = objInit
		return true
	case strings.HasPrefix(o, "seg") && strings.HasSuffix(o, ".m4s"):
		n, ok := parseUint(o[len("seg") : len(o)-len(".m4s")])
		if !ok {
			return false
		}
		t.kind, t.msn = objSegment, n
		return true
	case strings.HasPrefix(o, "part") && strings.HasSuffix(o, ".m4s"):
		nums := o[len("part") : len(o)-len(".m4s")]
		dot := strings.IndexByte(nums, '.')
		if dot < 0 {
			return false
		}
		n, ok := parseUint(nums[:dot])
		if !ok {
			return false
		}
		p, ok := parseUint(nums[dot+1:])
		if !ok || p > maxPartIndexURL {
			return false
		}
		t.kind, t.msn, t.part = objPart, n, int(p)
		return true
	}
	return false
}

// parseUint parses a canonical decimal uint64: digits only, no leading zero
// unless the number is 0.
func parseUint(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// objectName formats the canonical object name of a parsed target; the
// fuzz test checks parsePath round-trips through it.
func objectName(t *target) string {
	switch t.kind {
	case objIndex:
		return "index.m3u8"
	case objMPD:
		return "manifest.mpd"
	case objDVR:
		return "dvr.m3u8"
	case objPoster:
		return "poster.jpg"
	case objTime:
		return "time"
	case objKey:
		return t.object
	case objInit:
		return t.object // init names are checked by parseObject
	case objSegment:
		return "seg" + strconv.FormatUint(t.msn, 10) + ".m4s"
	case objPart:
		return "part" + strconv.FormatUint(t.msn, 10) + "." + strconv.Itoa(t.part) + ".m4s"
	}
	return ""
}

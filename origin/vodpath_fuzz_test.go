package origin

import (
	"strings"
	"testing"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/recording"
)

// vodPath formats a parsed VOD target back into its path.
func vodPath(t vodTarget) string {
	p := vodPrefix + t.stream + "/" + t.session + "/"
	if t.rendition != "" {
		p += t.rendition + "/"
	}
	return p + t.object
}

func TestParseVODPath(t *testing.T) {
	const s = "20261207T161800.123Z"
	for _, tc := range []struct {
		path string
		want vodTarget
		ok   bool
	}{
		{"/vod/live/a/" + s + "/index.m3u8", vodTarget{stream: "live/a", session: s, object: "index.m3u8"}, true},
		{"/vod/live/a/b/" + s + "/manifest.mpd", vodTarget{stream: "live/a/b", session: s, object: "manifest.mpd"}, true},
		{"/vod/live/a/" + s + "/thumbnails.vtt", vodTarget{stream: "live/a", session: s, object: "thumbnails.vtt"}, true},
		{"/vod/live/a/" + s + "/video/index.m3u8", vodTarget{stream: "live/a", session: s, rendition: "video", object: "index.m3u8"}, true},
		{"/vod/live/a/" + s + "/720p/seg12.m4s", vodTarget{stream: "live/a", session: s, rendition: "720p", object: "seg12.m4s"}, true},
		{"/vod/live/a/" + s + "/video/init-1.mp4", vodTarget{stream: "live/a", session: s, rendition: "video", object: "init-1.mp4"}, true},
		{"/vod/live/a/" + s + "/thumbs/sprite-3.jpg", vodTarget{stream: "live/a", session: s, rendition: "thumbs", object: "sprite-3.jpg"}, true},
		{"/vod/live/a/" + s + "/video/part1.0.m4s", vodTarget{}, false}, // no parts in a recording
		{"/vod/live/a/" + s + "/video/seg012.m4s", vodTarget{}, false},
		{"/vod/live/a/" + s + "/thumbs/sprite-x.jpg", vodTarget{}, false},
		{"/vod/live/a/" + s + "/secret.json", vodTarget{}, false},
		{"/vod/live/a/20261207T161800Z/index.m3u8", vodTarget{}, false},
		{"/vod/" + s + "/index.m3u8", vodTarget{}, false},
		{"/vod/live/../" + s + "/index.m3u8", vodTarget{}, false},
		{"/vod/live//a/" + s + "/index.m3u8", vodTarget{}, false},
		{"/vod/live/a%2f/" + s + "/index.m3u8", vodTarget{}, false},
		{"/live/a/" + s + "/index.m3u8", vodTarget{}, false},
	} {
		got, ok := parseVODPath(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseVODPath(%q) = %+v %v, want %+v %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzVODPath checks parseVODPath on any path: it never panics, and what
// it accepts names a valid stream, a session id and one of the objects a
// recording has, and formats back to the same path.
func FuzzVODPath(f *testing.F) {
	for _, s := range []string{
		"/vod/live/a/20261207T161800.123Z/index.m3u8",
		"/vod/live/a/20261207T161800.123Z/video/seg1.m4s",
		"/vod/live/a/20261207T161800.123Z/thumbs/sprite-0.jpg",
		"/vod/a/20261207T161800.123Z/20261207T161800.123Z/index.m3u8",
		"/vod//", "/vod/../../etc/passwd", "/vod/x/y/z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		v, ok := parseVODPath(p)
		if !ok {
			return
		}
		if media.ValidateName(v.stream) != nil || !recording.IsSessionID(v.session) {
			t.Fatalf("%q: stream %q session %q", p, v.stream, v.session)
		}
		if strings.Contains(v.object, "/") || strings.Contains(v.rendition, "/") || strings.Contains(v.object, "..") {
			t.Fatalf("%q: object %q rendition %q", p, v.object, v.rendition)
		}
		if back := vodPath(v); back != p {
			t.Fatalf("%q parsed as %+v formats as %q", p, v, back)
		}
	})
}

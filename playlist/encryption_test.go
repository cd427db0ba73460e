package playlist

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	hls "github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/store"
)

// fixedKeys returns an Encryption whose key changes every rotate segments,
// with deterministic ids ("k<period>") and material, so that golden files
// are stable. Keys of periods below from are gone (hlsenc.ErrKeyGone).
func fixedKeys(t testing.TB, stream string, rotate, from uint64, sequenceIV bool) *Encryption {
	return &Encryption{Stream: stream, KeyFor: func(msn uint64) (hlsenc.Key, error) {
		per := msn / rotate
		if per < from {
			return hlsenc.Key{}, hlsenc.ErrKeyGone
		}
		var k, iv [hlsenc.KeySize]byte
		for i := range k {
			k[i] = byte(per)
			iv[i] = byte(0xa0 + i)
		}
		key, err := hlsenc.KeyFromBytes(fmt.Sprintf("k%d", per), k, iv, sequenceIV)
		if err != nil {
			t.Fatal(err)
		}
		return key, nil
	}}
}

var keyLine = regexp.MustCompile(`(?m)^#EXT-X-KEY:.*$`)

// keyURIs returns the URI of each segment's key, "" for a clear one.
func keyURIs(m *hls.Media) []string {
	var out []string
	for _, seg := range m.Segments {
		uri := ""
		if seg.Key != nil && seg.Key.Method == hls.MediaKeyMethodAES128 {
			uri = seg.Key.URI
		}
		out = append(out, uri)
	}
	return out
}

func TestEncryptedSteady(t *testing.T) {
	f := steady(t) // video seg0..7 complete (2..7 listed), seg8 open with 2 parts
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 3, 0, false)
	text := f.media("video", o)
	golden(t, "encrypted", text)

	m := parseMedia(t, text, false)
	want := []string{"k0", "k1", "k1", "k1", "k2", "k2"} // seg2..seg7
	for i, uri := range keyURIs(m) {
		if w := "../../../keys/live/test/" + want[i] + ".key"; uri != w {
			t.Errorf("segment %s: key %q, want %q", m.Segments[i].URI, uri, w)
		}
		if m.Segments[i].Key.IV != "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeaf" {
			t.Errorf("segment %s: IV %q", m.Segments[i].URI, m.Segments[i].Key.IV)
		}
	}
	s := string(text)
	// One EXT-X-KEY per key period, the first after the EXT-X-MAP, each
	// before the EXTINF and the first part of the segment it starts with.
	keys := keyLine.FindAllStringIndex(s, -1)
	if len(keys) != 3 {
		t.Fatalf("%d EXT-X-KEY tags, want 3:\n%s", len(keys), s)
	}
	if mp := strings.Index(s, "#EXT-X-MAP:"); mp < 0 || mp > keys[0][0] {
		t.Errorf("EXT-X-MAP at %d, first EXT-X-KEY at %d", mp, keys[0][0])
	}
	for i, c := range []struct{ after, before string }{{"#EXT-X-MAP:", "\nseg2.m4s"}, {"\nseg2.m4s", "\nseg3.m4s"}, {"\nseg5.m4s", "\nseg6.m4s"}} {
		if at := keys[i][0]; at < strings.Index(s, c.after) || at > strings.Index(s, c.before) {
			t.Errorf("EXT-X-KEY %d not between %q and %q", i, c.after, c.before)
		}
	}
	// seg6 has parts: its key precedes its first part.
	if p := strings.Index(s, `URI="part6.0.m4s"`); p < keys[2][0] {
		t.Error("part6.0 listed before the key of segment 6")
	}
	// The open segment 8 and the hint keep k2: no further EXT-X-KEY.
	eq(t, "preload hint", m.PreloadHint.URI, "part8.2.m4s")
}

func TestEncryptedKeyURIKeepsToken(t *testing.T) {
	// The relative key URI resolves under the playlist's tokenised path.
	f := steady(t)
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 3, 0, false)
	m := parseMedia(t, f.media("video", o), false)
	base, _ := url.Parse("https://cdn.example/t/TOKEN/live/test/video/index.m3u8")
	ref, _ := url.Parse(m.Segments[0].Key.URI)
	if got := base.ResolveReference(ref).String(); got != "https://cdn.example/t/TOKEN/keys/live/test/k0.key" {
		t.Errorf("key URI resolves to %s", got)
	}
	stream, id, ok := hlsenc.ParseKeyPath(base.ResolveReference(ref).Path[len("/t/TOKEN"):])
	if !ok || stream != "live/test" || id != "k0" {
		t.Errorf("ParseKeyPath = %q %q %v", stream, id, ok)
	}
}

func TestEncryptedHintStartsKeyPeriod(t *testing.T) {
	// Segments 0..5 complete, none open: the hint is part 6.0, the first
	// of key period 2 (rotate 3): its EXT-X-KEY precedes the hint.
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(6)
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 3, 0, false)
	s := string(f.media("video", o))
	keys := keyLine.FindAllString(s, -1)
	if len(keys) != 3 || !strings.Contains(keys[2], "/k2.key") {
		t.Fatalf("EXT-X-KEY tags %q\n%s", keys, s)
	}
	if !strings.HasSuffix(s, keys[2]+"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part6.0.m4s\"\n") {
		t.Errorf("the hint's key does not precede it:\n%s", s)
	}
	m := parseMedia(t, []byte(s), false)
	eq(t, "last segment key", keyURIs(m)[5], "../../../keys/live/test/k1.key")

	// Plain HLS has no hint, hence no trailing EXT-X-KEY.
	o.LowLatency = false
	if s := string(f.media("video", o)); strings.Contains(s, "k2.key") {
		t.Errorf("plain playlist announces the next key:\n%s", s)
	}
}

func TestEncryptedInitChange(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(3)
	v.changeInit(1280, 720, 0x28)
	v.segments(2)
	v.openWith(1)
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 2, 0, false)
	text := f.media("video", o)
	golden(t, "encrypted_init_change", text)

	// The second init is read in the clear: METHOD=NONE, MAP, then the key
	// in force again (k1 covers seg2 and seg3).
	s := string(text)
	want := "#EXT-X-KEY:METHOD=NONE\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"../../../keys/live/test/k1.key\""
	if !strings.Contains(s, want) {
		t.Errorf("no %q in\n%s", want, s)
	}
	m := parseMedia(t, text, false)
	got := keyURIs(m)
	for i, w := range []string{"k0", "k0", "k1", "k1", "k2"} {
		if !strings.HasSuffix(got[i], "/"+w+".key") {
			t.Errorf("segment %d: key %q, want %s", i, got[i], w)
		}
	}
	if n := strings.Count(s, "#EXT-X-KEY:"); n != 5 { // k0, NONE, k1, k1 again, k2
		t.Errorf("%d EXT-X-KEY tags", n)
	}
}

func TestEncryptedSkip(t *testing.T) {
	f := newFixture(t, store.Config{Window: 12})
	v := f.video("video", 640, 360, 20000)
	v.segments(14)
	v.openWith(1)
	o := ll()
	o.Window, o.Skip = 12, true
	o.Encryption = fixedKeys(t, f.key, 4, 0, false)
	text := f.media("video", o)
	golden(t, "encrypted_skip", text)

	// Segments 2..7 are skipped; seg8 is under k2, written again after
	// EXT-X-SKIP (and after the EXT-X-MAP).
	s := string(text)
	want := "#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"../../../keys/live/test/k2.key\""
	if !strings.Contains(s, want) {
		t.Errorf("no %q in\n%s", want, s)
	}
	m := parseMedia(t, text, false)
	for i, uri := range keyURIs(m) {
		msn := 8 + i
		if w := fmt.Sprintf("/k%d.key", msn/4); !strings.HasSuffix(uri, w) {
			t.Errorf("seg%d: key %q, want %s", msn, uri, w)
		}
	}
}

func TestEncryptedSequenceIV(t *testing.T) {
	f := steady(t)
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 3, 0, true)
	s := string(f.media("video", o))
	if !strings.Contains(s, "#EXT-X-KEY:METHOD=AES-128,URI=\"../../../keys/live/test/k0.key\"\n") || strings.Contains(s, "IV=") {
		t.Errorf("sequence-IV keys carry an IV attribute:\n%s", s)
	}
}

func TestEncryptedKeyGone(t *testing.T) {
	f := steady(t)
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 3, 1, false) // period 0 (seg2 listed) gone
	b, err := RenderMedia(f.rendition("video"), f.renditions(), o)
	if !errors.Is(err, hlsenc.ErrKeyGone) || b != nil {
		t.Fatalf("RenderMedia = %d bytes, %v", len(b), err)
	}
	if Media(f.rendition("video"), f.renditions(), o) != nil {
		t.Error("Media rendered a playlist without one of its keys")
	}
	// The clear playlist of the same snapshot renders, and is what Media
	// always rendered.
	o.Encryption = nil
	b, err = RenderMedia(f.rendition("video"), f.renditions(), o)
	if err != nil || string(b) != string(f.media("video", ll())) {
		t.Errorf("clear RenderMedia: %v", err)
	}
}

func TestEncryptedEnded(t *testing.T) {
	f := newFixture(t, store.Config{})
	v := f.video("video", 640, 360, 20000)
	v.segments(5)
	f.stream.End()
	o := ll()
	o.Encryption = fixedKeys(t, f.key, 2, 0, false)
	s := string(f.media("video", o))
	if !strings.HasSuffix(s, "seg4.m4s\n#EXT-X-ENDLIST\n") {
		t.Errorf("ended playlist:\n%s", s)
	}
	if n := len(keyLine.FindAllString(s, -1)); n != 3 {
		t.Errorf("%d EXT-X-KEY tags, want 3", n)
	}
}

// BenchmarkMediaEncrypted is BenchmarkMedia's playlist with keys rotating
// every two segments.
func BenchmarkMediaEncrypted(b *testing.B) {
	f := newFixture(b, store.Config{})
	v := f.video("video", 1280, 720, 8000)
	v.info.PartTarget = 200 * time.Millisecond
	v.r.SetInit(v.info, v.init)
	v.partDur, v.parts = 200*time.Millisecond, 10
	a := f.audio("audio")
	v.segments(8)
	a.segments(8)
	v.openWith(5)
	a.openWith(2)
	r, all := f.rendition("video"), f.renditions()
	p := hlsenc.NewMemoryProvider(hlsenc.MemoryConfig{RotateEvery: 2})
	o := DefaultMediaOptions()
	o.Encryption = &Encryption{Stream: f.key, KeyFor: func(msn uint64) (hlsenc.Key, error) { return p.KeyFor("s", msn) }}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Media(r, all, o))
	}
	b.SetBytes(int64(n))
}

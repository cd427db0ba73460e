package playlist

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hls "github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the program date time of every fixture's first segment.
var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// fixture drives the real store writer API with fixed times and sizes.
type fixture struct {
	tb     testing.TB
	st     *store.Store
	key    string
	stream *store.Stream
	tracks []*track
}

// track is one rendition being written: segments of parts × partDur.
type track struct {
	f        *fixture
	r        *store.Rendition
	info     store.RenditionInfo
	init     []byte
	partDur  time.Duration
	parts    int // per segment
	partSize int // bytes of a part; the first (key frame) part is 3×
	pdt      time.Time
	count    int // segments started
}

func newFixture(tb testing.TB, cfg store.Config) *fixture {
	st := store.New(cfg)
	f := &fixture{tb: tb, st: st, key: "live/test"}
	f.stream = st.Begin(f.key)
	return f
}

func h264(level byte) *media.H264 {
	return &media.H264{SPS: []byte{0x67, 0x64, 0x00, level, 0xac}, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}
}

// video adds an H.264 rendition with 2 s segments of 4 × 0.5 s parts.
func (f *fixture) video(name string, width, height int, partSize int) *track {
	info := store.RenditionInfo{
		Name: name, Kind: media.KindVideo, Codec: h264(0x1f), Timescale: 90000,
		Width: width, Height: height, FrameRate: 30,
		SegmentTarget: 2 * time.Second, PartTarget: 500 * time.Millisecond,
	}
	return f.add(info, 500*time.Millisecond, 4, partSize)
}

// audio adds an AAC rendition with 2.048 s segments of 4 × 0.512 s parts
// (24 AAC frames of 1024 samples at 48 kHz), as a segmenter cutting audio on
// frame boundaries produces for a 2 s / 0.5 s configuration.
func (f *fixture) audio(name string) *track {
	info := store.RenditionInfo{
		Name: name, Kind: media.KindAudio, Timescale: 48000,
		Codec:      &media.AAC{Config: mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}},
		SampleRate: 48000, Channels: 2,
		SegmentTarget: 2 * time.Second, PartTarget: 500 * time.Millisecond,
	}
	return f.add(info, 512*time.Millisecond, 4, 8192)
}

func (f *fixture) add(info store.RenditionInfo, partDur time.Duration, parts, partSize int) *track {
	tr := &track{
		f: f, r: f.stream.AddRendition(info), info: info,
		init:    []byte("init:" + info.Name + ":" + info.Codec.RFC6381()),
		partDur: partDur, parts: parts, partSize: partSize, pdt: t0,
	}
	tr.r.SetInit(info, tr.init)
	f.tracks = append(f.tracks, tr)
	return tr
}

// pending adds a rendition that has no init segment yet.
func (f *fixture) pending(name string) {
	f.stream.AddRendition(store.RenditionInfo{Name: name, Kind: media.KindVideo, Timescale: 90000})
}

func (tr *track) ticks(d time.Duration) uint64 {
	return uint64(d) * uint64(tr.info.Timescale) / uint64(time.Second)
}

// start opens the next segment.
func (tr *track) start() {
	tr.f.tb.Helper()
	if _, err := tr.r.StartSegment(tr.pdt, tr.r.NextBaseTime()); err != nil {
		tr.f.tb.Fatal(err)
	}
	tr.count++
}

// part appends a part to the open segment.
func (tr *track) part() {
	tr.f.tb.Helper()
	seg := tr.r.Snapshot().Open
	size := tr.partSize
	if len(seg.Parts) == 0 {
		size = 3*tr.partSize + 1000*(tr.count%3) // key frame, varying a little
	}
	if _, err := tr.r.AppendPart(make([]byte, size), tr.partDur, len(seg.Parts) == 0 || tr.info.Kind == media.KindAudio); err != nil {
		tr.f.tb.Fatal(err)
	}
}

// finish closes the open segment with the duration of its parts.
func (tr *track) finish() {
	tr.f.tb.Helper()
	n := len(tr.r.Snapshot().Open.Parts)
	d := time.Duration(n) * tr.partDur
	if err := tr.r.FinishSegment(tr.ticks(d)); err != nil {
		tr.f.tb.Fatal(err)
	}
	tr.pdt = tr.pdt.Add(d)
}

// segments writes n complete segments.
func (tr *track) segments(n int) {
	tr.f.tb.Helper()
	for range n {
		tr.start()
		for range tr.parts {
			tr.part()
		}
		tr.finish()
	}
}

// openWith opens a segment with n parts.
func (tr *track) openWith(n int) {
	tr.f.tb.Helper()
	tr.start()
	for range n {
		tr.part()
	}
}

// complete fills the open segment up to the usual number of parts and
// finishes it.
func (tr *track) complete() {
	tr.f.tb.Helper()
	for len(tr.r.Snapshot().Open.Parts) < tr.parts {
		tr.part()
	}
	tr.finish()
}

// gap records a missing segment of the track's usual duration.
func (tr *track) gap() {
	tr.f.tb.Helper()
	d := time.Duration(tr.parts) * tr.partDur
	if err := tr.r.AddGap(tr.pdt, tr.r.NextBaseTime(), tr.ticks(d)); err != nil {
		tr.f.tb.Fatal(err)
	}
	tr.pdt = tr.pdt.Add(d)
}

// changeInit sets a new codec configuration (new init bytes).
func (tr *track) changeInit(width, height int, level byte) {
	tr.info.Width, tr.info.Height = width, height
	tr.info.Codec = h264(level)
	tr.init = []byte(fmt.Sprintf("init:%s:%s:%dx%d", tr.info.Name, tr.info.Codec.RFC6381(), width, height))
	tr.r.SetInit(tr.info, tr.init)
}

// republish ends the publish and starts another within the grace time,
// after a pause of wall-clock time.
func (f *fixture) republish(pause time.Duration) {
	f.stream.End()
	if st := f.st.Begin(f.key); st != f.stream {
		f.tb.Fatal("republish did not continue the stream")
	}
	for _, tr := range f.tracks {
		tr.r = f.stream.AddRendition(tr.info)
		tr.r.SetInit(tr.info, tr.init)
		tr.pdt = tr.pdt.Add(pause)
	}
}

// renditions snapshots every rendition of the stream, in the order added.
func (f *fixture) renditions() []Rendition {
	var out []Rendition
	for _, r := range f.stream.Renditions() {
		out = append(out, Rendition{Name: r.Name(), Snap: r.Snapshot()})
	}
	return out
}

func (f *fixture) rendition(name string) Rendition {
	f.tb.Helper()
	r, ok := f.stream.Rendition(name)
	if !ok {
		f.tb.Fatalf("no rendition %s", name)
	}
	return Rendition{Name: name, Snap: r.Snapshot()}
}

// media renders the media playlist of rendition name with the stream's
// other renditions as siblings.
func (f *fixture) media(name string, o MediaOptions) []byte {
	return Media(f.rendition(name), f.renditions(), o)
}

// golden compares got with testdata/<name>.m3u8, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".m3u8")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./playlist -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./playlist -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// parseMedia parses a media playlist with gohlslib and checks the invariants
// every media playlist must hold. gohlslib refuses playlists without a
// complete segment ("no segments found") after having parsed everything
// else; allowNoSegments accepts exactly that.
func parseMedia(t *testing.T, text []byte, allowNoSegments bool) *hls.Media {
	t.Helper()
	var m hls.Media
	if err := m.Unmarshal(text); err != nil {
		if !allowNoSegments || err.Error() != "no segments found" {
			t.Fatalf("gohlslib: %v\n%s", err, text)
		}
	} else if allowNoSegments {
		t.Fatalf("expected a playlist without complete segments\n%s", text)
	} else {
		// The generic entry point must agree on the playlist type.
		pl, err := hls.Unmarshal(text)
		if err != nil {
			t.Fatalf("gohlslib: %v", err)
		}
		if _, ok := pl.(*hls.Media); !ok {
			t.Fatalf("gohlslib parsed a %T", pl)
		}
	}
	checkMedia(t, text, &m)
	return &m
}

func checkMedia(t *testing.T, text []byte, m *hls.Media) {
	t.Helper()
	ll := m.ServerControl != nil
	if ll && m.Version != 9 || !ll && m.Version != 6 {
		t.Errorf("version %d (low latency %v)", m.Version, ll)
	}
	if !m.IndependentSegments {
		t.Error("no EXT-X-INDEPENDENT-SEGMENTS")
	}
	if m.DiscontinuitySequence == nil {
		t.Error("no EXT-X-DISCONTINUITY-SEQUENCE")
	}
	if !strings.Contains(string(text), "#EXT-X-MAP:URI=\"init") {
		t.Error("no EXT-X-MAP")
	}
	skipped := 0
	if m.Skip != nil {
		skipped = m.Skip.SkippedSegments
	}
	td := time.Duration(m.TargetDuration) * time.Second
	msn := uint64(m.MediaSequence + skipped)
	withParts := 0
	for i, seg := range m.Segments {
		if want := fmt.Sprintf("seg%d.m4s", msn); seg.URI != want {
			t.Errorf("segment %d: URI %s, want %s", i, seg.URI, want)
		}
		if r := (seg.Duration + time.Second/2).Truncate(time.Second); r > td {
			t.Errorf("segment %s: EXTINF %v rounds above the target duration %v", seg.URI, seg.Duration, td)
		}
		if seg.DateTime == nil {
			t.Errorf("segment %s: no EXT-X-PROGRAM-DATE-TIME", seg.URI)
		}
		checkParts(t, m, msn, seg.Parts)
		if len(seg.Parts) > 0 {
			withParts++
			if i < len(m.Segments)-3 {
				t.Errorf("segment %s: parts listed on a segment older than the last three", seg.URI)
			}
		}
		msn++
	}
	checkParts(t, m, msn, m.Parts) // the open segment's
	if len(m.Parts) > 0 {
		withParts++
	}
	if withParts > 3 {
		t.Errorf("parts listed for %d segments", withParts)
	}
	if !ll {
		if m.PartInf != nil || withParts > 0 || m.PreloadHint != nil || len(m.RenditionReport) > 0 || m.Skip != nil {
			t.Error("low-latency tags in a plain playlist")
		}
		return
	}
	sc := m.ServerControl
	if !sc.CanBlockReload {
		t.Error("no CAN-BLOCK-RELOAD=YES")
	}
	if m.PartInf == nil {
		t.Fatal("no EXT-X-PART-INF")
	}
	if sc.PartHoldBack == nil || *sc.PartHoldBack < 3*m.PartInf.PartTarget {
		t.Errorf("PART-HOLD-BACK %v below 3 × PART-TARGET %v", sc.PartHoldBack, m.PartInf.PartTarget)
	}
	if sc.CanSkipUntil == nil || *sc.CanSkipUntil < 6*td {
		t.Errorf("CAN-SKIP-UNTIL %v below 6 × target duration %v", sc.CanSkipUntil, td)
	}
	if m.PartInf.PartTarget > td {
		t.Errorf("PART-TARGET %v above the target duration", m.PartInf.PartTarget)
	}
	if m.Endlist {
		if m.PreloadHint != nil {
			t.Error("preload hint after EXT-X-ENDLIST")
		}
		return
	}
	if m.PreloadHint == nil {
		t.Fatal("no EXT-X-PRELOAD-HINT")
	}
	if want := fmt.Sprintf("part%d.%d.m4s", msn, len(m.Parts)); m.PreloadHint.URI != want {
		t.Errorf("preload hint %s, want %s", m.PreloadHint.URI, want)
	}
}

func checkParts(t *testing.T, m *hls.Media, msn uint64, parts []*hls.MediaPart) {
	t.Helper()
	for j, p := range parts {
		if want := fmt.Sprintf("part%d.%d.m4s", msn, j); p.URI != want {
			t.Errorf("part URI %s, want %s", p.URI, want)
		}
		if m.PartInf == nil || p.Duration > m.PartInf.PartTarget {
			t.Errorf("part %s: duration %v above PART-TARGET", p.URI, p.Duration)
		}
	}
}

// report finds the rendition report for uri.
func report(t *testing.T, m *hls.Media, uri string) *hls.MediaRenditionReport {
	t.Helper()
	for _, r := range m.RenditionReport {
		if r.URI == uri {
			return r
		}
	}
	t.Fatalf("no rendition report for %s", uri)
	return nil
}

func parseMultivariant(t *testing.T, text []byte) *hls.Multivariant {
	t.Helper()
	pl, err := hls.Unmarshal(text)
	if err != nil {
		t.Fatalf("gohlslib: %v\n%s", err, text)
	}
	m, ok := pl.(*hls.Multivariant)
	if !ok {
		t.Fatalf("gohlslib parsed a %T", pl)
	}
	if m.Version != 6 || !m.IndependentSegments {
		t.Errorf("version %d, independent segments %v", m.Version, m.IndependentSegments)
	}
	return m
}

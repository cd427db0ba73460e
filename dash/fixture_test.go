package dash

import (
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// Real SPSs: 1280x720 High@3.1 and 640x360 Main@3.0, both 30 fps.
var (
	sps720 = []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60}
	sps360 = []byte{0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb}
)

// testAST is the availability start time of the golden streams.
var testAST = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	videoTS  = 90000
	audioTS  = 48000
	aacFrame = 1024
	segTgt   = 2 * time.Second
	partTgt  = 500 * time.Millisecond
)

// fixture builds a stream through the store's writer API, the way the
// segmenter does: every rendition is cut at the same times (audio at the
// first AAC frame boundary at or after the video cut), republishes continue
// the media timeline, and each segment's ProgramDateTime is the wall clock at
// which its first frame was received.
type fixture struct {
	t      testing.TB
	store  *store.Store
	st     *store.Stream
	ast    time.Time
	rends  []*store.Rendition
	infos  []store.RenditionInfo
	inits  [][]byte
	end    time.Duration // media time the next segments start at
	offset time.Duration // wall clock - ast - media time, for the current publish
	jitter func(rendition int, msn uint64) time.Duration
	size   int // bytes per video segment of the first rendition
}

func newFixture(t testing.TB, window int) *fixture {
	t.Helper()
	s := store.New(store.Config{Window: window})
	f := &fixture{t: t, store: s, st: s.Begin("live/test"), ast: testAST, size: 500_000}
	// Frames received before the publish was registered: the first frame
	// arrived 20ms before Started().
	f.offset = -20 * time.Millisecond
	return f
}

func (f *fixture) video(name string, sps []byte) int {
	c := &media.H264{SPS: sps, PPS: []byte{0x68, 0xee, 0x3c, 0x80}}
	vi, err := media.ParseVideoInfo(c)
	if err != nil {
		f.t.Fatal(err)
	}
	info := store.RenditionInfo{
		Name: name, Kind: media.KindVideo, Codec: c, Timescale: videoTS,
		Width: vi.Width, Height: vi.Height, FrameRate: vi.FrameRate,
		SegmentTarget: segTgt, PartTarget: partTgt,
	}
	return f.add(info, append([]byte("init:"), sps...))
}

func (f *fixture) audio(name string) int {
	info := store.RenditionInfo{
		Name: name, Kind: media.KindAudio, Timescale: audioTS,
		Codec:      &media.AAC{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2}},
		SampleRate: 48000, Channels: 2,
		SegmentTarget: segTgt, PartTarget: partTgt,
	}
	return f.add(info, []byte("init:aac"))
}

func (f *fixture) add(info store.RenditionInfo, init []byte) int {
	r := f.st.AddRendition(info)
	r.SetInit(info, init)
	f.rends = append(f.rends, r)
	f.infos = append(f.infos, info)
	f.inits = append(f.inits, init)
	return len(f.rends) - 1
}

// setInit gives rendition i a new codec configuration (a new init segment).
func (f *fixture) setInit(i int, info store.RenditionInfo, init []byte) {
	f.infos[i], f.inits[i] = info, init
	f.rends[i].SetInit(info, init)
}

// span returns rendition i's segment from media time from to to, in ticks.
func (f *fixture) span(i int, from, to time.Duration) (base, d uint64) {
	ts := f.infos[i].Timescale
	base, end := ceilTicks(from, ts), ceilTicks(to, ts)
	if f.infos[i].Kind == media.KindAudio {
		base, end = roundUp(base, aacFrame), roundUp(end, aacFrame)
	}
	return base, end - base
}

func ceilTicks(d time.Duration, ts uint32) uint64 {
	t := store.DurationToTicks(d, ts)
	if store.TicksToDuration(t, ts) < d {
		t++
	}
	return t
}

func roundUp(v, m uint64) uint64 { return (v + m - 1) / m * m }

// pdt is the wall clock at which rendition i's frame at base was received.
func (f *fixture) pdt(i int, base uint64) time.Time {
	at := f.ast.Add(f.offset + store.TicksToDuration(base, f.infos[i].Timescale))
	if f.infos[i].Kind == media.KindAudio {
		at = at.Add(7 * time.Millisecond)
	}
	if f.jitter != nil {
		at = at.Add(f.jitter(i, f.rends[i].Snapshot().NextMSN()))
	}
	return at
}

// step appends one complete segment of duration d to every rendition, or a
// gap to those listed in gaps.
func (f *fixture) step(d time.Duration, gaps ...int) {
	f.t.Helper()
	from, to := f.end, f.end+d
	for i, r := range f.rends {
		base, ticks := f.span(i, from, to)
		if contains(gaps, i) {
			if err := r.AddGap(f.pdt(i, base), base, ticks); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		if _, err := r.StartSegment(f.pdt(i, base), base); err != nil {
			f.t.Fatal(err)
		}
		f.parts(i, d, 4)
		if err := r.FinishSegment(ticks); err != nil {
			f.t.Fatal(err)
		}
	}
	f.end = to
}

// parts appends n parts covering d to rendition i's open segment.
func (f *fixture) parts(i int, d time.Duration, n int) {
	f.t.Helper()
	size := f.size / (i + 1)
	if f.infos[i].Kind == media.KindAudio {
		size = 32_000
	}
	size = int(int64(size) * int64(d) / int64(segTgt))
	buf := make([]byte, size/n)
	for j := range n {
		if _, err := f.rends[i].AppendPart(buf, d/time.Duration(n), j == 0); err != nil {
			f.t.Fatal(err)
		}
	}
}

// open starts a segment in every rendition and appends parts of partTgt.
func (f *fixture) open(parts int) {
	f.t.Helper()
	for i, r := range f.rends {
		base, _ := f.span(i, f.end, f.end)
		if _, err := r.StartSegment(f.pdt(i, base), base); err != nil {
			f.t.Fatal(err)
		}
		f.parts(i, time.Duration(parts)*partTgt, parts)
	}
}

// republish ends the publish and starts the next one down later: the media
// timeline continues where the longest rendition ended.
func (f *fixture) republish(down time.Duration) {
	f.t.Helper()
	f.st.End()
	var end time.Duration
	for _, r := range f.rends {
		end = max(end, store.TicksToDuration(r.NextBaseTime(), r.Snapshot().Info.Timescale))
	}
	f.end = end
	st := f.store.Begin("live/test")
	if st != f.st {
		f.t.Fatal("republish started a new stream")
	}
	f.offset += down
	for i := range f.rends {
		f.rends[i] = st.AddRendition(f.infos[i])
		f.rends[i].SetInit(f.infos[i], f.inits[i])
	}
}

func (f *fixture) renditions() []Rendition {
	out := make([]Rendition, len(f.rends))
	for i, r := range f.rends {
		out[i] = Rendition{Name: r.Name(), Snap: r.Snapshot()}
	}
	return out
}

func (f *fixture) options() Options {
	return Options{
		AvailabilityStart: f.ast,
		PublishTime:       f.ast.Add(f.offset + f.end + 250*time.Millisecond),
		Window:            f.store.Config().Window,
		UTCTimingURL:      "/time",
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

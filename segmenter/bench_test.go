package segmenter

import (
	"runtime"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// BenchmarkSegmenter feeds a 30 fps video (2 s GOP, ~10 KB frames, 40 KB key
// frames, B-frame timestamps) interleaved with 48 kHz AAC through the
// segmenter into a store, one frame per iteration.
func BenchmarkSegmenter(b *testing.B) {
	vt, at := h264Track(b, 1), aacTrack(2, 48000)
	key := fakeAU(40<<10, true)
	inter := fakeAU(10<<10, false)
	aac := make([]byte, 380)
	// Eight seconds of frames (375 AAC frames exactly), replayed with
	// timestamps moving on.
	const cycle = 8 * time.Second
	pattern := interleave(
		videoFrames(vt, videoSpec{frames: 240, gop: 60, bframes: true, size: 5}, t0),
		audioFrames(at, 375, 0, t0),
	)
	st := store.New(store.Config{})
	dst := st.Begin("live/bench")
	r := newRun(New(Config{}, NewMetrics(nil), nil), dst)
	defer r.close()
	vf, af := &media.Frame{Track: vt}, &media.Frame{Track: at, Key: true, Payload: aac}

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := int64(i / len(pattern))
		p := pattern[i%len(pattern)]
		if p.Track == vt {
			shift := n * media.DurationToTicks(cycle, 90000)
			vf.DTS, vf.PTS, vf.Key = p.DTS+shift, p.PTS+shift, p.Key
			vf.Received = time.Now()
			vf.Payload = inter
			if p.Key {
				vf.Payload = key
			}
			r.handle(vf)
		} else {
			af.DTS = p.DTS + n*media.DurationToTicks(cycle, 48000)
			af.PTS = af.DTS
			af.Received = time.Now()
			r.handle(af)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/frame")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/frame")
}

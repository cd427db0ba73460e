package dash

import (
	"testing"
	"time"
)

// BenchmarkMPD renders the MPD of a two-video, one-audio ladder with a
// 6-segment window (and the store's 4 extra kept segments), as the origin
// does on every MPD request that misses its cache.
func BenchmarkMPD(b *testing.B) {
	for _, ll := range []bool{false, true} {
		name := "live"
		if ll {
			name = "lowlatency"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, 6)
			f.video("720p", sps720)
			f.video("360p", sps360)
			f.audio("audio")
			for range 12 {
				f.step(segTgt)
			}
			f.open(2)
			rs := f.renditions()
			o := f.options()
			o.LowLatency = ll
			o.History = new(History)
			o.PublishTime = testAST.Add(25 * time.Second)
			out, err := MPD(rs, o)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(out)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MPD(rs, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

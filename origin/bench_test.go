package origin

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/store"
)

// discardWriter is a ResponseWriter that keeps nothing, so that benchmarks
// measure the handler alone.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
func (d *discardWriter) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	d.n += len(b)
	return len(b), nil
}

// benchHandler is the origin over a store whose video rendition has
// realistic object sizes: 250 ms parts of ~90 kB (~3 Mb/s).
func benchHandler(b *testing.B) http.Handler {
	return benchHandlerConfig(b, Config{Gzip: true}, false)
}

// benchHandlerConfig is benchHandler with cfg, and with an audio rendition
// (4 kB parts) when audio is set.
func benchHandlerConfig(b *testing.B, cfg Config, audio bool) http.Handler {
	st := store.New(store.Config{})
	s := st.Begin(streamName)
	v := s.AddRendition(videoInfo)
	v.SetInit(videoInfo, initVideo)
	rends := []*store.Rendition{v}
	sizes := []int{90 << 10}
	if audio {
		a := s.AddRendition(audioInfo)
		a.SetInit(audioInfo, initAudio)
		rends = append(rends, a)
		sizes = append(sizes, 4<<10)
	}
	for seg := 0; seg < 4; seg++ {
		for i, r := range rends {
			if _, err := r.StartSegment(time.Now(), r.NextBaseTime()); err != nil {
				b.Fatal(err)
			}
			part := make([]byte, sizes[i])
			for p := 0; p < 4; p++ {
				if _, err := r.AppendPart(part, 250*time.Millisecond, p == 0); err != nil {
					b.Fatal(err)
				}
			}
			if seg < 3 {
				if err := r.FinishSegment(uint64(r.Snapshot().Info.Timescale)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return NewHandler(cfg, st, NewMetrics(prometheus.NewRegistry()), nil)
}

func benchServe(b *testing.B, path string, size int, hdr ...string) {
	benchServeHandler(b, benchHandler(b), path, size, hdr...)
}

func benchServeHandler(b *testing.B, h http.Handler, path string, size int, hdr ...string) {
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := &discardWriter{h: make(http.Header, 16)}
		for pb.Next() {
			clear(w.h)
			w.code, w.n = 0, 0
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK && w.code != http.StatusPartialContent || w.n == 0 {
				b.Fatalf("status %d, %d bytes", w.code, w.n)
			}
		}
	})
}

func BenchmarkServePart(b *testing.B) {
	benchServe(b, "/live/key/video/part3.2.m4s", 90<<10)
}

func BenchmarkServeSegment(b *testing.B) {
	benchServe(b, "/live/key/video/seg1.m4s", 4*90<<10)
}

func BenchmarkServePartRange(b *testing.B) {
	benchServe(b, "/live/key/video/part3.2.m4s", 1000, "Range", "bytes=0-999")
}

func BenchmarkServeMediaPlaylist(b *testing.B) {
	benchServe(b, "/live/key/video/index.m3u8", 0)
}

func BenchmarkServeMediaPlaylistGzip(b *testing.B) {
	benchServe(b, "/live/key/video/index.m3u8", 0, "Accept-Encoding", "gzip")
}

// encBench is the bench handler with encryption on (a key every 30
// segments), its objects already encrypted once (the cache is warm, as it
// is for every viewer after the first).
func encBench(b *testing.B) http.Handler {
	return benchHandlerConfig(b, Config{Gzip: true, Encryption: EncryptionConfig{Enabled: true, RotateSegments: 30}}, false)
}

func BenchmarkServePartEncrypted(b *testing.B) {
	benchServeHandler(b, encBench(b), "/live/key/video/part3.2.m4s", hlsenc.EncryptedSize(90<<10))
}

func BenchmarkServeSegmentEncrypted(b *testing.B) {
	benchServeHandler(b, encBench(b), "/live/key/video/seg1.m4s", hlsenc.EncryptedSize(4*90<<10))
}

func BenchmarkServeMediaPlaylistEncrypted(b *testing.B) {
	benchServeHandler(b, encBench(b), "/live/key/video/index.m3u8", 0)
}

// BenchmarkServePartEncryptedCold encrypts on every request (a cache too
// small to hold a part): the cost the cache saves.
func BenchmarkServePartEncryptedCold(b *testing.B) {
	h := benchHandlerConfig(b, Config{Gzip: true, Encryption: EncryptionConfig{Enabled: true, RotateSegments: 30, CacheBytes: 1}}, false)
	benchServeHandler(b, h, "/live/key/video/part3.2.m4s", hlsenc.EncryptedSize(90<<10))
}

// BenchmarkViewersFlood measures Observe on one stream while another is
// flooded with distinct clients (a client inventing User-Agents) by a
// second goroutine; the flooded stream is first filled with 100k clients,
// the old per-stream cap.
func BenchmarkViewersFlood(b *testing.B) {
	v := NewViewers(time.Minute)
	now := time.Now()
	flood := httptest.NewRequest("GET", "/live/flood/index.m3u8", nil)
	flood.RemoteAddr = "10.9.0.1:1000"
	for i := range 100_000 {
		flood.Header.Set("User-Agent", "bot/"+strconv.Itoa(i))
		v.Observe("live/flood", flood, now)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := flood.Clone(flood.Context())
		for i := 100_000; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.Header.Set("User-Agent", "bot/"+strconv.Itoa(i))
			v.Observe("live/flood", r, now)
		}
	}()
	calm := httptest.NewRequest("GET", "/live/calm/index.m3u8", nil)
	calm.RemoteAddr = "10.0.0.1:1000"
	calm.Header.Set("User-Agent", "hls.js")
	fresh := httptest.NewRequest("GET", "/live/calm/index.m3u8", nil)
	fresh.RemoteAddr = "10.0.0.2:1000"
	b.ResetTimer()
	for i := range b.N {
		v.Observe("live/calm", calm, now)
		fresh.Header.Set("User-Agent", "p/"+strconv.Itoa(i))
		v.Observe("live/flood", fresh, now)
	}
	b.StopTimer()
	close(stop)
	<-done
}

package origin

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"sync"
)

// acceptsGzip reports whether Accept-Encoding allows gzip: gzip or x-gzip
// listed with a non-zero q, or else "*" with a non-zero q.
func acceptsGzip(r *http.Request) bool {
	explicit, star := 0, 0 // 0 unlisted, 1 accepted, -1 refused (q=0)
	for _, v := range r.Header["Accept-Encoding"] {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.TrimSpace(coding)
			res := 1
			if qZero(params) {
				res = -1
			}
			switch {
			case strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip"):
				if explicit == 0 {
					explicit = res
				}
			case coding == "*":
				if star == 0 {
					star = res
				}
			}
		}
	}
	if explicit != 0 {
		return explicit > 0
	}
	return star > 0
}

// qZero reports whether content-coding parameters carry q=0 (0, 0.0, 0.000).
func qZero(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || v[0] != '0' {
			return false
		}
		return strings.Trim(v[1:], ".0") == ""
	}
	return false
}

// newGzipWriter is the New of handler.gzipWriters: the fastest level, as
// playlists are small and compressed once per version.
func newGzipWriter() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}

// gzipped returns the gzip encoding of body, compressed once with a writer
// from writers.
func (e *cacheEntry) gzipped(writers *sync.Pool) []byte {
	e.gzOnce.Do(func() {
		var buf bytes.Buffer
		buf.Grow(len(e.body)/3 + 64)
		zw := writers.Get().(*gzip.Writer)
		zw.Reset(&buf)
		_, _ = zw.Write(e.body)
		_ = zw.Close()
		zw.Reset(nil)
		writers.Put(zw)
		e.gz = buf.Bytes()
	})
	return e.gz
}

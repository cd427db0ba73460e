package spool

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/s3test"
)

// segment is a 2 MB CMAF segment's worth of bytes.
func segment(b *testing.B) []byte {
	b.Helper()
	data := make([]byte, 2<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkSpoolAdd measures Add of a 2 MB segment: two files written,
// unsynced, the meta renamed. Nothing is committed nor uploaded (no Run);
// past the 1 GiB cap the oldest entries are dropped.
func BenchmarkSpoolAdd(b *testing.B) {
	h := openSpool(b, "", Config{}, newLocal(b))
	data := segment(b)
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		if err := h.s.Add(fmt.Sprintf("live/cam1/s1/720p/seg%d.m4s", i), data, "video/iso.segment"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUploadLatency measures, against versitygw on loopback, the
// time from Add of a 2 MB segment to its OnStored (spool: written to the
// spool, committed CommitInterval later, dispatched, PUT), and a Put of
// it straight to the backend (put), one at a time, and reports their p50
// and p99.
func BenchmarkUploadLatency(b *testing.B) {
	srv := s3test.Start(b)
	backend := newS3(b, srv)
	data := segment(b)

	b.Run("spool", func(b *testing.B) {
		stored := make(chan string, 1)
		h := openSpool(b, "", Config{}, backend)
		h.s.cfg.OnStored = func(key string, _ int64) { stored <- key }
		h.run()
		b.SetBytes(int64(len(data)))
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("bench/spool/seg%d.m4s", i)
			start := time.Now()
			if err := h.s.Add(key, data, "video/iso.segment"); err != nil {
				b.Fatal(err)
			}
			if got := <-stored; got != key {
				b.Fatalf("stored %s, want %s", got, key)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	b.Run("put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var lat []time.Duration
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			if err := backend.Put(b.Context(), fmt.Sprintf("bench/put/seg%d.m4s", i), bytes.NewReader(data), int64(len(data)), "video/iso.segment"); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
}

// reportPercentiles reports the p50 and p99 of lat in milliseconds.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

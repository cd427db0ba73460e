package server_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/store"
)

// TestLiveRTMPToDASH publishes with ffmpeg over RTMP (1s GOP) and plays the
// stream back over low-latency DASH: ffmpeg's dash demuxer decodes ten
// seconds from manifest.mpd while the test checks the MPD against the store,
// the MPD's and /time's headers, and that the segment at the live edge is
// delivered chunk by chunk while it is being written.
func TestLiveRTMPToDASH(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		c.Segmenter.Window = 10
		c.SRT.Address, c.RTSP.Address = "", "" // RTMP only: no fixed ports
	})
	testpeer.PublishRTMP(t, s.rtmpURL("dash"), 25*time.Second, 30)

	mpdURL := s.originURL("/live/dash/manifest.mpd")
	testpeer.WaitFor(t, 10*time.Second, "the MPD", func() bool { return get(t, mpdURL).status == http.StatusOK })
	var stream *store.Stream
	testpeer.WaitFor(t, 10*time.Second, "two complete segments in each rendition", func() bool {
		var ok bool
		if stream, ok = s.Store().Stream("live/dash"); !ok {
			return false
		}
		rs := stream.Renditions()
		for _, r := range rs {
			if len(r.Snapshot().Segments) < 2 {
				return false
			}
		}
		return len(rs) == 2
	})

	// A real player reads the stream live while the rest of the test runs.
	// ffmpeg's dash demuxer plays the last Period (there is one here).
	reader := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats",
		"-i", mpdURL, "-t", "10", "-progress", "pipe:1", "-f", "null", "-")
	var readerOut, readerErr testpeer.LogBuffer
	reader.Stdout, reader.Stderr = &readerOut, &readerErr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Wait() }()
	defer func() { _ = reader.Process.Kill() }()

	t.Run("headers", func(t *testing.T) {
		r := get(t, mpdURL)
		for k, want := range map[string]string{
			"Content-Type":                "application/dash+xml",
			"Cache-Control":               "public, max-age=1",
			"Access-Control-Allow-Origin": "*",
			"Vary":                        "Accept-Encoding",
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s %q, want %q", k, got, want)
			}
		}
		etag := r.header.Get("ETag")
		req, _ := http.NewRequest(http.MethodGet, mpdURL, nil)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client leaves the body compressed
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if body, err := io.ReadAll(zr); err != nil || !bytes.HasPrefix(body, []byte("<?xml")) {
			t.Fatalf("gzipped MPD: %v\n%s", err, body)
		}
		// Revalidation: 304 while unchanged (the MPD changes with every
		// part, so the tag may have moved on: then 200 with another one).
		req, _ = http.NewRequest(http.MethodGet, mpdURL, nil)
		req.Header.Set("If-None-Match", etag)
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified && (resp2.StatusCode != http.StatusOK || resp2.Header.Get("ETag") == etag) {
			t.Errorf("If-None-Match %s: %d, ETag %q", etag, resp2.StatusCode, resp2.Header.Get("ETag"))
		}
	})

	t.Run("timeline matches the store", func(t *testing.T) {
		// Until an MPD lists the segment being written (low latency),
		// which it does once that segment has a part.
		deadline := time.Now().Add(5 * time.Second)
		for !checkTimeline(t, stream, get(t, mpdURL).body) {
			if t.Failed() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no MPD listed the segment being written")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("time", func(t *testing.T) {
		for _, path := range []string{"/time", "/live/dash/time"} {
			before := time.Now().UTC().Truncate(time.Millisecond)
			r := get(t, s.originURL(path))
			after := time.Now().UTC()
			got, err := time.Parse("2006-01-02T15:04:05.000Z", string(r.body))
			if r.status != 200 || err != nil || got.Before(before) || got.After(after) {
				t.Errorf("%s: %d %q (%v), want a time within [%s, %s]", path, r.status, r.body, err, before, after)
			}
			if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: headers %v", path, r.header)
			}
		}
	})

	t.Run("live edge segment is streamed", func(t *testing.T) {
		video, _ := stream.Rendition("video")
		// The segment after the one being written: the request waits for
		// it to start, then gets each part as it is appended.
		msn := video.Snapshot().NextMSN()
		url := s.originURL(fmt.Sprintf("/live/dash/video/seg%d.m4s", msn))
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("status %d, Content-Length %d, Transfer-Encoding %v", resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
		}
		head := make([]byte, 8)
		if _, err := io.ReadFull(resp.Body, head); err != nil || string(head[4:]) != "moof" {
			t.Fatalf("first chunk %q: %v", head, err)
		}
		// The first chunk is here; the segment is still being written.
		seg, ok := video.Snapshot().Segment(msn)
		if !ok || seg.Complete {
			t.Fatalf("segment %d complete (%v) before its first chunk was read", msn, ok)
		}
		partsAtFirstChunk := len(seg.Parts)
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body := slices.Concat(head, rest)
		seg, ok = video.Snapshot().Segment(msn)
		if !ok || !seg.Complete || !bytes.Equal(body, seg.Data) {
			t.Fatalf("streamed %d bytes; the store's segment %d: complete %v, %d bytes", len(body), msn, ok && seg.Complete, len(seg.Data))
		}
		whole := get(t, url)
		if !bytes.Equal(whole.body, body) || whole.header.Get("Content-Length") != fmt.Sprint(len(body)) || whole.header.Get("ETag") != resp.Header.Get("ETag") {
			t.Errorf("complete segment %d: %d bytes, headers %v", msn, len(whole.body), whole.header)
		}
		t.Logf("segment %d: first chunk read when it had %d of its %d parts", msn, partsAtFirstChunk, len(seg.Parts))
	})

	select {
	case err := <-readerDone:
		if err != nil || strings.TrimSpace(readerErr.String()) != "" {
			t.Fatalf("ffmpeg reading the live MPD: %v\n%s", err, readerErr.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatal("ffmpeg reader did not finish")
	}
	if d := progressSeconds(readerOut.String()); d < 9.9 {
		t.Fatalf("ffmpeg decoded %.2fs of the live MPD, want 10s", d)
	}

	t.Run("metrics", func(t *testing.T) {
		for _, name := range []string{
			`headwater_origin_requests_total{object="mpd",status="200"}`,
			`headwater_origin_requests_total{object="time",status="200"}`,
			`headwater_origin_requests_total{object="segment",status="200"}`,
			`headwater_stream_viewers{stream="live/dash"}`,
		} {
			if v := metricValue(t, s, name); v <= 0 {
				t.Errorf("metric %s = %v", name, v)
			}
		}
	})
}

// checkTimeline checks a live MPD against the store: one Period starting at
// the stream's start, low-latency signalling, and every Representation's
// SegmentTimeline listing the store's segments under their MSNs with their
// tfdt and durations. It reports whether every Representation listed the
// segment being written (still open after the MPD was fetched).
func checkTimeline(t *testing.T, stream *store.Stream, body []byte) (openListed bool) {
	t.Helper()
	m, err := mpd.ReadFromString(string(body))
	if err != nil {
		t.Fatal(err)
	}
	if m.GetType() != "dynamic" || len(m.Periods) != 1 || len(m.Periods[0].AdaptationSets) != 2 {
		t.Fatalf("MPD shape: type %s, %d periods", m.GetType(), len(m.Periods))
	}
	if want := stream.Started().UTC().Truncate(time.Millisecond).Format(mpd.RFC3339MS); string(m.AvailabilityStartTime) != want {
		t.Errorf("availabilityStartTime %s, want the stream's start %s", m.AvailabilityStartTime, want)
	}
	if len(m.ServiceDescription) != 1 || len(m.UTCTimings) != 1 || m.UTCTimings[0].Value != "time" {
		t.Errorf("low-latency signalling: %d ServiceDescriptions, UTCTiming %+v", len(m.ServiceDescription), m.UTCTimings)
	}
	openListed = true
	var listed []string
	for _, as := range m.Periods[0].AdaptationSets {
		for _, rep := range as.Representations {
			rend, ok := stream.Rendition(rep.Id)
			if !ok {
				t.Fatalf("representation %q is no rendition", rep.Id)
			}
			snap := rend.Snapshot() // taken after the MPD
			st := rep.SegmentTemplate
			if st == nil || st.SegmentTimeline == nil || st.Timescale == nil || *st.Timescale != snap.Info.Timescale ||
				st.AvailabilityTimeComplete == nil || *st.AvailabilityTimeComplete {
				t.Fatalf("%s: template %+v", rep.Id, st)
			}
			n := uint64(*st.StartNumber)
			var cur uint64
			var entries int
			var last *store.Segment
			for i, s := range st.SegmentTimeline.S {
				if s.T != nil {
					cur = *s.T
				} else if i == 0 {
					t.Fatalf("%s: first S without t", rep.Id)
				}
				for range s.R + 1 {
					seg, ok := snap.Segment(n)
					switch {
					case !ok:
						t.Errorf("%s: segment %d of the MPD is not in the store", rep.Id, n)
					case seg.BaseTime != cur:
						t.Errorf("%s: segment %d at t=%d in the MPD, tfdt %d in the store", rep.Id, n, cur, seg.BaseTime)
					case seg.Complete && seg.DurationTicks != s.D && n+2 < snap.NextMSN():
						// (the last entries may have been open when the MPD was made)
						t.Errorf("%s: segment %d lasts %d in the MPD, %d in the store", rep.Id, n, s.D, seg.DurationTicks)
					}
					last = seg
					cur += s.D
					n++
					entries++
				}
			}
			if open := snap.NextMSN() - 1; n < open || entries < 2 || entries > 11 {
				t.Errorf("%s: MPD lists %d segments up to %d; the store is at %d", rep.Id, entries, n-1, open)
			}
			if last == nil || last.Complete {
				openListed = false
			} else {
				listed = append(listed, fmt.Sprintf("%s: segments %d..%d listed, %d being written", rep.Id, uint64(*st.StartNumber), n-1, last.MSN))
			}
		}
	}
	if openListed {
		t.Log(strings.Join(listed, "; "))
	}
	return openListed
}

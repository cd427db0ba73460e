package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/dash"
	"github.com/headwater-live/headwater/store"
)

const mpdPath = "/live/key/manifest.mpd"

func parseMPD(t testing.TB, body []byte) *mpd.MPD {
	t.Helper()
	m, err := mpd.ReadFromString(string(body))
	if err != nil {
		t.Fatalf("parse MPD: %v\n%s", err, body)
	}
	return m
}

// timeline expands a SegmentTemplate's timeline into (number, t, d).
func timeline(st *mpd.SegmentTemplateType) (nums []uint64, ts, ds []uint64) {
	n := uint64(0)
	if st.StartNumber != nil {
		n = uint64(*st.StartNumber)
	}
	var cur uint64
	for _, s := range st.SegmentTimeline.S {
		if s.T != nil {
			cur = *s.T
		}
		for range s.R + 1 {
			nums, ts, ds = append(nums, n), append(ts, cur), append(ds, s.D)
			n++
			cur += s.D
		}
	}
	return nums, ts, ds
}

func TestMPD(t *testing.T) {
	for _, ll := range []bool{true, false} {
		t.Run(fmt.Sprintf("lowlatency=%v", ll), func(t *testing.T) {
			cfg := Config{Gzip: true, DASHLowLatency: ll, Cache: CacheConfig{PlaylistMaxAge: 1 * time.Second, NotFoundMaxAge: 2 * time.Second}}
			f := newFixture(t, cfg, store.Config{})
			v := NewViewers(time.Minute)
			WithViewers(v)(f.h)

			r := f.get(mpdPath, "Origin", "https://player.example")
			expectStatus(t, r, 200)
			for k, want := range map[string]string{
				"Content-Type":                "application/dash+xml",
				"Cache-Control":               "public, max-age=1",
				"Access-Control-Allow-Origin": "*",
				"Vary":                        "Accept-Encoding",
			} {
				if got := r.Header.Get(k); got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			if etag := r.Header.Get("ETag"); !strings.HasPrefix(etag, `"`) || len(etag) < 3 || r.Header.Get("Last-Modified") == "" {
				t.Errorf("validators: ETag %q, Last-Modified %q", etag, r.Header.Get("Last-Modified"))
			}
			m := parseMPD(t, r.body)
			if m.GetType() != "dynamic" || len(m.Periods) != 1 {
				t.Fatalf("type %s, %d periods", m.GetType(), len(m.Periods))
			}
			if want := f.stream.Started().UTC().Truncate(time.Millisecond).Format(mpd.RFC3339MS); string(m.AvailabilityStartTime) != want {
				t.Errorf("availabilityStartTime %s, want %s", m.AvailabilityStartTime, want)
			}
			if len(m.UTCTimings) != 1 || m.UTCTimings[0].SchemeIdUri != dash.SchemeUTCHTTPISO || m.UTCTimings[0].Value != "time" {
				t.Errorf("UTCTiming %+v", m.UTCTimings)
			}
			if got := strings.Contains(string(m.Profiles), dash.ProfileLowLatency); got != ll {
				t.Errorf("profiles %q (low latency %v)", m.Profiles, ll)
			}
			// Every Representation lists the store's segments by MSN and
			// tfdt: the complete ones, and the open one in low-latency mode.
			for _, as := range m.Periods[0].AdaptationSets {
				for _, rep := range as.Representations {
					rend, ok := f.stream.Rendition(rep.Id)
					if !ok {
						t.Fatalf("unknown representation %q", rep.Id)
					}
					st := rep.SegmentTemplate
					if st == nil || st.Media != rep.Id+"/seg$Number$.m4s" || st.Initialization != rep.Id+"/init.mp4" {
						t.Fatalf("%s: template %+v", rep.Id, st)
					}
					nums, ts, ds := timeline(st)
					snap := rend.Snapshot()
					want := len(snap.Segments)
					if ll {
						want++
					}
					if len(nums) != want {
						t.Fatalf("%s: timeline numbers %v, want %d segments", rep.Id, nums, want)
					}
					for i, n := range nums {
						seg, ok := snap.Segment(n)
						if !ok || seg.BaseTime != ts[i] || seg.Complete && seg.DurationTicks != ds[i] {
							t.Errorf("%s: timeline entry %d (t=%d d=%d) does not match the store", rep.Id, n, ts[i], ds[i])
						}
						if seg.Complete {
							// The template's URLs are the origin's objects.
							expectStatus(t, f.get("/live/key/"+strings.ReplaceAll(st.Media, "$Number$", fmt.Sprint(n))), 200)
						}
					}
					expectStatus(t, f.get("/live/key/"+st.Initialization), 200)
				}
			}
			// UTCTiming resolves against the MPD's URL.
			expectStatus(t, f.get("/live/key/"+m.UTCTimings[0].Value), 200)
			if n := v.Count("live/key", time.Now()); n != 1 {
				t.Errorf("viewers %d, want 1", n)
			}

			// Same content: same bytes (publishTime included) and ETag; 304.
			etag := r.Header.Get("ETag")
			r2 := f.get(mpdPath)
			if !bytes.Equal(r2.body, r.body) || r2.Header.Get("ETag") != etag {
				t.Error("MPD changed without content change")
			}
			r3 := f.get(mpdPath, "If-None-Match", etag)
			expectStatus(t, r3, 304)
			if r3.Header.Get("Cache-Control") != "public, max-age=1" || r3.Header.Get("ETag") != etag {
				t.Errorf("304 headers %v", r3.Header)
			}
			// gzip
			gz := f.get(mpdPath, "Accept-Encoding", "gzip")
			if gz.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, gz.body), r.body) || gz.Header.Get("ETag") == etag {
				t.Errorf("gzip: encoding %q, ETag %q", gz.Header.Get("Content-Encoding"), gz.Header.Get("ETag"))
			}
			expectStatus(t, f.get(mpdPath, "Accept-Encoding", "gzip", "If-None-Match", gz.Header.Get("ETag")), 304)
			// HEAD
			head := f.do(http.MethodHead, mpdPath)
			if head.StatusCode != 200 || len(head.body) != 0 || head.Header.Get("ETag") != etag {
				t.Errorf("HEAD: %d, %d bytes, ETag %q", head.StatusCode, len(head.body), head.Header.Get("ETag"))
			}

			// A new part is new content (the MPD is keyed on the snapshot
			// versions, like the playlists), a new segment too.
			f.appendPart(f.video)
			f.appendPart(f.audio)
			if f.get(mpdPath).Header.Get("ETag") == etag {
				t.Error("ETag unchanged after a part")
			}
			f.addSegment(1, false)
			r4 := f.get(mpdPath)
			if r4.Header.Get("ETag") == etag {
				t.Error("ETag unchanged after a new segment")
			}
			if m4 := parseMPD(t, r4.body); m4.PublishTime == m.PublishTime {
				t.Error("publishTime unchanged after a new segment")
			}
		})
	}
}

func TestMPDNotFound(t *testing.T) {
	cfg := Config{Gzip: true, DASHLowLatency: true, Cache: CacheConfig{NotFoundMaxAge: 2 * time.Second}}
	f := newFixture(t, cfg, store.Config{})
	for _, path := range []string{"/live/nope/manifest.mpd", "/live/key/video/manifest.mpd", "/manifest.mpd", "/live/key/manifest.mpd/x"} {
		r := f.get(path)
		expectStatus(t, r, 404)
		if got := r.Header.Get("Cache-Control"); got != "public, max-age=2" {
			t.Errorf("%s: Cache-Control %q", path, got)
		}
	}
	expectStatus(t, f.get("/live/"+strings.Repeat("a", 200)+"/manifest.mpd"), 400)

	// Before media: 404 (ErrNoMedia), with the not-found max-age.
	st := f.st.Begin("live/new")
	v := st.AddRendition(videoInfo)
	a := st.AddRendition(audioInfo)
	check := func(want int) {
		t.Helper()
		r := f.get("/live/new/manifest.mpd")
		expectStatus(t, r, want)
		if want == 404 && r.Header.Get("Cache-Control") != "public, max-age=2" {
			t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
		}
	}
	check(404) // no init
	v.SetInit(videoInfo, initVideo)
	a.SetInit(audioInfo, initAudio)
	check(404) // no segment
	for _, r := range []*store.Rendition{v, a} {
		if _, err := r.StartSegment(time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}
	check(404) // open segments without parts
	if _, err := v.AppendPart(partData("video", 0, 0), 250*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	check(404) // the Period lacks audio
	if _, err := a.AppendPart(partData("audio", 0, 0), 250*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	check(200) // low latency: the open segments are listed
}

func TestMPDEnded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		final bool
	}{
		{"within grace", 0, false},
		{"final", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Gzip: true, DASHLowLatency: true, DASHEndGrace: tc.grace,
				Cache: CacheConfig{PlaylistMaxAge: time.Second, EndedMaxAge: 90 * time.Second}}
			f := newFixture(t, cfg, store.Config{})
			f.stream.End()
			r := f.get(mpdPath)
			expectStatus(t, r, 200)
			m := parseMPD(t, r.body)
			cc := r.Header.Get("Cache-Control")
			if tc.final {
				if cc != "public, max-age=90" || m.MinimumUpdatePeriod != nil || m.MediaPresentationDuration == nil {
					t.Errorf("final MPD: Cache-Control %q, minimumUpdatePeriod %v, duration %v", cc, m.MinimumUpdatePeriod, m.MediaPresentationDuration)
				}
			} else if cc != "public, max-age=1" || m.MinimumUpdatePeriod == nil {
				t.Errorf("MPD within the end grace: Cache-Control %q, minimumUpdatePeriod %v", cc, m.MinimumUpdatePeriod)
			}
		})
	}
}

func TestTime(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	f := newFixture(t, Config{Gzip: true}, store.Config{})
	f.h.m = m
	for _, path := range []string{"/time", "/live/key/time", "/live/nope/time"} {
		before := time.Now().Add(-time.Millisecond)
		r := f.get(path, "Origin", "https://player.example", "Accept-Encoding", "gzip")
		after := time.Now()
		expectStatus(t, r, 200)
		got, err := time.Parse(timeFormat, string(r.body))
		if err != nil || !strings.HasSuffix(string(r.body), "Z") || len(r.body) != len("2006-01-02T15:04:05.000Z") {
			t.Fatalf("%s: body %q: %v", path, r.body, err)
		}
		if got.Before(before) || got.After(after) {
			t.Errorf("%s: time %s not within [%s, %s]", path, got, before, after)
		}
		for k, want := range map[string]string{
			"Cache-Control":               "no-store",
			"Content-Type":                "text/plain; charset=utf-8",
			"Access-Control-Allow-Origin": "*",
			"Content-Encoding":            "",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", path, k, got, want)
			}
		}
		head := f.do(http.MethodHead, path)
		if head.StatusCode != 200 || len(head.body) != 0 {
			t.Errorf("HEAD %s: %d, body %q", path, head.StatusCode, head.body)
		}
	}
	expectStatus(t, f.do(http.MethodPost, "/time"), 405)
	expectStatus(t, f.get("/time/x"), 404)
	if n := testutil.ToFloat64(m.requests.WithLabelValues("time", "200")); n != 6 {
		t.Errorf(`requests{object="time",status="200"} = %v, want 6`, n)
	}
	expectStatus(t, f.get(mpdPath), 200)
	expectStatus(t, f.get("/live/nope/manifest.mpd"), 404)
	if a, b := testutil.ToFloat64(m.requests.WithLabelValues("mpd", "200")), testutil.ToFloat64(m.requests.WithLabelValues("mpd", "404")); a != 1 || b != 1 {
		t.Errorf(`requests{object="mpd"}: %v 200, %v 404`, a, b)
	}
}

// streamed is a GET whose body the test reads piece by piece.
type streamed struct {
	t    testing.TB
	resp *http.Response
}

// startGet sends GET path in a goroutine; the channel yields the response
// once its headers have arrived.
func (f *fixture) startGet(path string, hdr ...string) <-chan *streamed {
	ch := make(chan *streamed, 1)
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	go func() {
		resp, err := f.client.Do(req)
		if err != nil {
			f.t.Errorf("GET %s: %v", path, err)
			close(ch)
			return
		}
		f.t.Cleanup(func() { resp.Body.Close() })
		ch <- &streamed{t: f.t, resp: resp}
	}()
	return ch
}

func headers(t testing.TB, ch <-chan *streamed) *streamed {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.FailNow()
		}
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("response headers did not arrive")
	}
	return nil
}

func noHeadersYet(t testing.TB, ch <-chan *streamed) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("response (%v) before the segment had a part", s)
	default:
	}
}

// read reads exactly n bytes of the body; it fails the test if they do not
// arrive (the server did not flush them).
func (s *streamed) read(n int) []byte {
	s.t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(s.resp.Body, b)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			s.t.Fatalf("reading %d bytes: %v", n, r.err)
		}
		return r.b
	case <-time.After(20 * time.Second):
		s.t.Fatalf("%d bytes did not arrive", n)
	}
	return nil
}

// rest reads the body to its end.
func (s *streamed) rest() ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := io.ReadAll(s.resp.Body)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(20 * time.Second):
		s.t.Fatal("the body did not end")
	}
	return nil, nil
}

// TestStreamOpenSegment: a client reading the live-edge segment receives
// each chunk before the segment is complete. The order is the test's: it
// reads the parts written so far, and only then appends the next part, and
// only after reading that one finishes the segment.
func TestStreamOpenSegment(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: time.Minute}, store.Config{})
	// Segment 3 is open with parts 0 and 1.
	s := headers(t, f.startGet("/live/key/video/seg3.m4s"))
	if s.resp.StatusCode != 200 || s.resp.ContentLength != -1 || len(s.resp.TransferEncoding) != 1 || s.resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("status %d, Content-Length %d, Transfer-Encoding %v", s.resp.StatusCode, s.resp.ContentLength, s.resp.TransferEncoding)
	}
	hdr := s.resp.Header
	if hdr.Get("Cache-Control") != "public, max-age=86400, immutable" || hdr.Get("Content-Type") != "video/mp4" ||
		hdr.Get("Last-Modified") != "" || hdr.Get("Content-Length") != "" || hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers %v", hdr)
	}
	var got []byte
	got = append(got, s.read(len(segData("video", 3, 2)))...) // parts 0 and 1, segment still open
	f.appendPart(f.video)                                     // part 2
	got = append(got, s.read(len(partData("video", 3, 2)))...)
	if f.video.Snapshot().Open == nil {
		t.Fatal("segment complete too early")
	}
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	tail, err := s.rest()
	if err != nil {
		t.Fatalf("end of the body: %v", err)
	}
	got = append(got, tail...)
	want := segData("video", 3, 3)
	if !bytes.Equal(got, want) {
		t.Fatalf("streamed body %q, want %q", got, want)
	}
	// The complete segment: the same bytes under the same strong ETag.
	whole := f.get("/live/key/video/seg3.m4s")
	expectStatus(t, whole, 200)
	if !bytes.Equal(whole.body, want) || whole.Header.Get("ETag") != hdr.Get("ETag") || whole.ContentLength != int64(len(want)) {
		t.Errorf("complete segment: %d bytes, ETag %q (streamed %q)", len(whole.body), whole.Header.Get("ETag"), hdr.Get("ETag"))
	}
}

// TestStreamNextSegment: the segment after the open one is waited for and
// streamed from its first part.
func TestStreamNextSegment(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: time.Minute}, store.Config{})
	waiting := f.waitHook()
	ch := f.startGet("/live/key/audio/seg4.m4s")
	signalled(t, waiting)
	noHeadersYet(t, ch)
	if err := f.audio.FinishSegment(24000); err != nil {
		t.Fatal(err)
	}
	noHeadersYet(t, ch)
	if _, err := f.audio.StartSegment(time.Now(), f.audio.NextBaseTime()); err != nil {
		t.Fatal(err)
	}
	noHeadersYet(t, ch)
	f.appendPart(f.audio)
	s := headers(t, ch)
	if s.resp.StatusCode != 200 || s.resp.ContentLength != -1 || s.resp.Header.Get("Content-Type") != "audio/mp4" {
		t.Fatalf("status %d, Content-Length %d, %v", s.resp.StatusCode, s.resp.ContentLength, s.resp.Header)
	}
	first := s.read(len(partData("audio", 4, 0)))
	f.appendPart(f.audio)
	if err := f.audio.FinishSegment(12000); err != nil {
		t.Fatal(err)
	}
	tail, err := s.rest()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Concat(first, tail); !bytes.Equal(got, segData("audio", 4, 2)) {
		t.Fatalf("body %q", got)
	}

	// The open segment before its first part waits too.
	if _, err := f.audio.StartSegment(time.Now(), f.audio.NextBaseTime()); err != nil {
		t.Fatal(err)
	}
	ch = f.startGet("/live/key/audio/seg5.m4s")
	signalled(t, waiting)
	noHeadersYet(t, ch)
	f.appendPart(f.audio)
	s = headers(t, ch)
	s.read(len(partData("audio", 5, 0)))
	if err := f.audio.FinishSegment(6000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.rest(); err != nil {
		t.Fatal(err)
	}

	// Further in the future, behind the window, or after the end: 404 at
	// once.
	for _, path := range []string{"/live/key/audio/seg7.m4s", "/live/key/video/seg5.m4s", "/live/key/video/seg99.m4s"} {
		expectStatus(t, f.get(path), 404)
	}
	f.stream.End()
	expectStatus(t, f.get("/live/key/audio/seg6.m4s"), 404)
	select {
	case <-waiting:
		t.Error("a request that cannot be satisfied waited")
	default:
	}
}

// TestStreamStall: a segment that stops growing for BlockTimeout aborts the
// response: the client sees a truncated chunked body, an error, never a
// clean end a cache could store.
func TestStreamStall(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: 50 * time.Millisecond}, store.Config{})
	s := headers(t, f.startGet("/live/key/video/seg3.m4s"))
	got := s.read(len(segData("video", 3, 2)))
	if !bytes.Equal(got, segData("video", 3, 2)) {
		t.Fatalf("body %q", got)
	}
	if _, err := s.rest(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("end of a stalled segment: %v, want unexpected EOF", err)
	}
	// The origin still serves the segment once it completes.
	f.appendPart(f.video)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	r := f.get("/live/key/video/seg3.m4s")
	expectStatus(t, r, 200)
	if !bytes.Equal(r.body, segData("video", 3, 3)) {
		t.Errorf("body %q", r.body)
	}
}

func TestStreamHeadRangeConditional(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, BlockTimeout: time.Minute}, store.Config{})
	waiting := f.waitHook()

	// HEAD answers at once, without Content-Length.
	head := f.do(http.MethodHead, "/live/key/video/seg3.m4s")
	expectStatus(t, head, 200)
	if len(head.body) != 0 || head.ContentLength != -1 || head.Header.Get("ETag") == "" || !strings.Contains(head.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("HEAD: %d bytes, Content-Length %d, %v", len(head.body), head.ContentLength, head.Header)
	}

	// A range waits for the complete segment.
	ranged := f.blockingGet2("/live/key/video/seg3.m4s", "Range", "bytes=0-9")
	signalled(t, waiting)
	notYet(t, ranged)
	// So does a precondition.
	inm := f.blockingGet2("/live/key/video/seg3.m4s", "If-None-Match", head.Header.Get("ETag"))
	signalled(t, waiting)
	notYet(t, inm)
	f.appendPart(f.video)
	notYet(t, ranged)
	if err := f.video.FinishSegment(90000); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ranged)
	expectStatus(t, r, 206)
	whole := segData("video", 3, 3)
	if !bytes.Equal(r.body, whole[:10]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-9/%d", len(whole)) {
		t.Errorf("range: %q, Content-Range %q", r.body, r.Header.Get("Content-Range"))
	}
	expectStatus(t, receive(t, inm), 304)
}

// blockingGet2 is blockingGet with request headers.
func (f *fixture) blockingGet2(path string, hdr ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := f.client.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- result{resp: response{resp, body}, err: err}
	}()
	return ch
}

// TestShutdownAbortsStreamedSegment: a segment being streamed when the
// server shuts down is aborted, not ended as if it were complete.
func TestShutdownAbortsStreamedSegment(t *testing.T) {
	st := store.New(store.Config{})
	s := st.Begin(streamName)
	v := s.AddRendition(videoInfo)
	v.SetInit(videoInfo, initVideo)
	if _, err := v.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AppendPart([]byte("chunk"), 250*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Address: "127.0.0.1:0", BlockTimeout: time.Minute, Gzip: true}
	srv := NewServer(cfg, NewHandler(cfg, st, nil, nil), nil)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr().String() + "/live/key/video/seg0.m4s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != "chunk" {
		t.Fatalf("first chunk %q: %v", b, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("streamed segment after shutdown: %v, want unexpected EOF", err)
	}
}

// TestDASHHistories: one dash.History per stream, a new one for a new
// stream under the same name, dropped once the store forgets the stream.
func TestDASHHistories(t *testing.T) {
	f := newFixture(t, Config{Gzip: true, DASHLowLatency: true}, store.Config{EndedGrace: time.Second})
	expectStatus(t, f.get(mpdPath), 200)
	d := &f.h.histories
	now := time.Now()
	h1 := d.get(f.st, f.stream, now)
	if d.len() != 1 || d.get(f.st, f.stream, now) != h1 {
		t.Fatalf("%d histories, or not the same one", d.len())
	}
	other := f.st.Begin("live/other")
	if d.get(f.st, other, now) == h1 || d.len() != 2 {
		t.Fatal("streams share a History")
	}
	// live/key ends and is forgotten; a new live/key starts.
	f.stream.End()
	other.End()
	f.st.Sweep(time.Now().Add(time.Minute))
	if _, ok := f.st.Stream(streamName); ok {
		t.Fatal("store kept the stream")
	}
	// The new stream must start at a later instant than the old one (a
	// History is told apart by its stream's start): wait for the clock to
	// move, which on a coarse clock takes a tick.
	for !time.Now().After(f.stream.Started()) {
		time.Sleep(time.Millisecond)
	}
	next := f.st.Begin(streamName)
	if next.Started().Equal(f.stream.Started()) {
		t.Fatalf("the new stream started at the old one's instant %v", next.Started())
	}
	h2 := d.get(f.st, next, now)
	if h2 == h1 {
		t.Fatal("a new stream under the same name got the old History")
	}
	// The next sweep drops live/other.
	d.get(f.st, next, now.Add(historySweepEvery))
	if d.len() != 1 || d.get(f.st, next, now.Add(historySweepEvery)) != h2 {
		t.Fatalf("%d histories after the sweep", d.len())
	}
}

func BenchmarkServeMPD(b *testing.B) {
	for _, bc := range []struct {
		name string
		ll   bool
		hdr  []string
	}{
		{"live", false, nil},
		{"lowlatency", true, nil},
		{"lowlatency-gzip", true, []string{"Accept-Encoding", "gzip"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchHandlerConfig(b, Config{Gzip: true, DASHLowLatency: bc.ll}, true)
			benchServeHandler(b, h, mpdPath, 0, bc.hdr...)
		})
	}
}

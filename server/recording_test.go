package server_test

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/eventhook"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/thumbnail"
)

// eventSink is an events.webhook receiver that checks each request's
// signature and keeps the events in order.
type eventSink struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu     sync.Mutex
	events []eventhook.Body
}

func newEventSink(t *testing.T) (*eventSink, string) {
	t.Helper()
	k := &eventSink{t: t, secret: []byte("recording-webhook-secret")}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := auth.VerifyWebhook(k.secret, r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("events webhook: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b eventhook.Body
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("events webhook body: %v", err)
		}
		k.mu.Lock()
		k.events = append(k.events, b)
		k.mu.Unlock()
	}))
	t.Cleanup(k.srv.Close)
	file := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(file, k.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, file
}

// wait returns the payload of the first event of kind for stream.
func (k *eventSink) wait(kind, stream string, timeout time.Duration) recording.Payload {
	k.t.Helper()
	var p recording.Payload
	testpeer.WaitFor(k.t, timeout, kind+" for "+stream, func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, e := range k.events {
			if e.Event != kind {
				continue
			}
			b, _ := json.Marshal(e.Data)
			_ = json.Unmarshal(b, &p)
			if p.Stream == stream {
				return true
			}
		}
		return false
	})
	return p
}

// kinds lists the kinds received for stream, in order.
func (k *eventSink) kinds(stream string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, e := range k.events {
		b, _ := json.Marshal(e.Data)
		var p recording.Payload
		_ = json.Unmarshal(b, &p)
		if p.Stream == stream {
			out = append(out, e.Event)
		}
	}
	return out
}

// countFrames decodes url with ffmpeg and returns the video frames read.
func countFrames(t *testing.T, u string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-rw_timeout", "10000000", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", u).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", u, err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(strings.TrimSpace(string(out)), "\n")[0]))
	if err != nil {
		t.Fatalf("ffprobe %s: %q", u, out)
	}
	return n
}

// TestRecordingVOD records a 20 s RTMP publish (320x240 at 30 fps, a key
// frame a second, 1 s segments) to a directory and checks, end to end:
// the live poster is a 320x240 JPEG; events.webhook gets
// recording.started then recording.ready (signed) with the VOD paths; the
// API lists the session; the VOD multivariant lists video and audio, each
// media playlist is EXT-X-PLAYLIST-TYPE:VOD with EXT-X-ENDLIST, and every
// segment the live origin served is served byte for byte under /vod/;
// ffprobe decodes the published 600 frames (±1 GOP at the edges) from the
// HLS VOD and from its static MPD; hls.js in headless Chromium plays it
// from the start and seeks; a clip of 5..10 s lists exactly those five
// segments; thumbnails.vtt covers the recording with decodable sprites;
// and DELETE removes it (recording.deleted).
func TestRecordingVOD(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	requireChromium(t)
	sink, secretFile := newEventSink(t)
	dir := t.TempDir()
	s := startServer(t, func(c *config.Config) {
		c.Record.Enabled, c.Record.Dir = true, dir
		c.Record.PosterInterval = config.Duration(time.Second)
		c.Record.SpriteInterval = config.Duration(5 * time.Second)
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
		c.Events.Webhook, c.Events.WebhookSecretFile = sink.srv.URL, secretFile
	})
	pub := testpeer.PublishPattern(t, s.rtmpURL("rec"), "testsrc2=size=320x240:rate=30", "400k", 20*time.Second, 30)

	// While live: the poster, and every segment the origin serves.
	testpeer.WaitFor(t, 15*time.Second, "the live poster", func() bool {
		return get(t, s.originURL("/live/rec/poster.jpg")).status == http.StatusOK
	})
	r := get(t, s.originURL("/live/rec/poster.jpg"))
	img, err := jpeg.Decode(bytes.NewReader(r.body))
	if err != nil || img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
		t.Fatalf("poster: %v, %v", err, img.Bounds())
	}
	if ct, cc := r.header.Get("Content-Type"), r.header.Get("Cache-Control"); ct != "image/jpeg" || cc != "public, max-age=2" {
		t.Errorf("poster Content-Type %q, Cache-Control %q", ct, cc)
	}
	if !strings.Contains(s.logs.String(), "thumbnails: ffmpeg forked from a fork server of their own") {
		t.Error("posters are not made by ffmpeg processes forked from a fork server")
	}
	live := map[string]map[uint64][]byte{"video": {}, "audio": {}}
	for !pub.Exited() {
		for rend, segs := range live {
			m, r := mediaPlaylist(t, s.originURL("/live/rec/"+rend+"/index.m3u8"))
			for i, seg := range m.Segments {
				msn := uint64(m.MediaSequence) + uint64(i)
				if _, ok := segs[msn]; !ok && r.status == http.StatusOK {
					segs[msn] = get(t, s.originURL("/live/rec/"+rend+"/"+seg.URI)).body
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	ready := sink.wait(recording.EventReady, "live/rec", 30*time.Second)
	if kinds := sink.kinds("live/rec"); len(kinds) < 2 || kinds[0] != recording.EventStarted || kinds[1] != recording.EventReady {
		t.Errorf("events for live/rec: %v, want recording.started then recording.ready", kinds)
	}
	if ready.State != recording.StateComplete || ready.Gaps != 0 || ready.HLS != recording.VODPath("live/rec", ready.Session, "index.m3u8") {
		t.Fatalf("recording.ready payload %+v", ready)
	}
	if d := ready.Duration.D(); d < 19*time.Second || d > 21*time.Second {
		t.Errorf("recorded duration %v, want 20s ±1s", d)
	}

	var list struct{ Recordings []recording.Payload }
	if err := json.Unmarshal(get(t, s.adminURL("/api/v1/recordings?stream=live/rec")).body, &list); err != nil || len(list.Recordings) != 1 || list.Recordings[0].Session != ready.Session {
		t.Fatalf("API recordings: %+v, %v", list, err)
	}

	vod := func(object string) string { return s.originURL(recording.VODPath("live/rec", ready.Session, object)) }
	r = get(t, vod("index.m3u8"))
	pl, err := playlist.Unmarshal(r.body)
	mv, _ := pl.(*playlist.Multivariant)
	if r.status != http.StatusOK || err != nil || mv == nil || len(mv.Variants) != 1 || len(mv.Renditions) != 1 {
		t.Fatalf("VOD multivariant: %d %v\n%s", r.status, err, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=86400" {
		t.Errorf("VOD multivariant Cache-Control %q", cc)
	}
	for rend, segs := range live {
		m, r := mediaPlaylist(t, vod(rend+"/index.m3u8"))
		if m.PlaylistType == nil || *m.PlaylistType != playlist.MediaPlaylistTypeVOD || !m.Endlist {
			t.Errorf("%s VOD playlist is not a VOD with ENDLIST:\n%s", rend, r.body)
		}
		if len(segs) < 10 {
			t.Fatalf("only %d %s segments captured live", len(segs), rend)
		}
		for msn, want := range segs {
			got := get(t, vod(rend+"/"+recording.SegmentObject(msn)))
			if got.status != http.StatusOK || !bytes.Equal(got.body, want) {
				t.Errorf("%s segment %d: VOD %d, %d bytes, not the %d bytes served live", rend, msn, got.status, len(got.body), len(want))
			}
			if cc := got.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
				t.Errorf("%s segment %d Cache-Control %q", rend, msn, cc)
			}
		}
	}
	if n := countFrames(t, vod("index.m3u8")); n < 600-30 || n > 600+30 {
		t.Errorf("ffprobe decoded %d frames from the HLS VOD, want 600 ±30", n)
	}
	mpd := get(t, vod("manifest.mpd"))
	if mpd.status != http.StatusOK || !bytes.Contains(mpd.body, []byte(`type="static"`)) || bytes.Contains(mpd.body, []byte("minimumUpdatePeriod")) {
		t.Fatalf("VOD MPD %d:\n%s", mpd.status, mpd.body)
	}
	if n := countFrames(t, vod("manifest.mpd")); n < 600-30 || n > 600+30 {
		t.Errorf("ffprobe decoded %d frames from the static MPD, want 600 ±30", n)
	}

	// A clip of 5..10 s: the five 1 s segments that overlap it.
	clip, _ := mediaPlaylist(t, vod("video/index.m3u8")+"?start=5&end=10")
	if len(clip.Segments) != 5 {
		t.Errorf("clip 5..10 s lists %d segments, want 5", len(clip.Segments))
	}
	if r := get(t, vod("video/index.m3u8")+"?start=10&end=5"); r.status != http.StatusBadRequest {
		t.Errorf("a backwards clip: %d", r.status)
	}

	// hls.js plays the VOD from its start and seeks into it.
	page := playerPage(t, edgePlayerPage)
	br := startBrowser(t)
	br.do(t, "hls.js plays the VOD", 20*time.Second,
		chromedp.Navigate(page.URL+"/?src="+url.QueryEscape(vod("index.m3u8"))),
		chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 1`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if d := evalJS[float64](t, br, `document.getElementById('v').duration`); d < 19 || d > 21 {
		t.Errorf("hls.js sees a VOD of %.2f s, want 20 ±1", d)
	}
	br.do(t, "hls.js seeks to 15 s and plays on", 15*time.Second,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('v').currentTime = 15`),
		chromedp.Poll[chromedp.Void](`document.getElementById('v').currentTime > 16`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0)))
	for _, e := range evalJS[[]pageError](t, br, `window.hlsErrors`) {
		if e.Fatal {
			t.Errorf("hls.js fatal error: %+v", e)
		}
	}

	// Thumbnails: made by the sprite job once the session is ready.
	testpeer.WaitFor(t, 30*time.Second, "thumbnails.vtt", func() bool { return get(t, vod("thumbnails.vtt")).status == http.StatusOK })
	cues, err := thumbnail.ParseVTT(get(t, vod("thumbnails.vtt")).body)
	if err != nil {
		t.Fatal(err)
	}
	// One cue per 5 s, back to back, from 0 to the video's recorded end.
	vm, _ := mediaPlaylist(t, vod("video/index.m3u8"))
	var dur time.Duration
	for _, seg := range vm.Segments {
		dur += seg.Duration
	}
	if want := int((dur + 5*time.Second - 1) / (5 * time.Second)); len(cues) != want {
		t.Fatalf("thumbnails.vtt has %d cues for %v, want %d: %+v", len(cues), dur, want, cues)
	}
	for i, c := range cues {
		if c.Start != time.Duration(i)*5*time.Second || (i < len(cues)-1 && c.End != c.Start+5*time.Second) {
			t.Errorf("cue %d: %v..%v", i, c.Start, c.End)
		}
	}
	if last := cues[len(cues)-1].End; last != dur.Round(time.Millisecond) {
		t.Errorf("the last cue ends at %v, the recording at %v", last, dur)
	}
	sprite, rect, err := cues[len(cues)-1].Sprite()
	if err != nil {
		t.Fatal(err)
	}
	r = get(t, vod(sprite))
	sheet, err := jpeg.Decode(bytes.NewReader(r.body))
	if err != nil || r.header.Get("Content-Type") != "image/jpeg" || !rect.In(sheet.Bounds()) {
		t.Fatalf("sprite %s: %v %q %v not in %v", sprite, err, r.header.Get("Content-Type"), rect, sheet.Bounds())
	}

	req, _ := http.NewRequest(http.MethodDelete, s.adminURL("/api/v1/recordings/live/rec/"+ready.Session), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	if r := get(t, vod("video/index.m3u8")); r.status != http.StatusNotFound {
		t.Errorf("a deleted recording's playlist: %d", r.status)
	}
	sink.wait(recording.EventDeleted, "live/rec", 10*time.Second)
	if n := testpeer.MetricSum(t, s.Metrics(), "headwater_record_deleted_sessions_total", "reason", "api"); n != 1 {
		t.Errorf("deleted sessions metric %v", n)
	}
}

// TestRecordingEncryptedVOD: a stream served with HLS AES-128 is recorded
// in the clear (the stored segment is the store's plaintext) with a
// session key stored apart (keys/...); its VOD media playlist lists that
// key (EXT-X-KEY, sequence-number IVs), the key is refused without a
// playback token covering vod/<stream>, and ffmpeg plays the tokenised
// VOD URL, decrypting every frame; the static MPD is refused.
func TestRecordingEncryptedVOD(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	dir := t.TempDir()
	s, kr := tokenServer(t, func(c *config.Config) {
		c.HLS.Encryption.Enabled = true
		c.Record.Enabled, c.Record.Dir = true, dir
		c.Record.PosterInterval, c.Record.SpriteInterval = 0, 0
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	pub := testpeer.PublishPattern(t, s.rtmpURL("encrec"), "testsrc2=size=320x240:rate=30", "400k", 8*time.Second, 30)
	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	var sess recording.Payload
	testpeer.WaitFor(t, 30*time.Second, "the recording to be complete and stored", func() bool {
		var list struct{ Recordings []recording.Payload }
		decodeJSON(t, get(t, s.adminURL("/api/v1/recordings?stream=live/encrec")).body, &list)
		if len(list.Recordings) == 1 && list.Recordings[0].State == recording.StateComplete && list.Recordings[0].Ready {
			sess = list.Recordings[0]
			return true
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(dir, recording.KeysKey("live/encrec", sess.Session))); err != nil {
		t.Fatalf("no session key stored apart: %v", err)
	}
	vodPath := recording.VODPath("live/encrec", sess.Session, "index.m3u8")
	// A prefix claim over the stream's recordings (a stream claim covers
	// two levels below the stream: not <session>/<rendition>/<object>).
	token, err := kr.Sign("/vod/live/encrec/", time.Now().Add(5*time.Minute), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	tokenPrefix := s.originURL("/t/" + token)
	media := get(t, tokenPrefix+recording.VODPath("live/encrec", sess.Session, "video/index.m3u8"))
	m := regexp.MustCompile(`#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"\n`).FindSubmatch(media.body)
	if media.status != http.StatusOK || m == nil {
		t.Fatalf("encrypted VOD playlist %d %v:\n%s", media.status, media.header, media.body)
	}
	keyURL, err := url.Parse(tokenPrefix + recording.VODPath("live/encrec", sess.Session, "video/index.m3u8"))
	if err != nil {
		t.Fatal(err)
	}
	keyURL, _ = keyURL.Parse(string(m[1]))
	if !strings.Contains(keyURL.Path, "/keys/vod/live/encrec/"+sess.Session+"/") {
		t.Fatalf("key URI %s", keyURL)
	}
	if r := get(t, s.originURL(strings.TrimPrefix(keyURL.Path, strings.TrimPrefix(tokenPrefix, s.originURL(""))))); r.status != http.StatusForbidden {
		t.Errorf("the key without a token: %d", r.status)
	}
	key := get(t, keyURL.String())
	if key.status != http.StatusOK || len(key.body) != 16 || key.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("key with the token: %d, %d bytes, %q", key.status, len(key.body), key.header.Get("Cache-Control"))
	}
	// The recording holds plaintext; the origin serves it encrypted.
	clear, err := os.ReadFile(filepath.Join(dir, recording.MediaKey("live/encrec", sess.Session, "video", "seg2.m4s")))
	if err != nil {
		t.Fatal(err)
	}
	enc := get(t, tokenPrefix+recording.VODPath("live/encrec", sess.Session, "video/seg2.m4s"))
	k, _ := hlsenc.KeyFromBytes("k", [16]byte(key.body), [16]byte{}, true)
	plain, err := hlsenc.DecryptSegment(k, hlsenc.SequenceIV(2), enc.body)
	if err != nil || !bytes.Equal(plain, clear) || bytes.Equal(enc.body[:len(clear)], clear) {
		t.Fatalf("seg2: decrypts %v, equals the recorded plaintext %v", err, bytes.Equal(plain, clear))
	}
	if n := countFrames(t, tokenPrefix+vodPath); n < 240-30 || n > 240+30 {
		t.Errorf("ffprobe decoded %d frames of the encrypted VOD, want 240 ±30", n)
	}
	if r := get(t, tokenPrefix+recording.VODPath("live/encrec", sess.Session, "manifest.mpd")); r.status != http.StatusNotFound {
		t.Errorf("the MPD of an encrypted recording: %d", r.status)
	}
}

// TestRecordingRepublish: a publisher that leaves and comes back within
// streams.ended_grace continues the live playlists (one store stream) but
// makes a second session: two complete recordings, each with its own
// publish's segments only, the second numbered after the first; once both
// are stored, nothing of the sessions is left running.
func TestRecordingRepublish(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, func(c *config.Config) {
		c.Record.Enabled, c.Record.Dir = true, dir
		c.Record.PosterInterval, c.Record.SpriteInterval = 0, 0
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	// The server's own goroutines start asynchronously (the spool's
	// committer inside its Run goroutine): under load some start after
	// Start returns, so the baseline is taken once their number settles.
	baseline := settledGoroutines()
	for range 2 {
		pub := testpeer.PublishPattern(t, s.rtmpURL("again"), "testsrc2=size=320x240:rate=30", "400k", 5*time.Second, 30)
		if err := pub.Wait(t, 30*time.Second); err != nil {
			t.Fatalf("publisher: %v", err)
		}
		testpeer.WaitFor(t, 10*time.Second, "the publish to end", func() bool {
			_, live := s.Registry().Get("live/again")
			return !live
		})
	}
	var list struct{ Recordings []recording.Payload }
	testpeer.WaitFor(t, 30*time.Second, "two complete sessions, stored", func() bool {
		decodeJSON(t, get(t, s.adminURL("/api/v1/recordings?stream=live/again")).body, &list)
		return len(list.Recordings) == 2 && list.Recordings[0].State == recording.StateComplete && list.Recordings[1].State == recording.StateComplete &&
			list.Recordings[0].Ready && list.Recordings[1].Ready
	})
	if st, ok := s.Store().Stream("live/again"); !ok || st.Epoch() != 1 {
		t.Fatalf("the live stream was not continued by the republish")
	}
	var last uint64
	for i, rec := range list.Recordings {
		m, r := mediaPlaylist(t, s.originURL(recording.VODPath("live/again", rec.Session, "video/index.m3u8")))
		if len(m.Segments) < 4 || len(m.Segments) > 6 {
			t.Errorf("session %d lists %d segments of a 5 s publish:\n%s", i, len(m.Segments), r.body)
		}
		if i == 1 && uint64(m.MediaSequence) <= last {
			t.Errorf("the second session starts at %d, not after the first's %d", m.MediaSequence, last)
		}
		if bytes.Contains(r.body, []byte("#EXT-X-DISCONTINUITY\n")) {
			t.Errorf("session %d has a discontinuity:\n%s", i, r.body)
		}
		last = uint64(m.MediaSequence) + uint64(len(m.Segments)) - 1
	}
	testpeer.WaitFor(t, 20*time.Second, "the sessions' goroutines to end", func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= baseline
	})
}

// settledGoroutines returns the number of goroutines once it has not
// changed for three samples 200 ms apart (at most 10 s).
func settledGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 50 && same < 3; i++ {
		time.Sleep(200 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

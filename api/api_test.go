package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// sps640x360 is a real H.264 SPS (High, 640x360, 30 fps).
var sps640x360 = []byte{0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96}

type fixedViewers map[string]int

func (f fixedViewers) Count(s string, _ time.Time) int { return f[s] }

func newTestAPI(t *testing.T) (*Handler, *media.Registry, *store.Store) {
	t.Helper()
	reg := media.NewRegistry(media.RegistryConfig{})
	st := store.New(store.Config{Window: 6})
	return New(reg, st, fixedViewers{"live/a": 3}, 6, nil), reg, st
}

func do(t *testing.T, h http.Handler, method, path string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return rec, body
}

func TestStreams(t *testing.T) {
	h, reg, st := newTestAPI(t)
	video := &media.Track{ID: 1, Codec: &media.H264{SPS: sps640x360, PPS: []byte{0x68, 0xeb}}, ClockRate: 90000}
	audio := &media.Track{ID: 2, Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2}}, ClockRate: 48000}
	ms, err := reg.Publish("live/a", media.PublishInfo{Protocol: "rtmp", RemoteAddr: "127.0.0.1:5000", SessionID: "abcd"}, []*media.Track{video, audio})
	if err != nil {
		t.Fatal(err)
	}
	ms.WriteFrame(&media.Frame{Track: video, Key: true, Payload: make([]byte, 1000)})

	ss := st.Begin("live/a")
	r := ss.AddRendition(store.RenditionInfo{Name: "video", Kind: media.KindVideo, Codec: video.Codec, Timescale: 90000, Width: 640, Height: 360})
	r.SetInit(store.RenditionInfo{Name: "video", Kind: media.KindVideo, Codec: video.Codec, Timescale: 90000, Width: 640, Height: 360}, []byte("init"))
	if _, err := r.StartSegment(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AppendPart(make([]byte, 25000), 200*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	if err := r.FinishSegment(18000); err != nil {
		t.Fatal(err)
	}

	rec, body := do(t, h, "GET", "/api/v1/streams")
	if rec.Code != 200 {
		t.Fatalf("list: %d", rec.Code)
	}
	streams := body["streams"].([]any)
	if len(streams) != 1 {
		t.Fatalf("streams: %v", streams)
	}
	s := streams[0].(map[string]any)
	for k, want := range map[string]any{"name": "live/a", "live": true, "protocol": "rtmp", "remote_address": "127.0.0.1:5000", "session_id": "abcd", "viewers": 3.0, "ingest_frames": 1.0} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	tracks := s["tracks"].([]any)
	v := tracks[0].(map[string]any)
	if v["codecs"] != "avc1.64001e" || v["width"] != 640.0 || v["height"] != 360.0 || v["bitrate"] != 1e6 {
		t.Errorf("video track: %v", v)
	}
	a := tracks[1].(map[string]any)
	if a["codec"] != "aac" || a["sample_rate"] != 48000.0 || a["channels"] != 2.0 {
		t.Errorf("audio track: %v", a)
	}
	rend := s["renditions"].([]any)[0].(map[string]any)
	if rend["name"] != "video" || rend["bandwidth"] != 1e6 || rend["segments"] != 1.0 {
		t.Errorf("rendition: %v", rend)
	}

	rec, one := do(t, h, "GET", "/api/v1/streams/live/a")
	if rec.Code != 200 || one["name"] != "live/a" {
		t.Fatalf("get: %d %v", rec.Code, one)
	}

	rec, kicked := do(t, h, "DELETE", "/api/v1/streams/live/a")
	if rec.Code != http.StatusAccepted || kicked["kicked"] != "live/a" {
		t.Fatalf("kick: %d %v", rec.Code, kicked)
	}
	select {
	case <-ms.Context().Done():
	default:
		t.Fatal("kick did not cancel the stream's context")
	}
	ms.Close() // what the ingest session does when its context ends
	ss.End()

	// An ended stream stays visible (ended grace) but is no longer live.
	_, ended := do(t, h, "GET", "/api/v1/streams/live/a")
	if ended["live"] != false || ended["renditions"].([]any)[0].(map[string]any)["ended"] != true {
		t.Fatalf("ended stream: %v", ended)
	}
}

func TestErrors(t *testing.T) {
	h, _, _ := newTestAPI(t)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/v1/streams/live/nope", 404, "not_found"},
		{"DELETE", "/api/v1/streams/live/nope", 404, "not_found"},
		{"POST", "/api/v1/streams", 405, "method_not_allowed"},
		{"PUT", "/api/v1/streams/live/a", 405, "method_not_allowed"},
		{"GET", "/api/v2/whatever", 404, "not_found"},
		{"GET", "/api/v1/recordings", 404, "recording_off"},
		{"DELETE", "/api/v1/recordings/live/a/20261207T161800.123Z", 404, "recording_off"},
	} {
		rec, body := do(t, h, tc.method, tc.path)
		e, _ := body["error"].(map[string]any)
		if rec.Code != tc.status || e == nil || e["code"] != tc.code || e["message"] == "" {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, rec.Code, body)
		}
	}
	rec, _ := do(t, h, "GET", "/api/v1/streams")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"streams": []`) {
		t.Errorf("empty list: %s", rec.Body)
	}
}

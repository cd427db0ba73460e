package server_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestStatusAPIAndKick reads a live stream's status from the admin API,
// then kicks its publisher: ffmpeg is disconnected and the playlists end.
func TestStatusAPIAndKick(t *testing.T) {
	s := startServer(t, nil)
	pub := testpeer.PublishRTMP(t, s.rtmpURL("kickme"), 30*time.Second, 30)
	videoURL := s.originURL("/live/kickme/video/index.m3u8")
	testpeer.WaitFor(t, 10*time.Second, "the video playlist", func() bool { return get(t, videoURL).status == http.StatusOK })

	var list struct {
		Streams []struct {
			Name     string `json:"name"`
			Live     bool   `json:"live"`
			Protocol string `json:"protocol"`
			Viewers  int    `json:"viewers"`
			Tracks   []struct {
				Codecs string `json:"codecs"`
				Width  int    `json:"width"`
			} `json:"tracks"`
			Renditions []struct {
				Name      string `json:"name"`
				Bandwidth int    `json:"bandwidth"`
			} `json:"renditions"`
		} `json:"streams"`
	}
	r := get(t, s.adminURL("/api/v1/streams"))
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/streams: %d %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Streams) != 1 {
		t.Fatalf("streams: %s", r.body)
	}
	st := list.Streams[0]
	if st.Name != "live/kickme" || !st.Live || st.Protocol != "rtmp" || st.Viewers != 1 ||
		len(st.Tracks) != 2 || st.Tracks[0].Width != 640 || len(st.Renditions) != 2 || st.Renditions[0].Bandwidth <= 0 {
		t.Fatalf("stream status: %s", r.body)
	}
	if v := metricValue(t, s, `headwater_stream_viewers{stream="live/kickme"}`); v != 1 {
		t.Errorf("headwater_stream_viewers = %v", v)
	}

	req, _ := http.NewRequest(http.MethodDelete, s.adminURL("/api/v1/streams/live/kickme"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("kick: %d", resp.StatusCode)
	}
	if err := pub.Wait(t, 10*time.Second); err == nil {
		t.Fatal("the kicked publisher ended cleanly")
	}
	testpeer.WaitFor(t, 5*time.Second, "ENDLIST after the kick", func() bool {
		m, _ := mediaPlaylist(t, videoURL)
		return m.Endlist
	})
	if _, ok := s.Registry().Get("live/kickme"); ok {
		t.Fatal("kicked stream still registered")
	}
	// The ended stream's viewer state is freed at once (its ENDLIST
	// playlist does not count viewers).
	if v := metricValue(t, s, `headwater_stream_viewers{stream="live/kickme"}`); v != -1 {
		t.Errorf("headwater_stream_viewers of the ended stream = %v, want no series", v)
	}
	if r := get(t, s.adminURL("/api/v1/streams/live/nope")); r.status != http.StatusNotFound {
		t.Fatalf("unknown stream: %d", r.status)
	}
}

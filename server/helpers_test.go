package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
	"github.com/headwater-live/headwater/store"
)

// testServer is a Headwater instance on loopback port-0 listeners.
type testServer struct {
	*server.Server
	logs *testpeer.LogBuffer
}

func startServer(t *testing.T, mutate func(*config.Config), opts ...server.Option) *testServer {
	t.Helper()
	requireFFmpeg(t)
	cfg := config.Default()
	cfg.RTMP.Address = "127.0.0.1:0"
	cfg.Origin.Address = "127.0.0.1:0"
	cfg.Admin.Address = "127.0.0.1:0"
	// SRT and RTSP default to fixed ports; tests that use them listen on port 0.
	cfg.SRT.Address = ""
	cfg.RTSP.Address = ""
	cfg.Log.Level = "debug"
	cfg.Shutdown.Drain = 0
	if mutate != nil {
		mutate(cfg)
	}
	logs := &testpeer.LogBuffer{}
	log, err := cfg.Logger(logs)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	testpeer.Serve(t, srv, logs)
	return &testServer{Server: srv, logs: logs}
}

func (s *testServer) rtmpURL(key string) string {
	return fmt.Sprintf("rtmp://%s/live/%s", s.RTMPAddr(), key)
}

func (s *testServer) originURL(path string) string {
	return fmt.Sprintf("http://%s%s", s.OriginAddr(), path)
}

func (s *testServer) adminURL(path string) string {
	return fmt.Sprintf("http://%s%s", s.AdminAddr(), path)
}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	testpeer.RequireBinary(t, "install it (apt-get install -y ffmpeg); the README's test command does", "ffmpeg", "ffprobe")
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// mediaPlaylist fetches and parses a media playlist.
func mediaPlaylist(t *testing.T, url string) (*playlist.Media, response) {
	t.Helper()
	r := get(t, url)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	pl, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, r.body)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		t.Fatalf("%s is not a media playlist", url)
	}
	return m, r
}

// metricValue returns the value of the first sample of a metric whose line
// starts with prefix (name plus optional labels), or -1.
func metricValue(t *testing.T, s *testServer, prefix string) float64 {
	t.Helper()
	body := string(get(t, s.adminURL("/metrics")).body)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// endedSnapshots waits until every named rendition of st has ended and
// returns their final snapshots.
func endedSnapshots(t *testing.T, st *store.Stream, names ...string) map[string]*store.Snapshot {
	t.Helper()
	snaps := map[string]*store.Snapshot{}
	testpeer.WaitFor(t, 20*time.Second, "every rendition ended", func() bool {
		for _, n := range names {
			r, ok := st.Rendition(n)
			if !ok || !r.Snapshot().Ended {
				return false
			}
			snaps[n] = r.Snapshot()
		}
		return true
	})
	return snaps
}

// listedStream is stream as s's status API lists it (GET /api/v1/streams).
func listedStream(t *testing.T, s *testServer, stream string) (api.Stream, bool) {
	t.Helper()
	var list struct {
		Streams []api.Stream `json:"streams"`
	}
	r := get(t, s.adminURL("/api/v1/streams"))
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("stream list: %v\n%s", err, r.body)
	}
	for _, st := range list.Streams {
		if st.Name == stream {
			return st, true
		}
	}
	return api.Stream{}, false
}

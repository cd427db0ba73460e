package origin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/store"
)

// announcedFixture is a stream whose video has a complete first segment
// and whose audio was announced (a rendition with an init) but has had no
// frame yet, as when an encoder's first audio comes after its first video
// segment is complete (OBS). Segment targets are 200 ms: the multivariant
// playlist waits for such a rendition until 400 ms after the stream began.
func announcedFixture(t *testing.T) (*httptest.Server, *store.Rendition) {
	t.Helper()
	vi, ai := videoInfo, audioInfo
	vi.SegmentTarget, vi.PartTarget = 200*time.Millisecond, 50*time.Millisecond
	ai.SegmentTarget, ai.PartTarget = 200*time.Millisecond, 50*time.Millisecond
	st := store.New(store.Config{})
	stream := st.Begin(streamName)
	video := stream.AddRendition(vi)
	audio := stream.AddRendition(ai)
	video.SetInit(vi, initVideo)
	audio.SetInit(ai, initAudio)
	msn, err := video.StartSegment(time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := video.AppendPart(partData("video", msn, p), 50*time.Millisecond, p == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := video.FinishSegment(18000); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(Config{BlockTimeout: 10 * time.Second}, st, nil, nil))
	t.Cleanup(srv.Close)
	return srv, audio
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestMultivariantWaitsForAnnouncedRendition: a multivariant request made
// while the stream is young waits for the announced audio's first segment
// and lists it.
func TestMultivariantWaitsForAnnouncedRendition(t *testing.T) {
	srv, audio := announcedFixture(t)
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		code, body := getBody(t, srv.URL+"/"+streamName+"/index.m3u8")
		done <- answer{code, body}
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case a := <-done:
		t.Fatalf("answered before the audio's first frame: %d\n%s", a.code, a.body)
	default:
	}
	msn, err := audio.StartSegment(time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audio.AppendPart(partData("audio", msn, 0), 50*time.Millisecond, true); err != nil {
		t.Fatal(err)
	}
	if err := audio.FinishSegment(2400); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-done:
		if a.code != http.StatusOK || !strings.Contains(a.body, "audio/index.m3u8") || !strings.Contains(a.body, "video/index.m3u8") {
			t.Fatalf("multivariant %d without both renditions:\n%s", a.code, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer once the audio had its first segment")
	}
}

// TestMultivariantLeavesOutSilentRendition: once the stream is older than
// two segment targets, an announced rendition that never had a frame is
// left out at once instead of holding the playlist back.
func TestMultivariantLeavesOutSilentRendition(t *testing.T) {
	srv, _ := announcedFixture(t)
	time.Sleep(450 * time.Millisecond)
	start := time.Now()
	code, body := getBody(t, srv.URL+"/"+streamName+"/index.m3u8")
	if code != http.StatusOK || strings.Contains(body, "audio/index.m3u8") || !strings.Contains(body, "video/index.m3u8") {
		t.Fatalf("multivariant %d:\n%s", code, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the multivariant took %v: it waited for a rendition with no frame", d)
	}
}

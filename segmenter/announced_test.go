package segmenter

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// TestAnnouncedTracksHaveRenditionsAtOnce: with RunOptions.Tracks, every
// announced track has its rendition and init section before its first
// frame (the multivariant playlist then knows the audio to come), and the
// audio, arriving after the first video segment, is packaged as usual;
// a track Skip leaves out gets none.
func TestAnnouncedTracksHaveRenditionsAtOnce(t *testing.T) {
	video := h264Track(t, 0)
	audio := aacTrack(1, 48000)
	skipped := aacTrack(2, 44100)
	reg := media.NewRegistry(media.RegistryConfig{})
	hub, err := reg.Publish("live/announced", media.PublishInfo{Protocol: "test"}, []*media.Track{video, audio, skipped})
	if err != nil {
		t.Fatal(err)
	}
	sub := hub.Subscribe(1 << 12)
	dst := store.New(store.Config{}).Begin("live/announced")
	s := New(Config{SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond}, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() {
		done <- s.RunWith(context.Background(), sub, dst, RunOptions{
			Tracks: hub.Tracks(),
			Skip:   func(tr *media.Track) bool { return tr.ID == 2 },
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(dst.Renditions()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	rs := dst.Renditions()
	if len(rs) != 2 || rs[0].Name() != "video" || rs[1].Name() != "audio" {
		t.Fatalf("renditions before any frame: %d", len(rs))
	}
	for _, r := range rs {
		if snap := r.Snapshot(); len(snap.Inits) != 1 || snap.Open != nil || len(snap.Segments) != 0 {
			t.Fatalf("%s before any frame: %d inits, open %v, %d segments", r.Name(), len(snap.Inits), snap.Open != nil, len(snap.Segments))
		}
	}
	t0 := time.Now()
	// 1.5 s of video, then video and audio together from 1 s on.
	v := videoFrames(video, videoSpec{frames: 90, gop: 30}, t0)
	a := audioFrames(audio, 94, 48000, t0.Add(time.Second))
	for _, f := range v[:45] {
		hub.WriteFrame(f)
	}
	for _, f := range interleave(v[45:], a) {
		hub.WriteFrame(f)
	}
	hub.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	aud, _ := dst.Rendition("audio")
	snap := aud.Snapshot()
	if len(snap.Segments) == 0 || snap.Segments[0].BaseTime != 48000 || snap.Segments[0].MSN != 1 {
		t.Fatalf("audio: %d segments, want them from its first frame at 1 s (48000), numbered from the video segment it falls in (1)", len(snap.Segments))
	}
	// Every audio segment has the number of the video segment it starts in.
	vid, _ := dst.Rendition("video")
	vs := vid.Snapshot().Segments
	for _, seg := range snap.Segments {
		at := media.TicksToDuration(int64(seg.BaseTime), 48000)
		for _, v := range vs {
			start := media.TicksToDuration(int64(v.BaseTime), 90000)
			end := start + media.TicksToDuration(int64(v.DurationTicks), 90000)
			if at >= start-25*time.Millisecond && at < end-25*time.Millisecond && seg.MSN != v.MSN {
				t.Errorf("audio segment at %v has MSN %d, the video segment there %d", at, seg.MSN, v.MSN)
			}
		}
	}
	if len(dst.Renditions()) != 2 {
		t.Fatalf("%d renditions: the skipped track got one", len(dst.Renditions()))
	}
}

package server

import (
	"reflect"
	"slices"
	"testing"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/transcoder"
)

// TestReloadTranscoderPoolKeys checks that a reload reports a change of the
// transcoder pool's keys as needing a restart and keeps the old values: the
// pool is built once, at start.
func TestReloadTranscoderPoolKeys(t *testing.T) {
	s := &Server{cfg: config.Default()}
	s.cfg.Transcoder.PoolSize = 4
	next := config.Default()
	next.Transcoder.PoolSize = 4
	next.Transcoder.QueueSize = 32
	next.Transcoder.MaxWait = 2.5
	next.Transcoder.Reserve = []string{"live/vip/=1:720p;480p"}
	next.Transcoder.ForkServer = "off"
	res, err := s.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range res.NeedRestart {
		keys = append(keys, c.Key)
	}
	want := []string{"transcoder.fork_server", "transcoder.queue_size", "transcoder.max_wait", "transcoder.reserve"}
	if len(res.Applied) != 0 || !slices.Equal(keys, want) {
		t.Fatalf("Reload: applied %+v, need restart %v; want none applied and %v", res.Applied, keys, want)
	}
	if tc := s.cfg.Transcoder; tc.QueueSize != 0 || tc.MaxWait != 1 || len(tc.Reserve) != 0 || tc.ForkServer != "auto" {
		t.Errorf("running configuration changed: %+v", tc)
	}
}

// TestPoolConfig checks that the transcoder section's pool keys reach the
// pool.
func TestPoolConfig(t *testing.T) {
	c := config.Default()
	c.Transcoder.PoolSize = 4
	c.Transcoder.PoolWarm = -1
	c.Transcoder.QueueSize = 32
	c.Transcoder.MaxWait = 0.5
	c.Transcoder.Reserve = []string{"live/vip/=1:720p,480p", "=1:360p"}
	c.Transcoder.ForkServer = "off"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ladders, err := c.Transcoder.Ladders()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := poolConfig(c.Transcoder, ladders)
	if err != nil {
		t.Fatal(err)
	}
	want := []transcoder.Reservation{
		{Streams: "live/vip/", Renditions: []string{"720p", "480p"}, Workers: 1},
		{Streams: "", Renditions: []string{"360p"}, Workers: 1},
	}
	if pc.FFmpeg != "ffmpeg" || pc.Size != 4 || pc.Warm != -1 || pc.QueueSize != 32 || pc.MaxWait != 0.5 ||
		!reflect.DeepEqual(pc.Reserve, want) || pc.ForkServer != transcoder.ForkServerOff || len(pc.Prewarm) == 0 {
		t.Errorf("poolConfig = %+v", pc)
	}
	if err := pc.Validate(); err != nil {
		t.Errorf("PoolConfig.Validate: %v", err)
	}
	c = config.Default()
	if pc, err := poolConfig(c.Transcoder, ladders); err != nil || pc.ForkServer != transcoder.ForkServerAuto || pc.MaxWait != 1 || pc.Reserve != nil {
		t.Errorf("default poolConfig = %+v, %v", pc, err)
	}
}

package server_test

import (
	"bytes"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/recording"
)

// TestClusterRecording: node A (embedded NATS, ingest) and node B (origin
// only) record to one S3 bucket. While A's stream is live, B relays its
// poster from A. When the session is ready, its sprite job runs exactly
// once in the cluster, on whichever node takes the recording_ready event
// (the jobs consumer the recording nodes share), and B serves the VOD
// from the bucket, which ffprobe decodes.
func TestClusterRecording(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	s3 := s3test.Start(t)
	originA := testpeer.FreeAddr(t)
	a := startServer(t, func(c *config.Config) {
		c.Cluster.NodeID = "rec-a"
		c.Cluster.Embedded, c.Cluster.Listen = true, "127.0.0.1:0"
		c.Origin.Address = originA
		c.Cluster.OriginURL = "http://" + originA
		recordToS3(t, s3, t.TempDir())(c)
		c.Record.PosterInterval = config.Duration(time.Second)
		c.Record.SpriteInterval = config.Duration(2 * time.Second)
	})
	b := startServer(t, func(c *config.Config) {
		c.Cluster.NodeID = "rec-b"
		c.Cluster.NATSURL = a.ClusterClientURL()
		c.Cluster.Role = config.RoleOrigin
		recordToS3(t, s3, t.TempDir())(c)
		c.Record.SpriteInterval = config.Duration(2 * time.Second)
	})
	pub := testpeer.PublishPattern(t, a.rtmpURL("cr"), "testsrc2=size=320x240:rate=30", "400k", 8*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "B relays A's poster", func() bool {
		r := get(t, b.originURL("/live/cr/poster.jpg"))
		if r.status != http.StatusOK {
			return false
		}
		img, err := jpeg.Decode(bytes.NewReader(r.body))
		return err == nil && img.Bounds().Dx() == 320
	})
	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	var session string
	testpeer.WaitFor(t, 60*time.Second, "thumbnails.vtt in the bucket", func() bool {
		for k := range s3.Objects(t) {
			if strings.HasPrefix(k, "media/live/cr/") && strings.HasSuffix(k, "/thumbnails.vtt") {
				session = strings.Split(strings.TrimPrefix(k, "media/live/cr/"), "/")[0]
				return true
			}
		}
		return false
	})
	jobs := func(result string) float64 {
		return testpeer.MetricSum(t, a.Metrics(), "headwater_record_jobs_total", "job", "sprites", "result", result) +
			testpeer.MetricSum(t, b.Metrics(), "headwater_record_jobs_total", "job", "sprites", "result", result)
	}
	if ok, failed := jobs("ok"), jobs("error"); ok != 1 || failed != 0 {
		t.Errorf("sprite jobs in the cluster: %v ok, %v failed; want exactly one", ok, failed)
	}
	vod := b.originURL(recording.VODPath("live/cr", session, "index.m3u8"))
	if n := countFrames(t, vod); n < 240-30 || n > 240+30 {
		t.Errorf("ffprobe decoded %d frames of the VOD from B, want 240 ±30", n)
	}
	if r := get(t, b.originURL(recording.VODPath("live/cr", session, "thumbnails.vtt"))); r.status != http.StatusOK {
		t.Errorf("thumbnails.vtt from B: %d", r.status)
	}
}

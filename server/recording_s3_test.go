package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/server"
)

// s3Keys writes the test server's credentials to files.
func s3Keys(t *testing.T, s3 *s3test.Server) (access, secret string) {
	t.Helper()
	dir := t.TempDir()
	access, secret = filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	if err := os.WriteFile(access, []byte(s3.AccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(s3.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return access, secret
}

// recordToS3 points the recording at s3 with a spool in spoolDir.
func recordToS3(t *testing.T, s3 *s3test.Server, spoolDir string) func(*config.Config) {
	access, secret := s3Keys(t, s3)
	return func(c *config.Config) {
		c.Record.Enabled, c.Record.Backend, c.Record.SpoolDir = true, "s3", spoolDir
		c.Record.S3 = config.RecordS3Config{Endpoint: s3.Endpoint, Region: s3test.Region, Bucket: s3.Bucket,
			PathStyle: true, AccessKeyFile: access, SecretKeyFile: secret}
		c.Record.PosterInterval, c.Record.SpriteInterval = 0, 0
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	}
}

// storedSession reads a session's summary and the keys of its media
// objects from the S3 server itself.
func storedSession(t *testing.T, s3 *s3test.Server, stream string) (recording.Summary, map[string]bool) {
	t.Helper()
	var sum recording.Summary
	media := map[string]bool{}
	for k, v := range s3.Objects(t) {
		switch {
		case strings.HasPrefix(k, "index/"+stream+"/") && strings.Count(strings.TrimPrefix(k, "index/"+stream+"/"), "/") == 0:
			if err := json.Unmarshal([]byte(v), &sum); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
		case strings.HasPrefix(k, "media/"+stream+"/"):
			media[k] = true
		}
	}
	return sum, media
}

// checkStoredSegments checks that every rendition of a session has every
// segment from its first to its last in S3: the recording has no hole.
func checkStoredSegments(t *testing.T, sum recording.Summary, media map[string]bool) {
	t.Helper()
	for _, r := range sum.Renditions {
		first, last, n := -1, -1, 0
		for k := range media {
			var msn int
			if _, err := fmt.Sscanf(k, recording.MediaPrefix(sum.Stream, sum.Session)+r.Name+"/seg%d.m4s", &msn); err == nil {
				n++
				if first < 0 || msn < first {
					first = msn
				}
				last = max(last, msn)
			}
		}
		if n == 0 || n != last-first+1 {
			t.Errorf("%s: %d segments stored from %d to %d: holes", r.Name, n, first, last)
		}
		if !media[recording.MediaPrefix(sum.Stream, sum.Session)+r.Name+"/init.mp4"] {
			t.Errorf("%s: init.mp4 not stored", r.Name)
		}
	}
}

// TestRecordingS3Outage records a 20 s publish to a real S3 server
// (versitygw) that is stopped for 15 s mid-stream: uploads fail (counted)
// and the spool holds the recording meanwhile; after the restart the
// session is stored whole (every segment of both renditions, its summary
// complete, no gap) and its VOD, read back from S3, decodes the published
// frames.
func TestRecordingS3Outage(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	s3 := s3test.Start(t)
	sink, secretFile := newEventSink(t)
	s := startServer(t, func(c *config.Config) {
		recordToS3(t, s3, t.TempDir())(c)
		c.Events.Webhook, c.Events.WebhookSecretFile = sink.srv.URL, secretFile
	})
	testpeer.PublishPattern(t, s.rtmpURL("s3"), "testsrc2=size=320x240:rate=30", "400k", 20*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "the first uploads", func() bool {
		return testpeer.MetricSum(t, s.Metrics(), "headwater_record_uploads_total", "result", "ok") > 4
	})
	s3.Stop()
	time.Sleep(15 * time.Second)
	if n := testpeer.MetricSum(t, s.Metrics(), "headwater_record_uploads_total", "result", "error"); n == 0 {
		t.Error("no failed upload counted while S3 was down")
	}
	if n := testpeer.MetricSum(t, s.Metrics(), "headwater_record_spool_entries"); n < 10 {
		t.Errorf("%v objects in the spool after 15 s of outage, want the recording's", n)
	}
	s3.Start()
	ready := sink.wait(recording.EventReady, "live/s3", 60*time.Second)
	// The summary marked ready is spooled as the event is sent: it is in
	// the bucket a commit and an upload later.
	var sum recording.Summary
	var media map[string]bool
	testpeer.WaitFor(t, 10*time.Second, "the ready summary in the bucket", func() bool {
		sum, media = storedSession(t, s3, "live/s3")
		return sum.Ready
	})
	if sum.Session != ready.Session || sum.State != recording.StateComplete || !sum.Ready || sum.Gaps != 0 || len(sum.Renditions) != 2 {
		t.Fatalf("stored summary %+v", sum)
	}
	checkStoredSegments(t, sum, media)
	if d := sum.Duration.D(); d < 19*time.Second || d > 21*time.Second {
		t.Errorf("recorded %v of a 20 s publish", d)
	}
	if n := testpeer.MetricSum(t, s.Metrics(), "headwater_record_dropped_entries_total"); n != 0 {
		t.Errorf("%v objects dropped", n)
	}
	if n := countFrames(t, s.originURL(recording.VODPath("live/s3", sum.Session, "index.m3u8"))); n < 570 || n > 630 {
		t.Errorf("ffprobe decoded %d frames of the VOD from S3, want 600 ±30", n)
	}
}

// TestRecordingKill9 kills `headwater serve` with SIGKILL in the middle of
// a recording, while S3 is down so that the spool holds its last
// segments: after S3 and Headwater are started again (same spool), the
// spooled objects are uploaded and the session is finalised as
// interrupted, ready, with no hole in any rendition.
func TestRecordingKill9(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	bin := buildHeadwater(t)
	s3 := s3test.Start(t)
	access, secret := s3Keys(t, s3)
	spoolDir := t.TempDir()
	rtmpAddr, originAddr := testpeer.FreeAddr(t), testpeer.FreeAddr(t)
	yaml := func(admin string) string {
		return fmt.Sprintf(`rtmp:
  address: %q
srt:
  address: ""
rtsp:
  address: ""
origin:
  address: %q
admin:
  address: %q
segmenter:
  segment_duration: 1s
cluster:
  node_id: rec-node
record:
  enabled: true
  backend: s3
  spool_dir: %q
  poster_interval: 0s
  sprite_interval: 0s
  s3:
    endpoint: %q
    bucket: %q
    path_style: true
    access_key_file: %q
    secret_key_file: %q
log:
  level: debug
`, rtmpAddr, originAddr, admin, spoolDir, s3.Endpoint, s3.Bucket, access, secret)
	}
	admin1 := testpeer.FreeAddr(t)
	a := startProc(t, bin, "rec-a", yaml(admin1), "serve")
	a.admin = admin1
	testpeer.WaitFor(t, 15*time.Second, "headwater to be ready", func() bool { return get0(t, "http://"+admin1+"/readyz") == http.StatusOK })
	testpeer.PublishPattern(t, "rtmp://"+rtmpAddr+"/live/k9", "testsrc2=size=320x240:rate=30", "400k", 60*time.Second, 30)
	testpeer.WaitFor(t, 15*time.Second, "uploads", func() bool { return a.metric("headwater_record_uploads_total", `result="ok"`) > 4 })
	s3.Stop()
	time.Sleep(6 * time.Second)
	spooled := a.metric("headwater_record_spool_entries")
	if spooled < 5 {
		t.Fatalf("%v objects spooled during the outage", spooled)
	}
	a.kill()
	killed := <-a.done
	a.done <- killed
	s3.Start()
	admin2 := testpeer.FreeAddr(t)
	b := startProc(t, bin, "rec-b", yaml(admin2), "serve")
	b.admin = admin2
	var sum recording.Summary
	var media map[string]bool
	testpeer.WaitFor(t, 60*time.Second, "the session finalised as interrupted", func() bool {
		sum, media = storedSession(t, s3, "live/k9")
		return sum.State == recording.StateInterrupted && sum.Ready
	})
	checkStoredSegments(t, sum, media)
	stored := 0
	for k := range media {
		if strings.Contains(k, "/seg") {
			stored++
		}
	}
	// Everything indexed is stored, and the kill came after the outage's 6 s.
	if sum.Segments != stored || sum.Duration.D() < 6*time.Second || sum.Ended.IsZero() {
		t.Errorf("interrupted summary lists %d segments (%v), %d stored: %+v", sum.Segments, sum.Duration.D(), stored, sum)
	}
	if n := b.metric("headwater_record_spool_entries"); n != 0 {
		t.Errorf("%v objects still spooled after the restart", n)
	}
}

// get0 returns the status of a GET, 0 when it fails.
func get0(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestRecordingBadStorage: storage that cannot be used stops the start
// with the key and the reason.
func TestRecordingBadStorage(t *testing.T) {
	t.Parallel() // real-time bound: overlaps the other recording tests
	s3 := s3test.Start(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  func(*config.Config)
		want []string
	}{
		{"a directory under a file", func(c *config.Config) {
			c.Record.Enabled, c.Record.Dir = true, filepath.Join(file, "rec")
		}, []string{"record", file, "not a directory"}},
		{"a missing bucket", func(c *config.Config) {
			recordToS3(t, s3, t.TempDir())(c)
			c.Record.S3.Bucket = "nosuchbucket"
		}, []string{"record", "bucket does not exist"}},
		{"bad credentials", func(c *config.Config) {
			recordToS3(t, s3, t.TempDir())(c)
			bad := filepath.Join(t.TempDir(), "bad")
			_ = os.WriteFile(bad, []byte("wrong-secret"), 0o600)
			c.Record.S3.SecretKeyFile = bad
		}, []string{"record", "access denied"}},
	} {
		cfg := config.Default()
		cfg.RTMP.Address, cfg.Origin.Address, cfg.Admin.Address, cfg.SRT.Address, cfg.RTSP.Address = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "", ""
		tc.set(cfg)
		srv, err := server.New(cfg, nil)
		if err == nil {
			_ = srv.Shutdown(t.Context())
			t.Errorf("%s: the server was built", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
}

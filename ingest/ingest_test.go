package ingest

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/media"
)

func TestSampleClock(t *testing.T) {
	c := SampleClock{FrameSamples: 1024}
	// RTMP-like source: whole milliseconds at 48 kHz, i.e. 48 ticks of jitter.
	src := func(n int64) int64 { return (n * 1024 * 1000 / 48000) * 48 }
	start := int64(4800)
	for n := int64(0); n < 1000; n++ {
		ts, _, resynced := c.Next(start + src(n))
		if resynced {
			t.Fatalf("re-synced at frame %d", n)
		}
		if want := start + n*1024; ts != want {
			t.Fatalf("frame %d: ts %d, want %d", n, ts, want)
		}
	}
	// A gap of 10 frames: jump forward to the source.
	next := start + 1000*1024 + 10*1024
	ts, drift, resynced := c.Next(next)
	if !resynced || ts != next || drift != 10*1024 {
		t.Errorf("after a gap: ts %d drift %d resynced %v", ts, drift, resynced)
	}
	// A source running behind never makes timestamps go back.
	ts2, drift, resynced := c.Next(next - 100*1024)
	if resynced || ts2 != ts+1024 || drift >= 0 {
		t.Errorf("behind: ts %d drift %d resynced %v", ts2, drift, resynced)
	}
	c.Reset()
	if ts, _, _ := c.Next(7); ts != 7 {
		t.Errorf("after Reset: %d", ts)
	}
	// Zero values: 1024 samples, two frames of tolerance.
	var z SampleClock
	z.Next(0)
	if ts, _, resynced := z.Next(1024 + 2048); ts != 1024 || resynced {
		t.Errorf("within tolerance: %d %v", ts, resynced)
	}
	if ts, _, resynced := z.Next(2048 + 2049); ts != 4097 || !resynced {
		t.Errorf("beyond tolerance: %d %v", ts, resynced)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	again := NewMetrics(reg) // same registry: collectors reused, no panic
	p := m.Protocol("rtmp")
	q := again.Protocol("rtmp")

	p.Bytes.Add(100)
	q.Bytes.Add(50)
	p.Connections.Inc()
	p.Sessions.Inc()
	p.Frame(media.KindVideo)
	p.Frame(media.KindAudio)
	p.Frame(media.KindAudio)
	p.Error(ReasonProtocol)
	p.Error(Reason("made_up"))
	m.Protocol("srt").Error(ReasonHandshake)

	if got := testutil.ToFloat64(m.bytes.WithLabelValues("rtmp")); got != 150 {
		t.Errorf("bytes = %v", got)
	}
	if got := testutil.ToFloat64(m.frames.WithLabelValues("rtmp", "audio")); got != 2 {
		t.Errorf("audio frames = %v", got)
	}
	if got := testutil.ToFloat64(m.errors.WithLabelValues("rtmp", "internal")); got != 1 {
		t.Errorf("unknown reason not counted as internal: %v", got)
	}
	// Every reason exists from the start, per protocol; nothing else does.
	if got := testutil.CollectAndCount(m.errors); got != 2*len(Reasons) {
		t.Errorf("%d error series, want %d", got, 2*len(Reasons))
	}
	for _, name := range []string{
		"headwater_ingest_bytes_total", "headwater_ingest_frames_total", "headwater_ingest_errors_total",
		"headwater_ingest_sessions", "headwater_ingest_connections_total",
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// Unregistered metrics work too.
	NewMetrics(nil).Protocol("rtsp").Error(ReasonTimeout)
}

func TestPublishReason(t *testing.T) {
	for err, want := range map[error]Reason{
		fmt.Errorf("x: %w", media.ErrAlreadyPublishing): ReasonAlreadyPublishing,
		fmt.Errorf("x: %w", media.ErrTooManyStreams):    ReasonTooManyPublishers,
		fmt.Errorf("x: %w", media.ErrInvalidName):       ReasonInvalidName,
		fmt.Errorf("x"): ReasonInternal,
	} {
		if got := PublishReason(err); got != want {
			t.Errorf("%v: %s, want %s", err, got, want)
		}
	}
}

func TestNewSessionID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := NewSessionID()
		if len(id) != 8 || seen[id] {
			t.Fatalf("id %q (seen %v)", id, seen[id])
		}
		seen[id] = true
	}
}

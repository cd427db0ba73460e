package srt

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// stripParams removes the SPS and PPS NAL units from an AVCC payload, as
// RTMP ingest delivers key frames (parameter sets out of band only).
func stripParams(p []byte) []byte {
	var out []byte
	for len(p) >= 4 {
		l := int(binary.BigEndian.Uint32(p))
		n := p[:4+l]
		if typ := n[4] & 0x1f; typ != 7 && typ != 8 {
			out = append(out, n...)
		}
		p = p[4+l:]
	}
	return out
}

// TestMuxRoundTrip muxes the frames of a publish whose key frames lack
// in-band parameter sets back to MPEG-TS, and demuxes that again: the
// parameter sets are put back, timestamps and payloads survive.
func TestMuxRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	_ = e.publishBytes("live/src", benchTS(t))
	src := e.waitPublished("live/src", 1, time.Second)
	src.Wait(t, 5*time.Second)

	var out bytes.Buffer
	w := &countingWriter{w: &out}
	m, err := newTSMuxer(w, src.Stream.Tracks())
	if err != nil {
		t.Fatal(err)
	}
	frames := src.Frames()
	for _, f := range frames {
		g := *f
		if g.Track.Kind() == media.KindVideo {
			g.Payload = stripParams(g.Payload)
		}
		if err := m.write(&g); err != nil {
			t.Fatal(err)
		}
	}
	if out.Len()%188 != 0 {
		t.Fatalf("%d bytes of TS", out.Len())
	}
	for _, n := range w.writes {
		if n > payloadSize || n%188 != 0 {
			t.Fatalf("write of %d bytes", n)
		}
	}

	_ = e.publishBytes("live/back", out.Bytes())
	back := e.waitPublished("live/back", 1, time.Second)
	back.Wait(t, 5*time.Second)
	checkStream(t, back, expect{video: "h264", audio: "aac", seconds: 2, exact: true, gop: 60})
	byTrack := func(fs []*media.Frame) map[int][]*media.Frame {
		m := map[int][]*media.Frame{}
		for _, f := range fs {
			m[f.Track.ID] = append(m[f.Track.ID], f)
		}
		return m
	}
	want, got := byTrack(frames), byTrack(back.Frames())
	for id := range want {
		if len(got[id]) != len(want[id]) {
			t.Fatalf("track %d: %d frames back, want %d", id, len(got[id]), len(want[id]))
		}
	}
	for i := range len(frames) {
		id := videoTrackID
		if i >= len(want[id]) {
			id, i = audioTrackID, i-len(want[id])
		}
		a, b := want[id][i], got[id][i]
		if a.Track.ID != b.Track.ID || a.Key != b.Key || a.PTS-a.DTS != b.PTS-b.DTS ||
			a.DTS-want[id][0].DTS != b.DTS-got[id][0].DTS {
			t.Fatalf("frame %d: %s, back %s", i, testpeer.FormatFrame(a), testpeer.FormatFrame(b))
		}
		if a.Track.Kind() == media.KindAudio && !bytes.Equal(a.Payload, b.Payload) {
			t.Fatalf("audio frame %d payload changed", i)
		}
		if a.Track.Kind() == media.KindVideo && !bytes.Equal(stripParams(a.Payload), stripParams(b.Payload)) {
			t.Fatalf("video frame %d payload changed", i)
		}
	}

	// ffmpeg decodes every video frame of the muxed TS, and says nothing.
	testpeer.NeedFFmpeg(t)
	path := filepath.Join(t.TempDir(), "back.ts")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stdout, stderr, err := ffmpegOut(ctx, "-i", path, "-f", "framemd5", "-")
	if err != nil || strings.TrimSpace(stderr) != "" {
		t.Errorf("ffmpeg decoding the muxed TS: %v\n%s", err, stderr)
	}
	if n := strings.Count(stdout, "\n0,"); n != len(want[videoTrackID]) {
		t.Errorf("ffmpeg decoded %d video frames, want %d", n, len(want[videoTrackID]))
	}
}

type countingWriter struct {
	w      *bytes.Buffer
	writes []int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return c.w.Write(p)
}

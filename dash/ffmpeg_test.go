package dash

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// ffmpegMedia is real CMAF media made by ffmpeg's dash muxer: per
// representation ("0" video, "1" audio) its init segment, its segments'
// bytes, tfdt and durations, and its description.
type ffmpegMedia struct {
	init map[string][]byte
	segs map[string][]ffmpegSeg
	info map[string]store.RenditionInfo
}

type ffmpegSeg struct {
	data  []byte
	parts [][]byte // the segment split at its CMAF fragments (styp and sidx dropped)
	t, d  uint64
}

var (
	ffmpegMu    sync.Mutex
	ffmpegDirs  []string
	ffmpegCache = map[[2]int]*ffmpegMedia{}
)

// makeFFmpegMedia encodes 12s of test pattern and tone into 2s CMAF
// segments, once per test binary.
func makeFFmpegMedia(t *testing.T) *ffmpegMedia { return encodeMedia(t, 12, 0) }

// encodeMedia encodes seconds of test pattern (640x360, 30 fps, a key frame
// every 2s) and 48 kHz tone into 2s CMAF segments of fragMs fragments
// (one fragment per segment when 0), once per test binary and parameters.
func encodeMedia(t *testing.T, seconds, fragMs int) *ffmpegMedia {
	t.Helper()
	testpeer.NeedFFmpeg(t)
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	ffmpegMu.Lock()
	defer ffmpegMu.Unlock()
	key := [2]int{seconds, fragMs}
	if fm, ok := ffmpegCache[key]; ok {
		return fm
	}
	dir, err := os.MkdirTemp("", "dash-ffmpeg-")
	if err != nil {
		t.Fatal(err)
	}
	ffmpegDirs = append(ffmpegDirs, dir)
	args := []string{"-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds), "-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-bf", "0",
		"-c:a", "aac", "-b:a", "64k",
		"-f", "dash", "-seg_duration", "2", "-use_template", "1", "-use_timeline", "1"}
	if fragMs > 0 {
		args = append(args, "-frag_type", "duration", "-frag_duration", fmt.Sprint(float64(fragMs)/1000))
	}
	args = append(args, filepath.Join(dir, "out.mpd"))
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	fm, err := readFFmpegMedia(dir)
	if err != nil {
		t.Fatal(err)
	}
	ffmpegCache[key] = fm
	return fm
}

// splitFragments splits a CMAF segment into its moof+mdat pairs.
func splitFragments(data []byte) [][]byte {
	var parts [][]byte
	var cur []byte
	for len(data) >= 8 {
		size := int(binary.BigEndian.Uint32(data))
		if size < 8 || size > len(data) {
			break
		}
		box, typ := data[:size], string(data[4:8])
		data = data[size:]
		switch typ {
		case "moof":
			cur = append([]byte(nil), box...)
		case "mdat":
			parts = append(parts, append(cur, box...))
			cur = nil
		}
	}
	return parts
}

func readFFmpegMedia(dir string) (*ffmpegMedia, error) {
	m, err := mpd.ReadFromFile(filepath.Join(dir, "out.mpd"))
	if err != nil {
		return nil, err
	}
	fm := &ffmpegMedia{init: map[string][]byte{}, segs: map[string][]ffmpegSeg{}, info: map[string]store.RenditionInfo{}}
	for _, as := range m.Periods[0].AdaptationSets {
		for _, rep := range as.Representations {
			st := rep.SegmentTemplate
			id := rep.Id
			if fm.init[id], err = os.ReadFile(filepath.Join(dir, "init-stream"+id+".m4s")); err != nil {
				return nil, err
			}
			info := store.RenditionInfo{Timescale: *st.Timescale, SegmentTarget: 2 * time.Second, PartTarget: time.Second}
			switch as.ContentType {
			case "video":
				prof, err := hex.DecodeString(strings.TrimPrefix(rep.Codecs, "avc1."))
				if err != nil || len(prof) != 3 {
					return nil, fmt.Errorf("codecs %q", rep.Codecs)
				}
				info.Kind, info.Codec = media.KindVideo, &media.H264{SPS: append([]byte{0x67}, prof...)}
				info.Width, info.Height, info.FrameRate = int(rep.Width), int(rep.Height), 30
			case "audio":
				info.Kind, info.SampleRate, info.Channels = media.KindAudio, 48000, 1
				info.Codec = &media.AAC{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 1}}
			}
			fm.info[id] = info
			n, tc := int(*st.StartNumber), uint64(0)
			for _, s := range st.SegmentTimeline.S {
				if s.T != nil {
					tc = *s.T
				}
				for range s.R + 1 {
					data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("chunk-stream%s-%05d.m4s", id, n)))
					if err != nil {
						return nil, err
					}
					fm.segs[id] = append(fm.segs[id], ffmpegSeg{data: data, parts: splitFragments(data), t: tc, d: s.D})
					tc += s.D
					n++
				}
			}
		}
	}
	return fm, nil
}

// ffmpegOrigin serves a stream's MPD and objects the way the origin does.
type ffmpegOrigin struct {
	mu    sync.Mutex
	rends map[string]*store.Rendition
	names []string
	o     Options
	hits  []string
}

func (s *ffmpegOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits = append(s.hits, r.URL.Path)
	s.mu.Unlock()
	w.Header().Set("Access-Control-Allow-Origin", "*")
	p := strings.TrimPrefix(r.URL.Path, "/live/test/")
	if p == "manifest.mpd" {
		s.mu.Lock()
		var rs []Rendition
		for _, n := range s.names {
			rs = append(rs, Rendition{Name: n, Snap: s.rends[n].Snapshot()})
		}
		o := s.o
		s.mu.Unlock()
		o.PublishTime = time.Now()
		out, err := MPD(rs, o)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/dash+xml")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(out)
		return
	}
	if p == "time" {
		w.Write([]byte(time.Now().UTC().Format("2006-01-02T15:04:05.000Z")))
		return
	}
	name, obj, _ := strings.Cut(p, "/")
	s.mu.Lock()
	rd, ok := s.rends[name]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	snap := rd.Snapshot()
	if in, ok := snap.Init(obj); ok {
		w.Write(in.Data)
		return
	}
	var msn uint64
	if _, err := fmt.Sscanf(obj, "seg%d.m4s", &msn); err != nil {
		http.NotFound(w, r)
		return
	}
	// As the low-latency origin must: wait for the segment's first part,
	// then send the parts as they are appended (chunked transfer) until the
	// segment is complete.
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		snap, err := rd.Wait(ctx, msn, i)
		if err != nil {
			return
		}
		seg, ok := snap.Segment(msn)
		if !ok || seg.Gap || i >= len(seg.Parts) {
			if i == 0 {
				http.NotFound(w, r)
			}
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		for ; i < len(seg.Parts); i++ {
			w.Write(seg.Parts[i].Data)
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if seg.Complete {
			return
		}
		i--
	}
}

// runFFmpeg demuxes and decodes seconds of the MPD with ffmpeg's dash
// demuxer and returns the number of frames it decoded of the first stream
// (video) and of the last (audio). A limit is needed: ffmpeg keeps polling a
// dynamic MPD for new segments, even one with mediaPresentationDuration and
// no minimumUpdatePeriod.
func runFFmpeg(t *testing.T, url string, seconds float64, streams int) (video, audio int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-loglevel", "error", "-i", url,
		"-map", "0:v", "-map", "0:a", "-t", fmt.Sprint(seconds), "-f", "framecrc", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Errorf("ffmpeg complained:\n%s", s)
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "0,"):
			video++
		case strings.HasPrefix(line, fmt.Sprintf("%d,", streams-1)):
			audio++
		}
	}
	return video, audio
}

// TestFFmpegDemuxer serves MPDs over real CMAF segments and has ffmpeg's
// dash demuxer play them: a live stream (normal and low-latency
// signalling), a republished one (ffmpeg plays the last Period only) and an
// ended one.
func TestFFmpegDemuxer(t *testing.T) {
	fm := makeFFmpegMedia(t)
	cases := []struct {
		name      string
		ll, ended bool
		ladder    bool
		republish int // segments before the republish, 0 for none
		seconds   float64
	}{
		{name: "live", seconds: 11},
		{name: "lowlatency", ll: true, seconds: 11},
		{name: "republish", republish: 3, seconds: 5}, // the last Period: 6s
		{name: "ended", ended: true, seconds: 11},
		{name: "ladder", ladder: true, seconds: 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const down = 3 * time.Second
			st := store.New(store.Config{Window: 6})
			stream := st.Begin("live/test")
			srv := &ffmpegOrigin{rends: map[string]*store.Rendition{}, names: []string{"video", "audio"}}
			ids := map[string]string{"video": "0", "audio": "1"}
			if tc.ladder {
				// The same media under two names: an AdaptationSet-level
				// SegmentTemplate with $RepresentationID$.
				srv.names = []string{"720p", "360p", "audio"}
				ids = map[string]string{"720p": "0", "360p": "0", "audio": "1"}
			}
			add := func(s *store.Stream) {
				for _, n := range srv.names {
					info := fm.info[ids[n]]
					info.Name = n
					r := s.AddRendition(info)
					r.SetInit(info, fm.init[ids[n]])
					srv.rends[n] = r
				}
			}
			add(stream)
			// The media ran in real time up to now.
			total := 12*time.Second + 100*time.Millisecond
			if tc.republish > 0 {
				total += down
			}
			ast := time.Now().Add(-total)
			for i := range len(fm.segs["1"]) {
				if tc.republish > 0 && i == tc.republish {
					stream.End()
					stream = st.Begin("live/test")
					add(stream)
				}
				for _, n := range srv.names {
					segs := fm.segs[ids[n]]
					if i >= len(segs) {
						continue
					}
					s, ts := segs[i], fm.info[ids[n]].Timescale
					off := time.Duration(0)
					if tc.republish > 0 && i >= tc.republish {
						off = down
					}
					r := srv.rends[n]
					if _, err := r.StartSegment(ast.Add(off+store.TicksToDuration(s.t, ts)), s.t); err != nil {
						t.Fatal(err)
					}
					if _, err := r.AppendPart(s.data, store.TicksToDuration(s.d, ts), true); err != nil {
						t.Fatal(err)
					}
					if err := r.FinishSegment(s.d); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.ended {
				stream.End()
			}
			srv.o = Options{AvailabilityStart: ast, Window: 6, LowLatency: tc.ll, UTCTimingURL: "/live/test/time", History: new(History)}
			hs := httptest.NewServer(srv)
			defer hs.Close()

			video, audio := runFFmpeg(t, hs.URL+"/live/test/manifest.mpd", tc.seconds, len(srv.names))
			// ffmpeg starts each stream at the first segment its window
			// lists: audio (7 segments, the last one short) starts a
			// segment after video.
			if want := int(tc.seconds * 30); video < want-2 || audio < int((tc.seconds-2)*46) {
				t.Errorf("ffmpeg decoded %d video and %d audio frames, want about %d and %d", video, audio, want, int((tc.seconds-2)*47))
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			var segs int
			for _, h := range srv.hits {
				if strings.Contains(h, "/seg") {
					segs++
				}
			}
			if segs == 0 {
				t.Errorf("no segment requested: %v", srv.hits)
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range ffmpegDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

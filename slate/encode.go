package slate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/media"
)

// plan is the shape of one clip: its frame grid and its length.
type plan struct {
	frameTicks int64 // video frame duration, 90 kHz (0: no video)
	gopFrames  int64 // frames per GOP
	gopTicks   int64 // GOP length, 90 kHz
	gops       int64 // GOPs in the loop
	loopTicks  int64 // loop length, 90 kHz
	videoN     int64 // video frames in the loop
	audioN     int64 // audio frames in the loop

	input      string // the image or media file ffmpeg reads
	media      bool   // input is a media file (else a still image)
	mediaAudio bool   // audio comes from the media file (else silence)
}

// newPlan lays out a clip of gops GOPs for p.
func newPlan(p Params, gop time.Duration, gops int64) plan {
	pl := plan{gops: max(1, gops)}
	if p.Codec != "" {
		pl.frameTicks = frameTicks(p.FrameDuration)
		// At least gop long: a GOP a frame short of the segment target
		// would make the segmenter cut every other key frame.
		pl.gopFrames = max(1, (media.DurationToTicks(gop, 90000)+pl.frameTicks-1)/pl.frameTicks)
		pl.gopTicks = pl.gopFrames * pl.frameTicks
		pl.videoN = pl.gopFrames * pl.gops
	} else {
		pl.gopTicks = max(1, media.DurationToTicks(gop, 90000))
	}
	pl.loopTicks = pl.gopTicks * pl.gops
	if p.AudioCodec != "" {
		// frames whose start is before the loop's end: ceil(loop samples / 1024)
		num := pl.loopTicks * int64(p.SampleRate)
		den := int64(90000 * aacFrameSamples)
		pl.audioN = (num + den - 1) / den
	}
	return pl
}

// encode makes the clip for p: it lays the loop out, runs ffmpeg into a
// temporary directory and reads the elementary streams back.
func (l *Library) encode(ctx context.Context, p Params) (*Clip, error) {
	dir, err := os.MkdirTemp("", "headwater-slate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	src := l.cfg.Source
	var pl plan
	switch {
	case src.IsMedia():
		info, err := l.probe(ctx, src.path)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src, err)
		}
		if p.Codec != "" && !info.video {
			return nil, fmt.Errorf("slate source %s has no video stream", src)
		}
		length := info.audioLen
		if p.Codec != "" {
			length = info.videoLen
		}
		length = min(length, l.cfg.MaxMedia)
		gops := (length + l.cfg.GOP - 1) / l.cfg.GOP
		pl = newPlan(p, l.cfg.GOP, int64(gops))
		pl.input, pl.media = src.path, true
		pl.mediaAudio = info.audio && p.AudioCodec != ""
	case src.IsImage():
		pl = newPlan(p, l.cfg.GOP, 1)
		pl.input = src.path
	default:
		pl = newPlan(p, l.cfg.GOP, 1)
		if p.Codec != "" {
			png, err := cardPNG(p.Width, p.Height)
			if err != nil {
				return nil, fmt.Errorf("drawing the card: %w", err)
			}
			pl.input = filepath.Join(dir, "card.png")
			if err := os.WriteFile(pl.input, png, 0o600); err != nil {
				return nil, err
			}
		}
	}

	videoOut, audioOut := filepath.Join(dir, "video.es"), filepath.Join(dir, "audio.adts")
	l.encodes.Add(1)
	start := time.Now()
	if err := l.run(ctx, encodeArgs(p, pl, videoOut, audioOut), nil); err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}

	var vtr, atr *media.Track
	var video, audio []*media.Frame
	if p.Codec != "" {
		es, err := os.ReadFile(videoOut)
		if err != nil {
			return nil, err
		}
		if vtr, video, err = readVideo(p.Codec, es, pl); err != nil {
			return nil, fmt.Errorf("reading ffmpeg's video: %w", err)
		}
	}
	if p.AudioCodec != "" {
		es, err := os.ReadFile(audioOut)
		if err != nil {
			return nil, err
		}
		if atr, audio, err = readAudio(p, es, pl); err != nil {
			return nil, fmt.Errorf("reading ffmpeg's audio: %w", err)
		}
	}
	clip := newClip(p, media.TicksToDuration(pl.gopTicks, 90000), vtr, atr, video, audio, pl.frameTicks, pl.loopTicks)
	var size int
	for _, f := range clip.Frames {
		size += len(f.Payload)
	}
	l.cfg.Log.Info("slate encoded", "params", p.String(), "source", src.String(),
		"duration", clip.Duration, "frames", len(clip.Frames), "bytes", size, "took", time.Since(start))
	return clip, nil
}

// encodeArgs is the ffmpeg command line (without the binary) that encodes
// the plan's loop: raw H.264/H.265 (Annex-B) to videoOut, ADTS AAC to
// audioOut, each only when p has that kind of track.
func encodeArgs(p Params, pl plan, videoOut, audioOut string) []string {
	// -xerror: a picture that does not decode ends ffmpeg (with -loop 1 it
	// would otherwise retry, and complain, for ever)
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-xerror", "-y"}
	var graph []string
	if p.Codec != "" || pl.mediaAudio {
		if pl.media {
			args = append(args, "-t", seconds(maxMediaOf(pl)), "-i", pl.input)
		} else {
			args = append(args, "-loop", "1", "-framerate", rate(pl), "-i", pl.input)
		}
	}
	if p.Codec != "" {
		v := fmt.Sprintf("[0:v:0]fps=%[1]s,scale=%[2]d:%[3]d:force_original_aspect_ratio=decrease:force_divisible_by=2,"+
			"pad=%[2]d:%[3]d:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p", rate(pl), p.Width, p.Height)
		if pl.media {
			v += ",tpad=stop_mode=clone:stop=-1" // a media file shorter than the loop ends on its last picture
		}
		graph = append(graph, v+"[v]")
	}
	if p.AudioCodec != "" {
		layout := channelLayouts[p.Channels]
		if pl.mediaAudio {
			graph = append(graph, fmt.Sprintf("[0:a:0]aresample=%d,aformat=sample_fmts=fltp:sample_rates=%d:channel_layouts=%s,apad[a]",
				p.SampleRate, p.SampleRate, layout))
		} else {
			graph = append(graph, fmt.Sprintf("anullsrc=r=%d:cl=%s[a]", p.SampleRate, layout))
		}
	}
	args = append(args, "-filter_complex", strings.Join(graph, ";"))
	if p.Codec != "" {
		g := strconv.FormatInt(pl.gopFrames, 10)
		maxrate := max(200, int64(p.Width)*int64(p.Height)*90000/pl.frameTicks/20/1000) // kbit/s: 0.05 bit per pixel
		args = append(args, "-map", "[v]", "-an", "-frames:v", strconv.FormatInt(pl.videoN, 10))
		if p.Codec == "h264" {
			args = append(args, "-c:v", "libx264", "-preset", "veryfast")
			if !pl.media {
				args = append(args, "-tune", "stillimage")
			}
			if p.Profile != "" {
				args = append(args, "-profile:v", p.Profile)
			}
			if p.Level >= 10 {
				args = append(args, "-level:v", p.levelName())
			}
			args = append(args, "-crf", "28", "-maxrate", fmt.Sprintf("%dk", maxrate), "-bufsize", fmt.Sprintf("%dk", 2*maxrate),
				"-g", g, "-keyint_min", g, "-sc_threshold", "0", "-bf", "0",
				"-x264-params", "scenecut=0:open-gop=0", "-f", "h264", videoOut)
		} else {
			args = append(args, "-c:v", "libx265", "-preset", "veryfast", "-profile:v", "main", "-crf", "30",
				"-x265-params", fmt.Sprintf("keyint=%s:min-keyint=%s:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:info=0:log-level=error:vbv-maxrate=%d:vbv-bufsize=%d",
					g, g, maxrate, 2*maxrate),
				"-f", "hevc", videoOut)
		}
	}
	if p.AudioCodec != "" {
		// one more frame than the loop: the encoder's first frame is its
		// priming delay, dropped when read back
		args = append(args, "-map", "[a]", "-vn", "-frames:a", strconv.FormatInt(pl.audioN+1, 10),
			"-c:a", "aac", "-b:a", fmt.Sprintf("%dk", min(64*p.Channels, 320)), "-f", "adts", audioOut)
	}
	return args
}

// maxMediaOf is how much of the media file the loop needs.
func maxMediaOf(pl plan) time.Duration {
	return media.TicksToDuration(pl.loopTicks, 90000)
}

// rate is the video frame rate as an exact fraction of the 90 kHz clock.
func rate(pl plan) string {
	return fmt.Sprintf("90000/%d", pl.frameTicks)
}

// seconds formats d for ffmpeg's -t.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}

// mediaInfo is what the probe found in a media file.
type mediaInfo struct {
	video, audio       bool
	videoLen, audioLen time.Duration
}

// probe reads the first MaxMedia of a media file's first video and audio
// streams as packets (no decoding, ffmpeg's framecrc output) to learn which
// it has and how long each is.
func (l *Library) probe(ctx context.Context, path string) (mediaInfo, error) {
	var out bytes.Buffer
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-xerror", "-t", seconds(l.cfg.MaxMedia), "-i", path,
		"-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "framecrc", "-"}
	if err := l.run(ctx, args, &out); err != nil {
		return mediaInfo{}, err
	}
	return parseFramecrc(&out)
}

// parseFramecrc reads ffmpeg's framecrc output: "#tb N: num/den" and
// "#media_type N: video" headers, then "stream, dts, pts, duration, size,
// crc" lines.
func parseFramecrc(r io.Reader) (mediaInfo, error) {
	type stream struct {
		kind     string
		num, den int64
		end      int64
	}
	streams := map[int]*stream{}
	get := func(i int) *stream {
		if streams[i] == nil {
			streams[i] = &stream{}
		}
		return streams[i]
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "#tb "); ok {
			idx, val, _ := strings.Cut(rest, ": ")
			i, err1 := strconv.Atoi(idx)
			n, d, _ := strings.Cut(val, "/")
			num, err2 := strconv.ParseInt(n, 10, 64)
			den, err3 := strconv.ParseInt(d, 10, 64)
			if err := errors.Join(err1, err2, err3); err != nil || den <= 0 {
				return mediaInfo{}, fmt.Errorf("probe: bad line %q", line)
			}
			s := get(i)
			s.num, s.den = num, den
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#media_type "); ok {
			idx, val, _ := strings.Cut(rest, ": ")
			i, err := strconv.Atoi(idx)
			if err != nil {
				return mediaInfo{}, fmt.Errorf("probe: bad line %q", line)
			}
			get(i).kind = val
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 4 {
			return mediaInfo{}, fmt.Errorf("probe: bad line %q", line)
		}
		i, err1 := strconv.Atoi(strings.TrimSpace(f[0]))
		pts, err2 := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		dur, err3 := strconv.ParseInt(strings.TrimSpace(f[3]), 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return mediaInfo{}, fmt.Errorf("probe: bad line %q", line)
		}
		s := get(i)
		s.end = max(s.end, pts+dur)
	}
	if err := sc.Err(); err != nil {
		return mediaInfo{}, err
	}
	var info mediaInfo
	for _, s := range streams {
		if s.den == 0 {
			continue
		}
		d := time.Duration(float64(s.end) * float64(s.num) / float64(s.den) * float64(time.Second))
		switch s.kind {
		case "video":
			info.video, info.videoLen = true, d
		case "audio":
			info.audio, info.audioLen = true, d
		}
	}
	if !info.video && !info.audio {
		return info, errors.New("no video or audio stream")
	}
	return info, nil
}

// stderrHead and stderrTail are how much of the start and of the end of
// ffmpeg's stderr an error carries.
const (
	stderrHead = 1024
	stderrTail = 3072
)

// stderrBuffer keeps the start and the end of what is written to it, in
// bounded memory however much ffmpeg writes.
type stderrBuffer struct {
	head, tail []byte
	cut        bool // bytes between head and tail were dropped
}

// Write implements io.Writer.
func (b *stderrBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if k := min(stderrHead-len(b.head), len(p)); k > 0 {
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if len(b.tail) > 2*stderrTail {
		b.tail = append(b.tail[:0], b.tail[len(b.tail)-stderrTail:]...)
		b.cut = true
	}
	return n, nil
}

// String returns what was kept, " ... " where bytes were dropped.
func (b *stderrBuffer) String() string {
	tail := b.tail
	if len(tail) > stderrTail {
		tail, b.cut = tail[len(tail)-stderrTail:], true
	}
	if b.cut {
		return string(b.head) + " ... " + string(tail)
	}
	return string(b.head) + string(tail)
}

// run runs ffmpeg with args, bound to ctx (killed when it ends), stdout to
// out (discarded when nil); a failure's error carries the end of stderr, a
// cancellation's is the context's.
func (l *Library) run(ctx context.Context, args []string, out io.Writer) error {
	var stderr stderrBuffer
	cmd := exec.CommandContext(ctx, l.cfg.FFmpeg, args...)
	cmd.Stdout = out
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		return fmt.Errorf("%s: %w: %s", l.cfg.FFmpeg, err, msg)
	}
	return nil
}

// nalClass is what a NAL unit means for access unit boundaries.
type nalClass int

const (
	nalOther    nalClass = iota // belongs to the current access unit
	nalAUD                      // starts an access unit, dropped
	nalPrefix                   // starts an access unit after a picture (parameter sets, SEI)
	nalVCL                      // a slice of the current picture
	nalVCLFirst                 // the first slice of a picture
)

// videoSyntax is what readVideo needs to know of a codec.
type videoSyntax struct {
	classify func(n []byte) nalClass
	key      func(n []byte) bool
	params   func(au [][]byte) (media.Codec, error)
}

var h264Syntax = videoSyntax{
	classify: func(n []byte) nalClass {
		switch t := n[0] & 0x1f; {
		case t == 9:
			return nalAUD
		case t >= 1 && t <= 5:
			if len(n) > 1 && n[1]&0x80 != 0 { // first_mb_in_slice == 0
				return nalVCLFirst
			}
			return nalVCL
		case t >= 6 && t <= 8, t >= 13 && t <= 18:
			return nalPrefix
		}
		return nalOther
	},
	key: func(n []byte) bool { return n[0]&0x1f == 5 },
	params: func(au [][]byte) (media.Codec, error) {
		var c media.H264
		for _, n := range au {
			switch n[0] & 0x1f {
			case 7:
				c.SPS = bytes.Clone(n)
			case 8:
				c.PPS = bytes.Clone(n)
			}
		}
		if c.SPS == nil || c.PPS == nil {
			return nil, errors.New("first access unit has no SPS and PPS")
		}
		return &c, nil
	},
}

var h265Syntax = videoSyntax{
	classify: func(n []byte) nalClass {
		if len(n) < 2 {
			return nalOther
		}
		switch t := (n[0] >> 1) & 0x3f; {
		case t == 35:
			return nalAUD
		case t <= 31:
			if len(n) > 2 && n[2]&0x80 != 0 { // first_slice_segment_in_pic_flag
				return nalVCLFirst
			}
			return nalVCL
		case t >= 32 && t <= 34, t == 39, t >= 41 && t <= 44, t >= 48 && t <= 55:
			return nalPrefix
		}
		return nalOther
	},
	key: func(n []byte) bool { t := (n[0] >> 1) & 0x3f; return t >= 16 && t <= 21 },
	params: func(au [][]byte) (media.Codec, error) {
		var c media.H265
		for _, n := range au {
			switch (n[0] >> 1) & 0x3f {
			case 32:
				c.VPS = bytes.Clone(n)
			case 33:
				c.SPS = bytes.Clone(n)
			case 34:
				c.PPS = bytes.Clone(n)
			}
		}
		if c.VPS == nil || c.SPS == nil || c.PPS == nil {
			return nil, errors.New("first access unit has no VPS, SPS and PPS")
		}
		return &c, nil
	},
}

// readVideo turns ffmpeg's Annex-B stream into the loop's frames (AVCC,
// without access unit delimiters) and checks them against the plan: the
// right number of frames, a key frame at the start of every GOP and
// nowhere else.
func readVideo(codec string, es []byte, pl plan) (*media.Track, []*media.Frame, error) {
	syn := h264Syntax
	if codec == "h265" {
		syn = h265Syntax
	}
	var aus [][][]byte
	var cur [][]byte
	hasVCL := false
	for _, n := range splitAnnexB(es) {
		c := syn.classify(n)
		if c == nalAUD || (hasVCL && (c == nalPrefix || c == nalVCLFirst)) {
			if len(cur) > 0 {
				if !hasVCL {
					return nil, nil, fmt.Errorf("access unit %d has no picture", len(aus))
				}
				aus = append(aus, cur)
			}
			cur, hasVCL = nil, false
		}
		if c != nalAUD {
			cur = append(cur, n)
		}
		hasVCL = hasVCL || c == nalVCL || c == nalVCLFirst
	}
	if hasVCL {
		aus = append(aus, cur)
	}
	if int64(len(aus)) != pl.videoN {
		return nil, nil, fmt.Errorf("%d frames, want %d", len(aus), pl.videoN)
	}
	codecParams, err := syn.params(aus[0])
	if err != nil {
		return nil, nil, err
	}
	tr := &media.Track{ID: 0, Codec: codecParams, ClockRate: 90000}
	frames := make([]*media.Frame, len(aus))
	for i, au := range aus {
		key := media.HasNALU(au, syn.key)
		if want := int64(i)%pl.gopFrames == 0; key != want {
			return nil, nil, fmt.Errorf("frame %d: key frame %v, want %v (GOP of %d frames)", i, key, want, pl.gopFrames)
		}
		size := 0
		for _, n := range au {
			size += 4 + len(n)
		}
		payload := make([]byte, 0, size)
		for _, n := range au {
			payload = binary.BigEndian.AppendUint32(payload, uint32(len(n)))
			payload = append(payload, n...)
		}
		dts := int64(i) * pl.frameTicks
		frames[i] = &media.Frame{Track: tr, DTS: dts, PTS: dts, Key: key, Payload: payload}
	}
	return tr, frames, nil
}

// splitAnnexB splits an Annex-B byte stream into its NAL units (sub-slices
// of b, without start codes and trailing zero bytes).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for {
		i := bytes.Index(b[max(start, 0):], []byte{0, 0, 1})
		if i < 0 {
			break
		}
		i += max(start, 0)
		if start >= 0 {
			if n := bytes.TrimRight(b[start:i], "\x00"); len(n) > 0 {
				out = append(out, n)
			}
		}
		start = i + 3
	}
	if start >= 0 {
		if n := bytes.TrimRight(b[start:], "\x00"); len(n) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// readAudio turns ffmpeg's ADTS stream into the loop's raw AAC frames,
// leaving out the encoder's priming frame, and checks its configuration.
func readAudio(p Params, es []byte, pl plan) (*media.Track, []*media.Frame, error) {
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(es); err != nil {
		return nil, nil, fmt.Errorf("adts: %w", err)
	}
	if int64(len(pkts)) < pl.audioN+1 {
		return nil, nil, fmt.Errorf("%d AAC frames, want %d", len(pkts), pl.audioN+1)
	}
	pkts = pkts[1 : pl.audioN+1]
	cc := uint8(p.Channels)
	if p.Channels == 8 {
		cc = 7
	}
	first := pkts[0]
	if first.Type != mpeg4audio.ObjectTypeAACLC || first.SampleRate != p.SampleRate || first.ChannelConfig != cc {
		return nil, nil, fmt.Errorf("AAC type %d %d Hz channel config %d, want AAC-LC %d Hz %d", first.Type, first.SampleRate, first.ChannelConfig, p.SampleRate, cc)
	}
	tr := &media.Track{ID: 1, ClockRate: uint32(p.SampleRate), Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{
		Type: mpeg4audio.ObjectTypeAACLC, SampleRate: p.SampleRate, ChannelConfig: cc,
	}}}
	frames := make([]*media.Frame, len(pkts))
	for i, pkt := range pkts {
		dts := int64(i) * aacFrameSamples
		frames[i] = &media.Frame{Track: tr, DTS: dts, PTS: dts, Key: true, Payload: bytes.Clone(pkt.AU)}
	}
	return tr, frames, nil
}

package transcoder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	mpegtscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"

	"github.com/headwater-live/headwater/media"
)

// AudioConfig configures RunAudio.
type AudioConfig struct {
	// FFmpeg is the ffmpeg binary ("ffmpeg" when empty).
	FFmpeg string
	// Bitrate is the AAC bitrate in bit/s (128000 when 0).
	Bitrate int64
	// TrackID is the ID of the AAC track of the frames RunAudio emits
	// (1000 + the source track's ID when 0). It must not be the ID of a
	// source track.
	TrackID int
	// Log receives the process's failures; nil logs nothing.
	Log *slog.Logger
	// Metrics counts the restarts of the process; nil counts nothing.
	Metrics *Metrics

	// onStart, when not nil (tests), is called with the pid of each ffmpeg
	// process started.
	onStart func(pid int)
}

// NeedsAudioTranscode reports whether a track is audio that HLS clients
// cannot all play (not AAC) and that RunAudio can turn into AAC.
func NeedsAudioTranscode(tr *media.Track) bool {
	if tr == nil || tr.Codec == nil {
		return false
	}
	_, ok := tr.Codec.(*media.Opus)
	return ok
}

// audioSampleRate is the AAC sample rate made from an Opus track: Opus
// always decodes at 48 kHz, which AAC supports.
const audioSampleRate = 48000

// aacFrameLen is the number of samples of an AAC-LC frame.
const aacFrameLen = 1024

// Restarts of RunAudio's process after it died mid-stream (see RunAudio).
const (
	audioBackoffMin = 100 * time.Millisecond // wait before the first restart
	audioBackoffMax = 5 * time.Second        // the wait doubles up to this
	audioHealthy    = 30 * time.Second       // a process that ran this long resets the wait
	audioQuickDeath = time.Second            // a process that died sooner failed at once
	audioMaxQuick   = 5                      // this many quick deaths in a row: give up
)

// RunAudio transcodes the first audio track of in that NeedsAudioTranscode
// to AAC-LC with one long-running ffmpeg process, sending the AAC frames
// to out; other frames of in are ignored. ffmpeg is started on that
// track's first frame. The AAC frames are timed on the source's timeline by
// sample count from the track's first DTS, so they are continuous by
// construction; ffmpeg fills gaps in the source timestamps with silence
// (aresample async) so that the count stays in step with the source.
//
// When the process exits while in is still open and ctx has not ended (it
// crashed or was killed), RunAudio logs it (Warn, with the exit error and
// the tail of its stderr), waits, and starts a new process on the track's
// next frame, counted in Metrics as a restart. The wait is 100 ms, doubled
// at each restart up to 5 s, and back to 100 ms after a process that ran
// 30 s or more. Frames of in received while no process runs are dropped.
// The new process's frames continue on the source's timeline: the sample
// count restarts from the DTS of its first frame, rounded to the nearest
// multiple of 1024 samples from the track's first DTS, and never before the
// end of the last frame sent to out, so that the DTS sent only move forward,
// with a hole over the restart. RunAudio gives up when 5 processes in a row
// died within 1 s of their start (a restart that cannot start a process
// counts as one).
//
// RunAudio returns once in is closed and ffmpeg has delivered its last
// frame (nil), or when ctx ends (ctx's error: the process is killed), or
// after it gave up restarting the process, the first process could not
// start, or ffmpeg's output could not be read (the error; the rest of in is
// drained and dropped). It never closes out. No goroutine or process
// survives it.
func RunAudio(ctx context.Context, cfg AudioConfig, in <-chan *media.Frame, out chan<- *media.Frame) error {
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.Bitrate <= 0 {
		cfg.Bitrate = 128000
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Wait for the track to transcode.
	var first *media.Frame
	for first == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f, ok := <-in:
			if !ok {
				return nil
			}
			if f != nil && NeedsAudioTranscode(f.Track) {
				first = f
			}
		}
	}
	err := newAudioStream(cfg, log, first).run(ctx, first, in, out)
	if err != nil && ctx.Err() == nil {
		// Keep the publisher's side flowing: drop the rest.
		for {
			select {
			case <-ctx.Done():
				return err
			case _, ok := <-in:
				if !ok {
					return err
				}
			}
		}
	}
	return err
}

// audioStream is the state of RunAudio that its processes share.
type audioStream struct {
	cfg      AudioConfig
	log      *slog.Logger
	src      *media.Track // the source track (of the first frame)
	srcID    int
	rate     uint32 // the source track's clock rate
	channels int
	id       int // the AAC track's ID

	started bool         // a process has started
	grid    int64        // DTS (audioSampleRate) of the first AAC frame
	next    int64        // DTS of the next AAC frame to send
	track   *media.Track // the AAC track, nil before the first AAC frame
}

func newAudioStream(cfg AudioConfig, log *slog.Logger, first *media.Frame) *audioStream {
	s := &audioStream{cfg: cfg, log: log, src: first.Track, srcID: first.Track.ID, rate: first.Track.ClockRate, id: cfg.TrackID}
	opusCodec, _ := first.Track.Codec.(*media.Opus)
	s.channels = opusCodec.ChannelCount
	if s.channels <= 0 {
		s.channels = 2
	}
	if s.rate == 0 {
		s.rate = 48000
	}
	if s.id == 0 {
		s.id = 1000 + s.srcID
	}
	return s
}

// audioEnd is how a process of RunAudio ended.
type audioEnd struct {
	err    error         // RunAudio's result when !died, else the exit error
	died   bool          // it exited mid-stream, or a restart could not start
	ran    time.Duration // from its start to its exit
	stderr string        // the tail of its stderr when died
}

// run runs processes, the first on first, restarting them (see RunAudio).
func (s *audioStream) run(ctx context.Context, first *media.Frame, in <-chan *media.Frame, out chan<- *media.Frame) error {
	backoff, quick := audioBackoffMin, 0
	for {
		end := s.process(ctx, first, in, out)
		if !end.died {
			return end.err
		}
		if end.ran >= audioHealthy {
			backoff = audioBackoffMin
		}
		if end.ran < audioQuickDeath {
			quick++
		} else {
			quick = 0
		}
		if quick >= audioMaxQuick {
			err := fmt.Errorf("audio transcoder: ffmpeg died %d times in a row within %v of its start: %w: %s", quick, audioQuickDeath, end.err, end.stderr)
			s.log.Error("audio transcoder: failed; giving up", "error", err)
			return err
		}
		s.log.Warn("audio transcoder: ffmpeg died mid-stream; restarting it", "error", end.err, "stderr", end.stderr,
			"ran", end.ran.Round(time.Millisecond), "restart_in", backoff)
		var err error
		if first, err = s.nextFrame(ctx, in, backoff); first == nil {
			return err
		}
		backoff = min(2*backoff, audioBackoffMax)
	}
}

// feeds reports whether f is a frame of the source track to transcode.
func (s *audioStream) feeds(f *media.Frame) bool {
	return f != nil && f.Track != nil && f.Track.ID == s.srcID && len(f.Payload) > 0 && NeedsAudioTranscode(f.Track)
}

// nextFrame drops the frames of in for wait, then returns the next frame of
// the source track; nil when in is closed (nil error) or ctx ends.
func (s *audioStream) nextFrame(ctx context.Context, in <-chan *media.Frame, wait time.Duration) (*media.Frame, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	waited := false
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			waited = true
		case f, ok := <-in:
			if !ok {
				return nil, nil
			}
			if waited && s.feeds(f) {
				return f, nil
			}
		}
	}
}

// roundToMultiple rounds v to the nearest multiple of step (> 0).
func roundToMultiple(v, step int64) int64 {
	q, r := v/step, v%step
	if r < 0 {
		q--
		r += step
	}
	if 2*r >= step {
		q++
	}
	return q * step
}

// process runs one ffmpeg process, fed from first on, until it exits.
func (s *audioStream) process(ctx context.Context, first *media.Frame, in <-chan *media.Frame, out chan<- *media.Frame) audioEnd {
	cfg, log, channels, srcID, rate := s.cfg, s.log, s.channels, s.srcID, s.rate
	restart := s.started
	base := first.DTS

	args := []string{
		"-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
		"-fflags", "+nobuffer", "-probesize", "4096", "-analyzeduration", "0",
		"-f", "mpegts", "-i", "pipe:0",
		"-map", "0:a:0",
		"-af", "aresample=async=1:first_pts=0",
		"-c:a", "aac", "-profile:a", "aac_low",
		"-b:a", strconv.FormatInt(cfg.Bitrate, 10),
		"-ar", strconv.Itoa(audioSampleRate),
		"-ac", strconv.Itoa(channels),
		"-flush_packets", "1",
		"-f", "adts", "pipe:1",
	}
	cmd := exec.Command(cfg.FFmpeg, args...)
	cmd.SysProcAttr = procAttr()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return audioEnd{err: err}
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return audioEnd{err: err}
	}
	stderr := &tailBuffer{limit: 8 << 10}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderr
	if err := cmd.Start(); err != nil {
		stdinR.Close()
		stdinW.Close()
		stdoutR.Close()
		stdoutW.Close()
		// The first start failing is a setup error; a restart failing
		// counts as a process that died at once.
		return audioEnd{err: fmt.Errorf("audio transcoder: %w", err), died: restart}
	}
	startedAt := time.Now()
	stdinR.Close()
	stdoutW.Close()

	// The first AAC frame is the encoder's priming: it starts 1024 samples
	// before the source's first sample.
	start := media.RescaleNearest(base, rate, audioSampleRate) - aacFrameLen
	if !s.started {
		s.started, s.grid, s.next = true, start, start
	} else {
		// Stay on the first process's 1024-sample grid, after what was sent.
		start = s.grid + roundToMultiple(start-s.grid, aacFrameLen)
		s.next = max(s.next, start)
	}
	if restart && cfg.Metrics != nil {
		cfg.Metrics.audioRestarts.Inc()
	}
	if cfg.onStart != nil {
		cfg.onStart(cmd.Process.Pid)
	}
	log.Info("audio transcoder: started", "pid", cmd.Process.Pid, "from", s.src.Codec.Name(), "channels", channels, "restart", restart)

	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
	}
	exited := make(chan struct{})
	var waitErr error
	var ran time.Duration
	go func() {
		waitErr = cmd.Wait()
		ran = time.Since(startedAt)
		close(exited)
	}()

	var wg sync.WaitGroup
	// stopFeed ends the feeder (the process is gone); stopRead the reader
	// (RunAudio gives up).
	stopFeed, stopRead := make(chan struct{}), make(chan struct{})
	var feedOnce, readOnce sync.Once
	haltFeed := func() { feedOnce.Do(func() { close(stopFeed) }) }
	halt := func() {
		haltFeed()
		readOnce.Do(func() { close(stopRead) })
	}

	// Feed: the source track's frames as MPEG-TS on stdin.
	var feedErr error
	inClosed := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stdinW.Close()
		bw := bufio.NewWriterSize(stdinW, 64<<10)
		track := &mpegts.Track{Codec: &mpegtscodecs.Opus{Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(channels)}}}
		w := &mpegts.Writer{W: bw, Tracks: []*mpegts.Track{track}}
		if feedErr = w.Initialize(); feedErr != nil {
			return
		}
		write := func(f *media.Frame) error {
			pts := media.RescaleNearest(f.DTS-base, rate, tsClock) + tsOffset
			if err := w.WriteOpus(track, pts, [][]byte{f.Payload}); err != nil {
				return err
			}
			return bw.Flush()
		}
		if feedErr = write(first); feedErr != nil {
			return
		}
		for {
			select {
			case <-stopFeed:
				return
			case f, ok := <-in:
				if !ok {
					inClosed = true
					return
				}
				if f == nil || f.Track == nil || f.Track.ID != srcID || len(f.Payload) == 0 {
					continue
				}
				if !NeedsAudioTranscode(f.Track) {
					log.Warn("audio transcoder: source track changed codec; ignoring it", "codec", f.Track.Codec.Name())
					continue
				}
				if f.DTS < base {
					continue
				}
				if feedErr = write(f); feedErr != nil {
					return
				}
			}
		}
	}()

	// Read: ADTS frames from stdout, timed by sample count from s.next.
	var readErr, badOutput error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stdoutR.Close()
		br := bufio.NewReaderSize(stdoutR, 64<<10)
		hdr := make([]byte, 7)
		for {
			if _, err := io.ReadFull(br, hdr); err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			n := int(hdr[3]&3)<<11 | int(hdr[4])<<3 | int(hdr[5])>>5
			if hdr[0] != 0xff || hdr[1]&0xf0 != 0xf0 || n < 7 {
				badOutput = errors.New("audio transcoder: bad ADTS header")
				return
			}
			buf := make([]byte, n)
			copy(buf, hdr)
			if _, err := io.ReadFull(br, buf[7:]); err != nil {
				readErr = fmt.Errorf("audio transcoder: truncated ADTS frame: %w", err)
				return
			}
			var pkts mpeg4audio.ADTSPackets
			if err := pkts.Unmarshal(buf); err != nil || len(pkts) != 1 {
				badOutput = fmt.Errorf("audio transcoder: ADTS: %v", err)
				return
			}
			p := pkts[0]
			if c, ok := trackAAC(s.track); !ok || c.Type != p.Type || c.SampleRate != p.SampleRate ||
				c.ChannelConfig != p.ChannelConfig {
				// The first frame (a restarted process keeps the track).
				s.track = &media.Track{ID: s.id, ClockRate: uint32(p.SampleRate), Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{
					Type:          p.Type,
					SampleRate:    p.SampleRate,
					ChannelConfig: p.ChannelConfig,
				}}}
			}
			f := &media.Frame{Track: s.track, DTS: s.next, PTS: s.next, Key: true, Received: time.Now(), Payload: p.AU}
			select {
			case out <- f:
				s.next += aacFrameLen
			case <-stopRead:
				return
			}
		}
	}()

	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	var ctxErr error
	cancelled := func() {
		ctxErr = ctx.Err()
		halt()
		kill()
	}
	select {
	case <-done:
	case <-ctx.Done():
		cancelled()
	case <-exited:
		// Finished or died: nothing more can be fed; give the reader the
		// process's last frames.
		haltFeed()
		select {
		case <-done:
		case <-ctx.Done():
			cancelled()
		}
	}
	// A feeder blocked writing to the process is unblocked by its exit
	// (EPIPE).
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		kill()
		<-exited
	}
	<-done
	switch {
	case ctxErr != nil:
		return audioEnd{err: ctxErr}
	case feedErr != nil && !errors.Is(feedErr, syscall.EPIPE) && !errors.Is(feedErr, os.ErrClosed):
		return audioEnd{err: fmt.Errorf("audio transcoder: writing to ffmpeg: %w", feedErr)}
	case badOutput != nil:
		return audioEnd{err: badOutput}
	case !inClosed:
		// It exited with its input open: it died (or gave up) mid-stream.
		if waitErr == nil {
			waitErr = errors.New("exited with its input open")
		}
		return audioEnd{err: waitErr, died: true, ran: ran, stderr: stderr.String()}
	case waitErr != nil:
		err := fmt.Errorf("audio transcoder: ffmpeg: %w: %s", waitErr, stderr.String())
		log.Error("audio transcoder: failed", "error", err)
		return audioEnd{err: err}
	case readErr != nil:
		return audioEnd{err: readErr}
	}
	log.Info("audio transcoder: ended")
	return audioEnd{}
}

// trackAAC returns the AAC configuration of tr, if any.
func trackAAC(tr *media.Track) (mpeg4audio.AudioSpecificConfig, bool) {
	if tr == nil {
		return mpeg4audio.AudioSpecificConfig{}, false
	}
	c, ok := tr.Codec.(*media.AAC)
	if !ok {
		return mpeg4audio.AudioSpecificConfig{}, false
	}
	return c.Config, true
}

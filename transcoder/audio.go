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

// RunAudio transcodes the first audio track of in that NeedsAudioTranscode
// to AAC-LC with one long-running ffmpeg process, sending the AAC frames
// to out; other frames of in are ignored. ffmpeg is started on that
// track's first frame. The AAC frames are timed on the source's timeline by
// sample count from the track's first DTS, so they are continuous by
// construction; ffmpeg fills gaps in the source timestamps with silence
// (aresample async) so that the count stays in step with the source.
//
// RunAudio returns once in is closed and ffmpeg has delivered its last
// frame (nil), or when ctx ends (ctx's error: the process is killed), or
// after the process failed (its error; the rest of in is drained and
// dropped). It never closes out. No goroutine or process survives it.
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
	err := runAudio(ctx, cfg, log, first, in, out)
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

func runAudio(ctx context.Context, cfg AudioConfig, log *slog.Logger, first *media.Frame, in <-chan *media.Frame, out chan<- *media.Frame) error {
	src := first.Track
	opusCodec, _ := src.Codec.(*media.Opus)
	channels := opusCodec.ChannelCount
	if channels <= 0 {
		channels = 2
	}
	srcID := src.ID
	base := first.DTS
	rate := src.ClockRate
	if rate == 0 {
		rate = 48000
	}
	id := cfg.TrackID
	if id == 0 {
		id = 1000 + srcID
	}

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
		return err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return err
	}
	stderr := &tailBuffer{limit: 8 << 10}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderr
	if err := cmd.Start(); err != nil {
		stdinR.Close()
		stdinW.Close()
		stdoutR.Close()
		stdoutW.Close()
		return fmt.Errorf("audio transcoder: %w", err)
	}
	stdinR.Close()
	stdoutW.Close()
	log.Info("audio transcoder: started", "pid", cmd.Process.Pid, "from", src.Codec.Name(), "channels", channels)

	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stdinW.Close()
		bw := bufio.NewWriterSize(stdinW, 64<<10)
		track := &mpegts.Track{Codec: &mpegtscodecs.Opus{ChannelCount: channels}}
		w := &mpegts.Writer{W: bw, Tracks: []*mpegts.Track{track}}
		if feedErr = w.Initialize(); feedErr != nil {
			return
		}
		write := func(f *media.Frame) error {
			pts := rescale(f.DTS-base, rate, tsClock) + tsOffset
			if err := w.WriteOpus(track, pts, [][]byte{f.Payload}); err != nil { //nolint:staticcheck
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

	// Read: ADTS frames from stdout, timed by sample count.
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stdoutR.Close()
		br := bufio.NewReaderSize(stdoutR, 64<<10)
		// The first AAC frame is the encoder's priming: it starts 1024
		// samples before the source's first sample.
		next := rescale(base, rate, audioSampleRate) - aacFrameLen
		var track *media.Track
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
				readErr = errors.New("audio transcoder: bad ADTS header")
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
				readErr = fmt.Errorf("audio transcoder: ADTS: %v", err)
				return
			}
			p := pkts[0]
			if track == nil {
				track = &media.Track{ID: id, ClockRate: uint32(p.SampleRate), Codec: &media.AAC{Config: mpeg4audio.AudioSpecificConfig{
					Type:          p.Type,
					SampleRate:    p.SampleRate,
					ChannelConfig: p.ChannelConfig,
					ChannelCount:  p.ChannelCount, //nolint:staticcheck
				}}}
			}
			f := &media.Frame{Track: track, DTS: next, PTS: next, Key: true, Received: time.Now(), Payload: p.AU}
			next += aacFrameLen
			select {
			case out <- f:
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
	select {
	case <-done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		halt()
		kill()
	case <-exited:
		// Finished or died: nothing more can be fed; give the reader the
		// process's last frames.
		haltFeed()
		select {
		case <-done:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			halt()
			kill()
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
	if ctxErr != nil {
		return ctxErr
	}
	switch {
	case feedErr != nil && !errors.Is(feedErr, syscall.EPIPE) && !errors.Is(feedErr, os.ErrClosed):
		return fmt.Errorf("audio transcoder: writing to ffmpeg: %w", feedErr)
	case waitErr != nil:
		err := fmt.Errorf("audio transcoder: ffmpeg: %w: %s", waitErr, stderr.String())
		log.Error("audio transcoder: failed", "error", err)
		return err
	case readErr != nil:
		return readErr
	}
	log.Info("audio transcoder: ended")
	return nil
}

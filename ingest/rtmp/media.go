package rtmp

// The media side of a session: data (onMetaData), audio and video messages,
// their sequence headers and timestamps, and the publish of the stream once
// its tracks are known. The protocol side is in command.go.

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

const (
	// Track ids of the published streams.
	videoTrackID = 1
	audioTrackID = 2

	// headerWait is how long a session whose metadata announced two tracks
	// waits, after the first sequence header, for the other one before
	// publishing with one track only.
	headerWait = time.Second
	// maxPendingFrames bounds the frames buffered while waiting for sequence headers.
	maxPendingFrames = 512
	// maxHeaderWait bounds the time from the publish command to the first
	// sequence header for a publisher that sends media.
	maxHeaderWait = 10 * time.Second
)

// handleData reads @setDataFrame/onMetaData to learn which tracks to expect.
func (s *session) handleData(p []byte) error {
	vals, err := amfDecodeAll(p)
	if err != nil {
		s.warnOnce("metadata", "rtmp: ignoring undecodable data message", "err", err)
		return nil
	}
	if len(vals) > 0 && vals[0] == "@setDataFrame" {
		vals = vals[1:]
	}
	if len(vals) < 2 || vals[0] != "onMetaData" {
		return nil
	}
	obj, ok := vals[1].(amfObj)
	if !ok {
		return nil
	}
	announced := func(key string) bool {
		v, ok := obj.get(key)
		switch v := v.(type) {
		case float64:
			return v != 0
		case string:
			return v != ""
		}
		return ok && v != nil
	}
	if s.stream == nil {
		// Metadata naming no codec at all says nothing about the tracks.
		v, a := announced("videocodecid"), announced("audiocodecid")
		s.meta = metadata{seen: v || a, video: v, audio: a}
	}
	vc, _ := obj.get("videocodecid")
	ac, _ := obj.get("audiocodecid")
	w, _ := obj.num("width")
	h, _ := obj.num("height")
	fps, _ := obj.num("framerate")
	level := slog.LevelInfo
	if s.metaLogged {
		level = slog.LevelDebug // some encoders repeat it
	}
	s.metaLogged = true
	s.log.Log(context.Background(), level, "rtmp: metadata", "encoder", obj.str("encoder"),
		"videocodecid", vc, "audiocodecid", ac, "width", w, "height", h, "framerate", fps)
	return nil
}

// mediaMillis unwraps a 32-bit RTMP timestamp into milliseconds since the
// first media message of the publish. Audio and video share the timeline;
// the signed difference to the previous message handles both wrapping and
// the small back-and-forth of interleaved tracks.
func (s *session) mediaMillis(ts uint32) int64 {
	if !s.tsInit {
		s.tsInit, s.tsLast = true, ts
		return 0
	}
	s.tsMillis += int64(int32(ts - s.tsLast))
	s.tsLast = ts
	return s.tsMillis
}

func (s *session) handleMedia(typeID uint8, ts uint32, p []byte) error {
	if !s.publishing {
		s.warnOnce("early-media", "rtmp: ignoring media sent before publish")
		return nil
	}
	if len(p) == 0 {
		return nil
	}
	received := time.Now()
	ms := s.mediaMillis(ts)
	if typeID == msgVideo {
		if err := s.handleVideo(ms, p, received); err != nil {
			return err
		}
	} else if err := s.handleAudio(ms, p, received); err != nil {
		return err
	}
	if s.stream == nil {
		if s.readyToPublish() {
			return s.publish()
		}
		if wait := time.Since(s.publishStartedAt); wait > maxHeaderWait {
			return ingest.ProtocolError("no usable sequence header %s after publish", wait.Round(time.Millisecond))
		}
	}
	return nil
}

func (s *session) handleVideo(ms int64, p []byte, received time.Time) error {
	if p[0]&flvExHeaderBit != 0 {
		return s.handleExVideo(ms, p, received) // enhanced.go
	}
	frameType, codecID := p[0]>>4, p[0]&0x0f
	if frameType == flvFrameInfo {
		return nil
	}
	if codecID != flvVideoAVC {
		return ingest.Fail(ingest.ReasonUnsupportedCodec, "unsupported video codec %d (%s): only H.264 is ingested", codecID, videoCodecName(codecID))
	}
	if len(p) < 5 {
		return ingest.ProtocolError("AVC video message of %d bytes", len(p))
	}
	if s.stream != nil && !s.announced[videoTrackID] {
		s.warnOnce("late-video", "rtmp: ignoring video that started after the stream was published without it")
		return nil
	}
	cts := int32(uint32(p[2])<<16|uint32(p[3])<<8|uint32(p[4])) << 8 >> 8 // SI24
	data := p[5:]
	switch p[1] {
	case avcSeqHeader:
		return s.onAVCConfig(data)
	case avcNALU:
		return s.onVideoFrame(ms, cts, frameType == flvFrameKey, data, received)
	}
	return nil // end of sequence, or unknown packet types
}

func (s *session) onAVCConfig(b []byte) error {
	cfg, err := parseAVCConfig(b)
	if err != nil {
		return ingest.ProtocolError("invalid AVC sequence header: %v", err)
	}
	var sps h264.SPS
	if err := sps.Unmarshal(cfg.sps); err != nil {
		return ingest.ProtocolError("invalid SPS in the AVC sequence header: %v", err)
	}
	if cur, ok := s.codecH264(); ok && string(cur.SPS) == string(cfg.sps) &&
		string(cur.PPS) == string(cfg.pps) && s.nalLengthSize == cfg.nalLengthSize {
		return nil // repeated sequence header
	}
	codec := &media.H264{SPS: cfg.sps, PPS: cfg.pps}
	changed := s.video != nil
	s.video = &media.Track{ID: videoTrackID, Codec: codec, ClockRate: 90000}
	s.nalLengthSize = cfg.nalLengthSize
	if s.firstHeaderAt.IsZero() {
		s.firstHeaderAt = time.Now()
	}
	s.log.Info("rtmp: video track", "codec", codec.RFC6381(), "width", sps.Width(), "height", sps.Height(),
		"fps", sps.FPS(), "changed", changed)
	return nil
}

func (s *session) codecH264() (*media.H264, bool) {
	if s.video == nil {
		return nil, false
	}
	c, ok := s.video.Codec.(*media.H264)
	return c, ok
}

func (s *session) onVideoFrame(ms int64, cts int32, key bool, data []byte, received time.Time) error {
	if _, ok := s.codecH264(); !ok { // none yet, or the track is H.265/AV1
		s.warnOnce("video-before-header", "rtmp: dropping AVC video frames received before the AVC sequence header")
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	if s.nalLengthSize == 4 {
		// The common case: FLV's AVCC is the media model's format, so the
		// payload is a sub-slice of the message buffer, which the chunk
		// reader allocated for this message alone. No copy.
		if err := checkAVCC(data); err != nil {
			return ingest.ProtocolError("malformed AVC video frame: %v", err)
		}
	} else {
		var err error
		if data, err = toAVCC4(data, s.nalLengthSize); err != nil {
			return ingest.ProtocolError("malformed AVC video frame: %v", err)
		}
	}
	return s.emitVideo(ms, cts, key, data, received)
}

// emitVideo timestamps a video frame of any codec and emits it.
func (s *session) emitVideo(ms int64, cts int32, key bool, data []byte, received time.Time) error {
	dts := ms * 90
	if s.videoFrames > 0 && dts < s.lastVideoDTS {
		s.warnOnce("video-backwards", "rtmp: video timestamps went backwards; clamping",
			"dts_ms", ms, "last_ms", s.lastVideoDTS/90)
		dts = s.lastVideoDTS
	}
	pts := dts + int64(cts)*90
	if pts < dts {
		pts = dts
	}
	s.lastVideoDTS = dts
	s.videoFrames++
	return s.emit(&media.Frame{Track: s.video, DTS: dts, PTS: pts, Key: key, Received: received, Payload: data})
}

func (s *session) handleAudio(ms int64, p []byte, received time.Time) error {
	format := p[0] >> 4
	if format != flvAudioAAC {
		return ingest.Fail(ingest.ReasonUnsupportedCodec, "unsupported audio codec %d (%s): only AAC is ingested", format, audioCodecName(format))
	}
	if len(p) < 2 {
		return ingest.ProtocolError("AAC audio message of %d bytes", len(p))
	}
	if s.stream != nil && !s.announced[audioTrackID] {
		s.warnOnce("late-audio", "rtmp: ignoring audio that started after the stream was published without it")
		return nil
	}
	switch p[1] {
	case aacSeqHeader:
		return s.onAACConfig(p[2:])
	case aacRaw:
		return s.onAudioFrame(ms, p[2:], received)
	}
	return nil
}

func (s *session) onAACConfig(b []byte) error {
	var asc mpeg4audio.AudioSpecificConfig
	if err := asc.Unmarshal(b); err != nil {
		return ingest.ProtocolError("invalid AAC sequence header: %v", err)
	}
	if asc.SampleRate <= 0 {
		return ingest.ProtocolError("invalid AAC sequence header: sample rate %d", asc.SampleRate)
	}
	if s.audio != nil && s.audio.Codec.(*media.AAC).Config == asc {
		return nil // repeated sequence header
	}
	changed := s.audio != nil
	if changed && s.audio.ClockRate != uint32(asc.SampleRate) {
		// A new clock: timestamps restart from the source's in the new rate.
		s.audioClock.Reset()
	}
	s.audio = &media.Track{ID: audioTrackID, Codec: &media.AAC{Config: asc}, ClockRate: uint32(asc.SampleRate)}
	s.audioClock.FrameSamples = 1024
	if asc.FrameLengthFlag {
		s.audioClock.FrameSamples = 960
	}
	if s.firstHeaderAt.IsZero() {
		s.firstHeaderAt = time.Now()
	}
	s.log.Info("rtmp: audio track", "codec", s.audio.Codec.RFC6381(), "sample_rate", asc.SampleRate,
		"channels", asc.ChannelConfig, "changed", changed)
	return nil
}

func (s *session) onAudioFrame(ms int64, data []byte, received time.Time) error {
	if s.audio == nil {
		s.warnOnce("audio-before-header", "rtmp: dropping audio frames received before the AAC sequence header")
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	src := ms * int64(s.audio.ClockRate) / 1000
	dts, drift, resynced := s.audioClock.Next(src)
	if resynced && s.framesWritten > 0 {
		s.log.Debug("rtmp: audio timestamps re-synced", "drift_ticks", drift)
	}
	// data is a sub-slice of the message buffer (no copy), like video.
	return s.emit(&media.Frame{Track: s.audio, DTS: dts, PTS: dts, Key: true, Received: received, Payload: data})
}

// emit writes a frame to the stream, or buffers it until the stream is published.
func (s *session) emit(f *media.Frame) error {
	if s.stream == nil {
		s.pending = append(s.pending, f)
		return nil
	}
	if !s.announced[f.Track.ID] {
		return nil
	}
	s.write(f)
	return nil
}

func (s *session) write(f *media.Frame) {
	s.stream.WriteFrame(f)
	s.m.Frame(f.Track.Kind())
	s.framesWritten++
}

// readyToPublish tells whether the tracks are known well enough to publish:
// every track the metadata announced has its sequence header (without
// metadata: both tracks, or one track and a first frame); a missing one is
// given up on headerWait after the first header, or when too many frames
// wait.
func (s *session) readyToPublish() bool {
	if s.video == nil && s.audio == nil {
		return false
	}
	missingVideo := s.video == nil && (s.meta.video || !s.meta.seen)
	missingAudio := s.audio == nil && (s.meta.audio || !s.meta.seen)
	switch {
	case !missingVideo && !missingAudio:
		return true
	case !s.meta.seen && len(s.pending) > 0:
		return true
	case time.Since(s.firstHeaderAt) >= headerWait:
		return true
	}
	return len(s.pending) >= maxPendingFrames
}

func (s *session) publish() error {
	var tracks []*media.Track
	for _, t := range []*media.Track{s.video, s.audio} {
		if t != nil {
			tracks = append(tracks, t)
			s.announced[t.ID] = true
		}
	}
	st, err := s.srv.pub.Publish(s.name, s.publishInfo(), tracks)
	if err != nil {
		reason := ingest.PublishReason(err)
		code := "NetStream.Publish.BadName"
		if reason == ingest.ReasonTooManyPublishers || reason == ingest.ReasonInternal {
			code = "NetStream.Publish.Rejected"
		}
		_ = s.sendStatus("error", code, err.Error())
		return &ingest.SessionError{Reason: reason, Err: err}
	}
	s.stream = st
	s.m.Sessions.Inc()
	s.kickDone = make(chan struct{})
	s.stopKick = context.AfterFunc(st.Context(), func() {
		s.kicked = true
		_ = s.conn.Close()
		close(s.kickDone)
	})
	var desc []string
	for _, t := range tracks {
		desc = append(desc, t.Codec.RFC6381())
	}
	s.log.Info("rtmp: publishing", "tracks", strings.Join(desc, ","), "buffered_frames", len(s.pending))
	for _, f := range s.pending {
		if s.announced[f.Track.ID] {
			s.write(f)
		}
	}
	s.pending = nil
	if s.srv.testHookPublished != nil {
		s.srv.testHookPublished(s)
	}
	return nil
}

// publishInfo describes the session to the registry. The role is read
// from the stream key's query (live/key?role=backup), else from tcUrl's
// (rtmp://host/live?role=backup).
func (s *session) publishInfo() media.PublishInfo {
	backup := s.query.Get(ingest.RoleParam) == ingest.RoleBackup
	if !backup && s.appQuery != "" {
		q, _ := url.ParseQuery(s.appQuery)
		backup = q.Get(ingest.RoleParam) == ingest.RoleBackup
	}
	return media.PublishInfo{Protocol: Protocol, RemoteAddr: s.remote, SessionID: s.id, Backup: backup}
}

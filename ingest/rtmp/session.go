package rtmp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/headwater-live/headwater/auth"
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

	// outChunkSize is the chunk size of what the server sends.
	outChunkSize = 4096
	// windowAckSize is the acknowledgement window announced to the client.
	windowAckSize = 2500000

	// Chunk stream ids used by the server.
	csidControl = 2
	csidCommand = 3
	csidStatus  = 5
)

// Session ends that are not errors.
var (
	errUnpublished = errors.New("publisher unpublished")
)

// session is one RTMP connection.
type session struct {
	srv    *Server
	cfg    *Config
	conn   net.Conn
	id     string
	remote string
	log    *slog.Logger
	m      *ingest.ProtocolMetrics

	rd *connReader
	br *bufio.Reader
	bw *bufio.Writer
	cr *chunkReader
	cw chunkWriter

	// From connect.
	connected bool
	app       string
	appQuery  string // query string that came with the app ("live?x=y"), kept for auth
	tcURL     string

	// From publish.
	publishing bool
	holdsSlot  bool
	name       string     // stream name, "<app>/<key>"
	query      url.Values // query of the publish name ("key?token=x"), kept for auth
	rawQuery   string
	publishSID uint32               // message stream id of the publish
	authReq    *auth.PublishRequest // the publish Config.Auth allowed, for Unpublished
	meta       metadata
	metaLogged bool

	// Tracks and timing.
	video, audio     *media.Track
	nalLengthSize    int
	firstHeaderAt    time.Time
	tsInit           bool
	tsLast           uint32
	tsMillis         int64 // unwrapped timestamp of the last media message, relative to the first
	lastVideoDTS     int64
	videoFrames      uint64
	audioClock       ingest.SampleClock
	pending          []*media.Frame // frames received before Publish
	stream           *media.Stream
	announced        [3]bool // track ids announced to Publish
	stopKick         func() bool
	kickDone         chan struct{}
	kicked           bool // set before kickDone is closed
	peerWindow       uint32
	ackedBytes       uint64
	warned           map[string]bool
	framesWritten    uint64
	publishStartedAt time.Time
}

type metadata struct {
	seen         bool
	video, audio bool // a codec was announced for the track
}

func newSession(srv *Server, conn net.Conn) *session {
	s := &session{
		srv:    srv,
		cfg:    &srv.cfg,
		conn:   conn,
		id:     ingest.NewSessionID(),
		remote: conn.RemoteAddr().String(),
		m:      srv.metrics,
		warned: make(map[string]bool),
	}
	s.log = srv.log.With("session", s.id, "remote", s.remote)
	s.rd = &connReader{conn: conn, m: srv.metrics}
	s.br = bufio.NewReaderSize(s.rd, 64<<10)
	s.bw = bufio.NewWriterSize(conn, 8<<10)
	s.cr = newChunkReader(s.br)
	s.cw = chunkWriter{w: s.bw, chunkSize: defaultChunkSize}
	return s
}

// connReader counts the bytes read and, once armed, renews the idle deadline
// before every read.
type connReader struct {
	conn net.Conn
	m    *ingest.ProtocolMetrics
	idle time.Duration
	n    uint64
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		_ = r.conn.SetReadDeadline(time.Now().Add(r.idle))
	}
	n, err := r.conn.Read(p)
	if n > 0 {
		r.n += uint64(n)
		r.m.Bytes.Add(float64(n))
	}
	return n, err
}

func (s *session) run() {
	s.log.Debug("rtmp: connection accepted")
	err := s.serveSafe()
	s.finish()
	s.report(err)
}

// serveSafe runs the session, turning a panic into an internal error.
func (s *session) serveSafe() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = ingest.Recovered(r)
		}
	}()
	return s.serve()
}

func (s *session) serve() error {
	_ = s.conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := s.handshake(); err != nil {
		if errors.Is(err, errNoData) {
			return err
		}
		return &ingest.SessionError{Reason: ingest.ReasonHandshake, Err: fmt.Errorf("handshake: %w", err)}
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.rd.idle = s.cfg.IdleTimeout

	for {
		msg, err := s.cr.readMessage()
		if err != nil {
			return err
		}
		if err := s.handleMessage(msg); err != nil {
			return err
		}
		if err := s.acknowledge(); err != nil {
			return err
		}
	}
}

// finish releases what the session holds: it closes the stream exactly once.
func (s *session) finish() {
	if s.stopKick != nil && !s.stopKick() {
		<-s.kickDone // the kick is closing the connection: let it finish
	}
	_ = s.conn.Close()
	if s.stream != nil {
		s.stream.Close()
		s.m.Sessions.Dec()
	}
	if s.holdsSlot {
		s.srv.publishers.Release()
		s.holdsSlot = false
	}
	s.unpublished()
}

// report logs how the session ended and counts errors.
func (s *session) report(err error) {
	var attrs []any
	if s.stream != nil {
		attrs = append(attrs, "duration", time.Since(s.publishStartedAt).Round(time.Millisecond),
			"frames", s.framesWritten, "bytes", s.rd.n)
	}
	var se *ingest.SessionError
	switch {
	case errors.As(err, &se) && se.Stack != "":
		// a recovered panic is reported whatever else happened
	case errors.Is(err, errNoData):
		s.log.Debug("rtmp: connection closed before the handshake")
		return
	case s.kicked:
		s.log.Info("rtmp: publisher kicked", attrs...)
		return
	case s.srv.life.Closed():
		s.log.Info("rtmp: session closed by server shutdown", attrs...)
		return
	case errors.As(err, &se):
		// classified below
	case err == nil, errors.Is(err, errUnpublished), errors.Is(err, io.EOF):
		s.log.Info("rtmp: session ended", attrs...)
		return
	case ingest.IsTimeout(err):
		se = &ingest.SessionError{Reason: ingest.ReasonTimeout, Err: fmt.Errorf("nothing received for %s: %w", s.cfg.IdleTimeout, err)}
	case ingest.IsDisconnect(err):
		s.log.Info("rtmp: connection lost", append(attrs, "err", err)...)
		return
	default:
		se = &ingest.SessionError{Reason: ingest.ReasonProtocol, Err: err}
	}
	s.m.Error(se.Reason)
	attrs = append(attrs, "reason", string(se.Reason), "err", fmt.Errorf("rtmp %s: %w", s.remote, se.Err))
	if se.Stack != "" {
		s.log.Error("rtmp: panic in session", append(attrs, "stack", se.Stack)...)
		return
	}
	s.log.Warn("rtmp: session failed", attrs...)
}

// warnOnce logs a warning the first time key is seen in this session.
func (s *session) warnOnce(key, msg string, args ...any) {
	if s.warned[key] {
		return
	}
	s.warned[key] = true
	s.log.Warn(msg, args...)
}

// --- sending ---

func (s *session) flush() error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
	return s.bw.Flush()
}

func (s *session) writeControl(typeID uint8, payload []byte) error {
	return s.cw.writeMessage(csidControl, typeID, 0, 0, payload)
}

func (s *session) writeCommand(csid uint8, streamID uint32, values ...any) error {
	return s.cw.writeMessage(csid, msgCommandAMF0, streamID, 0, amfEncode(nil, values...))
}

func (s *session) sendStatus(level, code, description string) error {
	err := s.writeCommand(csidStatus, s.publishSID, "onStatus", 0.0, nil, amfObj{
		{"level", level}, {"code", code}, {"description", description},
	})
	if err != nil {
		return err
	}
	return s.flush()
}

// acknowledge sends an Acknowledgement each time the peer's window of bytes
// has been received (clients may stop sending without them).
func (s *session) acknowledge() error {
	if s.peerWindow == 0 || s.rd.n-s.ackedBytes < uint64(s.peerWindow) {
		return nil
	}
	s.ackedBytes = s.rd.n
	if err := s.writeControl(msgAck, binary.BigEndian.AppendUint32(nil, uint32(s.rd.n))); err != nil {
		return err
	}
	return s.flush()
}

// --- receiving ---

func (s *session) handleMessage(msg *message) error {
	p := msg.payload
	switch msg.typeID {
	case msgSetChunkSize:
		if len(p) < 4 {
			return ingest.ProtocolError("Set Chunk Size of %d bytes", len(p))
		}
		size := binary.BigEndian.Uint32(p) & 0x7fffffff
		if size < 1 || size > uint32(s.cfg.MaxChunkSize) {
			return ingest.ProtocolError("peer chunk size %d outside 1..%d", size, s.cfg.MaxChunkSize)
		}
		s.cr.chunkSize = size
	case msgAbort:
		if len(p) >= 4 {
			s.cr.abort(binary.BigEndian.Uint32(p))
		}
	case msgWindowAckSize:
		if len(p) >= 4 {
			s.peerWindow = binary.BigEndian.Uint32(p)
		}
	case msgUserControl:
		if len(p) >= 6 && binary.BigEndian.Uint16(p) == ucPingRequest {
			resp := binary.BigEndian.AppendUint16(nil, ucPingResponse)
			resp = append(resp, p[2:6]...)
			if err := s.writeControl(msgUserControl, resp); err != nil {
				return err
			}
			return s.flush()
		}
	case msgAck, msgSetPeerBandwidth, msgSharedObjAMF0, msgSharedObjAMF3:
		// nothing to do
	case msgCommandAMF3, msgDataAMF3:
		// AMF3 messages from AMF0 clients are AMF0 values after a 0 format byte.
		if len(p) > 0 && p[0] == 0 {
			p = p[1:]
		}
		if msg.typeID == msgCommandAMF3 {
			return s.handleCommand(msg, p)
		}
		return s.handleData(p)
	case msgCommandAMF0:
		return s.handleCommand(msg, p)
	case msgDataAMF0:
		return s.handleData(p)
	case msgAudio, msgVideo:
		return s.handleMedia(msg.typeID, msg.timestamp, p)
	case msgAggregate:
		return s.handleAggregate(msg)
	default:
		s.log.Debug("rtmp: ignoring message", "type", msg.typeID, "size", len(p))
	}
	return nil
}

// handleAggregate splits an Aggregate message into its FLV tags (RTMP spec
// 7.1.6): tag header (11 bytes), data, previous tag size (4 bytes).
func (s *session) handleAggregate(msg *message) error {
	p := msg.payload
	first := true
	var base uint32
	for len(p) > 0 {
		if len(p) < 11 {
			return ingest.ProtocolError("truncated aggregate message")
		}
		typ := p[0] & 0x1f
		size := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		ts := uint32(p[4])<<16 | uint32(p[5])<<8 | uint32(p[6]) | uint32(p[7])<<24
		if len(p)-11 < size {
			return ingest.ProtocolError("truncated aggregate message")
		}
		data := p[11 : 11+size]
		if first {
			base, first = ts, false
		}
		ts = msg.timestamp + (ts - base)
		switch typ {
		case msgAudio, msgVideo:
			if err := s.handleMedia(typ, ts, data); err != nil {
				return err
			}
		case msgDataAMF0:
			if err := s.handleData(data); err != nil {
				return err
			}
		}
		p = p[min(len(p), 11+size+4):]
	}
	return nil
}

func (s *session) handleCommand(msg *message, p []byte) error {
	vals, err := amfDecodeAll(p)
	if err != nil {
		return ingest.ProtocolError("malformed command: %v", err)
	}
	if len(vals) == 0 {
		return ingest.ProtocolError("empty command")
	}
	name, ok := vals[0].(string)
	if !ok {
		return ingest.ProtocolError("command name is a %T", vals[0])
	}
	var tid float64
	if len(vals) > 1 {
		tid, _ = vals[1].(float64)
	}
	arg := func(i int) any {
		if i < len(vals) {
			return vals[i]
		}
		return nil
	}
	s.log.Debug("rtmp: command", "command", name, "transaction", tid)

	switch name {
	case "connect":
		obj, _ := arg(2).(amfObj)
		return s.onConnect(tid, obj)
	case "createStream":
		if !s.connected {
			return ingest.ProtocolError("createStream before connect")
		}
		if err := s.writeCommand(csidCommand, 0, "_result", tid, nil, 1.0); err != nil {
			return err
		}
		return s.flush()
	case "publish":
		key, _ := arg(3).(string)
		return s.onPublish(msg.streamID, key)
	case "releaseStream", "FCPublish", "getStreamLength", "_checkbw", "receiveAudio", "receiveVideo", "setBufferLength":
		// OBS and ffmpeg send releaseStream and FCPublish before
		// createStream; neither expects an answer.
	case "FCUnpublish", "deleteStream", "closeStream":
		if s.publishing {
			return errUnpublished
		}
	case "play", "play2":
		return ingest.ProtocolError("play is not supported: this is an ingest server")
	default:
		s.log.Debug("rtmp: ignoring command", "command", name)
	}
	return nil
}

func (s *session) onConnect(tid float64, obj amfObj) error {
	if s.connected {
		return ingest.ProtocolError("second connect")
	}
	if obj == nil {
		return ingest.ProtocolError("connect without a command object")
	}
	app := obj.str("app")
	app, s.appQuery, _ = strings.Cut(app, "?")
	s.app = strings.Trim(app, "/")
	s.tcURL = obj.str("tcUrl")
	if s.app != s.cfg.App {
		_ = s.writeCommand(csidCommand, 0, "_error", tid, nil, amfObj{
			{"level", "error"}, {"code", "NetConnection.Connect.Rejected"},
			{"description", fmt.Sprintf("unknown application %q", s.app)},
		})
		_ = s.flush()
		return ingest.Fail(ingest.ReasonBadApp, "application %q refused (only %q is served)", s.app, s.cfg.App)
	}
	s.connected = true
	// The query of tcUrl may hold credentials (rtmp://host/live?key=…): never logged.
	s.log.Debug("rtmp: connect", "app", s.app, "tc_url", withoutQuery(s.tcURL), "flash_ver", obj.str("flashVer"))

	objectEncoding, _ := obj.num("objectEncoding")
	if err := s.writeControl(msgWindowAckSize, binary.BigEndian.AppendUint32(nil, windowAckSize)); err != nil {
		return err
	}
	if err := s.writeControl(msgSetPeerBandwidth, append(binary.BigEndian.AppendUint32(nil, windowAckSize), 2)); err != nil {
		return err
	}
	if err := s.writeControl(msgSetChunkSize, binary.BigEndian.AppendUint32(nil, outChunkSize)); err != nil {
		return err
	}
	s.cw.chunkSize = outChunkSize
	err := s.writeCommand(csidCommand, 0, "_result", tid,
		amfObj{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}},
		amfObj{
			{"level", "status"}, {"code", "NetConnection.Connect.Success"},
			{"description", "Connection succeeded."}, {"objectEncoding", objectEncoding},
		})
	if err != nil {
		return err
	}
	return s.flush()
}

func (s *session) onPublish(streamID uint32, key string) error {
	if !s.connected {
		return ingest.ProtocolError("publish before connect")
	}
	if s.publishing {
		return ingest.ProtocolError("second publish on one connection")
	}
	s.publishSID = streamID
	key, s.rawQuery, _ = strings.Cut(key, "?")
	s.query, _ = url.ParseQuery(s.rawQuery) // best effort: auth will read it
	s.name = s.app + "/" + key
	s.log = s.log.With("stream", s.name)

	if err := media.ValidateName(s.name); err != nil {
		_ = s.sendStatus("error", "NetStream.Publish.BadName", "invalid stream name")
		return &ingest.SessionError{Reason: ingest.ReasonInvalidName, Err: err}
	}
	if c, ok := s.srv.pub.(nameChecker); ok {
		if err := c.CheckName(s.name); err != nil {
			_ = s.sendStatus("error", "NetStream.Publish.BadName", "invalid stream name")
			return &ingest.SessionError{Reason: ingest.ReasonInvalidName, Err: err}
		}
	}
	if err := s.authorize(); err != nil {
		return err
	}
	if _, live := s.srv.pub.Get(s.name); live {
		_ = s.sendStatus("error", "NetStream.Publish.BadName", "stream is already being published")
		return &ingest.SessionError{Reason: ingest.ReasonAlreadyPublishing,
			Err: fmt.Errorf("publish %s: %w", s.name, media.ErrAlreadyPublishing)}
	}
	if !s.srv.publishers.Acquire() {
		_ = s.sendStatus("error", "NetStream.Publish.Rejected", "too many publishers")
		return ingest.Fail(ingest.ReasonTooManyPublishers, "publish %s: %d RTMP publishers already", s.name, s.srv.publishers.Limit())
	}
	s.holdsSlot = true
	s.publishing = true
	s.publishStartedAt = time.Now()

	begin := binary.BigEndian.AppendUint16(nil, ucStreamBegin)
	begin = binary.BigEndian.AppendUint32(begin, streamID)
	if err := s.writeControl(msgUserControl, begin); err != nil {
		return err
	}
	s.log.Info("rtmp: publish", "query", s.rawQuery != "")
	return s.sendStatus("status", "NetStream.Publish.Start", "Start publishing "+s.name)
}

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
	info := media.PublishInfo{Protocol: Protocol, RemoteAddr: s.remote, SessionID: s.id}
	st, err := s.srv.pub.Publish(s.name, info, tracks)
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

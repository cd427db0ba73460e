package rtmp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
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
	s.cr = newChunkReader(s.br, srv.cfg.MaxChunkStreams, srv.cfg.MaxUnassembledBytes)
	s.cw = chunkWriter{w: s.bw, chunkSize: defaultChunkSize}
	return s
}

// connReader counts the bytes read and, once armed, renews the idle deadline
// before every read, never past the publish deadline while there is one.
type connReader struct {
	conn     net.Conn
	m        *ingest.ProtocolMetrics
	idle     time.Duration
	deadline time.Time // the publish deadline; zero once publishing
	n        uint64
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		d := time.Now().Add(r.idle)
		if !r.deadline.IsZero() && r.deadline.Before(d) {
			d = r.deadline
		}
		_ = r.conn.SetReadDeadline(d)
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
	// However little it sends, a connection that does not publish in time
	// is dropped (slow loris).
	s.rd.deadline = time.Now().Add(s.cfg.PublishDeadline)
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
	case ingest.IsTimeout(err) && !s.publishing && !time.Now().Before(s.rd.deadline):
		se = &ingest.SessionError{Reason: ingest.ReasonTimeout, Err: fmt.Errorf("not publishing %s after connecting (publish_deadline): %w", s.cfg.PublishDeadline, err)}
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

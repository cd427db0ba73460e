package rtsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// recordSession is one publisher: ANNOUNCE, SETUP (per media), RECORD.
type recordSession struct {
	srv    *Server
	ss     *gortsplib.ServerSession
	id     string
	remote string
	name   string
	backup bool // role=backup in the URL query
	log    *slog.Logger
	plans  []trackPlan

	pub      *publisher           // from RECORD
	authReq  *auth.PublishRequest // the publish Config.Auth allowed, for Unpublished
	stopKick func() bool
	kicked   atomic.Bool

	mu     sync.Mutex
	warned map[string]bool
}

func (r *recordSession) warnOnce(key, msg string, args ...any) {
	r.mu.Lock()
	seen := r.warned[key]
	r.warned[key] = true
	r.mu.Unlock()
	if !seen {
		r.log.Warn(msg, args...)
	}
}

// refuse counts and logs a refused publish and builds gortsplib's answer:
// the response, and an error that makes it close the connection.
func (s *Server) refuse(log *slog.Logger, remote string, code base.StatusCode, reason ingest.Reason, err error) (*base.Response, error) {
	s.metrics.Error(reason)
	log.Warn("rtsp: publish refused", "reason", string(reason), "status", int(code), "err", fmt.Errorf("rtsp %s: %w", remote, err))
	return &base.Response{StatusCode: code}, &refusedError{err: err}
}

// OnAnnounce accepts or refuses a publisher.
func (h *handler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	s := h.s
	remote := remoteOf(ctx.Conn)
	name := pathName(ctx.Path)
	q, _ := url.ParseQuery(ctx.Query)
	r := &recordSession{
		srv: s, ss: ctx.Session, id: ingest.NewSessionID(), remote: remote, name: name,
		backup: q.Get(ingest.RoleParam) == ingest.RoleBackup,
		warned: make(map[string]bool),
	}
	r.log = s.log.With("session", r.id, "stream", name, "remote", remote)

	if err := media.ValidateName(name); err != nil {
		return s.refuse(r.log, remote, base.StatusBadRequest, ingest.ReasonInvalidName, err)
	}
	s.mu.Lock()
	_, pulled := s.sources[name]
	s.mu.Unlock()
	if pulled {
		return s.refuse(r.log, remote, base.StatusForbidden, ingest.ReasonBadApp,
			fmt.Errorf("publish %s: the name is a pull source's", name))
	}
	if len(ctx.Description.Medias) == 0 {
		return s.refuse(r.log, remote, base.StatusBadRequest, ingest.ReasonProtocol, errors.New("the SDP has no media"))
	}
	plans, ignored := planTracks(ctx.Description)
	if len(plans) == 0 {
		return s.refuse(r.log, remote, base.StatusUnsupportedMediaType, ingest.ReasonUnsupportedCodec,
			fmt.Errorf("no supported track (H.264, H.265, MPEG-4 audio, Opus): %v", ignored))
	}
	if ingest.Busy(s.reg, name, r.publishInfo()) {
		return s.refuse(r.log, remote, base.StatusForbidden, ingest.ReasonAlreadyPublishing,
			fmt.Errorf("publish %s: %w", name, media.ErrAlreadyPublishing))
	}
	if res, err := s.authorize(r, ctx); res != nil {
		return res, err
	}
	if !s.acquire(false) {
		s.unpublished(r.authReq)
		return s.refuse(r.log, remote, base.StatusServiceUnavailable, ingest.ReasonTooManyPublishers,
			fmt.Errorf("publish %s: %d RTSP publishers already", name, s.cfg.MaxPublishers))
	}
	for _, ig := range ignored {
		r.log.Warn("rtsp: ignoring a track", "track", ig)
	}
	r.plans = plans
	s.mu.Lock()
	s.sessions[ctx.Session] = r
	s.mu.Unlock()
	r.log.Info("rtsp: announce", "tracks", len(plans), "ignored", len(ignored))
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup answers publishers' and readers' SETUP requests.
func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		if _, ok := h.s.sessionState(ctx.Session).(*recordSession); !ok {
			return &base.Response{StatusCode: base.StatusBadRequest}, nil, liberrors.ErrServerInvalidState{}
		}
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	return h.setupRead(ctx)
}

// OnRecord starts ingesting.
func (h *handler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	r, ok := h.s.sessionState(ctx.Session).(*recordSession)
	if !ok {
		return &base.Response{StatusCode: base.StatusBadRequest}, liberrors.ErrServerInvalidState{}
	}
	pub, err := newPublisher(h.s, r.name, r.publishInfo(), r.log, r.plans)
	if err != nil {
		return h.s.refuse(r.log, r.remote, base.StatusUnsupportedMediaType, ingest.ReasonUnsupportedCodec, err)
	}
	pub.onPublished = r.published
	r.pub = pub
	for _, t := range pub.tracks {
		ctx.Session.OnPacketRTP(t.plan.media, t.plan.format, r.packetHandler(t))
		ctx.Session.OnPacketRTCP(t.plan.media, func(pkt rtcp.Packet) { pub.handleRTCP(t, pkt) })
	}
	transport := ""
	if tr := ctx.Session.Transport(); tr != nil {
		transport = tr.Protocol.String()
	}
	r.log.Info("rtsp: record", "transport", transport)
	h.s.started(ctx.Conn)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *recordSession) packetHandler(t *inTrack) func(*rtp.Packet) {
	m := t.plan.media
	return func(pkt *rtp.Packet) {
		pts, ok := r.ss.PacketPTS(m, pkt)
		if err := r.pub.handle(t, pkt, pts, ok); err != nil {
			r.ss.Close() // the session ends; finish reports the error
		}
	}
}

// published runs when the stream is published (publisher's mutex held):
// a kick of the stream ends the session.
func (r *recordSession) published(st *media.Stream) {
	r.stopKick = context.AfterFunc(st.Context(), func() {
		r.kicked.Store(true)
		r.ss.Close()
	})
}

// finish closes the stream and reports how the session ended.
func (r *recordSession) finish(sessErr error) {
	s := r.srv
	defer s.release(false)
	defer s.unpublished(r.authReq)
	if r.pub == nil {
		r.log.Debug("rtsp: publisher left before RECORD", "why", fmt.Sprint(sessErr))
		return
	}
	if r.stopKick != nil {
		r.stopKick()
	}
	r.pub.close()
	attrs := r.pub.stats()

	err := r.pub.failure()
	var se *ingest.SessionError
	switch {
	case errors.As(err, &se) && se.Stack != "":
		// a recovered panic is reported whatever else happened
	case r.kicked.Load():
		r.log.Info("rtsp: publisher kicked", attrs...)
		return
	case s.isClosed():
		r.log.Info("rtsp: session closed by server shutdown", attrs...)
		return
	case errors.As(err, &se):
	default:
		var timedOut liberrors.ErrServerSessionTimedOut
		if errors.As(sessErr, &timedOut) {
			se = &ingest.SessionError{Reason: ingest.ReasonTimeout, Err: fmt.Errorf("nothing received for %s", s.cfg.ReadTimeout)}
			break
		}
		r.log.Info("rtsp: session ended", append(attrs, "why", fmt.Sprint(sessErr))...)
		return
	}
	s.metrics.Error(se.Reason)
	attrs = append(attrs, "reason", string(se.Reason), "err", fmt.Errorf("rtsp %s: %w", r.remote, se.Err))
	if se.Stack != "" {
		r.log.Error("rtsp: panic in session", append(attrs, "stack", se.Stack)...)
		return
	}
	r.log.Warn("rtsp: session failed", attrs...)
}

// publishInfo describes the session to the registry; the role comes from
// the URL's query (rtsp://host/live/key?role=backup).
func (r *recordSession) publishInfo() media.PublishInfo {
	return media.PublishInfo{Protocol: Protocol, RemoteAddr: r.remote, SessionID: r.id, Backup: r.backup}
}

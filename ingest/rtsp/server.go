// Package rtsp is Headwater's RTSP ingest and read-out, on
// bluenviron/gortsplib:
//
//   - Publishers (ffmpeg, GStreamer, encoders) ANNOUNCE and RECORD at
//     rtsp://host:8554/<name>, over TCP (interleaved) or UDP; the stream name
//     is the URL path without its leading slash ("live/key").
//   - Pull sources (IP cameras) are RTSP URLs read with PLAY and published
//     under a configured name: always-on sources connect at Start and
//     reconnect forever with exponential backoff (1s to 30s, jittered);
//     on-demand sources connect while the stream has readers (RTSP readers,
//     or Server.Demand for the HLS origin) and disconnect after a linger.
//   - Readers DESCRIBE, SETUP and PLAY any live stream of the registry,
//     whatever protocol published it: each reader session subscribes to the
//     media.Stream and its frames are packetized back to RTP. With
//     Config.ReadAuthorizer, readers need a token (?token=, or the Basic
//     password).
//
// H.264, H.265, AAC and Opus are ingested. AAC comes as MPEG4-GENERIC
// (RFC 3640) or as MP4A-LATM (RFC 6416, as many IP cameras send it) with
// its StreamMuxConfig in the SDP (cpresent=0): one program and layer of
// AAC-LC or HE-AAC, published as the same AAC track (latm.go). LATM with
// the config in-band (cpresent=1), several layers or fixed-length frames is
// refused as an unsupported codec, with the reason in the warning. The
// first video and the first audio media of the SDP are kept, any other
// media is ignored with a warning, and an SDP without any supported one is
// refused (415, reason unsupported_codec). A malformed SDP gets 400 (reason
// protocol) from gortsplib, and so does an AAC config (either payload
// format) that its parser refuses: object types other than AAC-LC and
// HE-AAC, or LATM layers with different configs. Video becomes AVCC with
// access unit delimiters dropped; its DTS comes from mediacommon's
// DTSExtractor; AAC timestamps are regenerated from the sample count.
//
// Timestamps come from gortsplib's session timeline (PacketPTS), which
// starts the tracks together on the arrival of their first packets; that is
// off by the encoder's latency (ffmpeg with x264: 100 to 250 ms). When every
// track has had an RTCP sender report before the stream is published
// (ffmpeg sends one with its first packet), the tracks are aligned on the
// reports' NTP times instead; the session logs sync=rtcp or sync=arrival.
//
// # gortsplib
//
// gortsplib does the RTSP protocol, the RTP/RTCP transports, packet
// reordering on UDP, and (de)packetization. What it does that shaped this
// package:
//
//   - Its callbacks run on its own goroutines: packets of different medias
//     arrive concurrently, and those of every UDP session of the server on
//     the one UDP listener goroutine. Hence the publisher's mutex and the
//     rule that nothing blocks in the packet path. Calling Client.Close from
//     a packet callback deadlocks: callbacks only signal the source's
//     goroutine.
//   - A ServerStream fans packets out to readers through per-session queues
//     that drop single packets when full. To keep the hub's
//     drop-to-next-key-frame behaviour every reader gets its own
//     ServerStream and media.Subscription, and a queue overflow
//     (OnStreamWriteError) makes that reader skip to the next key frame.
//   - Packets written to a ServerStream before gortsplib has made the
//     PLAY session active are lost silently: the relay starts in
//     OnResponse, after the PLAY response.
//   - PacketNTP ignores a sender report that arrives before the session's
//     first RTP packet, which is how ffmpeg sends its first one, and the
//     next comes 5 s later: the reports are read here (OnPacketRTCP).
//   - rtph264's decoder ends an access unit without marker bit when the
//     timestamp changes, returning the previous one from the next packet's
//     Decode: its PTS is tracked here.
//   - A request the handler answers with an error closes the connection
//     after the response (used for refusals); a malformed SDP gets 400
//     without reaching the handler (counted in OnConnClose). A request line
//     without spaces is read until the idle timeout.
//   - A UDP RECORD session survives its RTSP connection: it ends with
//     TEARDOWN or when no packet arrives for ReadTimeout.
//   - Its SDP parser panics on some MP4A-LATM configs, on its own
//     goroutines, before any handler: such bodies are emptied first
//     (sdpPanics), which makes them malformed.
//   - Without handlers, the client and server log through the standard
//     log package (lost packets, decode errors): every callback is set.
package rtsp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/headwater-live/headwater/ingest"
)

// Protocol is the protocol label and media.PublishInfo.Protocol of RTSP sessions.
const Protocol = "rtsp"

// refusedError is returned to gortsplib with a refusal response: the
// connection closes after the response. The refusal has been counted and
// logged already.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// Server is an RTSP server (publishers and readers) and the client of the
// configured pull sources.
type Server struct {
	cfg     Config
	reg     ingest.Registry
	metrics *ingest.ProtocolMetrics
	rm      *Metrics
	log     *slog.Logger
	// connLimit limits connections per address; nil: no limit.
	connLimit *ingest.ConnLimiter
	// connCap limits concurrent connections; nil: no limit.
	connCap *ingest.ConnCap

	// life ends on Close; its goroutines are the sources and reader relays.
	life                *ingest.Lifecycle
	publishers, readers *ingest.Slots // MaxPublishers, MaxReaders

	// testHookPublished, when set (tests only), sees each publisher that published.
	testHookPublished func(*publisher)
	// testListen, when set (tests only), replaces net.Listen for the RTSP listener.
	testListen func(network, address string) (net.Listener, error)
	// backoff bounds of the sources; tests shorten them.
	minBackoff, maxBackoff, stableAfter, headerWait time.Duration

	mu          sync.Mutex
	rtsp        *gortsplib.Server
	sessions    map[*gortsplib.ServerSession]any // *recordSession or *readSession
	pendingPlay map[*gortsplib.ServerConn]*readSession
	challenged  map[*gortsplib.ServerConn]readChallenge // readers answered 401, until they come back
	conns       map[*gortsplib.ServerConn]*connState    // open connections
	readersOf   map[string]int                          // reader sessions per stream name
	sources     map[string]*source
}

// New returns a server publishing to reg. Zero fields of cfg take their
// defaults; m and rm may be nil (metrics are then kept but not registered),
// and so may log.
func New(cfg Config, reg ingest.Registry, m *ingest.Metrics, rm *Metrics, log *slog.Logger) *Server {
	if m == nil {
		m = ingest.NewMetrics(nil)
	}
	if rm == nil {
		rm = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	full := cfg.withDefaults()
	return &Server{
		cfg:         full,
		reg:         reg,
		metrics:     m.Protocol(Protocol),
		rm:          rm,
		log:         log,
		connLimit:   ingest.NewConnLimiter(cfg.MaxConnectionsPerMinute),
		connCap:     ingest.NewConnCap(cfg.MaxConnections, cfg.MaxConnectionsPerAddress),
		conns:       make(map[*gortsplib.ServerConn]*connState),
		life:        ingest.NewLifecycle(Protocol),
		publishers:  ingest.NewSlots(full.MaxPublishers),
		readers:     ingest.NewSlots(full.MaxReaders),
		minBackoff:  minBackoff,
		maxBackoff:  maxBackoff,
		stableAfter: stableSession,
		headerWait:  maxHeaderWait,
		sessions:    make(map[*gortsplib.ServerSession]any),
		pendingPlay: make(map[*gortsplib.ServerConn]*readSession),
		challenged:  make(map[*gortsplib.ServerConn]readChallenge),
		readersOf:   make(map[string]int),
		sources:     make(map[string]*source),
	}
}

// Start validates the configuration, listens, and starts the always-on
// pull sources.
func (s *Server) Start() error {
	return s.life.Start(s.listen)
}

// listen validates the configuration, listens, and starts the always-on
// pull sources.
func (s *Server) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("rtsp: %w", err)
	}
	srv := &gortsplib.Server{
		Handler:        &handler{s: s},
		RTSPAddress:    s.cfg.Address,
		UDPRTPAddress:  s.cfg.UDPRTPAddress,
		UDPRTCPAddress: s.cfg.UDPRTCPAddress,
		ReadTimeout:    s.cfg.ReadTimeout,
		WriteTimeout:   s.cfg.WriteTimeout,
		IdleTimeout:    s.cfg.IdleTimeout,
		WriteQueueSize: writeQueueSize,
		Listen:         s.testListen,
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("rtsp: listen: %w", err)
	}
	s.rtsp = srv
	for _, sc := range s.cfg.Sources {
		src, err := newSource(s, sc)
		if err != nil { // Validate checked the URL
			srv.Close()
			return fmt.Errorf("rtsp: %w", err)
		}
		s.sources[sc.Name] = src
	}
	for _, src := range s.sources {
		s.life.Go(src.run)
	}
	udp := "disabled"
	if s.cfg.UDPRTPAddress != "" {
		udp = s.cfg.UDPRTPAddress + "," + s.cfg.UDPRTCPAddress
	}
	s.log.Info("rtsp: listening", "address", srv.NetListener().Addr().String(), "udp", udp, "sources", len(s.sources))
	return nil
}

// Addr is the RTSP (TCP) listening address, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rtsp == nil || s.life.Closed() {
		return nil
	}
	return s.rtsp.NetListener().Addr()
}

// Close stops listening, ends every session (closing the streams they
// publish) and every pull source, and waits for all of the server's
// goroutines. It is idempotent.
func (s *Server) Close() error {
	return s.life.Close(func() error {
		s.mu.Lock()
		srv := s.rtsp
		s.mu.Unlock()
		if srv != nil {
			srv.Close() // runs OnSessionClose for every session, then returns
		}
		return nil
	})
}

func (s *Server) isClosed() bool { return s.life.Closed() }

// Demand tells the server that someone (the HLS origin) wants to read the
// stream name. For an on-demand pull source it connects the source, or
// keeps it connected for another linger period. It reports whether name is
// a pull source (on-demand or not), i.e. whether waiting for it to go live
// makes sense.
func (s *Server) Demand(name string) bool {
	s.mu.Lock()
	src := s.sources[name]
	s.mu.Unlock()
	if src == nil {
		return false
	}
	src.demand()
	return true
}

// slots are the reader or publisher slots.
func (s *Server) slots(reader bool) *ingest.Slots {
	if reader {
		return s.readers
	}
	return s.publishers
}

// acquire takes a publisher or reader slot.
func (s *Server) acquire(reader bool) bool { return s.slots(reader).Acquire() }

// release gives back a slot of acquire.
func (s *Server) release(reader bool) { s.slots(reader).Release() }

// readerCount is the number of reader sessions of a stream.
func (s *Server) readerCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readersOf[name]
}

func (s *Server) sessionState(ss *gortsplib.ServerSession) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[ss]
}

// pathName turns a request path into a stream name: "/live/key/" -> "live/key".
func pathName(path string) string {
	return strings.Trim(path, "/")
}

// remoteOf is a connection's remote address.
func remoteOf(c *gortsplib.ServerConn) string {
	if c == nil || c.NetConn() == nil {
		return ""
	}
	return c.NetConn().RemoteAddr().String()
}

// handler implements gortsplib's ServerHandler interfaces.
type handler struct{ s *Server }

// connState is what the server keeps of an open connection.
type connState struct {
	release  func()      // gives back its place under Config.MaxConnections
	deadline *time.Timer // the publish deadline, until it RECORDs or PLAYs
}

// OnConnOpen counts connections, refuses those beyond the limits and arms
// the publish deadline of the others.
func (h *handler) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	s := h.s
	s.metrics.Connections.Inc()
	remote := ctx.Conn.NetConn().RemoteAddr()
	if !s.connLimit.Allow(remote) {
		s.metrics.Error(ingest.ReasonRateLimited)
		s.log.Warn("rtsp: connection refused: too many connections from the address",
			"remote", remoteOf(ctx.Conn), "per_minute", s.cfg.MaxConnectionsPerMinute)
		ctx.Conn.Close()
		return
	}
	release, err := s.connCap.Acquire(remote)
	if err != nil {
		s.metrics.Error(ingest.ReasonTooManyConnections)
		s.log.Debug("rtsp: connection refused", "remote", remoteOf(ctx.Conn),
			"reason", string(ingest.ReasonTooManyConnections), "err", err)
		ctx.Conn.Close()
		return
	}
	c := ctx.Conn
	st := &connState{release: release}
	st.deadline = time.AfterFunc(s.cfg.PublishDeadline, func() { h.publishDeadline(c) })
	s.mu.Lock()
	s.conns[c] = st
	s.mu.Unlock()
	s.log.Debug("rtsp: connection opened", "remote", remoteOf(ctx.Conn))
}

// started disarms the publish deadline of a connection that RECORDs or PLAYs.
func (s *Server) started(c *gortsplib.ServerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.conns[c]; st != nil {
		st.deadline.Stop()
	}
}

// publishDeadline closes a connection that neither RECORDs nor PLAYs by
// the publish deadline (slow loris).
func (h *handler) publishDeadline(c *gortsplib.ServerConn) {
	s := h.s
	s.mu.Lock()
	_, open := s.conns[c]
	s.mu.Unlock()
	if !open || s.isClosed() {
		return
	}
	s.metrics.Error(ingest.ReasonTimeout)
	s.log.Warn("rtsp: connection failed", "remote", remoteOf(c), "reason", string(ingest.ReasonTimeout),
		"err", fmt.Errorf("rtsp %s: neither RECORD nor PLAY %s after connecting (publish_deadline)", remoteOf(c), s.cfg.PublishDeadline))
	c.Close()
}

// OnConnClose counts and logs connections that failed on gortsplib's side
// (malformed requests or SDP, timeouts), and readers that left after a
// credential challenge. Other refusals were counted already; sessions
// report their own end.
func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	s := h.s
	remote := remoteOf(ctx.Conn)
	s.mu.Lock()
	delete(s.pendingPlay, ctx.Conn)
	ch, challenged := s.challenged[ctx.Conn]
	delete(s.challenged, ctx.Conn)
	st := s.conns[ctx.Conn]
	delete(s.conns, ctx.Conn)
	s.mu.Unlock()
	if st != nil {
		st.deadline.Stop()
		st.release()
	}
	if challenged && !s.isClosed() {
		// A reader challenged for credentials that never came back with one.
		s.readRefused(ch.name, remote, base.StatusUnauthorized, ch.err)
		return
	}
	reason, failed := classifyConnErr(ctx.Error, s.isClosed())
	if !failed {
		s.log.Debug("rtsp: connection closed", "remote", remote, "why", fmt.Sprint(ctx.Error))
		return
	}
	s.metrics.Error(reason)
	s.log.Warn("rtsp: connection failed", "remote", remote, "reason", string(reason),
		"err", fmt.Errorf("rtsp %s: %w", remote, ctx.Error))
}

// classifyConnErr tells whether a connection's end is a failure to count.
func classifyConnErr(err error, closing bool) (ingest.Reason, bool) {
	var refused *refusedError
	switch {
	case err == nil, closing, errors.As(err, &refused):
		return "", false
	case errors.Is(err, io.EOF), ingest.IsDisconnect(err):
		return "", false
	case ingest.IsTimeout(err):
		return ingest.ReasonTimeout, true
	}
	switch err.(type) {
	case liberrors.ErrServerTerminated, liberrors.ErrServerSessionTornDown, liberrors.ErrServerSessionNotInUse,
		liberrors.ErrServerSessionNotFound:
		return "", false
	}
	switch err.Error() {
	case "terminated", // gortsplib's reader, when the connection is closed under it
		"upgraded to HTTP conn": // the GET half of an RTSP-over-HTTP tunnel
		return "", false
	}
	return ingest.ReasonProtocol, true
}

// OnSessionClose ends what a session held: a publish or a read.
func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s := h.s
	s.mu.Lock()
	st := s.sessions[ctx.Session]
	delete(s.sessions, ctx.Session)
	s.mu.Unlock()
	switch st := st.(type) {
	case *recordSession:
		st.finish(ctx.Error)
	case *readSession:
		st.finish(ctx.Error)
	}
}

// OnRequest logs requests at debug level, and empties an ANNOUNCE's SDP
// that would crash gortsplib's parser (sdpPanics).
func (h *handler) OnRequest(c *gortsplib.ServerConn, req *base.Request) {
	if req.Method == base.Announce && sdpPanics(req.Body) {
		h.s.log.Warn("rtsp: emptying an SDP that crashes gortsplib's parser", "remote", remoteOf(c))
		req.Body = nil
	}
	if h.s.log.Enabled(context.Background(), slog.LevelDebug) {
		u := ""
		if req.URL != nil {
			// Without user information and query: they may hold credentials.
			cu := *req.URL
			cu.User, cu.RawQuery = nil, ""
			u = cu.String()
		}
		h.s.log.Debug("rtsp: request", "remote", remoteOf(c), "method", string(req.Method), "url", u)
	}
}

// OnResponse starts the relay of a reader whose PLAY succeeded, once
// gortsplib has made the session active (packets written before are lost).
func (h *handler) OnResponse(c *gortsplib.ServerConn, res *base.Response) {
	s := h.s
	s.mu.Lock()
	rd := s.pendingPlay[c]
	delete(s.pendingPlay, c)
	s.mu.Unlock()
	if rd != nil && res.StatusCode == base.StatusOK {
		rd.activate()
	}
}

// OnPacketsLost counts RTP packets lost by publishers.
func (h *handler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.s.rm.PacketsLost.Add(float64(ctx.Lost))
}

// OnDecodeError counts undecodable packets (RTP or RTCP) of sessions.
func (h *handler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.s.rm.DecodeErrors.Inc()
	if rs, ok := h.s.sessionState(ctx.Session).(*recordSession); ok {
		rs.warnOnce("decode", "rtsp: undecodable packets from the publisher (logged once)", "err", ctx.Error)
	}
}

// OnStreamWriteError is called when a reader's send queue is full.
func (h *handler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	if rd, ok := h.s.sessionState(ctx.Session).(*readSession); ok {
		rd.overflow(ctx.Error)
	}
}

// Package srt is Headwater's SRT ingest: publishers (OBS, ffmpeg, hardware
// encoders) send MPEG-TS over SRT, which is demuxed into media.Frames and
// published on an ingest.Registry (a *media.Registry). Live streams can also be
// read back as MPEG-TS over SRT (m=request), for relays and monitoring.
//
// The streamid names the stream and says what the caller wants (see
// StreamID): "#!::r=live/key,m=publish", "publish:live/key",
// "read:live/key" or a bare "live/key" to publish. Requests are decided at
// the handshake: a malformed streamid, a wrong or missing passphrase, a name
// already live, a refused publish or read authorisation (Config.Auth,
// Config.ReadAuthorizer), a read of a stream that is not live or a limit
// reached are refused with an SRT rejection code before any media flows.
//
// H.264, H.265, AAC (ADTS) and Opus are ingested; the first video and the
// first audio track of the PMT are kept, other tracks are ignored with a
// warning, and a program without any supported track is refused. Video is
// converted from Annex-B to AVCC (4-byte lengths, AUDs dropped, parameter
// sets kept in-band and in the Track); the stream is published once the
// video parameter sets and a key frame arrived. Timestamps are unwrapped
// (33 bits), made relative to the publish, re-based over discontinuities,
// and regenerated from the sample count for audio.
//
// # Libraries
//
// SRT is datarhei/gosrt; MPEG-TS is bluenviron/mediacommon's mpegts Reader
// and Writer (on asticode/go-astits). What they do that matters here:
//
//   - gosrt does not enforce encryption on a listener: an unencrypted
//     caller is accepted whatever the passphrase unless the application
//     refuses it, which this package does. The caller chooses the key
//     length.
//   - gosrt connections ignore deadlines (SetReadDeadline is a no-op): the
//     idle timeout is a timer here.
//   - gosrt drops packets silently when the application does not read fast
//     enough (1024 packets of queue), and, like SRT live mode in general,
//     drops what its receive buffer holds (up to the latency) when the peer
//     closes: the last fraction of a second of a publish is lost.
//   - gosrt sets SO_REUSEADDR on its UDP socket, so a second listener on the
//     same port would silently share it: Start probes the port first. The
//     socket's receive buffer is the kernel default (net.core.rmem_default);
//     raise it for many publishers.
//   - mediacommon's Reader blocks in Initialize until the PMT and the first
//     ADTS frame of each AAC track arrived (recording up to 1 MiB).
//   - go-astits re-copies a whole PES for every TS packet added to it
//     (quadratic: half a second of CPU for a 1 MiB I-frame) and without a
//     bound; packetGuard reassembles PES itself and hands large video PES to
//     mediacommon as small stand-ins.
package srt

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Protocol is the protocol label and media.PublishInfo.Protocol of SRT sessions.
const Protocol = "srt"

// payloadSize is the SRT payload of what the server sends: 7 TS packets,
// the size every SRT implementation expects for MPEG-TS.
const payloadSize = 7 * tsPacketSize

// Server is an SRT ingest server.
type Server struct {
	cfg     Config
	pub     ingest.Registry
	metrics *ingest.ProtocolMetrics
	srtm    *Metrics
	log     *slog.Logger
	// connLimit limits connection requests per address; nil: no limit.
	connLimit *ingest.ConnLimiter
	// connCap limits concurrent connections; nil: no limit.
	connCap *ingest.ConnCap

	// life ends on Close; its Context bounds publish authorisations in progress.
	life                *ingest.Lifecycle
	publishers, readers *ingest.Slots // MaxPublishers, MaxReaders

	// testHookPublished, when set (tests only), sees each publisher that published.
	testHookPublished func(*publisher)

	mu sync.Mutex
	ln gosrt.Listener
}

// New returns a server publishing to pub. Zero fields of cfg take their
// defaults; m and sm may be nil (metrics are then kept but not registered),
// and so may log.
func New(cfg Config, pub ingest.Registry, m *ingest.Metrics, sm *Metrics, log *slog.Logger) *Server {
	if m == nil {
		m = ingest.NewMetrics(nil)
	}
	if sm == nil {
		sm = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	full := cfg.withDefaults()
	return &Server{
		cfg:        full,
		pub:        pub,
		metrics:    m.Protocol(Protocol),
		srtm:       sm,
		log:        log,
		connLimit:  ingest.NewConnLimiter(cfg.MaxConnectionsPerMinute),
		connCap:    ingest.NewConnCap(cfg.MaxConnections, cfg.MaxConnectionsPerAddress),
		life:       ingest.NewLifecycle(Protocol),
		publishers: ingest.NewSlots(full.MaxPublishers),
		readers:    ingest.NewSlots(full.MaxReaders),
	}
}

// listenConfig is the gosrt configuration of the listener. Passphrases are
// set per connection request.
func (s *Server) listenConfig() gosrt.Config {
	c := gosrt.DefaultConfig()
	c.Latency = s.cfg.Latency // receiver and peer latency
	c.PBKeylen = s.cfg.PBKeyLen
	c.PayloadSize = payloadSize
	// Our idle watchdog ends silent publishers; gosrt's ends connections
	// whose peer vanished (no packet at all, keep-alives included).
	c.PeerIdleTimeout = s.cfg.IdleTimeout + 2*time.Second
	return c
}

// Start listens on Config.Address and serves connections in the background.
func (s *Server) Start() error {
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("srt: invalid configuration: %w", err)
	}
	return s.life.Start(s.listen)
}

// listen opens the listener and starts the accept loop.
func (s *Server) listen() error {
	// gosrt sets SO_REUSEADDR on its UDP socket, which lets a second
	// listener bind the same port and silently take its traffic: probe
	// the port with a plain socket first.
	if _, port, err := net.SplitHostPort(s.cfg.Address); err == nil && port != "0" {
		probe, err := net.ListenPacket("udp", s.cfg.Address)
		if err != nil {
			return fmt.Errorf("srt: listen: %w", err)
		}
		_ = probe.Close()
	}
	ln, err := gosrt.Listen("srt", s.cfg.Address, s.listenConfig())
	if err != nil {
		return fmt.Errorf("srt: listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.life.Go(func() { s.acceptLoop(ln) })
	s.log.Info("srt: listening", "address", ln.Addr().String(), "latency", s.cfg.Latency,
		"encrypted", s.cfg.Passphrase != "", "prefix_passphrases", len(s.cfg.PrefixPassphrases))
	return nil
}

// Addr is the listening (UDP) address, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops listening, drops every connection (closing their streams) and
// waits for all of the server's goroutines to end. It is idempotent.
func (s *Server) Close() error {
	return s.life.Close(func() error {
		s.mu.Lock()
		ln := s.ln
		s.mu.Unlock()
		if ln != nil {
			ln.Close() // also closes the connections it knows
		}
		return nil
	})
}

func (s *Server) acceptLoop(ln gosrt.Listener) {
	for {
		req, err := s.nextRequest(ln)
		if err != nil {
			if !s.life.Closed() && !errors.Is(err, gosrt.ErrListenerClosed) {
				s.log.Error("srt: listener failed: no more connections are accepted", "err", err)
			}
			return
		}
		if req == nil {
			continue
		}
		if s.cfg.Auth != nil {
			// Authorisation may wait for a webhook: other handshakes
			// must not (gosrt drops the caller's repeated requests).
			s.life.Go(func() { s.handleRequest(req) })
			continue
		}
		s.handleRequest(req)
	}
}

// nextRequest waits for a connection request, surviving a panic of gosrt's
// handshake code on a malformed packet (the request is then lost).
func (s *Server) nextRequest(ln gosrt.Listener) (req gosrt.ConnRequest, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("srt: panic while reading a handshake", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.metrics.Error(ingest.ReasonHandshake)
			req, err = nil, nil
		}
	}()
	return ln.Accept2()
}

// rejection is a refused connection request.
type rejection struct {
	code   gosrt.RejectionReason
	reason ingest.Reason // "" when the refusal is not an ingest error
	metric string        // headwater_srt_rejections_total reason
	err    error
}

// handleRequest decides on a connection request at the handshake and, when
// it is accepted, starts its session.
func (s *Server) handleRequest(req gosrt.ConnRequest) {
	s.metrics.Connections.Inc()
	id := ingest.NewSessionID()
	remote := req.RemoteAddr().String()
	log := s.log.With("session", id, "remote", remote)

	if !s.connLimit.Allow(req.RemoteAddr()) {
		s.refuse(req, log, &rejection{code: gosrt.REJX_OVERLOAD, reason: ingest.ReasonRateLimited, metric: rejectRate,
			err: fmt.Errorf("more than %d connections a minute from this address", s.cfg.MaxConnectionsPerMinute)})
		return
	}
	release, err := s.connCap.Acquire(req.RemoteAddr())
	if err != nil {
		s.refuse(req, log, &rejection{code: gosrt.REJX_OVERLOAD, reason: ingest.ReasonTooManyConnections, metric: rejectLimit, err: err})
		return
	}
	serving := false
	defer func() {
		if !serving {
			release()
		}
	}()
	var sid StreamID
	rej := s.decide(req, &sid)
	if sid.Name != "" {
		log = log.With("stream", sid.Name, "mode", sid.Mode.String())
	}
	if rej != nil {
		s.refuse(req, log, rej)
		return
	}
	authReq, rej := s.authorize(id, remote, sid)
	if rej != nil {
		s.release(sid.Mode)
		s.refuse(req, log, rej)
		return
	}

	conn, err := req.Accept()
	if err != nil {
		s.unpublished(authReq)
		s.release(sid.Mode)
		s.refuse(req, log, &rejection{code: gosrt.REJ_SYSTEM, reason: ingest.ReasonHandshake, metric: rejectInternal,
			err: fmt.Errorf("accepting the connection: %w", err)})
		return
	}
	var run func()
	switch sid.Mode {
	case ModePublish:
		p := newPublisher(s, id, sid, remote, log, conn)
		p.authReq = authReq
		run = p.run
	case ModeRequest:
		run = newReader(s, id, sid, remote, log, conn).run
	}
	serving = s.life.Serve(conn, func() {
		defer release()
		run()
	})
	if !serving {
		s.release(sid.Mode)
		s.unpublished(authReq)
	}
}

// decide checks a connection request; on success it holds a publisher or
// reader slot.
func (s *Server) decide(req gosrt.ConnRequest, sid *StreamID) *rejection {
	if v := req.Version(); v != 5 {
		return &rejection{code: gosrt.REJ_VERSION, reason: ingest.ReasonHandshake, metric: rejectVersion,
			err: fmt.Errorf("SRT handshake version %d: version 5 (SRT >= 1.3) is needed for the streamid", v)}
	}
	raw := req.StreamId()
	parsed, err := ParseStreamID(raw)
	if err != nil {
		r := &rejection{code: gosrt.REJX_BAD_REQUEST, reason: ingest.ReasonProtocol, metric: rejectStreamID,
			err: fmt.Errorf("streamid %q: %w", truncate(redactStreamID(raw)), err)}
		switch {
		case errors.Is(err, media.ErrInvalidName):
			r.reason = ingest.ReasonInvalidName
		case errors.Is(err, ErrUnsupportedMode):
			r.code = gosrt.REJX_BAD_MODE
		case errors.Is(err, ErrUnsupportedType):
			r.code = gosrt.REJX_NOTSUP_MEDIA
		}
		return r
	}
	*sid = parsed

	// Encryption: gosrt checks the passphrase (SetPassphrase unwraps the
	// caller's key material with it) but enforces nothing.
	pass := s.cfg.passphraseFor(sid.Name)
	switch {
	case pass == "" && req.IsEncrypted():
		return &rejection{code: gosrt.REJ_UNSECURE, reason: ingest.ReasonHandshake, metric: rejectEncryption,
			err: errors.New("the caller encrypts but the stream has no passphrase")}
	case pass != "" && !req.IsEncrypted():
		return &rejection{code: gosrt.REJ_UNSECURE, reason: ingest.ReasonHandshake, metric: rejectEncryption,
			err: errors.New("the stream needs a passphrase and the caller does not encrypt")}
	case pass != "":
		if err := req.SetPassphrase(pass); err != nil {
			return &rejection{code: gosrt.REJ_BADSECRET, reason: ingest.ReasonHandshake, metric: rejectPassphrase,
				err: fmt.Errorf("wrong passphrase: %w", err)}
		}
	}

	switch sid.Mode {
	case ModePublish:
		if ingest.Busy(s.pub, sid.Name, media.PublishInfo{Protocol: Protocol, Backup: sid.Backup()}) {
			return &rejection{code: gosrt.REJX_CONFLICT, reason: ingest.ReasonAlreadyPublishing, metric: rejectBusy,
				err: fmt.Errorf("publish %s: %w", sid.Name, media.ErrAlreadyPublishing)}
		}
		if !s.acquire(ModePublish) {
			return &rejection{code: gosrt.REJX_OVERLOAD, reason: ingest.ReasonTooManyPublishers, metric: rejectLimit,
				err: fmt.Errorf("publish %s: %d SRT publishers already", sid.Name, s.cfg.MaxPublishers)}
		}
	case ModeRequest:
		// Before the lookup: an unauthorised caller learns nothing of
		// which streams are live.
		if rej := s.authorizeRead(req, *sid); rej != nil {
			return rej
		}
		if _, live := s.pub.Get(sid.Name); !live {
			return &rejection{code: gosrt.REJX_NOTFOUND, metric: rejectNotFound,
				err: fmt.Errorf("read %s: the stream is not live", sid.Name)}
		}
		if !s.acquire(ModeRequest) {
			return &rejection{code: gosrt.REJX_OVERLOAD, metric: rejectLimit,
				err: fmt.Errorf("read %s: %d SRT readers already", sid.Name, s.cfg.MaxReaders)}
		}
	}
	return nil
}

func (s *Server) refuse(req gosrt.ConnRequest, log *slog.Logger, r *rejection) {
	req.Reject(r.code)
	s.srtm.reject(r.metric)
	attrs := []any{"code", int(r.code), "why", r.metric, "err", r.err}
	if refusal := ingest.RefusalReason(r.err); refusal != "" {
		attrs = append(attrs, "refusal", refusal) // of a ReadAuthorizer: missing_token, expired...
	}
	if r.reason == "" {
		log.Info("srt: connection refused", attrs...)
		return
	}
	s.metrics.Error(r.reason)
	log.Warn("srt: connection refused", append(attrs, "reason", string(r.reason))...)
}

// slots are the publisher or reader slots.
func (s *Server) slots(mode Mode) *ingest.Slots {
	if mode == ModeRequest {
		return s.readers
	}
	return s.publishers
}

// acquire takes a publisher or reader slot.
func (s *Server) acquire(mode Mode) bool { return s.slots(mode).Acquire() }

// release gives back a slot of acquire.
func (s *Server) release(mode Mode) { s.slots(mode).Release() }

// Package server wires Headwater together: it builds every component from
// the validated configuration (one builder per component, build.go; every
// config → component mapping in configmap.go), runs one packaging pipeline
// per publish (pipeline.go: the source run and its stages, the ABR ladder
// among them, abr.go), serves the admin listener (admin.go) and applies
// the security configuration (security.go). It owns every long-running
// goroutine and ends them on Shutdown. Nothing imports server.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/eventhook"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/switcher"
)

// Server is a running Headwater instance.
type Server struct {
	cfg *config.Config
	log *slog.Logger
	reg *prometheus.Registry
	tp  trace.TracerProvider

	sec      *security // publish auth, playback tokens, CDN secret, admin token
	registry *media.Registry
	store    *store.Store
	abr      *abr                 // the ABR ladder; nil when transcoder.enabled is false
	cl       *clustering          // the node's cluster part; nil when the cluster is off
	rec      *recordingPart       // recording, DVR, VOD, posters; nil when record.enabled is false
	relay    *relay.Relay         // fetches other nodes' streams; nil when the cluster is off
	pipes    *pipelines           // one per publish
	sw       *switcher.Switcher   // keeps always-on streams on the air; nil in the origin role
	hook     *eventhook.Hook      // events.webhook; nil without
	dropped  prometheus.Counter   // headwater_frames_dropped_total
	slates   switcher.SlateSource // the slates of always-on streams; nil without streams.slate
	rtmp     *rtmp.Server
	srt      *srt.Server
	rtsp     *rtsp.Server
	origin   *origin.Server
	viewers  *origin.Viewers
	admin    *http.Server
	adminLn  net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops (store, admin listener)
	ready  atomic.Bool

	reloadMu sync.Mutex // serialises Reload
	secrets  secretSums // of the secret files in use, for Reload

	newExec newExecutor // builds the ABR's job executor; nil: the local pool
}

// Option adds an optional collaborator to a Server.
type Option func(*Server)

// WithTracerProvider makes the server record spans (publish sessions,
// segments, origin requests) on tp. Without it nothing is traced.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Server) { s.tp = tp }
}

// New builds a server from a validated configuration. Nothing listens until Start.
func New(cfg *config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    log,
		reg:    newMetricsRegistry(),
		tp:     noop.NewTracerProvider(),
		ctx:    ctx,
		cancel: cancel,
	}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.secrets, err = readSecretFiles(cfg, nil, log); err != nil {
		cancel()
		return nil, err
	}
	if err := s.build(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// build builds the components in dependency order (see build.go). On
// error it closes what it built that holds resources before Start: the
// ABR's executor, the publish auth chain (webhook notifications) and the
// recording spool (it locks its directory).
func (s *Server) build() (err error) {
	defer func() {
		if err != nil {
			s.abr.close()
			if s.sec != nil {
				s.sec.close()
			}
			if s.rec != nil {
				_ = s.rec.spool.Close()
			}
		}
	}()
	if s.sec, err = newSecurity(s.cfg, s.reg, s.log, s.tp); err != nil {
		return err
	}
	if err := s.buildCluster(); err != nil {
		return err
	}
	if s.slates, err = newSlates(s.cfg, s.log); err != nil {
		return err
	}
	if s.hook, err = newEventHook(s.cfg, s.reg, s.log); err != nil {
		return err
	}
	if s.rec, err = newRecordingPart(s.cfg, s.hook, s.reg, s.log); err != nil {
		return err
	}
	if err := s.buildPackaging(); err != nil {
		return err
	}
	s.registry = s.newRegistry()
	if err := s.buildIngest(); err != nil {
		return err
	}
	s.buildOrigin()
	s.admin, err = s.newAdmin()
	return err
}

// Registry is the live stream registry (for tests and the admin API).
func (s *Server) Registry() *media.Registry { return s.registry }

// Store is the packaged output (for tests and tools).
func (s *Server) Store() *store.Store { return s.store }

// Metrics is the Prometheus registry every component registers on.
func (s *Server) Metrics() *prometheus.Registry { return s.reg }

// Start opens every listener; on error, whatever was started is closed again.
func (s *Server) Start() (err error) {
	defer func() {
		if err == nil {
			return
		}
		if serr := s.Shutdown(context.Background()); serr != nil {
			s.log.Error("start failed; shutting down what was started", "error", serr)
		}
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.store.Run(s.ctx)
	}()
	if err := s.cl.start(s.ctx); err != nil {
		return err
	}
	if s.rec != nil && s.cl != nil && s.cl.node != nil {
		s.rec.publish = s.cl.publishEvent
		s.rec.runJobs = s.cl.node.RunJobs
	}
	s.rec.start(s.ctx, s.store)
	if s.hook != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.hook.Run(s.ctx)
		}()
	}
	if err := s.origin.Start(); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if s.admin != nil {
		ln, err := net.Listen("tcp", s.cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin: listen: %w", err)
		}
		ln = limitListener(ln, s.cfg.Admin.MaxConnections)
		s.adminLn = ln
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := serveAdmin(s.admin, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin: serve", "error", err)
			}
		}()
		s.log.Info("admin: listening", "address", ln.Addr().String())
	}
	if err := s.abr.start(s.ctx); err != nil {
		return err
	}
	for _, in := range s.ingesters() {
		if err := in.Start(); err != nil {
			return err
		}
	}
	s.ready.Store(true)
	return nil
}

// RTMPAddr is the RTMP listener's address, nil when RTMP is disabled.
func (s *Server) RTMPAddr() net.Addr {
	if s.rtmp == nil {
		return nil
	}
	return s.rtmp.Addr()
}

// SRTAddr is the SRT listener's (UDP) address, nil when SRT is disabled.
func (s *Server) SRTAddr() net.Addr {
	if s.srt == nil {
		return nil
	}
	return s.srt.Addr()
}

// RTSPAddr is the RTSP listener's address, nil when RTSP is disabled.
func (s *Server) RTSPAddr() net.Addr {
	if s.rtsp == nil {
		return nil
	}
	return s.rtsp.Addr()
}

// ingester is an ingest listener.
type ingester interface {
	Start() error
	Close() error
}

// ingesters are the enabled ingest listeners.
func (s *Server) ingesters() []ingester {
	var out []ingester
	if s.rtmp != nil {
		out = append(out, s.rtmp)
	}
	if s.srt != nil {
		out = append(out, s.srt)
	}
	if s.rtsp != nil {
		out = append(out, s.rtsp)
	}
	return out
}

// OriginAddr is the origin listener's address.
func (s *Server) OriginAddr() net.Addr { return s.origin.Addr() }

// AdminAddr is the admin listener's address, nil when disabled.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Shutdown stops accepting publishers, ends every live stream (their
// playlists get ENDLIST), waits for the pipelines, keeps the origin serving
// for shutdown.drain so players and CDNs see the ended playlists, then
// drains the HTTP listeners until ctx ends; in a cluster it closes the
// relay and leaves the cluster last.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	live := s.registry.Len()
	var errs []error
	for _, in := range s.ingesters() {
		if err := in.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.sw != nil {
		s.sw.Close() // always-on streams end now, without their reconnect window
	}
	for _, st := range s.registry.List() {
		st.Close()
	}
	s.pipes.wait(ctx)
	s.abr.close()
	s.sec.close()
	if drain := s.cfg.Shutdown.Drain.Duration(); drain > 0 && live > 0 {
		s.log.Info("shutdown: streams ended, origin draining", "streams", live, "drain", drain.String())
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if err := s.origin.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("origin: %w", err))
	}
	if s.admin != nil {
		if err := s.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin: %w", err))
		}
	}
	if s.relay != nil {
		s.relay.Close()
	}
	if err := s.cl.close(); err != nil {
		errs = append(errs, err)
	}
	s.cancel()
	s.pipes.join()
	s.rec.wait()
	s.wg.Wait()
	return errors.Join(errs...)
}

// RTMPSAddr is the RTMPS listener's address, nil when RTMPS is disabled.
func (s *Server) RTMPSAddr() net.Addr {
	if s.rtmp == nil {
		return nil
	}
	return s.rtmp.TLSAddr()
}

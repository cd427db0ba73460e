// Package server wires Headwater together: the stream registry, the ingest
// listeners, one packaging pipeline per publish, the store, the HTTP origin
// and the admin listener. It owns every long-running goroutine and ends them
// on Shutdown.
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
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/preview"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/telemetry"
	"github.com/headwater-live/headwater/transcoder"
)

// Server is a running Headwater instance.
type Server struct {
	cfg *config.Config
	log *slog.Logger
	reg *prometheus.Registry

	registry  *media.Registry
	store     *store.Store
	segmenter *segmenter.Segmenter
	abr       *abr // the ABR ladder; nil when transcoder.enabled is false
	rtmp      *rtmp.Server
	srt       *srt.Server
	rtsp      *rtsp.Server
	origin    *origin.Server
	admin     *http.Server
	adminLn   net.Listener
	viewers   *origin.Viewers
	sec       *security // publish auth, playback tokens, CDN secret, admin token

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // pipelines and background loops
	ready  atomic.Bool

	mu        sync.Mutex
	pipelines map[string]chan struct{} // stream name -> closed when its pipeline has finished

	reloadMu sync.Mutex // serialises Reload

	tp trace.TracerProvider
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       log,
		reg:       reg,
		ctx:       ctx,
		cancel:    cancel,
		pipelines: make(map[string]chan struct{}),
		tp:        noop.NewTracerProvider(),
	}
	for _, o := range opts {
		o(s)
	}
	_, tracing := s.tp.(noop.TracerProvider)
	tracing = !tracing

	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "headwater_frames_dropped_total",
		Help: "Frames lost by pipelines that did not keep up with their publisher.",
	})
	reg.MustRegister(dropped)
	s.registry = media.NewRegistry(media.RegistryConfig{
		MaxStreams:    cfg.Streams.MaxStreams,
		OnPublish:     s.startPipeline,
		FramesDropped: dropped,
	})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "headwater_streams_active",
		Help: "Streams currently being published.",
	}, func() float64 { return float64(s.registry.Len()) }))

	sec, err := newSecurity(cfg, reg, log, s.tp)
	if err != nil {
		cancel()
		return nil, err
	}
	s.sec = sec

	s.store = store.New(store.Config{
		Window:     cfg.Segmenter.Window,
		KeepExtra:  cfg.Segmenter.KeepExtra,
		EndedGrace: cfg.Streams.EndedGrace.Duration(),
	})
	s.segmenter = segmenter.New(segmenter.Config{
		SegmentDuration: cfg.Segmenter.SegmentDuration.Duration(),
		PartDuration:    cfg.Segmenter.PartDuration.Duration(),
	}, segmenter.NewMetrics(reg), log)
	if s.abr, err = newABR(cfg.Transcoder, reg, log); err != nil {
		cancel()
		return nil, err
	}

	ingestMetrics := ingest.NewMetrics(reg)
	if cfg.SRT.Address != "" {
		srtCfg, err := srtConfig(cfg.SRT)
		if err != nil {
			cancel()
			return nil, err
		}
		srtCfg.Auth = s.sec.authenticator()
		srtCfg.ReadAuthorizer = s.sec.readAuthorizer()
		s.srt = srt.New(srtCfg, s.sec.publisher(s.registry), ingestMetrics, srt.NewMetrics(reg), log)
	}
	if cfg.RTSP.Address != "" {
		rtspCfg := rtspConfig(cfg.RTSP)
		rtspCfg.Auth, rtspCfg.AuthChallenge = s.sec.authenticator(), s.sec.credentialsRequired
		rtspCfg.ReadAuthorizer = s.sec.readAuthorizer()
		s.rtsp = rtsp.New(rtspCfg, s.sec.publisher(s.registry), ingestMetrics, rtsp.NewMetrics(reg), log)
	}
	if cfg.RTMP.Address != "" {
		rtmpsTLS, err := loadTLS("rtmp", cfg.RTMP.TLSCert, cfg.RTMP.TLSKey)
		if err != nil {
			cancel()
			return nil, err
		}
		s.rtmp = rtmp.New(rtmp.Config{
			Address:          cfg.RTMP.Address,
			App:              cfg.RTMP.App,
			HandshakeTimeout: cfg.RTMP.HandshakeTimeout.Duration(),
			IdleTimeout:      cfg.RTMP.IdleTimeout.Duration(),
			MaxPublishers:    cfg.RTMP.MaxPublishers,
			MaxChunkSize:     cfg.RTMP.MaxChunkSize,
			Auth:             s.sec.authenticator(),

			MaxConnectionsPerMinute: cfg.RTMP.MaxConnectionsPerMinute,
			TLSAddress:              cfg.RTMP.TLSAddress,
			TLSConfig:               rtmpsTLS,
		}, s.sec.publisher(s.registry), ingestMetrics, log)
	}

	oc := cfg.Origin
	originCfg := origin.Config{
		Address:            oc.Address,
		TLSCert:            oc.TLSCert,
		TLSKey:             oc.TLSKey,
		ReadHeaderTimeout:  oc.ReadHeaderTimeout.Duration(),
		ReadTimeout:        oc.ReadTimeout.Duration(),
		WriteTimeout:       oc.WriteTimeout.Duration(),
		IdleTimeout:        oc.IdleTimeout.Duration(),
		MaxHeaderBytes:     oc.MaxHeaderBytes,
		BlockTimeout:       oc.BlockTimeout.Duration(),
		Gzip:               oc.Gzip,
		CORSAllowedOrigins: oc.CORS.AllowedOrigins,
		Window:             cfg.Segmenter.Window,
		DASHLowLatency:     oc.DASH.LowLatency,
		DASHTargetLatency:  oc.DASH.TargetLatency.Duration(),
		DASHEndGrace:       oc.DASH.EndGrace.Duration(),
		MaxConnections:     oc.MaxConnections,
		Encryption: origin.EncryptionConfig{
			Enabled:        cfg.HLS.Encryption.Enabled,
			Prefixes:       cfg.HLS.Encryption.Prefixes,
			RotateSegments: cfg.HLS.Encryption.RotateSegments,
			SequenceIV:     cfg.HLS.Encryption.SequenceIV,
			CacheBytes:     int64(cfg.HLS.Encryption.CacheBytes),
		},
		Cache: origin.CacheConfig{
			SegmentMaxAge:      oc.Cache.SegmentMaxAge.Duration(),
			PlaylistMaxAge:     oc.Cache.PlaylistMaxAge.Duration(),
			MultivariantMaxAge: oc.Cache.MultivariantMaxAge.Duration(),
			BlockingMaxAge:     oc.Cache.BlockingMaxAge.Duration(),
			NotFoundMaxAge:     oc.Cache.NotFoundMaxAge.Duration(),
			EndedMaxAge:        oc.Cache.EndedMaxAge.Duration(),
		},
	}
	s.viewers = origin.NewViewers(origin.DefaultViewerWindow)
	reg.MustRegister(s.viewers)
	var originHandler http.Handler = origin.NewHandler(originCfg, s.store, origin.NewMetrics(reg), log, origin.WithViewers(s.viewers))
	if tracing {
		originHandler = otelhttp.NewHandler(originHandler, "origin",
			otelhttp.WithTracerProvider(s.tp), otelhttp.WithPropagators(telemetry.Propagator()),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "origin " + r.Method }))
	}
	// Outermost, so that traces and the origin's logs see paths without tokens.
	originHandler = s.sec.wrapOrigin(originHandler)
	s.origin = origin.NewServer(originCfg, originHandler, log)

	if cfg.Admin.Address != "" {
		s.admin = &http.Server{
			Handler:           s.sec.wrapAdmin(s.adminHandler()),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		if err := configureAdmin(s.admin, cfg.Admin); err != nil {
			cancel()
			return nil, err
		}
	}
	return s, nil
}

// Registry is the live stream registry (for tests and the admin API).
func (s *Server) Registry() *media.Registry { return s.registry }

// Store is the packaged output (for tests and tools).
func (s *Server) Store() *store.Store { return s.store }

// Metrics is the Prometheus registry every component registers on.
func (s *Server) Metrics() *prometheus.Registry { return s.reg }

// Start opens every listener; on error, whatever was started is closed again.
func (s *Server) Start() error {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.store.Run(s.ctx)
	}()
	if err := s.origin.Start(); err != nil {
		s.Shutdown(context.Background())
		return fmt.Errorf("origin: %w", err)
	}
	if s.admin != nil {
		ln, err := net.Listen("tcp", s.cfg.Admin.Address)
		if err != nil {
			s.Shutdown(context.Background())
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
	if s.abr != nil {
		if err := s.abr.pool.Start(s.ctx); err != nil {
			s.Shutdown(context.Background())
			return fmt.Errorf("transcoder: %w", err)
		}
	}
	for _, in := range s.ingesters() {
		if err := in.Start(); err != nil {
			s.Shutdown(context.Background())
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
// drains the HTTP listeners until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	live := s.registry.Len()
	var errs []error
	for _, in := range s.ingesters() {
		if err := in.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, st := range s.registry.List() {
		st.Close()
	}
	s.waitPipelines(ctx)
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
	s.cancel()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) waitPipelines(ctx context.Context) {
	s.mu.Lock()
	pending := make([]chan struct{}, 0, len(s.pipelines))
	for _, done := range s.pipelines {
		pending = append(pending, done)
	}
	s.mu.Unlock()
	for _, done := range pending {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// startPipeline runs inside media.Registry.Publish: it subscribes before the
// publisher's first frame, then packages the stream in its own goroutine. A
// republish waits for the previous pipeline of the same name to finish so
// that the store sees one writer at a time.
func (s *Server) startPipeline(ms *media.Stream) {
	info := ms.Info()
	sub := ms.Subscribe(s.cfg.Segmenter.SubscriberBuffer)
	var tsub, asub *media.Subscription // the video and audio transcoders'
	if s.abr != nil {
		tsub = ms.Subscribe(s.cfg.Segmenter.SubscriberBuffer)
		asub = ms.Subscribe(s.cfg.Segmenter.SubscriberBuffer)
	}
	ctx, span := s.tp.Tracer(telemetry.TracerName).Start(s.ctx, "publish "+ms.Name(),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("headwater.stream", ms.Name()), attribute.String("headwater.protocol", info.Protocol),
			attribute.String("headwater.session", info.SessionID), attribute.String("network.peer.address", info.RemoteAddr)))
	log := s.log.With("stream", ms.Name(), "session", info.SessionID, "protocol", info.Protocol)
	log = log.With(telemetry.LogAttrs(ctx)...)

	done := make(chan struct{})
	s.mu.Lock()
	previous := s.pipelines[ms.Name()]
	s.pipelines[ms.Name()] = done
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			if s.pipelines[ms.Name()] == done {
				delete(s.pipelines, ms.Name())
			}
			s.mu.Unlock()
			close(done)
		}()
		defer sub.Close()
		if tsub != nil {
			defer tsub.Close()
			defer asub.Close()
		}
		defer span.End()
		if previous != nil {
			<-previous
		}
		dst := s.store.Begin(ms.Name())
		log.Info("pipeline: started", "epoch", dst.Epoch())
		var tl *segmenter.Timeline
		var transcoded chan struct{}
		if tsub != nil {
			// The renditions follow the source run's timeline, into dst.
			tl, transcoded = segmenter.NewTimeline(), make(chan struct{})
			go func() {
				defer close(transcoded)
				defer tsub.Close()
				s.abr.run(ctx, s.segmenter, ms.Name(), tsub, dst, tl, log)
			}()
		}
		opts := segmenter.RunOptions{Timeline: tl}
		var audioDone chan struct{}
		if asub != nil {
			// Audio HLS cannot carry (Opus) is packaged as AAC made by the
			// audio transcoder, in place of the source track.
			aac := make(chan *media.Frame, 64)
			opts.Skip, opts.Extra = transcoder.NeedsAudioTranscode, aac
			audioDone = make(chan struct{})
			go func() {
				defer close(audioDone)
				s.abr.runAudio(ctx, asub, aac, log)
			}()
		}
		err := s.segmenter.RunWith(ctx, sub, dst, opts)
		if transcoded != nil {
			<-transcoded // its last GOPs
		}
		if audioDone != nil {
			<-audioDone // its process gone
		}
		dst.End()
		span.SetAttributes(attribute.Int64("headwater.frames", int64(ms.Frames())), attribute.Int64("headwater.dropped", int64(sub.Dropped())))
		if err != nil && !errors.Is(err, context.Canceled) {
			span.SetStatus(codes.Error, err.Error())
			log.Error("pipeline: ended with error", "error", err)
			return
		}
		log.Info("pipeline: ended", "frames", ms.Frames(), "dropped", sub.Dropped())
	}()
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/api/", api.New(s.registry, s.store, s.viewers, s.cfg.Segmenter.Window, s.log))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() || !s.abr.ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// The preview page: "/" lists the streams and plays one from the origin.
	mux.Handle("/", preview.Handler(preview.Config{OriginAddr: s.OriginAddr, OriginScheme: originScheme(s.cfg)}))
	return mux
}

// originScheme is "https" when the origin serves TLS, "" (the page's own
// scheme) otherwise.
func originScheme(cfg *config.Config) string {
	if cfg.Origin.TLSCert != "" && cfg.Origin.TLSKey != "" {
		return "https"
	}
	return ""
}

package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/metrics"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/telemetry"
)

// The builders of New, one per component, in the order New calls them.
// Each takes the validated configuration from s.cfg (mapped onto the
// component's own configuration in configmap.go) and the collaborators
// built before it.

// newMetricsRegistry is the Prometheus registry every component registers
// on, with the Go runtime's and the process's collectors.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	metrics.Register(reg, collectors.NewGoCollector())
	metrics.Register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// buildCluster builds the node's cluster part when the cluster is on (not
// connected until Start) and, with the transcoder on, makes the ABR's job
// executor the cluster's GOP queue.
func (s *Server) buildCluster() (err error) {
	if s.cfg.NeedsOriginURL() {
		return errors.New("cluster.origin_url: must be set on a node that ingests and that other nodes can reach: their origins fetch its streams there")
	}
	if s.cl, err = newClustering(s.cfg, s.reg, s.log); err != nil || s.cl == nil {
		return err
	}
	if s.newExec == nil {
		s.newExec = newClusterExecutor(s.cl, s.cfg, s.reg)
	}
	return nil
}

// buildPackaging builds the store, the segmenter, the ABR ladder (when
// transcoder.enabled) and the pipelines joining them.
func (s *Server) buildPackaging() error {
	s.store = store.New(storeConfig(s.cfg))
	seg := segmenter.New(segmenterConfig(s.cfg.Segmenter), segmenter.NewMetrics(s.reg), s.log)
	var err error
	if s.abr, err = newABR(s.cfg.Transcoder, s.reg, s.log, s.newExec); err != nil {
		return err
	}
	if s.abr != nil && s.cl != nil {
		s.abr.onGap = s.cl.transcodeGap
	}
	var seed func(*store.Store, string) *store.Stream
	if s.cl != nil {
		s.cl.store, s.cl.segDur = s.store, s.cfg.Segmenter.SegmentDuration.Duration()
		seed = s.cl.beginStream
	}
	var follow func(context.Context, *store.Stream)
	if s.rec != nil {
		follow = s.rec.follow
	}
	policy := streamPolicy(s.cfg.Streams)
	s.pipes = newPipelines(s.ctx, pipelineConfig{
		store:     s.store,
		seed:      seed,
		follow:    follow,
		holds:     func(name string) bool { return policy(name).On() },
		segmenter: seg,
		stages:    s.abr.stages(seg),
		buffer:    s.cfg.Segmenter.SubscriberBuffer,
		tp:        s.tp,
		log:       s.log,
	})
	return nil
}

// newRegistry builds the stream registry, whose publishes start pipelines.
func (s *Server) newRegistry() *media.Registry {
	dropped := metrics.Register(s.reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "headwater_frames_dropped_total",
		Help: "Frames lost by pipelines that did not keep up with their publisher.",
	}))
	s.dropped = dropped
	r := media.NewRegistry(media.RegistryConfig{
		MaxStreams:    s.cfg.Streams.MaxStreams,
		OnPublish:     s.pipes.start,
		OnUnpublish:   s.streamEnded,
		FramesDropped: dropped,
	})
	metrics.Register(s.reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "headwater_streams_active",
		Help: "Streams currently being published.",
	}, func() float64 { return float64(r.Len()) }))
	return r
}

// streamEnded frees what the origin keeps of a stream while it is
// published: its viewer count (a republish counts from zero).
func (s *Server) streamEnded(ms *media.Stream) {
	if s.viewers != nil {
		s.viewers.Forget(ms.Name())
	}
	s.cl.unpublished(ms)
}

// buildIngest builds the enabled ingest listeners (not listening yet),
// each publishing through the security's guarded registry (which claims
// the stream's placement in a cluster); none in the origin role.
func (s *Server) buildIngest() error {
	if !s.cl.ingests() {
		return nil
	}
	cfg, m := s.cfg, ingest.NewMetrics(s.reg)
	guarded := s.sec.publisher(s.registry)
	guarded.cl = s.cl
	pub := s.newSwitcher(guarded)
	if cfg.SRT.Address != "" {
		c, err := srtConfig(cfg.SRT)
		if err != nil {
			return err
		}
		c.Auth, c.ReadAuthorizer = s.sec.authenticator(), s.sec.readAuthorizer()
		s.srt = srt.New(c, pub, m, srt.NewMetrics(s.reg), s.log)
	}
	if cfg.RTSP.Address != "" {
		c := rtspConfig(cfg.RTSP)
		c.Auth, c.AuthChallenge = s.sec.authenticator(), s.sec.credentialsRequired
		c.ReadAuthorizer = s.sec.readAuthorizer()
		s.rtsp = rtsp.New(c, pub, m, rtsp.NewMetrics(s.reg), s.log)
	}
	if cfg.RTMP.Address != "" {
		c, err := rtmpConfig(cfg.RTMP)
		if err != nil {
			return err
		}
		c.Auth = s.sec.authenticator()
		s.rtmp = rtmp.New(c, pub, m, s.log)
	}
	return nil
}

// buildOrigin builds the origin server (not listening yet) and the viewer
// count it feeds: the origin handler, traced when tracing is on, behind
// the playback security checks; in a cluster it relays the streams other
// nodes own, and requests other nodes relay (with the cluster secret)
// skip the checks.
func (s *Server) buildOrigin() {
	oc := originConfig(s.cfg)
	s.viewers = metrics.Register(s.reg, origin.NewViewers(origin.DefaultViewerWindow))
	om := origin.NewMetrics(s.reg)
	opts := []origin.Option{origin.WithViewers(s.viewers)}
	if s.cl != nil {
		rc := s.cfg.Origin.Relay.RelayConfig()
		rc.Header = s.cl.relayHeader()
		s.relay = relay.New(rc, s.log.With("component", "relay"), s.reg)
		opts = append(opts, origin.WithRelay(s.cl.owner, s.relay))
	}
	if s.rec != nil {
		opts = append(opts, origin.WithArchive(s.rec.rec))
		if s.rec.posters != nil {
			opts = append(opts, origin.WithPosters(s.rec.posters))
		}
	}
	h := http.Handler(origin.NewHandler(oc, s.store, om, s.log, opts...))
	if _, off := s.tp.(noop.TracerProvider); !off {
		h = otelhttp.NewHandler(h, "origin",
			otelhttp.WithTracerProvider(s.tp), otelhttp.WithPropagators(telemetry.Propagator()),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "origin " + r.Method }))
	}
	// Outermost, so that traces and the origin's logs see paths without tokens.
	h = s.cl.trustRelayed(h, s.sec.wrapOrigin(h), nil)
	s.origin = origin.NewServer(oc, h, s.log, origin.WithServerMetrics(om))
}

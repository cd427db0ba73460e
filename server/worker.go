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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/transcoder"
)

// Worker is `headwater worker`: a member of the cluster that runs GOP jobs
// from the cluster's queue on a local ffmpeg pool (pre-warmed, forked from
// the fork server, with the transcoder section's reservations), and
// nothing else: no ingest, no origin. Its admin listener serves /metrics,
// /healthz and /readyz.
type Worker struct {
	cfg  *config.Config
	log  *slog.Logger
	reg  *prometheus.Registry
	cl   *clustering
	pool *transcoder.Pool

	admin   *http.Server
	adminLn net.Listener

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the queue worker and the admin listener
	queueOK atomic.Bool
	ready   atomic.Bool
}

// NewWorker builds a worker from a validated configuration with the
// cluster on (cluster.nats_url or cluster.embedded). Nothing runs until
// Start.
func NewWorker(cfg *config.Config, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Cluster.Enabled() {
		return nil, errors.New("worker: no cluster: set cluster.nats_url (or cluster.embedded)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{cfg: cfg, log: log, reg: newMetricsRegistry()}
	var err error
	if w.cl, err = newClustering(cfg, w.reg, log); err != nil {
		return nil, err
	}
	w.cl.role = "worker"
	w.cl.cfg.Role = "worker" // node_joined says what joined
	ladders, err := checkedLadders(cfg.Transcoder, cfg.Transcoder.FFmpeg)
	if err != nil {
		return nil, err
	}
	pc, err := poolConfig(cfg.Transcoder, ladders)
	if err != nil {
		return nil, err
	}
	tlog := log.With("component", "transcoder")
	w.pool = transcoder.NewPool(pc, transcoder.NewMetrics(w.reg), tlog)
	w.admin = w.newAdmin()
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// newAdmin is the worker's admin server (/metrics, /healthz, /readyz);
// nil when admin.address is "".
func (w *Worker) newAdmin() *http.Server {
	if w.cfg.Admin.Address == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{Registry: w.reg}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, reason := w.cl.health()
		switch {
		case !w.ready.Load() || !w.pool.Ready():
			ok, reason = false, "the ffmpeg pool is not ready"
		case ok && !w.queueOK.Load():
			ok, reason = false, "the GOP queue is not set up yet"
		}
		if !ok {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("not ready: " + reason + "\n"))
			return
		}
		_, _ = rw.Write([]byte("ready\n"))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelWarn),
	}
	return srv
}

// Metrics is the worker's Prometheus registry.
func (w *Worker) Metrics() *prometheus.Registry { return w.reg }

// AdminAddr is the admin listener's address, nil when disabled.
func (w *Worker) AdminAddr() net.Addr {
	if w.adminLn == nil {
		return nil
	}
	return w.adminLn.Addr()
}

// NodeID is the worker's id in the cluster ("" before Start).
func (w *Worker) NodeID() string {
	if w.cl.node == nil {
		return ""
	}
	return w.cl.node.ID()
}

// Start joins the cluster, starts the pool and the admin listener and, in
// the background, takes jobs from the queue once it exists. On error what
// was started is closed again.
func (w *Worker) Start() (err error) {
	defer func() {
		if err != nil {
			if serr := w.Shutdown(context.Background()); serr != nil {
				w.log.Error("start failed; shutting down what was started", "error", serr)
			}
		}
	}()
	if err := w.cl.start(w.ctx); err != nil {
		return err
	}
	if err := w.pool.Start(w.ctx); err != nil {
		return fmt.Errorf("transcoder: %w", err)
	}
	if w.admin != nil {
		ln, err := net.Listen("tcp", w.cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin: listen: %w", err)
		}
		w.adminLn = limitListener(ln, w.cfg.Admin.MaxConnections)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := w.admin.Serve(w.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				w.log.Error("admin: serve", "error", err)
			}
		}()
		w.log.Info("admin: listening", "address", w.adminLn.Addr().String())
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		runQueue(w.ctx, w.cl.node, w.cl.cfg.Replicas, w.pool, w.pool.Size(), &w.queueOK, w.log, w.reg)
	}()
	w.ready.Store(true)
	w.log.Info("worker: running", "node", w.cl.node.ID(), "slots", w.pool.Size())
	return nil
}

// Shutdown drains: it stops taking jobs, gives back (Nak) or finishes the
// jobs running, closes the pool, leaves the cluster and closes the admin
// listener.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.ready.Store(false)
	w.cancel() // the queue worker gives its jobs back and returns
	var errs []error
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	if w.admin != nil {
		if err := w.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin: %w", err))
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("worker: jobs still running: %w", ctx.Err()))
	}
	w.pool.Close()
	if err := w.cl.close(); err != nil {
		errs = append(errs, err)
	}
	<-done
	return errors.Join(errs...)
}

package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/server"
	"github.com/headwater-live/headwater/telemetry"
)

// newServeCommand runs the server until SIGINT or SIGTERM, reloading the
// configuration on SIGHUP; version is what logs and traces report.
func newServeCommand(version string) *cobra.Command {
	var configPath, role string
	flagValues := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (works with no config file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			overrides := flagOverrides(cmd, flagValues)
			if cmd.Flags().Changed("role") {
				overrides = append(overrides, config.Override{Path: "cluster.role", Value: role, Source: "--role"})
			}
			cfg, log, err := loadConfig(cmd, configPath, overrides)
			if err != nil {
				return err
			}
			tp, stopTracing, err := telemetry.Setup(cmd.Context(), cfg.Tracing.Enabled, version)
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := stopTracing(ctx); err != nil {
					log.Warn("tracing: flush on exit", "error", err)
				}
			}()
			srv, err := server.New(cfg, log, server.WithTracerProvider(tp))
			if err != nil {
				return err
			}
			if err := srv.Start(); err != nil {
				return err
			}
			log.Info("headwater: running", "version", version)

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
		wait:
			for {
				select {
				case <-ctx.Done():
					break wait
				case <-hup:
					reload(log, srv, configPath, overrides)
				}
			}
			return shutdown(log, "headwater", "shutting down", cfg.Shutdown.Timeout.Duration(), srv.Shutdown)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (optional; defaults are built in)")
	addConfigFlags(cmd, flagValues, func(string) bool { return true })
	cmd.Flags().StringVar(&role, "role", "", `what runs: all (ingest, packaging, origin) or origin (no ingest; needs a cluster) (default "all"; env HEADWATER_CLUSTER_ROLE)`)
	return cmd
}

// reload re-reads the configuration on SIGHUP and applies what a running
// server can apply; a file that does not validate is refused as a whole and
// the running configuration stays.
func reload(log *slog.Logger, srv *server.Server, path string, overrides []config.Override) {
	next, err := config.Load(path, os.Environ(), overrides...)
	if err != nil {
		log.Error("reload: refused, keeping the running configuration", "file", path, "error", err.Error())
		return
	}
	res, err := srv.Reload(next)
	if err != nil {
		log.Error("reload: refused, keeping the running configuration", "file", path, "error", err.Error())
		return
	}
	for _, c := range res.Applied {
		log.Info("reload: applied", "key", c.Key, "old", c.Old, "new", c.New)
	}
	for _, c := range res.NeedRestart {
		log.Warn("reload: needs a restart, old value kept", "key", c.Key, "old", c.Old, "new", c.New)
	}
	if len(res.Applied)+len(res.NeedRestart) == 0 {
		log.Info("reload: no change", "file", path)
	}
}

package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/server"
)

// workerFlags are the flags of `headwater worker` that override keys (a
// subset of serve's: it has no ingest and no origin).
var workerFlags = map[string]bool{"admin-address": true, "log-level": true, "log-format": true}

// newWorkerCommand joins the cluster and runs GOP jobs until SIGINT or
// SIGTERM, which drain: running jobs finish or are given back to the
// queue, and the process exits 0.
func newWorkerCommand(version string) *cobra.Command {
	var configPath string
	flagValues := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Join the cluster and run GOP transcoding jobs (no ingest, no origin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd, configPath, flagOverrides(cmd, flagValues))
			if err != nil {
				return err
			}
			w, err := server.NewWorker(cfg, log)
			if err != nil {
				return err
			}
			if err := w.Start(); err != nil {
				return err
			}
			log.Info("headwater worker: running", "version", version, "node", w.NodeID())
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return shutdown(log, "headwater worker", "draining", cfg.Shutdown.Timeout.Duration(), w.Shutdown)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (the cluster section is needed, or HEADWATER_CLUSTER_* variables)")
	addConfigFlags(cmd, flagValues, func(name string) bool { return workerFlags[name] })
	return cmd
}

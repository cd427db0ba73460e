package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/config"
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
			var overrides []config.Override
			for _, f := range config.Flags() {
				if workerFlags[f.Name] && cmd.Flags().Changed(f.Name) {
					overrides = append(overrides, config.Override{Path: f.Path, Value: *flagValues[f.Name], Source: "--" + f.Name})
				}
			}
			cfg, err := config.Load(configPath, os.Environ(), overrides...)
			if err != nil {
				return err
			}
			log, err := cfg.Logger(cmd.ErrOrStderr())
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
			timeout := cfg.Shutdown.Timeout.Duration()
			log.Info("headwater worker: draining", "deadline", timeout.String())
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := w.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			log.Info("headwater worker: stopped")
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (the cluster section is needed, or HEADWATER_CLUSTER_* variables)")
	for _, f := range config.Flags() {
		if workerFlags[f.Name] {
			flagValues[f.Name] = cmd.Flags().String(f.Name, "", f.Usage)
		}
	}
	return cmd
}

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/config"
)

// addConfigFlags adds the configuration's flags that keep accepts to cmd,
// recording where their values go in values.
func addConfigFlags(cmd *cobra.Command, values map[string]*string, keep func(name string) bool) {
	for _, f := range config.Flags() {
		if keep(f.Name) {
			values[f.Name] = cmd.Flags().String(f.Name, "", f.Usage)
		}
	}
}

// flagOverrides are the configuration overrides of the flags set on cmd's
// command line, among those addConfigFlags added.
func flagOverrides(cmd *cobra.Command, values map[string]*string) []config.Override {
	var out []config.Override
	for _, f := range config.Flags() {
		if v, ok := values[f.Name]; ok && cmd.Flags().Changed(f.Name) {
			out = append(out, config.Override{Path: f.Path, Value: *v, Source: "--" + f.Name})
		}
	}
	return out
}

// loadConfig loads the configuration (file, environment, then overrides)
// and the logger it asks for, writing to cmd's standard error.
func loadConfig(cmd *cobra.Command, path string, overrides []config.Override) (*config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path, os.Environ(), overrides...)
	if err != nil {
		return nil, nil, err
	}
	log, err := cfg.Logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// shutdown stops a running process (what says how it goes: "shutting
// down", "draining") within timeout, logging its start and end.
func shutdown(log *slog.Logger, name, what string, timeout time.Duration, stop func(context.Context) error) error {
	log.Info(name+": "+what, "deadline", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := stop(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info(name + ": stopped")
	return nil
}

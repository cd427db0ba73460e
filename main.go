// Command headwater is a live streaming ingest and packaging server: it
// accepts RTMP publishers, cuts CMAF segments and parts, and serves LL-HLS
// from an HTTP origin made to sit behind a CDN.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/server"
	"github.com/headwater-live/headwater/telemetry"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "headwater",
		Short:         "Live streaming ingest and packaging server (RTMP in, LL-HLS out)",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCommand(), newConfigCommand(), newVersionCommand())
	root.AddCommand(newAuthCommand(), newTokenCommand(), newTranscoderCommand())
	return root
}

func newServeCommand() *cobra.Command {
	var configPath string
	flagValues := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (works with no config file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var overrides []config.Override
			for _, f := range config.Flags() {
				if cmd.Flags().Changed(f.Name) {
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
			tp, stopTracing, err := telemetry.Setup(cmd.Context(), cfg.Tracing.Enabled, versionString())
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
			log.Info("headwater: running", "version", versionString())

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
			timeout := cfg.Shutdown.Timeout.Duration()
			log.Info("headwater: shutting down", "deadline", timeout.String())
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			log.Info("headwater: stopped")
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (optional; defaults are built in)")
	for _, f := range config.Flags() {
		flagValues[f.Name] = cmd.Flags().String(f.Name, "", f.Usage)
	}
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

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect configuration",
	}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file (with HEADWATER_* variables applied) and print the effective configuration",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0], os.Environ())
			if err != nil {
				return err
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	defaults := &cobra.Command{
		Use:   "defaults",
		Short: "Print the default configuration as commented YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.DefaultYAML())
			return err
		},
	}
	cmd.AddCommand(check, defaults)
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "headwater %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

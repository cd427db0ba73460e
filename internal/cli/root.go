package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// NewRootCommand returns the headwater command with every subcommand,
// writing to stdout and stderr. version is the build's version (set with
// -ldflags "-X main.version=v1.2.3"); empty falls back to the module
// version, the VCS revision ("dev-<12 hex>") or "dev".
func NewRootCommand(stdout, stderr io.Writer, version string) *cobra.Command {
	version = resolveVersion(version)
	root := &cobra.Command{
		Use:           "headwater",
		Short:         "Live streaming ingest and packaging server (RTMP/RTMPS, SRT, RTSP in; LL-HLS and LL-DASH out, with an ABR ladder)",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCommand(version), newWorkerCommand(version), newConfigCommand(), newVersionCommand(version))
	root.AddCommand(newAuthCommand(), newTokenCommand(), newTranscoderCommand())
	return root
}

// newGroup returns a command that only groups subs under use.
func newGroup(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(subs...)
	return cmd
}

// newPrintCommand returns a command without arguments that writes what
// text returns to standard output.
func newPrintCommand(use, short string, text func() []byte) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(text())
			return err
		},
	}
}

// newVersionCommand prints version with the Go version and platform.
func newVersionCommand(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "headwater %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

// resolveVersion is version when set, else the module version of the
// build, else "dev-" and the VCS revision's first 12 digits, else "dev".
func resolveVersion(version string) string {
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

package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/config"
)

// newConfigCommand groups "config check FILE" and "config defaults".
func newConfigCommand() *cobra.Command {
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
	defaults := newPrintCommand("defaults", "Print the default configuration as commented YAML", config.DefaultYAML)
	return newGroup("config", "Inspect configuration", check, defaults)
}

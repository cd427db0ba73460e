package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/transcoder"
)

// newTranscoderCommand groups the transcoder's helpers.
func newTranscoderCommand() *cobra.Command {
	var dir string
	fork := &cobra.Command{
		Use:   "build-fork-server",
		Short: "Compile the ffmpeg fork server library (with $CC or cc) into the cache directory, as the server does on first use, and print its path",
		Long: "Compile the ffmpeg fork server library (with $CC or cc) into the cache directory, as the server does on first use, and print its path.\n" +
			"Container images run it at build time so that the runtime image needs no C compiler (see the Dockerfile).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			path, err := transcoder.ForkServerLibrary(ctx, dir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), path)
			return err
		},
	}
	fork.Flags().StringVar(&dir, "dir", "", "directory of the library (default: the user cache directory's headwater/, where the server looks)")
	return newGroup("transcoder", "ABR transcoder helpers", fork)
}

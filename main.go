// Command headwater is a live streaming ingest and packaging server: it
// accepts RTMP publishers, cuts CMAF segments and parts, and serves LL-HLS
// from an HTTP origin made to sit behind a CDN.
package main

import (
	"os"

	"github.com/headwater-live/headwater/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	if err := cli.NewRootCommand(os.Stdout, os.Stderr, version).Execute(); err != nil {
		os.Exit(1)
	}
}

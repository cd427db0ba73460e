// Command headwater is a live streaming ingest and packaging server: it
// takes RTMP/RTMPS, SRT and RTSP publishers (and pulls RTSP cameras), cuts
// CMAF segments and parts, optionally transcodes an ABR ladder, and serves
// LL-HLS and LL-DASH from an HTTP origin made to sit behind a CDN. The
// commands live in package internal/cli.
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

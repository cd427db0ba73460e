// Command hwload is Headwater's load tool.
//
//	hwload live   publish N RTMP streams (ffmpeg -c copy of a cached sample),
//	              run M LL-HLS readers against the origin, and report
//	              req/s, MB/s, client latencies and, from the server's
//	              /metrics, part-publish and first-part latency, CPU and RSS
//	hwload http   closed-loop keep-alive GET load over a URL list with C
//	              connections, reporting req/s, GB served and the CPU
//	              seconds per GB of the given server pids
//	hwload sample encode (once) and print the path of the cached sample FLV
//
// Everything runs against a server on this machine; see
// scripts/bench-live.sh and scripts/bench-nginx.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `hwload: load tool for Headwater

usage:
  hwload live   [flags]   N publishers + M LL-HLS readers; part latency, req/s, server CPU
  hwload http   [flags]   closed-loop GET load; server CPU seconds per GB served
  hwload sample [--bitrate 2M] [--ffmpeg ffmpeg]
                          encode the sample FLV once and print its path

Run "hwload <command> -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hwload:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "live":
		return runLive(ctx, args[1:], stdout, stderr)
	case "http":
		return runHTTP(ctx, args[1:], stdout, stderr)
	case "sample":
		return runSample(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hwload sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bitrate := fs.String("bitrate", "2M", "video bitrate (ffmpeg syntax)")
	ffmpeg := fs.String("ffmpeg", "ffmpeg", "ffmpeg binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, err := ensureSample(ctx, *ffmpeg, *bitrate, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// writeJSONFile writes v as one line of JSON to path ("" writes nothing).
func writeJSONFile(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// parseFlags parses args into fs, writing usage and errors to stderr;
// positional arguments are an error.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}

// addErrorKinds adds the counts of src to *dst, making *dst when needed
// (a report without errors keeps a nil map, left out of its JSON).
func addErrorKinds(dst *map[string]int, src map[string]int) {
	for k, n := range src {
		if *dst == nil {
			*dst = map[string]int{}
		}
		(*dst)[k] += n
	}
}

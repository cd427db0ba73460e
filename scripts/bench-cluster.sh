#!/usr/bin/env bash
# Cluster benchmarks (issue 13), measured side by side in one run:
#   1. gopqueue BenchmarkFirstFrame: a ~1.7 MB GOP closed → its first
#      rendition frame back at the owner, on the local pool and through the
#      queue (Executor → JetStream on loopback → Worker → the same pool →
#      frames over core NATS), alternating; the input held by the owner and
#      fetched directly (…/direct, what serve nodes do) or over NATS
#      (…/nats, the fallback). ffmpeg/*: the real ffmpeg run, added latency
#      = difference of the two paths' percentiles; transport/*: a runner
#      answering at once, so each pair's difference is the queue's added
#      latency itself (pairwise-p50/p99). Target: added p99 ≤ 10 ms.
#   2. origin BenchmarkRelayLivePart: 100 lock-step LL-HLS viewers of the
#      live part on the owner and on an edge relaying it: CPU per viewer
#      request (target: edge ≤ 1.5 × owner) and upstream requests per part
#      (target 1.0–1.1).
# Each benchmark runs COUNT times; the summary gives the range over the runs.
# These are benchmarks, not timed tests: the figures depend on the machine
# and on what else runs on it (the load average is printed before each).
#
#   scripts/bench-cluster.sh
#   COUNT=5 FIRSTFRAME_N=40x TRANSPORT_N=500x scripts/bench-cluster.sh
#
# Needs go and ffmpeg. Everything runs on 127.0.0.1 inside the test
# binaries (an in-process NATS server), which clean up after themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3}
FIRSTFRAME_N=${FIRSTFRAME_N:-30x} # ffmpeg GOPs per path per run
TRANSPORT_N=${TRANSPORT_N:-300x}  # GOPs per path per run without ffmpeg
RELAY_TIME=${RELAY_TIME:-20000x}  # viewer requests per run (100 viewers × 200 parts)

for tool in go ffmpeg; do
  command -v "$tool" >/dev/null || { echo "bench-cluster: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hw-bench-cluster.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== $(nproc) cores, $(go env GOOS)/$(go env GOARCH), $(go version | cut -d' ' -f3)"

echo
echo "== GOP closed → first rendition frame, ffmpeg (gopqueue BenchmarkFirstFrame/ffmpeg, $FIRSTFRAME_N, count $COUNT), load average $(load)"
go test -run '^$' -bench 'FirstFrame/ffmpeg' -benchtime "$FIRSTFRAME_N" -count "$COUNT" ./gopqueue/ | tee "$work/firstframe.txt"
echo "   load average after: $(load)"

echo
echo "== GOP closed → first rendition frame, transport only (gopqueue BenchmarkFirstFrame/transport, $TRANSPORT_N, count $COUNT), load average $(load)"
go test -run '^$' -bench 'FirstFrame/transport' -benchtime "$TRANSPORT_N" -count "$COUNT" ./gopqueue/ | tee "$work/transport.txt"
echo "   load average after: $(load)"

echo
echo "== relayed live part (origin BenchmarkRelayLivePart, $RELAY_TIME, count $COUNT), load average $(load)"
go test -run '^$' -bench RelayLivePart -benchtime "$RELAY_TIME" -count "$COUNT" ./origin/ | tee "$work/relay.txt"

# summarize FILE: for each benchmark and unit, the min and max over the runs.
summarize() {
  awk '
    /^Benchmark/ {
      name = $1; sub(/-[0-9]+$/, "", name)
      for (i = 3; i < NF; i += 2) {
        k = name SUBSEP $(i + 1); v = $i + 0
        if (!(k in lo)) { order[++n] = k; lo[k] = v; hi[k] = v }
        if (v < lo[k]) lo[k] = v
        if (v > hi[k]) hi[k] = v
      }
    }
    END {
      for (j = 1; j <= n; j++) {
        split(order[j], p, SUBSEP)
        if (p[2] == "B/op" || p[2] == "allocs/op") continue
        if (p[1] ~ /^BenchmarkFirstFrame/ && p[2] == "ns/op") continue # a whole local+queue pair, with sleeps
        printf "  %-38s %-16s %12.3f .. %-12.3f\n", p[1], p[2], lo[order[j]], hi[order[j]]
      }
    }' "$1"
}

echo
echo "== summary (min .. max over $COUNT runs; load average now $(load))"
summarize "$work/firstframe.txt"
summarize "$work/transport.txt"
summarize "$work/relay.txt"
awk '
  /^BenchmarkRelayLivePart\/owner/ { for (i = 3; i < NF; i += 2) if ($(i + 1) == "cpu-ns/req") owner[++no] = $i }
  /^BenchmarkRelayLivePart\/edge/  { for (i = 3; i < NF; i += 2) if ($(i + 1) == "cpu-ns/req") edge[++ne] = $i }
  END {
    if (no == 0 || ne == 0) exit
    lo = ""; hi = ""
    for (i = 1; i <= no && i <= ne; i++) {
      r = edge[i] / owner[i]
      if (lo == "" || r < lo) lo = r
      if (hi == "" || r > hi) hi = r
    }
    printf "  edge/owner CPU per request, run by run: %.2f .. %.2f (target ≤ 1.5)\n", lo, hi
  }' "$work/relay.txt"

#!/usr/bin/env bash
# Live load benchmark: builds Headwater and hwload, then runs `hwload live`
# twice against a fresh server on 127.0.0.1:
#   1. ingest only: STREAMS publishers (ffmpeg -re -c copy of a cached 720p30
#      sample at BITRATE) and no readers — server CPU for the publishers
#      (target: 20 × 2 Mbit/s ≤ 0.3 cores), part-publish latency (target p50
#      ≤ 25 ms, p99 ≤ 50 ms) and first-part latency (target ≤ 300 ms);
#   2. the same publishers plus READERS LL-HLS readers following the video
#      and audio playlists — the same latencies under read load, req/s, MB/s.
# The server is restarted between the runs so each counts its own first
# parts.
#
#   scripts/bench-live.sh
#   STREAMS=20 READERS=40 DURATION=45s scripts/bench-live.sh
#
# Needs go and ffmpeg. Uses only 127.0.0.1 and cleans up every process it
# starts (hwload stops its own publishers).
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-20}
READERS=${READERS:-40}
RENDITIONS=${RENDITIONS:-video,audio}
DURATION=${DURATION:-45s}
WARMUP=${WARMUP:-8s}
BITRATE=${BITRATE:-2M}
RTMP_PORT=${RTMP_PORT:-19361}
ORIGIN_PORT=${ORIGIN_PORT:-18101}
ADMIN_PORT=${ADMIN_PORT:-19101}

for tool in go ffmpeg curl; do
  command -v "$tool" >/dev/null || { echo "bench-live: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hw-bench-live.XXXXXX)
hw_pid=""
stop_server() {
  local i
  [ -n "$hw_pid" ] || return 0
  kill -TERM "$hw_pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$hw_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$hw_pid" 2>/dev/null || true
  wait "$hw_pid" 2>/dev/null || true
  hw_pid=""
}
cleanup() {
  local rc=$?
  stop_server
  if [ "$rc" != 0 ]; then
    echo "bench-live: failed (exit $rc); server log:" >&2
    tail -n 20 "$work"/headwater-*.log >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() { # name
  "$work/headwater" serve --rtmp-address "127.0.0.1:$RTMP_PORT" \
    --origin-address "127.0.0.1:$ORIGIN_PORT" --admin-address "127.0.0.1:$ADMIN_PORT" \
    --log-level warn --log-format text >"$work/headwater-$1.log" 2>&1 &
  hw_pid=$!
  local i
  for i in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-live: headwater did not start" >&2
  return 1
}

run_live() { # name readers
  start_server "$1"
  echo
  echo "== $1: $STREAMS publishers at $BITRATE, $2 readers ($RENDITIONS), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$work/hwload" live --rtmp "rtmp://127.0.0.1:$RTMP_PORT/live" --origin "http://127.0.0.1:$ORIGIN_PORT" \
    --metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --server-pid "$hw_pid" \
    --streams "$STREAMS" --readers "$2" --renditions "$RENDITIONS" \
    --duration "$DURATION" --warmup "$WARMUP" --bitrate "$BITRATE" \
    --json-out "$work/$1.json"
  stop_server
}

echo "== building"
go build -o "$work/headwater" .
go build -o "$work/hwload" ./cmd/hwload
"$work/hwload" sample --bitrate "$BITRATE" >/dev/null

run_live ingest 0
run_live readers "$READERS"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (the load generator and any other work share the machine's $(nproc) cores)"

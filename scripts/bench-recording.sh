#!/usr/bin/env bash
# Recording benchmark (docs/recording.md, "Figures"): what recording adds
# to a live server. Builds Headwater and hwload, encodes a 20 s 640x360
# 30 fps H.264 + AAC sample FLV once, starts a versitygw S3 server on
# loopback (.cache/bin/versitygw, built like scripts/test.sh does when
# missing), then runs Headwater once per mode and repetition, the modes
# interleaved so that a drift of the machine's load hits them alike:
#
#   off         recording off: ingest + packaging only (the reference)
#   s3          record.enabled to the local S3 (record.backend s3), posters
#               and sprites off, dvr.window 2h
#   dir         the same to a local directory (record.backend dir)
#   s3-posters  s3 with the default poster_interval (5 s): one short
#               ffmpeg decode per stream every 5 s (forked by a fork server,
#               child processes)
#
# Each run: STREAMS publishers `ffmpeg -re -stream_loop -1 -i sample -c copy
# -f flv rtmp://...` (hwload live, no readers: two renditions per stream,
# video and audio, passed through), WARMUP s, then a DURATION s window in
# which are measured: Headwater's CPU (utime+stime of /proc/<pid>/stat) and
# its child processes' (poster decodes: the whole process tree under it),
# the part-publish latency (headwater_part_publish_latency_seconds, p50/p99
# interpolated in the bucket deltas), and with recording the upload time of
# each spooled object (headwater_record_upload_duration_seconds, same way),
# the segments and bytes recorded, missed segments, upload errors and spool
# drops. The 1-minute load average and the machine's busy cores (hwload)
# are printed with every run: the machine is shared, read the figures with
# them in view. The table ends with the CPU each recording mode added to
# the same repetition's "off" run, as a share of it.
#
#   scripts/bench-recording.sh
#   STREAMS=20 DURATION=30 WARMUP=10 REPEAT=3 MODES="off s3 dir" scripts/bench-recording.sh
#
# Needs go, ffmpeg, curl, jq. Uses only 127.0.0.1 (ports below) and cleans
# up every process it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-20}
DURATION=${DURATION:-30} # seconds
WARMUP=${WARMUP:-10}     # seconds
REPEAT=${REPEAT:-3}
MODES=${MODES:-off s3 dir s3-posters}
BITRATE=${BITRATE:-800k}
RTMP_PORT=${RTMP_PORT:-19461}
ORIGIN_PORT=${ORIGIN_PORT:-18201}
ADMIN_PORT=${ADMIN_PORT:-19201}
S3_PORT=${S3_PORT:-17071}
STAGGER_MS=50 # hwload's default publisher stagger
VERSITYGW_VERSION=v1.8.0

for tool in go ffmpeg curl jq awk; do
  command -v "$tool" >/dev/null || { echo "bench-recording: $tool is required" >&2; exit 1; }
done
for m in $MODES; do
  case $m in off | s3 | dir | s3-posters) ;; *) echo "bench-recording: unknown mode $m" >&2; exit 2 ;; esac
done
for p in "$RTMP_PORT" "$ORIGIN_PORT" "$ADMIN_PORT" "$S3_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "bench-recording: port $p is in use (set RTMP_PORT, ORIGIN_PORT, ADMIN_PORT, S3_PORT)" >&2
    exit 1
  fi
done

work=$(mktemp -d /tmp/hw-bench-recording.XXXXXX)
hw_pid=""
s3_pid=""
sampler_pid=""
stop_pid() { # pid: TERM, up to 15 s, then KILL
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for i in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_server() {
  [ -n "$hw_pid" ] || return 0
  stop_pid "$hw_pid"
  hw_pid=""
}
cleanup() {
  local rc=$?
  [ -z "$sampler_pid" ] || kill "$sampler_pid" 2>/dev/null || true
  stop_server
  [ -z "$s3_pid" ] || stop_pid "$s3_pid"
  if [ "$rc" != 0 ]; then
    echo "bench-recording: failed (exit $rc); last server log lines:" >&2
    tail -n 20 "$work"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
go build -o "$work/headwater" .
go build -o "$work/hwload" ./cmd/hwload
if [ ! -x .cache/bin/versitygw ] || [ "$(cat .cache/bin/versitygw.version 2>/dev/null)" != "$VERSITYGW_VERSION" ]; then
  echo "bench-recording: building versitygw $VERSITYGW_VERSION into .cache/bin" >&2
  GOBIN="$PWD/.cache/bin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  echo "$VERSITYGW_VERSION" >.cache/bin/versitygw.version
fi

# The sample: encoded once, then only copied by the publishers.
sample=.cache/bench/recording-360p-$BITRATE.flv
if [ ! -s "$sample" ]; then
  mkdir -p .cache/bench
  echo "== encoding $sample once"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 \
    -f lavfi -i sine=sample_rate=48000 -t 20 \
    -c:v libx264 -preset veryfast -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
    -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 96k -f flv "$work/sample.flv"
  mv "$work/sample.flv" "$sample"
fi

# The S3 server: versitygw in posix mode over a directory, as
# internal/s3test starts it, with bucket "rec".
s3_access=bench-recording
s3_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf %s "$s3_access" >"$work/s3-access"
printf %s "$s3_secret" >"$work/s3-secret"
mkdir -p "$work/s3"
.cache/bin/versitygw --port "127.0.0.1:$S3_PORT" --access "$s3_access" --secret "$s3_secret" \
  --region us-east-1 --quiet posix "$work/s3" >"$work/versitygw.out" 2>&1 &
s3_pid=$!
for i in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break
  kill -0 "$s3_pid" 2>/dev/null || { cat "$work/versitygw.out" >&2; exit 1; }
  sleep 0.1
done
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
curl -fsS -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$s3_access:$s3_secret" \
  -H "x-amz-content-sha256: $empty_sha256" -X PUT "http://127.0.0.1:$S3_PORT/rec"

write_config() { # mode name -> config file
  local mode=$1 name=$2 f="$work/$2.yaml"
  cat >"$f" <<EOF
log: {level: warn, format: text}
rtmp: {address: "127.0.0.1:$RTMP_PORT"}
srt: {address: ""}
rtsp: {address: "", udp_rtp_address: "", udp_rtcp_address: ""}
origin: {address: "127.0.0.1:$ORIGIN_PORT"}
admin: {address: "127.0.0.1:$ADMIN_PORT"}
EOF
  local posters=0s
  [ "$mode" != s3-posters ] || posters=5s
  case $mode in
  s3 | s3-posters)
    cat >>"$f" <<EOF
record:
  enabled: true
  backend: s3
  spool_dir: "$work/spool-$name"
  s3:
    endpoint: "http://127.0.0.1:$S3_PORT"
    region: us-east-1
    bucket: rec
    prefix: "$name"
    path_style: true
    access_key_file: "$work/s3-access"
    secret_key_file: "$work/s3-secret"
  poster_interval: $posters
  sprite_interval: 0s
dvr: {window: 2h}
EOF
    ;;
  dir)
    cat >>"$f" <<EOF
record:
  enabled: true
  backend: dir
  dir: "$work/rec-$name"
  poster_interval: 0s
  sprite_interval: 0s
dvr: {window: 2h}
EOF
    ;;
  esac
  echo "$f"
}

start_server() { # name config
  "$work/headwater" serve --config "$2" >"$work/$1.log" 2>&1 &
  hw_pid=$!
  local i
  for i in $(seq 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" 2>/dev/null && return 0
    kill -0 "$hw_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-recording: headwater did not start" >&2
  return 1
}

# tree_cpu pid: the CPU time (clock ticks) of pid's descendants: of each
# one alive, its own and its reaped children's (utime+stime+cutime+cstime),
# plus pid's reaped children's. Poster decodes are forked by a fork server
# (a child of Headwater that reaps them), so Headwater's own cutime misses
# them.
tree_cpu() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed -n 's/^\([0-9]*\) (.*) /\1 /p' | awk -v root="$1" '
    { pp[$1] = $3; t[$1] = $13 + $14 + $15 + $16; c[$1] = $15 + $16 }
    END {
      s = c[root]
      for (p in pp) { q = pp[p]; while (q != "" && q != root && q > 1) q = pp[q]; if (q == root) s += t[p] }
      print s
    }'
}

# sample_state prefix: the server's metrics, /proc/<pid>/stat fields from
# the state on ($1 = state, $12/$13 utime/stime, in clock ticks), its
# process tree's CPU and the time.
sample_state() {
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1.prom"
  sed 's/.*) //' "/proc/$hw_pid/stat" >"$1.stat"
  tree_cpu "$hw_pid" >"$1.tree"
  date +%s.%N >"$1.time"
}

# hist name m1 m2: "count mean p50 p99" (ms) of a histogram's bucket
# deltas; quantiles interpolated linearly inside the bucket (as PromQL's
# histogram_quantile); ">X" when in the +Inf bucket; "-" without data.
hist() {
  awk -v n="$1" '
    FNR == 1 { f++ }
    index($1, n "_bucket{") == 1 {
      match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
      if (f == 1) a[le] = $NF; else { b[le] = $NF; order[++k] = le }
    }
    $1 == n "_sum" { if (f == 1) s1 = $2; else s2 = $2 }
    $1 == n "_count" { if (f == 1) c1 = $2; else c2 = $2 }
    function q(p,   i, rank, cum, prev, lo, le, c) {
      rank = p * total; prev = 0; lo = 0
      for (i = 1; i <= k; i++) {
        le = order[i]; c = b[le] - a[le]
        if (c >= rank && c > 0) {
          if (le == "+Inf") return sprintf(">%g", lo * 1000)
          return sprintf("%.1f", (lo + (le - lo) * (rank - prev) / (c - prev)) * 1000)
        }
        prev = c; lo = le
      }
      return "-"
    }
    END {
      total = b["+Inf"] - a["+Inf"]
      if (total <= 0) { print "0 - - -"; exit }
      printf "%d %.1f %s %s\n", total, (s2 - s1) / (c2 - c1) * 1000, q(0.5), q(0.99)
    }' "$2" "$3"
}

# delta name m1 m2 [label]: the increase of a counter summed over its
# series (those whose labels contain label).
delta() {
  awk -v n="$1" -v lab="${4:-}" '
    FNR == 1 { f++ }
    ($1 == n || index($1, n "{") == 1) && (lab == "" || index($1, lab) > 0) { if (f == 1) x += $NF; else y += $NF }
    END { printf "%.10g\n", y - x }' "$2" "$3"
}

# gauge name m: the value of an unlabelled gauge.
gauge() { awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print "-" }' "$2"; }

results=$work/results.tsv
printf 'mode\trep\tload1\tbusy\tother\tcpu\tsys\tchild\trunq\tpart_n\tpart_p50\tpart_p99\tframes_dropped\tseg_s\tmb_s\tup_n\tup_mean\tup_p50\tup_p99\tup_err\tmissed\tdropped\tspool_end\texited\n' >"$results"

run() { # mode rep
  local mode=$1 rep=$2 name="$1-$2" cfg lead
  cfg=$(write_config "$mode" "$name")
  start_server "$name" "$cfg"
  # The same window as hwload's: after the publishers' stagger and the
  # warm-up.
  lead=$(awk -v w="$WARMUP" -v n="$STREAMS" -v s="$STAGGER_MS" 'BEGIN { print w + (n - 1) * s / 1000 }')
  (
    sleep "$lead"
    sample_state "$work/$name.1"
    sleep "$DURATION"
    sample_state "$work/$name.2"
  ) &
  sampler_pid=$!
  echo
  echo "== $name: $STREAMS publishers (video+audio, -c copy, $BITRATE 360p), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$work/hwload" live --rtmp "rtmp://127.0.0.1:$RTMP_PORT/live" --origin "http://127.0.0.1:$ORIGIN_PORT" \
    --metrics "http://127.0.0.1:$ADMIN_PORT/metrics" --server-pid "$hw_pid" \
    --streams "$STREAMS" --readers 0 --sample "$sample" --bitrate "$BITRATE" --key-prefix rec \
    --duration "${DURATION}s" --warmup "${WARMUP}s" --json-out "$work/$name.json" | sed 's/^/  /'
  wait "$sampler_pid"
  sampler_pid=""
  local m1="$work/$name.1.prom" m2="$work/$name.2.prom" s1="$work/$name.1.stat" s2="$work/$name.2.stat"
  local wall cpu sys child
  wall=$(awk 'NR == 1 { a = $1 } NR == 2 { print $1 - a }' "$work/$name.1.time" "$work/$name.2.time")
  cpu=$(paste "$s1" "$s2" | awk -v w="$wall" '{ n = NF / 2; printf "%.3f", (($(n + 12) + $(n + 13)) - ($12 + $13)) / 100 / w }')
  sys=$(paste "$s1" "$s2" | awk -v w="$wall" '{ n = NF / 2; printf "%.3f", ($(n + 13) - $13) / 100 / w }')
  child=$(awk -v w="$wall" 'NR == 1 { a = $1 } NR == 2 { printf "%.3f", ($1 - a) / 100 / w }' "$work/$name.1.tree" "$work/$name.2.tree")
  read -r part_n _ part_p50 part_p99 <<<"$(hist headwater_part_publish_latency_seconds "$m1" "$m2")"
  read -r up_n up_mean up_p50 up_p99 <<<"$(hist headwater_record_upload_duration_seconds "$m1" "$m2")"
  local seg_s mb_s
  seg_s=$(awk -v d="$(delta headwater_record_segments_total "$m1" "$m2")" -v w="$wall" 'BEGIN { printf "%.2f", d / w }')
  mb_s=$(awk -v d="$(delta headwater_record_bytes_total "$m1" "$m2")" -v w="$wall" 'BEGIN { printf "%.2f", d / w / 1e6 }')
  local j="$work/$name.json"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$mode" "$rep" "$(jq -r '.machine.load1_start' "$j")" "$(jq -r '.machine.busy_cores | . * 100 | round / 100' "$j")" \
    "$(jq -r '.machine.other_cores | . * 100 | round / 100' "$j")" "$cpu" "$sys" "$child" \
    "$(jq -r '.machine.server_run_queue_wait_s_per_s // "-" | if type == "number" then (. * 1000 | round / 1000) else . end' "$j")" \
    "$part_n" "$part_p50" "$part_p99" "$(jq -r '.server.frames_dropped // 0' "$j")" \
    "$seg_s" "$mb_s" "$up_n" "$up_mean" "$up_p50" "$up_p99" \
    "$(delta headwater_record_uploads_total "$m1" "$m2" 'result="error"')" \
    "$(delta headwater_record_missed_segments_total "$m1" "$m2")" \
    "$(delta headwater_record_dropped_entries_total "$m1" "$m2")" \
    "$(gauge headwater_record_spool_entries "$m2")" \
    "$(jq -r '.load_generator.publishers_exited' "$j")" >>"$results"
  { head -n 1 "$results"; tail -n 1 "$results"; } | column -t -s $'\t' | sed 's/^/  /'
  stop_server
  local errors
  errors=$(grep -c 'level=ERROR' "$work/$name.log" || true)
  [ "$errors" = 0 ] || { echo "  server logged $errors errors:"; grep 'level=ERROR' "$work/$name.log" | head -5 | sed 's/^/    /'; }
}

for rep in $(seq "$REPEAT"); do
  for mode in $MODES; do
    run "$mode" "$rep"
  done
done

echo
echo "== results: $STREAMS streams × 2 renditions (video+audio passthrough, 360p $BITRATE + AAC), ${DURATION} s windows after ${WARMUP} s"
echo "   cpu (of which sys), child: cores (Headwater, user+system (system); its child processes); runq: s/s its threads waited for a CPU; latencies in ms"
column -t -s $'\t' "$results"
echo
echo "== per mode (min..max over $REPEAT runs); added CPU = (mode − off) / off, same repetition"
awk -F'\t' '
  NR == 1 { next }
  { m = $1; r = $2; cpu[m, r] = $6 + $8; sys[m, r] = $7; p99[m, r] = $12; up50[m, r] = $18; up99[m, r] = $19; load[m, r] = $3
    if (!(m in seen)) { seen[m] = 1; modes[++nm] = m } if (r > nr) nr = r }
  function range(arr, m,   r, lo, hi, v, n) {
    n = 0
    for (r = 1; r <= nr; r++) { if (!((m, r) in arr)) continue; v = arr[m, r]; if (v == "-" || v ~ /^>/) return "n/a"
      if (!n || v + 0 < lo) lo = v + 0; if (!n || v + 0 > hi) hi = v + 0; n++ }
    return n ? sprintf("%g..%g", lo, hi) : "-"
  }
  END {
    for (i = 1; i <= nm; i++) {
      m = modes[i]; added = ""
      if (m != "off" && ("off" in seen)) {
        lo = hi = ""
        for (r = 1; r <= nr; r++) if (((m, r) in cpu) && (("off", r) in cpu) && cpu["off", r] > 0) {
          a = (cpu[m, r] - cpu["off", r]) / cpu["off", r] * 100
          if (lo == "" || a < lo) lo = a; if (hi == "" || a > hi) hi = a }
        added = sprintf("  added CPU %+.0f%%..%+.0f%%", lo, hi)
      }
      printf "%-11s load1 %s  CPU %s cores (sys %s)  part p99 %s ms%s", m, range(load, m), range(cpu, m), range(sys, m), range(p99, m), added
      if (m != "off") printf "  upload p50 %s p99 %s ms", range(up50, m), range(up99, m)
      printf "\n"
    }
  }' "$results"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

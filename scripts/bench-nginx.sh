#!/usr/bin/env bash
# Side-by-side serving cost: Headwater serving the newest segments of a live
# stream from memory vs Debian's nginx serving the same files from disk, each
# under the same closed-loop load (hwload http, 64 keep-alive connections),
# in one run on this machine. Prints the server CPU seconds per GB served of
# each and the ratio (target: Headwater ≤ 1.2 × nginx).
#
#   scripts/bench-nginx.sh                 # defaults below
#   CONNECTIONS=64 DURATION=20s ROUNDS=2 scripts/bench-nginx.sh
#
# Needs go, ffmpeg, curl and nginx (Debian's nginx-light is enough). Uses
# only 127.0.0.1 and cleans up every process it starts.
#
# Fairness choices:
# - Both servers get the machine's cores: nginx `worker_processes auto` (one
#   worker per core) and Headwater's default GOMAXPROCS (all cores). The load
#   generator runs on the same cores; its own CPU is reported too.
# - nginx is configured the way one would serve segments in production:
#   sendfile, tcp_nopush, open_file_cache, no access log, unlimited
#   keep-alive requests. The files sit in the page cache (just written).
# - Headwater keeps publishing (one ffmpeg -c copy stream at BITRATE) so the
#   segments stay live in its window; its idle cost (ingest + packaging) is
#   measured for BASELINE before the load and also subtracted ("net").
# - ROUNDS alternate headwater/nginx runs to even out background noise; the
#   totals over all rounds are compared.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-2s}
BASELINE=${BASELINE:-3s}
ROUNDS=${ROUNDS:-2}
SEGMENTS=${SEGMENTS:-5}        # newest complete segments per rendition
PUBLISH_FOR=${PUBLISH_FOR:-15} # seconds of publishing before the download
BITRATE=${BITRATE:-2M}
RTMP_PORT=${RTMP_PORT:-19351}
ORIGIN_PORT=${ORIGIN_PORT:-18091}
ADMIN_PORT=${ADMIN_PORT:-19091}
NGINX_PORT=${NGINX_PORT:-18092}

for tool in go ffmpeg curl nginx awk; do
  command -v "$tool" >/dev/null || { echo "bench-nginx: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hw-bench-nginx.XXXXXX)
hw_pid="" ff_pid="" ng_pid=""
stop_pid() { # pid: TERM, wait up to 5 s, then KILL; always reap
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_pid "$ff_pid"
  stop_pid "$ng_pid"
  stop_pid "$hw_pid"
  if [ "$rc" != 0 ]; then
    echo "bench-nginx: failed (exit $rc); logs:" >&2
    tail -n 20 "$work"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url seconds
  local i
  for i in $(seq $(($2 * 10))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-nginx: $1 did not answer within $2 s" >&2
  return 1
}

echo "== building"
go build -o "$work/headwater" .
go build -o "$work/hwload" ./cmd/hwload
sample=$("$work/hwload" sample --bitrate "$BITRATE")

echo "== headwater on 127.0.0.1 (rtmp :$RTMP_PORT, origin :$ORIGIN_PORT, admin :$ADMIN_PORT), publishing $BITRATE for ${PUBLISH_FOR}s"
# A long window (and keep_extra) keeps the downloaded segments servable from
# memory for the whole run.
HEADWATER_SEGMENTER_WINDOW=30 HEADWATER_SEGMENTER_KEEP_EXTRA=60 \
  "$work/headwater" serve --rtmp-address "127.0.0.1:$RTMP_PORT" \
  --origin-address "127.0.0.1:$ORIGIN_PORT" --admin-address "127.0.0.1:$ADMIN_PORT" \
  --log-level warn --log-format text >"$work/headwater.log" 2>&1 &
hw_pid=$!
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" 10
ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$sample" \
  -c copy -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/bench" >"$work/ffmpeg.log" 2>&1 &
ff_pid=$!
sleep "$PUBLISH_FOR"
kill -0 "$ff_pid" || { echo "bench-nginx: the publisher died" >&2; exit 1; }

echo "== downloading the newest $SEGMENTS complete segments (+ init) of video and audio"
origin="http://127.0.0.1:$ORIGIN_PORT"
www="$work/www"
: >"$work/paths"
for rend in video audio; do
  pl=$(curl -fsS "$origin/live/bench/$rend/index.m3u8")
  init=$(printf '%s\n' "$pl" | sed -n 's/^#EXT-X-MAP:URI="\([^"]*\)".*/\1/p' | tail -n 1)
  segs=$(printf '%s\n' "$pl" | grep -E '^seg[0-9]+\.m4s$' | tail -n "$SEGMENTS")
  [ -n "$init" ] && [ "$(printf '%s\n' "$segs" | wc -l)" = "$SEGMENTS" ] || {
    echo "bench-nginx: $rend playlist has fewer than $SEGMENTS segments:" >&2; printf '%s\n' "$pl" >&2; exit 1; }
  mkdir -p "$www/live/bench/$rend"
  for f in $init $segs; do
    curl -fsS -o "$www/live/bench/$rend/$f" "$origin/live/bench/$rend/$f"
    echo "/live/bench/$rend/$f" >>"$work/paths"
  done
done
sed "s|^|$origin|" "$work/paths" >"$work/urls-headwater"
sed "s|^|http://127.0.0.1:$NGINX_PORT|" "$work/paths" >"$work/urls-nginx"
bytes=$(cat "$www"/live/bench/*/* | wc -c)
echo "   $(wc -l <"$work/paths") files, $bytes bytes"

echo "== nginx $(nginx -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$NGINX_PORT serving them from disk"
mkdir -p "$work/nginx-tmp"
chmod 755 "$work" # workers run as an unprivileged user
chmod -R a+rX "$www"
cat >"$work/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 120s;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  client_body_temp_path $work/nginx-tmp/body;
  proxy_temp_path $work/nginx-tmp/proxy;
  fastcgi_temp_path $work/nginx-tmp/fastcgi;
  uwsgi_temp_path $work/nginx-tmp/uwsgi;
  scgi_temp_path $work/nginx-tmp/scgi;
  types { video/iso.segment m4s; video/mp4 mp4; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $www;
  }
}
EOF
nginx -e "$work/nginx-error.log" -p "$work" -c "$work/nginx.conf" >"$work/nginx.log" 2>&1 &
ng_pid=$!
wait_http "http://127.0.0.1:$NGINX_PORT$(head -n 1 "$work/paths")" 10
# Same bytes from both servers.
while read -r p; do
  cmp -s <(curl -fsS "$origin$p") <(curl -fsS "http://127.0.0.1:$NGINX_PORT$p") ||
    { echo "bench-nginx: $p differs between headwater and nginx" >&2; exit 1; }
done <"$work/paths"

echo "== load: $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq "$ROUNDS"); do
  "$work/hwload" http --label "headwater #$r" --urls "$work/urls-headwater" --connections "$CONNECTIONS" \
    --duration "$DURATION" --warmup "$WARMUP" --baseline "$BASELINE" --pid "$hw_pid" \
    --json-out "$work/headwater-$r.json"
  "$work/hwload" http --label "nginx #$r" --urls "$work/urls-nginx" --connections "$CONNECTIONS" \
    --duration "$DURATION" --warmup "$WARMUP" --baseline "$BASELINE" --pid-children "$ng_pid" \
    --json-out "$work/nginx-$r.json"
done
kill -0 "$ff_pid" || { echo "bench-nginx: the publisher died during the run" >&2; exit 1; }

# field FILE KEY: a number from hwload's one-line JSON.
field() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" "$1"; }
# totals over the rounds: cpu seconds, baseline cpu seconds, GB, errors,
# cores used by other processes on average
totals() {
  local name=$1 f cpu=0 base=0 gb=0 err=0 other=0 secs=0
  for f in "$work/$name"-*.json; do
    cpu=$(awk -v a="$cpu" -v b="$(field "$f" server_cpu_s)" 'BEGIN{print a+b}')
    base=$(awk -v a="$base" -v c="$(field "$f" baseline_cores)" -v d="$(field "$f" duration_s)" 'BEGIN{print a+c*d}')
    gb=$(awk -v a="$gb" -v b="$(field "$f" gb)" 'BEGIN{print a+b}')
    other=$(awk -v a="$other" -v c="$(field "$f" other_cores)" -v d="$(field "$f" duration_s)" 'BEGIN{print a+c*d}')
    secs=$(awk -v a="$secs" -v d="$(field "$f" duration_s)" 'BEGIN{print a+d}')
    err=$((err + $(field "$f" errors)))
  done
  echo "$cpu $base $gb $err $(awk -v o="$other" -v s="$secs" 'BEGIN{print o/s}')"
}
read -r hw_cpu hw_base hw_gb hw_err hw_other < <(totals headwater)
read -r ng_cpu ng_base ng_gb ng_err ng_other < <(totals nginx)
echo
echo "== result ($ROUNDS rounds × $DURATION, $CONNECTIONS connections, load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v hc="$hw_cpu" -v hb="$hw_base" -v hg="$hw_gb" -v nc="$ng_cpu" -v nb="$ng_base" -v ng="$ng_gb" \
  -v he="$hw_err" -v ne="$ng_err" -v ho="$hw_other" -v no="$ng_other" 'BEGIN {
  hr = hc / hg; nr = nc / ng
  hn = (hc - hb) / hg; nn = (nc - nb) / ng
  printf "headwater (memory): %.2f CPU-s for %.2f GB = %.3f CPU-s/GB (net of idle ingest %.3f), errors %d\n", hc, hg, hr, hn, he
  printf "nginx (disk):       %.2f CPU-s for %.2f GB = %.3f CPU-s/GB (net of idle %.3f), errors %d\n", nc, ng, nr, nn, ne
  printf "other processes on the machine: %.2f cores during the headwater runs, %.2f during the nginx runs\n", ho, no
  printf "ratio headwater/nginx: %.2f (net %.2f); target <= 1.20: %s\n", hr / nr, hn / nn, (hn / nn <= 1.2 ? "MET" : "MISSED")
}'
if [ "$hw_err" != 0 ] || [ "$ng_err" != 0 ]; then
  echo "bench-nginx: requests failed, the comparison is not valid" >&2
  exit 1
fi

#!/usr/bin/env bash
# Builds the Dockerfile with podman and checks the image, the compose stack
# and its cluster profile end to end, in a real container runtime:
#
#   1. the image: base images made locally from Debian packages
#      (scripts/container-base.sh), the Dockerfile built unchanged but for
#      its BUILD_IMAGE/RUNTIME_IMAGE arguments;
#   2. one container, run as docs/operations.md says (--read-only, the data
#      volume, a tmpfs /tmp), with the transcoder on: uid 10001, a read-only
#      root, ffmpeg, the fork server library preloaded from the image's
#      cache, a recording written to the volume; ffmpeg on the host
#      publishes RTMP and SRT into the published ports, ffprobe plays the
#      LL-HLS and DASH URLs and a rung of the ladder; /metrics; the image's
#      HEALTHCHECK passes, fails on a hung server and on no server; podman
#      stop (SIGTERM) ends the streams with EXT-X-ENDLIST while the origin
#      drains, and the container exits 0 within shutdown.timeout;
#   3. docker-compose.yml under podman-compose with the images of
#      deploy/podman/compose.yml (nginx, its exporter and Prometheus from
#      Debian's packages; no Grafana): a segment fetched twice through the
#      nginx cache is a HIT the second time; ffprobe plays through the
#      cache; Prometheus's up{job="headwater"} and up{job="cdn"} are 1;
#   4. the cluster profile (NATS built from go.mod's nats-server, two serve
#      nodes, WORKERS=3 workers, nginx in front of both): a stream published
#      to node-a is played with its ladder through the cache, node-b relays
#      it and lists node-a as its owner, and the workers made the rungs.
#
# Everything it starts (containers, networks, volumes, host ffmpeg
# processes) is removed on exit, failed or not, and at the start (a run
# that was killed). Images and build caches are kept, so that a second run
# rebuilds only what changed. It ends with "container-test: N passed, N
# failed".
#
# Needs root (rootful podman; mmdebstrap's root mode) on Debian or Ubuntu:
# podman, runc, netavark, aardvark-dns, iptables, podman-compose,
# mmdebstrap, ffmpeg and curl are installed with apt-get when missing.
# Environment: WORKERS (3), PODMAN (the podman command with its global
# flags, "podman --runtime runc --cgroup-manager=cgroupfs" by default).
set -euo pipefail
cd "$(dirname "$0")/.."
t_total=$SECONDS

have() { command -v "$1" >/dev/null 2>&1; }

# ---- Tools ----------------------------------------------------------------

if [ "$(id -u)" != 0 ]; then
  {
    echo "container-test.sh: needs root (rootful podman, and mmdebstrap's root mode for the base images)"
    echo "run it as root: sudo ./scripts/container-test.sh"
  } >&2
  exit 1
fi
missing=()
have podman || missing+=(podman)
have runc || missing+=(runc)
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
have iptables || missing+=(iptables)
have podman-compose || missing+=(podman-compose)
have mmdebstrap || missing+=(mmdebstrap)
have ffmpeg && have ffprobe || missing+=(ffmpeg)
have curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  if have apt-get; then
    echo "container-test.sh: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    installed="installed ${missing[*]} with apt-get in $((SECONDS - t_total))s"
  else
    {
      echo "container-test.sh: the test needs tools that are not installed, and this script cannot install them (no apt-get)"
      echo "missing: ${missing[*]}"
      echo "  Debian/Ubuntu:  apt-get install -y podman runc netavark aardvark-dns iptables podman-compose mmdebstrap ffmpeg curl"
      echo "  Fedora:         dnf install podman podman-compose mmdebstrap ffmpeg curl"
    } >&2
    exit 1
  fi
fi

# This machine's quirks (docs/operations.md#podman): crun refuses its hybrid
# cgroups (runc works) and there is no systemd (cgroupfs). Root lacks
# CAP_SYS_RESOURCE, so podman's default rlimits (nofile 1048576, nproc
# 4194304) are refused: containers get the hard limits podman runs with.
read -r -a podman <<<"${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"
export PODMAN="${podman[*]}"
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
ulimits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

# ---- Results, logs and clean-up -------------------------------------------

passed=0
failed=0
work=$(mktemp -d /tmp/container-test.XXXXXX)
project=hwct                  # the compose project: containers hwct_<service>_<n>
serve=hwct-serve              # the single container of part 2
idle=hwct-idle
data=hwct-data                # its data volume
pids=()                       # host ffmpeg processes this script started
summary=(${installed:+"$installed"})

pass() { passed=$((passed + 1)); echo "container-test: ok   $*"; }
# fail DESC: the failure, the logs of every container still there, then exit.
fail() {
  failed=$((failed + 1))
  echo "container-test: FAIL $*"
  for c in $("${podman[@]}" ps -a --format '{{.Names}}' --filter "name=^hwct" 2>/dev/null); do
    echo "---- podman logs $c (last 40 lines)"
    "${podman[@]}" logs --tail 40 "$c" 2>&1 || true
  done
  for f in "$work"/*.log; do
    [ -s "$f" ] || continue
    echo "---- $f (last 20 lines)"
    tail -n 20 "$f"
  done
  exit 1
}
figure() { summary+=("$*"); echo "container-test: $*"; }

compose() {
  VERSION=container-test podman-compose -p "$project" -f docker-compose.yml -f deploy/podman/compose.yml \
    --podman-args "${podman[*]:1}" --podman-run-args "${ulimits[*]}" "$@"
}

cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  pids=()
  rm -f "$work"/publish-*.log "$work"/ffprobe.log
  local ids
  ids=$("${podman[@]}" ps -aq --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
  ids="$ids $("${podman[@]}" ps -aq --filter "name=^($serve|$idle)\$" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -n "${ids// /}" ] && "${podman[@]}" rm -f -t 0 $ids >/dev/null 2>&1 || true
  ids=$("${podman[@]}" pod ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -n "$ids" ] && "${podman[@]}" pod rm -f $ids >/dev/null 2>&1 || true
  "${podman[@]}" network rm -f "${project}_default" >/dev/null 2>&1 || true
  ids=$("${podman[@]}" volume ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -n "$ids" ] && "${podman[@]}" volume rm -f $ids >/dev/null 2>&1 || true
  "${podman[@]}" volume rm -f "$data" >/dev/null 2>&1 || true
}
on_exit() {
  local rc=$?
  cleanup
  wait 2>/dev/null || true   # a build still running in the background
  rm -rf "$work"
  if [ "$failed" = 0 ] && [ "$rc" != 0 ]; then
    echo "container-test: FAIL the script stopped (exit $rc) outside a check"
    failed=1
  fi
  echo "container-test: ${passed} passed, ${failed} failed"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
cleanup

# ---- Helpers ----------------------------------------------------------------

# until_ok SECONDS CMD...: runs CMD every 0.1s until it succeeds; false after SECONDS.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
get() { curl -sf -m 10 "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# metric URL NAME[{LABELS...]: the sum of the samples of a metric (those
# whose labels start with LABELS).
metric() {
  get "$1" | awk -v m="$2" '
    index($0, m) == 1 && (index(m, "{") || substr($0, length(m) + 1, 1) ~ /[ {]/) { s += $NF; n++ }
    END { if (n) print s; else exit 1 }'
}
# publish NAME ARGS...: ffmpeg on the host publishing a test pattern (at most
# 120 s) to the URL in ARGS; its log is $work/publish-NAME.log.
publish() {
  local name=$1 size=$2 fmt=$3 url=$4
  ffmpeg -hide_banner -nostdin -loglevel warning -re \
    -f lavfi -i "testsrc2=size=$size:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 120 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac -b:a 64k \
    -f "$fmt" "$url" >"$work/publish-$name.log" 2>&1 &
  pids+=($!)
}
# play URL: ffprobe decodes 3 s of the first video stream; prints
# "codec width height frames".
play() {
  timeout 40 ffprobe -v error -rw_timeout 10000000 -read_intervals %+3 -select_streams v:0 -count_frames \
    -show_entries stream=codec_name,width,height,nb_read_frames -of default=nw=1:nk=1 "$1" 2>>"$work/ffprobe.log" |
    head -n 4 | tr '\n' ' '
}
# played DESC URL [WIDTHxHEIGHT]: play succeeds with frames (and that size).
played() {
  local out
  out=$(play "$2") || true
  read -r codec w h frames <<<"$out"
  if [ "${codec:-}" = h264 ] && [ "${frames:-0}" -gt 0 ] 2>/dev/null && { [ -z "${3:-}" ] || [ "${w}x${h}" = "$3" ]; }; then
    pass "$1: ffprobe decoded $frames frames of ${w}x${h} $codec"
  else
    fail "$1: ffprobe $2 gave \"$out\" (want h264${3:+ $3} with frames)"
  fi
}
# free_ports PORT...: nothing listens on these TCP ports of 127.0.0.1.
free_ports() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      fail "port $p is in use on this machine: docker-compose.yml publishes it (stop what listens there)"
    fi
  done
}
# admin_get CONTAINER PATH: GET on a container's admin listener from inside
# it, with bash's /dev/tcp (the image has no curl), for containers that
# publish no port (the workers). Prints the body.
admin_get() {
  "${podman[@]}" exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090 && printf "GET %s HTTP/1.0\r\n\r\n" "$0" >&3 && sed "1,/^\r$/d" <&3' "$2"
}

# ---- 1. The images -----------------------------------------------------------

t=$SECONDS
eval "$(./scripts/container-base.sh)"   # BUILD_IMAGE, RUNTIME_IMAGE
figure "base images ready in $((SECONDS - t))s ($BUILD_IMAGE, $RUNTIME_IMAGE)"

image=localhost/headwater:container-test
version=$(git describe --tags --always --dirty 2>/dev/null || echo container-test)
# build TAG FILE ARGS...: podman build of FILE (context: the repository),
# keeping the layer cache (independent stages run side by side: --jobs 2);
# the image it replaces is removed when unused. Its output is kept in
# $work/build-FILE.log when it fails (false).
build() {
  local tag=$1 file=$2 old new log
  log="$work/build-$(basename "$file" .Containerfile).log"
  shift 2
  old=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  "${podman[@]}" build --format docker --network host --jobs 2 -f "$file" -t "$tag" \
    --build-arg "BUILD_IMAGE=$BUILD_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
    --build-arg "BASE_IMAGE=$RUNTIME_IMAGE" "$@" . >"$log" 2>&1 || return 1
  new=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    "${podman[@]}" rmi "$old" >/dev/null 2>&1 || true
  fi
  rm -f "$log"
}

t=$SECONDS
# The service images (apt-get: the network more than the CPU) are built
# while the Go compiler builds Headwater; NATS (Go too) after it, from the
# same module and build caches.
{
  build localhost/headwater-nginx:bookworm deploy/podman/nginx.Containerfile &&
    build localhost/headwater-nginx-exporter:bookworm deploy/podman/nginx-exporter.Containerfile &&
    build localhost/headwater-prometheus:bookworm deploy/podman/prometheus.Containerfile
} &
services=$!
build "$image" Dockerfile --build-arg "VERSION=$version" || fail "podman build of the Dockerfile"
build_s=$((SECONDS - t))
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
figure "image $image built in ${build_s}s, $((size / 1000000)) MB"
t=$SECONDS
wait "$services" || fail "podman build of deploy/podman's nginx, nginx-exporter or prometheus image"
nats_version=$(awk '$1 == "github.com/nats-io/nats-server/v2" { sub(/^v/, "", $2); print $2 }' go.mod)
build localhost/headwater-nats:bookworm deploy/podman/nats.Containerfile --build-arg "NATS_SERVER_VERSION=$nats_version" ||
  fail "podman build of deploy/podman/nats.Containerfile"
figure "service images (nginx, nginx-prometheus-exporter, Prometheus; nats-server $nats_version) ready $((SECONDS - t))s after it"
got=$("${podman[@]}" run --rm "${ulimits[@]}" "$image" version 2>>"$work/run.log")
[[ "$got" == "headwater $version "* ]] && pass "the image runs: $got" || fail "headwater version printed \"$got\""
hc=$("${podman[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$image")
[[ "$hc" == *headwater-healthcheck* ]] && pass "the image keeps its HEALTHCHECK (docker format)" || fail "no HEALTHCHECK in the image: $hc"
# Untagged images of earlier builds (their build stages, mostly: ~560 MB a
# source change) made from the local base images: kept a day as the layer
# cache of the next builds, then removed.
"${podman[@]}" image prune -f --filter label=org.headwater.base-recipe --filter until=24h >/dev/null

# ---- 2. One container --------------------------------------------------------

# As docs/operations.md runs it: read-only root with the data volume at
# /var/lib/headwater and a tmpfs /tmp (--read-only-tmpfs=false: podman would
# add /tmp, /var/tmp and /run by itself, Docker adds nothing), every port
# published on a free port of 127.0.0.1. The transcoder makes a small
# ladder; recording writes to the volume.
"${podman[@]}" volume create "$data" >/dev/null
t0=$(now_ms)
"${podman[@]}" run -d --name "$serve" "${ulimits[@]}" \
  --read-only --read-only-tmpfs=false -v "$data:/var/lib/headwater" --tmpfs /tmp \
  -p 127.0.0.1::1935 -p 127.0.0.1::8080 -p 127.0.0.1::9090 -p 127.0.0.1::8890/udp \
  -e HEADWATER_TRANSCODER_ENABLED=true -e 'HEADWATER_TRANSCODER_LADDER=240p=240:400k,160p=160:200k' \
  -e HEADWATER_TRANSCODER_POOL_SIZE=2 -e HEADWATER_RECORD_ENABLED=true \
  "$image" >/dev/null 2>"$work/run.log" || fail "podman run $image"
admin=$("${podman[@]}" port "$serve" 9090/tcp)
origin=$("${podman[@]}" port "$serve" 8080/tcp)
rtmp=$("${podman[@]}" port "$serve" 1935/tcp)
srt=$("${podman[@]}" port "$serve" 8890/udp)
until_ok 30 get "http://$admin/readyz" || fail "/readyz did not answer 200 within 30s"
ready_ms=$(($(now_ms) - t0))
figure "container start (podman run) -> /readyz 200: ${ready_ms} ms"

uid=$("${podman[@]}" exec "$serve" awk '/^Uid:/ { print $2 }' /proc/1/status)
[ "$uid" = 10001 ] && pass "the server (pid 1) runs as uid 10001" || fail "pid 1 runs as uid $uid"
ro=$("${podman[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$serve")
if [ "$ro" = true ] && ! "${podman[@]}" exec "$serve" touch /var/cache/headwater/x 2>/dev/null &&
  ! "${podman[@]}" exec "$serve" touch /x 2>/dev/null &&
  "${podman[@]}" exec "$serve" touch /var/lib/headwater/.w /tmp/.w; then
  pass "the root file system is read-only; /var/lib/headwater (volume) and /tmp (tmpfs) are writable"
else
  fail "read-only root ($ro) or the documented volumes"
fi
ffv=$("${podman[@]}" exec "$serve" ffmpeg -hide_banner -version | head -n 1)
[[ "$ffv" == "ffmpeg version"* ]] && pass "ffmpeg in the image: ${ffv% Copyright*}" || fail "ffmpeg -version: $ffv"
lib=$("${podman[@]}" logs "$serve" 2>&1 | grep 'forking ffmpeg processes from a fork server' | grep -o '"library":"[^"]*"' | cut -d'"' -f4 | head -n 1)
up=$(metric "http://$admin/metrics" headwater_transcoder_fork_server_up || true)
if [[ "$lib" == /var/cache/headwater/forkserver-*.so ]] && [ "$up" = 1 ]; then
  pass "the fork server preloads the image's library $lib (headwater_transcoder_fork_server_up 1)"
else
  fail "fork server: library \"$lib\", headwater_transcoder_fork_server_up \"$up\""
fi

publish rtmp 640x360 flv "rtmp://$rtmp/live/rtmp"
publish srt 640x360 mpegts "srt://$srt?streamid=#!::r=live/srt,m=publish&latency=200000"
for s in rtmp srt; do
  until_ok 20 get "http://$origin/live/$s/index.m3u8" || fail "live/$s: no playlist 20s after ffmpeg started publishing over ${s^^}"
done
pass "ffmpeg on the host publishes over RTMP ($rtmp) and SRT ($srt/udp) into the published ports"
played "LL-HLS of the RTMP stream" "http://$origin/live/rtmp/index.m3u8"
played "DASH of the RTMP stream" "http://$origin/live/rtmp/manifest.mpd"
played "LL-HLS of the SRT stream" "http://$origin/live/srt/index.m3u8"
played "DASH of the SRT stream" "http://$origin/live/srt/manifest.mpd"
streams=$(metric "http://$admin/metrics" "headwater_streams_active" || true)
[ "${streams:-0}" = 2 ] && pass "/metrics answers: headwater_streams_active 2" || fail "/metrics: headwater_streams_active \"$streams\""

mv=$(get "http://$origin/live/rtmp/index.m3u8")
rungs=$(grep -c '^#EXT-X-STREAM-INF' <<<"$mv" || true)
if [ "$rungs" = 3 ] && grep -q 'RESOLUTION=426x240' <<<"$mv" && grep -q 'RESOLUTION=284x160' <<<"$mv"; then
  pass "the ladder is made in the container: the multivariant lists the source, 240p and 160p"
else
  fail "multivariant playlist with $rungs variants:"$'\n'"$mv"
fi
played "the 240p rung" "http://$origin/live/rtmp/240p/index.m3u8" 426x240
jobs=$(metric "http://$admin/metrics" 'headwater_transcoder_jobs_total{outcome="ok"' || true)
[ "${jobs:-0}" -gt 0 ] 2>/dev/null && pass "transcoder: $jobs rendition-GOPs ok" || fail "headwater_transcoder_jobs_total{outcome=\"ok\"} \"$jobs\""
until_ok 20 "${podman[@]}" exec "$serve" find /var/lib/headwater/recordings -type f -name '*.m4s' -print -quit ||
  fail "no recorded segment in the data volume 20s into the streams"
nrec=$("${podman[@]}" exec "$serve" find /var/lib/headwater/recordings -type f | wc -l)
pass "recording writes to the data volume ($nrec files in /var/lib/headwater/recordings)"

"${podman[@]}" healthcheck run "$serve" >/dev/null 2>"$work/healthcheck.log" &&
  pass "podman healthcheck run: healthy" || fail "podman healthcheck run on the running server"
"${podman[@]}" kill --signal STOP "$serve" >/dev/null
hc_out=$("${podman[@]}" healthcheck run "$serve" 2>&1) && hc_rc=0 || hc_rc=$?
"${podman[@]}" kill --signal CONT "$serve" >/dev/null
[ "$hc_rc" = 1 ] && [[ "$hc_out" == *unhealthy* ]] && pass "podman healthcheck run: unhealthy while the server is stopped (SIGSTOP)" ||
  fail "healthcheck on a stopped server: exit $hc_rc: $hc_out"
"${podman[@]}" run -d --name "$idle" "${ulimits[@]}" --read-only --entrypoint sleep "$image" 60 >/dev/null 2>>"$work/run.log"
hc_out=$("${podman[@]}" healthcheck run "$idle" 2>&1) && hc_rc=0 || hc_rc=$?
"${podman[@]}" rm -f -t 0 "$idle" >/dev/null 2>&1
[ "$hc_rc" = 1 ] && [[ "$hc_out" == *unhealthy* ]] && pass "podman healthcheck run: unhealthy in a container of the image with no server" ||
  fail "healthcheck with no server: exit $hc_rc: $hc_out"
until_ok 10 "${podman[@]}" healthcheck run "$serve" || fail "healthcheck after SIGCONT"

# SIGTERM: both streams end with EXT-X-ENDLIST, read from the origin while
# it drains (shutdown.drain, 2s); the container exits 0 within
# shutdown.timeout (15s), podman's -t 20 never reached.
t0=$(now_ms)
"${podman[@]}" stop -t 20 "$serve" >/dev/null 2>>"$work/run.log" &
stopper=$!
endlist=()
for s in rtmp srt; do
  until_ok 15 bash -c "curl -sf -m 2 'http://$origin/live/$s/video/index.m3u8' | grep -q '^#EXT-X-ENDLIST'" &&
    endlist+=("live/$s $(($(now_ms) - t0)) ms")
done
wait "$stopper" || true
stop_ms=$(($(now_ms) - t0))
state=$("${podman[@]}" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$serve")
[ ${#endlist[@]} = 2 ] && pass "podman stop: EXT-X-ENDLIST during the drain (${endlist[*]} after SIGTERM)" ||
  fail "EXT-X-ENDLIST seen only for: ${endlist[*]}"
if [ "$state" = "exited 0" ] && [ "$stop_ms" -lt 15000 ] && "${podman[@]}" logs "$serve" 2>&1 | grep -q '"headwater: stopped"'; then
  pass "podman stop: drained and exited 0 in $stop_ms ms (shutdown.timeout 15s)"
else
  fail "podman stop: state \"$state\" after $stop_ms ms"
fi
figure "SIGTERM -> exit 0: ${stop_ms} ms"
cleanup

# ---- 3. The compose stack ----------------------------------------------------

t=$SECONDS
free_ports 1935 8554 8080 9090 8081 9091
compose up -d --no-build headwater cdn cdn-exporter prometheus >"$work/compose.log" 2>&1 || fail "podman-compose up"
pass "podman-compose $(podman-compose --version 2>/dev/null | awk '/podman-composer? version/ { print $NF }') runs docker-compose.yml's headwater, cdn, cdn-exporter and prometheus"
until_ok 30 get http://127.0.0.1:9090/readyz || fail "compose: headwater's /readyz"
publish cdn 640x360 flv rtmp://127.0.0.1:1935/live/cdn
until_ok 20 get http://127.0.0.1:8081/live/cdn/video/index.m3u8 || fail "compose: no playlist through the cache"
seg=$(get http://127.0.0.1:8081/live/cdn/video/index.m3u8 | grep -v '^#' | grep . | head -n 1)
[ -n "$seg" ] || fail "compose: no complete segment in the media playlist"
h1=$(curl -sf -m 10 -D - -o /dev/null "http://127.0.0.1:8081/live/cdn/video/$seg" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache-status" { print $2 }')
h2=$(curl -sf -m 10 -D - -o /dev/null "http://127.0.0.1:8081/live/cdn/video/$seg" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache-status" { print $2 }')
[ "$h2" = HIT ] && pass "a segment through the nginx cache: X-Cache-Status $h1, then $h2 (video/$seg)" ||
  fail "X-Cache-Status of video/$seg: $h1 then $h2"
played "LL-HLS through the cache" http://127.0.0.1:8081/live/cdn/index.m3u8
# prom_one QUERY: Prometheus's HTTP API answers QUERY with one sample, 1.
prom_one() {
  get -G http://127.0.0.1:9091/api/v1/query --data-urlencode "query=$1" |
    grep -q '"result":\[{"metric":{[^}]*},"value":\[[0-9.]*,"1"\]}\]'
}
until_ok 40 prom_one 'up{job="headwater"}' || fail "Prometheus: up{job=\"headwater\"} is not 1 after 40s"
pass "Prometheus (Debian's) scrapes Headwater: up{job=\"headwater\"} == 1"
until_ok 30 prom_one 'nginx_up{job="cdn"}' || fail "Prometheus: nginx_up{job=\"cdn\"} is not 1"
pass "Prometheus scrapes the cache through its exporter: nginx_up{job=\"cdn\"} == 1"
figure "compose stack checked in $((SECONDS - t))s"
cleanup

# ---- 4. The cluster profile --------------------------------------------------

t=$SECONDS
workers=${WORKERS:-3}
export WORKERS=$workers
free_ports 1936 1937 8555 8556 8180 8280 9190 9290 4222 8222 8083
compose up -d --no-build nats cluster-secret node-a node-b worker cdn-cluster >"$work/compose.log" 2>&1 || fail "podman-compose up (cluster)"
running=$("${podman[@]}" ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=worker" -q | wc -l)
[ "$running" = "$workers" ] && pass "podman-compose starts nats, node-a, node-b, $workers workers (deploy.replicas) and cdn-cluster" ||
  fail "$running worker containers running, want $workers"
for n in 9190 9290; do
  until_ok 60 bash -c "curl -sf -m 2 http://127.0.0.1:$n/readyz | grep -qx ready" || fail "cluster: node on admin port $n not ready (without degradation) in 60s"
done
pass "node-a and node-b are ready on NATS (the secret from cluster-secret)"
# 480p: the default ladder's 360p rung.
publish cluster 854x480 flv rtmp://127.0.0.1:1936/live/cluster
until_ok 30 bash -c "curl -sf -m 5 http://127.0.0.1:8083/live/cluster/index.m3u8 | grep -q 'RESOLUTION=640x360'" ||
  fail "cluster: the multivariant through the cache does not list the 360p rung after 30s"
pass "through nginx in front of both nodes the multivariant lists the 360p rung"
played "the 360p rung through the cluster's cache" http://127.0.0.1:8083/live/cluster/360p/index.m3u8 640x360
played "node-b relaying node-a's stream" http://127.0.0.1:8280/live/cluster/index.m3u8
owner=$(get http://127.0.0.1:9290/api/v1/streams)
[[ "$owner" == *'"live/cluster"'* && "$owner" == *'"node-a"'* ]] && pass "node-b's status API lists live/cluster owned by node-a" ||
  fail "node-b's /api/v1/streams: $owner"
made=()
total=0
for c in $("${podman[@]}" ps --filter "label=io.podman.compose.project=$project" --filter "label=com.docker.compose.service=worker" --format '{{.Names}}'); do
  n=$(admin_get "$c" /metrics | awk 'index($0, "headwater_transcoder_jobs_total{outcome=\"ok\"") == 1 { s += $NF } END { print s + 0 }')
  made+=("$c:$n")
  total=$((total + n))
done
local_jobs=$(metric http://127.0.0.1:9190/metrics 'headwater_transcoder_jobs_total{outcome="ok"' || echo 0)
[ "$total" -gt 0 ] && [ "${local_jobs%.*}" = 0 ] && pass "the workers made the rungs (rendition-GOPs ok: ${made[*]}; node-a itself: $local_jobs)" ||
  fail "rendition-GOPs by the workers: ${made[*]}; by node-a: $local_jobs"
figure "cluster profile checked in $((SECONDS - t))s"
cleanup

figure "container test wall time: $((SECONDS - t_total))s"
echo "container-test: summary:"
for s in "${summary[@]}"; do echo "  $s"; done

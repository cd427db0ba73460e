#!/usr/bin/env bash
# Runs Headwater's whole test suite: unit, golden, fuzz seed corpora and the
# end-to-end tests that publish with ffmpeg and read back with ffprobe.
# Installs ffmpeg from Debian when it is missing (root or sudo needed once).
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests use real peers: ffmpeg publishes and reads back,
# Chromium plays the preview page, nginx acts as the CDN cache.
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# A C compiler: go test -race needs cgo, the transcoder's fork server is C.
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} from Debian" >&2
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

go vet ./...
go test -race -count=1 -timeout 15m "$@" ./...

#!/usr/bin/env bash
# Makes the two base images the Dockerfile builds on, locally, from Debian
# packages, for a machine that reaches Debian's archive and the Go module
# proxy but no image registry (scripts/container-test.sh calls it):
#
#   localhost/headwater-base/debian:bookworm-slim
#       mmdebstrap --variant=minbase bookworm with merged /usr and without
#       man pages, docs (copyright files kept), locales and info, as
#       debian:bookworm-slim is made; apt's sources are bookworm,
#       bookworm-updates and bookworm-security.
#   localhost/headwater-base/golang:<go version>-bookworm
#       the same plus ca-certificates, gcc and libc6-dev (the fork server
#       library is C), and this machine's Go toolchain (go env GOROOT)
#       copied into /usr/local/go, with golang:*-bookworm's GOPATH, PATH
#       and GOTOOLCHAIN=local; and the CA certificates this machine adds
#       to Debian's (/usr/local/share/ca-certificates), since the module
#       downloads of the build stage go out through the same network.
#       Only the build stage has them: the runtime image has Debian's.
#
# The Dockerfile takes them as build arguments, whose defaults are the
# upstream images:
#
#   podman build --build-arg BUILD_IMAGE=localhost/headwater-base/golang:1.26.8-bookworm \
#                --build-arg RUNTIME_IMAGE=localhost/headwater-base/debian:bookworm-slim ...
#
# An image is made again when it is missing, when this script (or those
# CA certificates) changed since it was made, when it is older than CONTAINER_BASE_MAX_AGE_DAYS (7: the
# Dockerfile's apt-get brings current packages anyway, but the base's own
# packages age) or with CONTAINER_BASE_REBUILD=1. Prints the two names, one
# per line, as NAME=image (BUILD_IMAGE, RUNTIME_IMAGE) on stdout.
#
# Needs root (mmdebstrap's root mode), podman and mmdebstrap;
# scripts/container-test.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in podman mmdebstrap go; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "container-base.sh: $tool is missing (scripts/container-test.sh installs podman and mmdebstrap: apt-get install podman runc mmdebstrap)" >&2
    exit 1
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "container-base.sh: mmdebstrap's root mode needs root" >&2
  exit 1
fi

# This machine's quirks (docs/operations.md): crun cannot run on its hybrid
# cgroups, and there is no systemd. PODMAN may hold other global flags.
read -r -a podman <<<"${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"

goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
gover=${gover#go}
slim=localhost/headwater-base/debian:bookworm-slim
golang=localhost/headwater-base/golang:${gover}-bookworm
# The build stage downloads modules over HTTPS: it trusts the local CAs this
# machine trusts (here a TLS-inspecting egress proxy's, without which the
# module proxy's certificate does not verify).
cas=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cas=(/usr/local/share/ca-certificates/*.crt)
fi
# A change to this script (or to those CAs) makes the images again.
recipe=$(cat "$0" ${cas[@]+"${cas[@]}"} | sha256sum | cut -c1-16)
max_age=$(( ${CONTAINER_BASE_MAX_AGE_DAYS:-7} * 86400 ))

# fresh IMAGE: it exists, was made by this recipe and is young enough.
fresh() {
  [ "${CONTAINER_BASE_REBUILD:-0}" = 1 ] && return 1
  local label created
  label=$("${podman[@]}" image inspect --format '{{index .Labels "org.headwater.base-recipe"}}' "$1" 2>/dev/null) || return 1
  [ "$label" = "$recipe" ] || return 1
  created=$("${podman[@]}" image inspect --format '{{.Created.Unix}}' "$1")
  [ $(( $(date +%s) - created )) -lt "$max_age" ]
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Like debian:bookworm-slim: merged /usr without the usrmerge package, and
# files dpkg does not unpack (mmdebstrap keeps these options in
# /etc/dpkg/dpkg.cfg.d, so they hold for what the Dockerfile installs too).
slim_opts=(
  --variant=minbase
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --aptopt='Acquire::Languages "none"'
)

# make IMAGE MMDEBSTRAP-OPTIONS -- IMPORT-CHANGES...: mmdebstrap bookworm
# into a tarball, imported as IMAGE. Its output goes to a log, shown when it
# fails.
make() {
  local image=$1 name=${1##*/}
  name=${name//:/-}
  shift
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  local changes=(--change "LABEL org.headwater.base-recipe=$recipe")
  for c in "$@"; do changes+=(--change "$c"); done
  local log="$work/$name.log" tar="$work/$name.tar" start=$SECONDS
  if ! mmdebstrap "${slim_opts[@]}" "${opts[@]}" bookworm "$tar" >"$log" 2>&1 ||
     ! "${podman[@]}" import --quiet "${changes[@]}" "$tar" "$image" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "container-base.sh: making $image failed" >&2
    return 1
  fi
  rm -f "$tar"
  echo "container-base.sh: $image made in $((SECONDS - start))s" >&2
}

pids=()
if fresh "$slim"; then
  echo "container-base.sh: $slim is up to date" >&2
else
  echo "container-base.sh: making $slim with mmdebstrap" >&2
  make "$slim" -- 'CMD ["bash"]' &
  pids+=($!)
fi
if fresh "$golang"; then
  echo "container-base.sh: $golang is up to date" >&2
else
  echo "container-base.sh: making $golang with mmdebstrap and $goroot" >&2
  ca_hook=true
  if [ ${#cas[@]} -gt 0 ]; then
    ca_hook='mkdir -p "$1/usr/local/share/ca-certificates" && cp '"${cas[*]}"' "$1/usr/local/share/ca-certificates/" && chroot "$1" update-ca-certificates'
  fi
  make "$golang" --include=ca-certificates,gcc,libc6-dev \
    --customize-hook='mkdir -p "$1/usr/local" "$1/go/bin" "$1/go/src" && chmod 1777 "$1/go"' \
    --customize-hook="copy-in $goroot /usr/local" \
    --customize-hook='[ -d "$1/usr/local/go" ] || mv "$1/usr/local/'"$(basename "$goroot")"'" "$1/usr/local/go"' \
    --customize-hook="$ca_hook" \
    -- \
    "ENV GOLANG_VERSION=$gover" \
    'ENV GOTOOLCHAIN=local' \
    'ENV GOPATH=/go' \
    'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'WORKDIR /go' \
    'CMD ["bash"]' &
  pids+=($!)
fi
failed=0
for p in ${pids[@]+"${pids[@]}"}; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || exit 1

echo "BUILD_IMAGE=$golang"
echo "RUNTIME_IMAGE=$slim"

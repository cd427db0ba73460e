# syntax=docker/dockerfile:1
#
# Headwater: one static binary on Debian slim with ffmpeg.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t headwater .
#   docker run --rm -p 1935:1935 -p 8080:8080 -p 9090:9090 -p 8890:8890/udp -p 8554:8554 headwater
#
# Configuration: HEADWATER_* environment variables (docs/configuration.md),
# or a file mounted at /etc/headwater/headwater.yaml and named on the
# command line, which replaces CMD:
#
#   docker run -v ./headwater.yaml:/etc/headwater/headwater.yaml:ro headwater \
#       serve --config /etc/headwater/headwater.yaml
#
# docker-compose.yml does both. See docs/operations.md.

ARG GO_VERSION=1.26
# The base images. Where no registry is reachable, scripts/container-base.sh
# makes both locally from Debian packages and scripts/container-test.sh
# passes them here (docs/operations.md).
ARG BUILD_IMAGE=golang:${GO_VERSION}-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Modules first, so that this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# VERSION is what "headwater version" prints; empty falls back to "dev".
ARG VERSION=""
# Static (no cgo), reproducible paths, no symbol tables.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/headwater . \
 && /out/headwater version
# The transcoder's ffmpeg fork server library (docs/decisions.md), compiled
# here so that the runtime image needs no C compiler: the server finds it in
# $XDG_CACHE_HOME/headwater. Same Debian release as the runtime image.
RUN XDG_CACHE_HOME=/out/cache /out/headwater transcoder build-fork-server

FROM ${RUNTIME_IMAGE}
# ffmpeg for the transcoder; ca-certificates for outgoing HTTPS (the publish
# webhook; JWT keys and JWKS are read from files). No curl or wget: the
# health check below needs only bash.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 headwater \
 && useradd --system --uid 10001 --gid headwater --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin headwater \
 && mkdir -p /etc/headwater \
 && install -d -o 10001 -g 10001 -m 0700 /var/cache/headwater \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/headwater

COPY --from=build /out/headwater /usr/local/bin/headwater
# Owned by the runtime user: the transcoder preloads the library only from a
# private directory (its uid, 0700) and checks the file's SHA-256 first. The
# directory is made 0700 above and only its content is copied: one COPY would
# create it 0755, which the server tightens at start, and cannot on a
# read-only root file system (docker run --read-only).
COPY --from=build --chown=10001:10001 /out/cache/headwater/ /var/cache/headwater/
ENV XDG_CACHE_HOME=/var/cache
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/headwater-healthcheck

# Unprivileged: every default port is above 1024.
USER 10001:10001
# The data directory, and the working directory: relative paths of the
# configuration (record.dir "./recordings", its spool) land here. Mount a
# volume on it when recording or with cluster.embedded's store_dir under
# it; nothing else is written outside /tmp, so the root file system can be
# read-only (docker run --read-only -v headwater-data:/var/lib/headwater
# --tmpfs /tmp; docs/operations.md).
WORKDIR /var/lib/headwater

# 1935 RTMP, 8080 HTTP origin (LL-HLS), 9090 admin (/metrics, /healthz,
# /readyz), 8890/udp SRT, 8554 RTSP.
EXPOSE 1935 8080 9090 8890/udp 8554

# GET /healthz on the origin port (HEADWATER_ORIGIN_ADDRESS when set). With
# TLS on the origin, override it: headwater-healthcheck 127.0.0.1:9090.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["headwater-healthcheck"]

# SIGTERM drains: live streams end with EXT-X-ENDLIST, the origin keeps
# serving them for shutdown.drain, and the whole shutdown takes at most
# shutdown.timeout (15s by default): stop with "docker stop -t 20".
STOPSIGNAL SIGTERM
ENTRYPOINT ["headwater"]
CMD ["serve"]

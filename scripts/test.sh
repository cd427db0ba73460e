#!/usr/bin/env bash
# Runs Headwater's whole test suite: go vet, then unit, golden, fuzz seed
# corpora and the end-to-end tests that publish with ffmpeg and read back
# with ffprobe, play pages in headless Chromium (hls.js, dash.js, Shaka)
# and run nginx as the CDN cache. No test skips: a missing tool fails.
#
# It first makes sure every tool the tests use is there. Missing ones are
# installed from Debian/Ubuntu with apt-get when it runs as root or with
# sudo; otherwise it says what is missing and how to install it, and exits
# 1. The Shaka Player build is installed with npm (pinned in
# scripts/players/package-lock.json) into .cache/players.
# Extra arguments go to go test (e.g. ./scripts/test.sh -run TestLive).
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

# Tools are found in PATH; nginx also in the sbin directories a user's
# PATH often lacks (the tests look there too: internal/testpeer).
have_nginx() {
  have nginx || [ -x /usr/sbin/nginx ] || [ -x /usr/local/sbin/nginx ] || [ -x /usr/local/nginx/sbin/nginx ]
}
have_chromium() {
  [ -n "${CHROMIUM:-}" ] && have "$CHROMIUM" && return 0
  have chromium || have chromium-browser || have google-chrome || have google-chrome-stable
}

# what is missing: "<Debian packages>|<what it is for>"
missing=()
have ffmpeg && have ffprobe || missing+=("ffmpeg|ffmpeg and ffprobe: publish and read back")
have_chromium || missing+=("chromium|Chromium (or Chrome; or set CHROMIUM): plays hls.js, dash.js and Shaka")
have_nginx || missing+=("nginx-light|nginx: the CDN cache in cdntest")
# go test -race needs cgo; the transcoder's fork server is C.
have cc || missing+=("gcc libc6-dev|a C compiler (cc): -race and the fork server")
have node || missing+=("nodejs|node: runs the edge-worker token verifier of docs/security.md")
have npm || missing+=("npm|npm: installs the Shaka Player build for the browser tests")
have openssl || missing+=("openssl|openssl: AES-128 cross-check")
have xmllint || missing+=("libxml2-utils|xmllint: checks every MPD is well-formed XML")
have obs && have xvfb-run && have Xvfb && have xauth || missing+=("obs-studio xvfb xauth|OBS Studio, headless under xvfb-run (Xvfb, xauth): the OBS end-to-end test")
compgen -G '/usr/lib/*/dri/swrast_dri.so' >/dev/null || missing+=("libgl1-mesa-dri|mesa's software OpenGL (swrast_dri.so): OBS renders under Xvfb")

if [ ${#missing[@]} -gt 0 ]; then
  pkgs=()
  for m in "${missing[@]}"; do
    read -r -a p <<<"${m%%|*}"
    pkgs+=("${p[@]}")
  done
  sudo_cmd=""
  can_install=1
  have apt-get || can_install=0
  if [ "$(id -u)" != 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo_cmd="sudo"; else can_install=0; fi
  fi
  if [ "$can_install" = 1 ]; then
    echo "test.sh: installing ${pkgs[*]} with apt-get" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    {
      echo "test.sh: the tests need tools that are not installed, and this script cannot install them"
      if ! have apt-get; then echo "  (no apt-get: not Debian or Ubuntu)"; else echo "  (not root, and sudo needs a password or is missing)"; fi
      echo "missing:"
      for m in "${missing[@]}"; do echo "  - ${m#*|}"; done
      echo "install them, then run ./scripts/test.sh again:"
      echo "  Debian/Ubuntu:  sudo apt-get install -y ${pkgs[*]}"
      echo "  Fedora:         sudo dnf install ffmpeg chromium nginx gcc nodejs npm openssl libxml2 obs-studio xorg-x11-server-Xvfb xorg-x11-xauth mesa-dri-drivers"
      echo "  macOS:          brew install ffmpeg nginx node openssl libxml2 && brew install --cask chromium"
      echo "the tools must be in PATH (nginx may be in /usr/sbin; Chromium may be set with CHROMIUM=/path/to/chrome)"
    } >&2
    exit 1
  fi
fi

# The Shaka Player build for dash/browser_test.go, at the version the lock
# file pins (dash.js is vendored in preview/assets). Reinstalled only when
# the lock file changes.
players=.cache/players
if ! cmp -s scripts/players/package-lock.json "$players/package-lock.json" || [ ! -d "$players/node_modules" ]; then
  echo "test.sh: installing the test players (scripts/players) into $players with npm" >&2
  rm -rf "$players"
  mkdir -p "$players"
  cp scripts/players/package.json scripts/players/package-lock.json "$players/"
  npm ci --prefix "$players" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
fi

# versitygw, the real S3 server the recording storage tests run against
# (internal/s3test), built from source with the Go toolchain into
# .cache/bin once per version (go install names no version in the binary:
# a stamp file beside it does); a tool, not a dependency in go.mod.
versitygw_version=v1.8.0
if [ ! -x .cache/bin/versitygw ] || [ "$(cat .cache/bin/versitygw.version 2>/dev/null)" != "$versitygw_version" ]; then
  echo "test.sh: building versitygw $versitygw_version into .cache/bin" >&2
  GOBIN="$PWD/.cache/bin" go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
  echo "$versitygw_version" >.cache/bin/versitygw.version
fi

go vet ./...
go vet -tags eval ./...   # the evaluations kept out of the tests still build
./scripts/lint.sh         # golangci-lint, pinned (.golangci.yml)
go test -race -count=1 -timeout 15m "$@" ./...

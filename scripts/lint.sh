#!/usr/bin/env bash
# Runs golangci-lint (pinned below) with .golangci.yml over the whole module.
# Installs that version from the Go module proxy into $(go env GOPATH)/bin
# when it is missing or another version is there.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v2.15.0
bin="$(go env GOPATH)/bin/golangci-lint"
if ! [ -x "$bin" ] || ! "$bin" version 2>/dev/null | grep -q "version ${version#v} "; then
  echo "lint.sh: installing golangci-lint $version with go install" >&2
  go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
fi
exec "$bin" run "$@" ./...

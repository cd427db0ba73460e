#!/bin/bash
# Docker HEALTHCHECK of the Headwater image: GET /healthz and expect 200.
#
#   headwater-healthcheck [HOST:PORT]
#
# HOST:PORT defaults to the origin listener, taken from
# HEADWATER_ORIGIN_ADDRESS when it is set (":8080" otherwise); an empty or
# wildcard host means 127.0.0.1. debian:bookworm-slim has neither curl nor
# wget, so this speaks HTTP/1.0 over bash's /dev/tcp. It does not speak TLS:
# with origin.tls_cert set, check the admin listener instead
# (headwater-healthcheck 127.0.0.1:9090), which serves /healthz too.
set -u

addr="${1:-${HEADWATER_ORIGIN_ADDRESS:-:8080}}"
port="${addr##*:}"
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
"" | 0.0.0.0 | "::") host=127.0.0.1 ;;
esac

if ! exec 3<>"/dev/tcp/$host/$port"; then
	echo "healthcheck: cannot connect to $host:$port" >&2
	exit 1
fi
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\nUser-Agent: headwater-healthcheck\r\n\r\n' "$host" >&3
status=""
IFS=$' \t\r' read -r -t 2 proto code _ <&3 && status="$proto $code"
exec 3<&-
case "$status" in
"HTTP/1."?" 200") exit 0 ;;
esac
echo "healthcheck: GET http://$host:$port/healthz: ${status:-no response}" >&2
exit 1

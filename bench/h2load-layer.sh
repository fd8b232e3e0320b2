#!/usr/bin/env bash
# The auth layer's cost measured from outside, by h2load (Debian `nghttp2-client`),
# against `tokenmesh bench trivial-server` with and without the layer, in
# alternating rounds so that the machine's load drifts over all three alike:
#   none    no layer, no authorization header
#   header  no layer, the same `authorization: Bearer <token>` header (what
#           carrying the token costs HTTP/2 alone)
#   layer   the layer, that one token (a verified-token cache hit per call)
# Prints each round and the totals' ratios. h2load counts gRPC errors as
# successes (HTTP 200 with a grpc-status trailer), so a round counts only if its
# data bytes are 7 per request (a Health/Check answer).
#
#   bench/h2load-layer.sh [TOKENMESH_BINARY] [ROUNDS] [SECONDS]
set -euo pipefail

bin=${1:-target/release/tokenmesh}
rounds=${2:-3}
seconds=${3:-10}
dir=$(mktemp -d)
trap 'kill $(cat "$dir"/*.pid) 2>/dev/null; rm -rf "$dir"' EXIT

printf '\0\0\0\0\0' >"$dir/empty.grpc" # the gRPC frame of an empty message
start() { # start NAME ARGS… → prints the address
	local name=$1
	shift
	"$bin" bench trivial-server "$@" >"$dir/$name.out" 2>"$dir/$name.log" &
	echo $! >"$dir/$name.pid"
	for _ in $(seq 100); do
		grep -q '^listening on ' "$dir/$name.out" 2>/dev/null && break
		sleep 0.1
	done
	sed -n 's/^listening on //p' "$dir/$name.out"
}
bare=$(start bare)
layered=$(start layered --key-file "$dir/k.pem")
token=$("$bin" bench mint --key-file "$dir/k.pem")

load() { # load ADDR [HEADER…] → prints req/s
	local addr=$1 out
	shift
	out=$(h2load -D "$seconds" -c 2 -m 32 -t 1 \
		-H 'content-type: application/grpc' -H 'te: trailers' "$@" \
		-d "$dir/empty.grpc" "http://$addr/grpc.health.v1.Health/Check")
	local done data
	done=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
	data=$(sed -n 's/^traffic: .*(\([0-9]*\)) data.*/\1/p' <<<"$out")
	if [ "$data" != "$((7 * done))" ]; then
		echo "failed calls: $done succeeded, $data data bytes" >&2
		exit 1
	fi
	awk -v n="$done" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }'
}

auth="authorization: Bearer $token"
seconds_measured=$seconds
seconds=2 # warm-up: both servers, unmeasured
load "$bare" >/dev/null
load "$layered" -H "$auth" >/dev/null
seconds=$seconds_measured
total_none=0 total_header=0 total_layer=0
printf '%-6s %10s %10s %10s\n' round none header layer
for round in $(seq "$rounds"); do
	none=$(load "$bare")
	header=$(load "$bare" -H "$auth")
	layer=$(load "$layered" -H "$auth")
	printf '%-6s %10s %10s %10s\n' "$round" "$none" "$header" "$layer"
	total_none=$((total_none + none))
	total_header=$((total_header + header))
	total_layer=$((total_layer + layer))
done
awk -v n="$total_none" -v h="$total_header" -v l="$total_layer" -v r="$rounds" 'BEGIN {
	printf "mean   %10.0f %10.0f %10.0f\n", n / r, h / r, l / r
	printf "header / none %.3f   layer / header %.3f   layer / none %.3f\n", h / n, l / h, l / n
}'

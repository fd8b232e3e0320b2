#!/usr/bin/env bash
# The auth layer's cost measured from outside, by h2load (Debian `nghttp2-client`),
# against `tokenmesh bench trivial-server` with and without the layer, in
# alternating rounds so that the machine's load drifts over all three alike:
#   none    no layer, no authorization header
#   header  no layer, the same `authorization: Bearer <token>` header (what
#           carrying the token costs HTTP/2 alone)
#   layer   the layer, that one token (a verified-token cache hit per call)
# Each round also runs the project's own load generator (`tokenmesh bench run`,
# same servers, same 64 in flight over 2 connections) right after h2load, so
# the two tools are compared on the same servers in the same run.
# Prints each round and the means' ratios. h2load counts gRPC errors as
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
# The same load from `tokenmesh bench run` → prints req/s (it fails on errors).
own() { # own ADDR [TOKEN]
	local addr=$1 token=${2:-}
	local args=(bench run --addr "$addr" --method grpc.health.v1.Health/Check
		--duration "${seconds}s" --warmup 0s --connections 2 --in-flight 64 --json)
	[ -n "$token" ] && args+=(--token-mode reuse --token "$token")
	"$bin" "${args[@]}" 2>/dev/null | python3 -c '
import json, sys
report = json.load(sys.stdin)["reports"][0]
assert not report["errors"], report["errors"]
print(round(report["requests_per_second"]))'
}

declare -A total
printf '%-6s %-9s %10s %10s %10s\n' round tool none header layer
for round in $(seq "$rounds"); do
	for tool in h2load own; do
		if [ "$tool" = h2load ]; then
			none=$(load "$bare")
			header=$(load "$bare" -H "$auth")
			layer=$(load "$layered" -H "$auth")
		else
			none=$(own "$bare")
			header=$(own "$bare" "$token")
			layer=$(own "$layered" "$token")
		fi
		printf '%-6s %-9s %10s %10s %10s\n' "$round" "$tool" "$none" "$header" "$layer"
		total[$tool.none]=$((${total[$tool.none]:-0} + none))
		total[$tool.header]=$((${total[$tool.header]:-0} + header))
		total[$tool.layer]=$((${total[$tool.layer]:-0} + layer))
	done
done
for tool in h2load own; do
	awk -v t="$tool" -v n="${total[$tool.none]}" -v h="${total[$tool.header]}" \
		-v l="${total[$tool.layer]}" -v r="$rounds" 'BEGIN {
		printf "%-6s %-9s %10.0f %10.0f %10.0f   header/none %.3f  layer/header %.3f  layer/none %.3f\n",
			"mean", t, n / r, h / r, l / r, h / n, l / h, l / n
	}'
done

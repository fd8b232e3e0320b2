#!/usr/bin/env bash
# Throughput through HAProxy with one and with two replicas of each service (or
# the counts given): deploy/local/replicas.sh brings each layout up on fresh
# databases, `tokenmesh bench run` loads the proxy's frontends, then it stops.
#
#   deploy/local/bench-replicas.sh            # 1 and 2 replicas, 10 s per method
# (Login with 4 in flight: Auth sheds logins beyond its hashing queue with
# RESOURCE_EXHAUSTED; the others with 64)
#   DURATION=5s deploy/local/bench-replicas.sh 1 2 3
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${TOKENMESH_BIN:-target/release/tokenmesh}"
DURATION="${DURATION:-10s}"
STATE="${STATE:-$PWD/tokenmesh-replicas}"
# Up to date unless a binary is named (cargo does nothing when it is current).
[ -n "${TOKENMESH_BIN:-}" ] || cargo build --release -p tokenmesh --bin tokenmesh
export TOKENMESH_BIN="$BIN" STATE

bench() { # bench ADDR METHOD [ARGS…]: the report's header and row
    local addr="$1" method="$2"; shift 2
    "$BIN" bench run --addr "$addr" --method "$method" --duration "$DURATION" "$@" \
        2>"$STATE.bench.log" | grep -E "^(run|/)" || { echo "$method failed:" >&2; cat "$STATE.bench.log" >&2; }
}
AS_ALICE=(--token-mode reuse --login alice:alice-demo --auth-addr 127.0.0.1:50051)

for replicas in "${@:-1 2}"; do
    for n in $replicas; do
        echo "== $n replica(s) of each service, through HAProxy"
        : >"$STATE.out"
        REPLICAS="$n" deploy/local/replicas.sh >"$STATE.out" 2>&1 &
        up=$!
        until grep -q "^HAProxy:" "$STATE.out"; do
            kill -0 "$up" 2>/dev/null || { cat "$STATE.out" >&2; exit 1; }
            sleep 0.2
        done
        bench 127.0.0.1:50052 tokenmesh.products.v1.ProductsService/GetProduct --data '{"id":"P-100"}' "${AS_ALICE[@]}"
        bench 127.0.0.1:50052 tokenmesh.products.v1.ProductsService/ListProducts "${AS_ALICE[@]}"
        bench 127.0.0.1:50053 tokenmesh.orders.v1.OrdersService/PlaceOrder \
            --data "{\"productId\":\"P-100\",\"quantity\":1,\"requestId\":\"bench-$n-{{seq}}\"}" "${AS_ALICE[@]}"
        bench 127.0.0.1:50051 tokenmesh.auth.v1.AuthService/Login \
            --data '{"username":"alice","password":"alice-demo"}' --in-flight 4
        kill -TERM "$up"
        wait "$up" || true
    done
done

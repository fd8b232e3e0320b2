#!/usr/bin/env bash
# Many replicas of every tokenmesh service on one machine, on PostgreSQL, behind
# HAProxy — what the multi-replica tests start (tests/src/cluster.rs), by hand.
#
#   deploy/local/replicas.sh            # 2 replicas of each service; Ctrl-C stops all
#   REPLICAS=3 deploy/local/replicas.sh
#
# Clients use the proxy: Auth 127.0.0.1:50051, Products :50052, Orders :50053.
# Replica i of Auth listens on 127.0.1.i:50051, of Products on 127.0.2.i:50052,
# of Orders on 127.0.3.i:50053 (all of 127.0.0.0/8 is loopback on Linux); they
# call each other over balanced channels (`--auth-url a,b`), not via the proxy.
# Needs: PostgreSQL (TOKENMESH_PG, default postgres://postgres@127.0.0.1:5432),
# psql, and HAProxy (`apt-get install -y haproxy`). Every replica of every service
# shares one database, created fresh on every run (tokenmesh_local), each service
# in its own schema (auth, products, orders).
set -euo pipefail
cd "$(dirname "$0")/../.."

REPLICAS="${REPLICAS:-2}"
PG="${TOKENMESH_PG:-postgres://postgres@127.0.0.1:5432}"
STATE="${STATE:-$PWD/tokenmesh-replicas}"
BIN="${TOKENMESH_BIN:-target/release/tokenmesh}"
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"

[ -x "$HAPROXY" ] || { echo "HAProxy missing: apt-get install -y haproxy" >&2; exit 1; }
# Up to date unless a binary is named (cargo does nothing when it is current).
[ -n "${TOKENMESH_BIN:-}" ] || cargo build --release -p tokenmesh --bin tokenmesh

rm -rf "$STATE"
mkdir -p -m 700 "$STATE/logs"
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS tokenmesh_local WITH (FORCE)"
psql -q "$PG/postgres" -c "CREATE DATABASE tokenmesh_local"
# Shared by every Auth and Products replica: the key that seals their signing
# keys in the database.
(umask 077; head -c 32 /dev/urandom | base64 > "$STATE/key-encryption-key")
secret() { head -c 32 /dev/urandom | base64 | tr -d '/+='; }
# In the environment, not on command lines other users can read (ps).
TOKENMESH_PRODUCTS_CLIENT_SECRET="$(secret)"
TOKENMESH_ORDERS_CLIENT_SECRET="$(secret)"
export TOKENMESH_PRODUCTS_CLIENT_SECRET TOKENMESH_ORDERS_CLIENT_SECRET

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping (SIGTERM: each replica turns NOT_SERVING, drains, exits)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

addrs() { # addrs SERVICE_OCTET PORT → the replicas' addresses, comma-separated
    local list=() i
    for i in $(seq 1 "$REPLICAS"); do list+=("127.0.$1.$i:$2"); done
    (IFS=,; echo "${list[*]}")
}
AUTH_REPLICAS="$(addrs 1 50051)"
PRODUCTS_REPLICAS="$(addrs 2 50052)"
ORDERS_REPLICAS="$(addrs 3 50053)"

start() { # start NAME ADDR ARGS… — one replica; returns once it serves
    local name="$1" addr="$2"; shift 2
    "$BIN" serve "$@" --listen "$addr" --shutdown-delay 1s >"$STATE/logs/$name.log" 2>&1 &
    pids+=("$!")
    until grep -qs "tokenmesh_server::serve: serving" "$STATE/logs/$name.log"; do
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$STATE/logs/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "$name serving on $addr"
}

# One after the other: the first replica of a service creates what the others
# share (the signing keys in the database, the demo data).
for i in $(seq 1 "$REPLICAS"); do
    start "auth-$i" "127.0.1.$i:50051" auth --demo \
        --data-dir "$STATE/auth" --database-url "$PG/tokenmesh_local" \
        --key-encryption-key "$STATE/key-encryption-key" \
        --refresh-rate-limit 0 --service-token-rate-limit 0
done
for i in $(seq 1 "$REPLICAS"); do
    start "products-$i" "127.0.2.$i:50052" products --demo \
        --data-dir "$STATE/products" --database-url "$PG/tokenmesh_local" \
        --key-encryption-key "$STATE/key-encryption-key" \
        --auth-url "$AUTH_REPLICAS"
done
for i in $(seq 1 "$REPLICAS"); do
    start "orders-$i" "127.0.3.$i:50053" orders \
        --data-dir "$STATE/orders" --database-url "$PG/tokenmesh_local" \
        --auth-url "$AUTH_REPLICAS" --products-url "$PRODUCTS_REPLICAS"
done

# HAProxy: HTTP/2 cleartext both sides, round-robin, and a real gRPC health
# check per replica (raw HTTP/2 bytes of grpc.health.v1.Health/Check, expecting
# the answer SERVING; tests/src/haproxy.rs explains and builds the same bytes).
CHECK=505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000000400000000000000490104000000018386041c2f677270632e6865616c74682e76312e4865616c74682f436865636b0107686170726f78790f10106170706c69636174696f6e2f677270630002746508747261696c6572730000050001000000010000000000
{
    cat <<CFG
global
    log stderr format raw local0 notice
    maxconn 4096
defaults
    mode http
    log global
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check 500ms
    # Resend to another replica only what never reached one (no Refresh replays).
    retries 3
    option redispatch 1
    retry-on conn-failure
CFG
    for entry in auth:50051:"$AUTH_REPLICAS" products:50052:"$PRODUCTS_REPLICAS" orders:50053:"$ORDERS_REPLICAS"; do
        IFS=: read -r name port replicas <<<"$entry"
        cat <<CFG
frontend $name
    bind 127.0.0.1:$port proto h2
    default_backend $name
backend $name
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary $CHECK
    tcp-check expect binary 00000000020801
    default-server proto h2 check inter 250ms fall 1 rise 1
CFG
        i=0
        for replica in ${replicas//,/ }; do
            i=$((i + 1))
            echo "    server $name-$i $replica"
        done
    done
} >"$STATE/haproxy.cfg"
"$HAPROXY" -f "$STATE/haproxy.cfg" -db >"$STATE/logs/haproxy.log" 2>&1 &
pids+=("$!")
for port in 50051 50052 50053; do
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$STATE/logs/haproxy.log" >&2; exit 1; }
        sleep 0.1
    done
done
echo "HAProxy: auth 127.0.0.1:50051, products 127.0.0.1:50052, orders 127.0.0.1:50053"
echo "logs in $STATE/logs; Ctrl-C stops everything"
wait

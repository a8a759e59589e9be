#!/bin/bash
# bench-cluster.sh — the cost of cluster mode (README "Cluster", measured
# cost): a private redis-server and two nodes (A, B) on free loopback ports,
# 2000 users held on node B by wsn_load; notifications sent through node B
# (same node) and through node A (across nodes), at a fixed rate and as fast
# as possible. Prints delivery latency (wsn_load: gRPC send → frame read),
# throughput, and Redis's CPU per notification (from /proc), then the memory
# Redis uses per stored notification. Not a test: never run by make check.
#
#   scripts/bench-cluster.sh [BUILD_DIR]      (default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
for f in "$build/wsnotifyd" "$build/scripts/bench/wsn_load" "$build/scripts/bench/wsn_publish"; do
    [ -x "$f" ] || { echo "bench-cluster.sh: $f is missing (build first)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "bench-cluster.sh: no redis-server" >&2; exit 2; }
work=$(mktemp -d /tmp/wsn-bench-cluster.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
read -r rport ha hb ga gb <<<"$(free_ports 5)"
export JWT_SECRET=bench-cluster-secret
users=2000

redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!; pids="$pids $rpid"
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$build/wsnotifyd" --workers 2 --port "$ha" --grpc-port "$ga" --bind 127.0.0.1 \
    --redis "redis://127.0.0.1:$rport" --node-id A --log-level warn >"$work/a.log" 2>&1 &
pids="$pids $!"
"$build/wsnotifyd" --workers 2 --port "$hb" --grpc-port "$gb" --bind 127.0.0.1 \
    --redis "redis://127.0.0.1:$rport" --node-id B --log-level warn >"$work/b.log" 2>&1 &
pids="$pids $!"
for p in "$ha" "$hb"; do
    for _ in $(seq 100); do
        curl -s "http://127.0.0.1:$p/health" 2>/dev/null | grep -q '"redis":"up"' && break
        sleep 0.1
    done
done

cpu() { awk '{print $14 + $15}' "/proc/$rpid/stat"; }

# run TAG NAME GRPC_PORT RATE COUNT IN_FLIGHT
run() {
    local tag=$1 name=$2
    shift 2
    rm -f "$work/ready"
    "$build/scripts/bench/wsn_load" --port "$hb" --connections "$users" --first-user 1 \
        --ready-file "$work/ready" --stats-file "$work/load-$tag.json" >/dev/null 2>&1 &
    local load=$!
    for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
    sleep 1
    local c0 c1
    c0=$(cpu)
    "$build/scripts/bench/wsn_publish" --server "127.0.0.1:$1" --users "1-$users" --rate "$2" \
        --count "$3" --in-flight "$4" --quiet --stats-file "$work/pub-$tag.json" >/dev/null 2>&1
    c1=$(cpu)
    sleep 0.5
    kill -INT "$load"; wait "$load" 2>/dev/null || true
    python3 - "$work" "$tag" "$name" "$c0" "$c1" "$3" "$(getconf CLK_TCK)" <<'PY'
import json, sys
work, tag, name = sys.argv[1], sys.argv[2], sys.argv[3]
c0, c1, count, hz = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
pub = json.load(open("%s/pub-%s.json" % (work, tag)))
lat = json.load(open("%s/load-%s.json" % (work, tag)))["latency_us"]
print("| %s | %.0f/s | %d of %d | %.0f / %.0f / %.0f µs | %.0f µs |" % (
    name, pub["rate"]["answered_per_s"], pub["notifications"]["delivered"], count,
    lat["p50"], lat["p99"], lat["p999"], (c1 - c0) * 1e6 / hz / count))
PY
}

echo "| path | throughput | delivered | latency p50 / p99 / p99.9 | Redis CPU per notification |"
echo "|---|---|---|---|---|"
run same1k "same node, 1000/s" "$gb" 1000 20000 64
run cross1k "across nodes, 1000/s" "$ga" 1000 20000 64
run samemax "same node, flat out" "$gb" 0 100000 256
run crossmax "across nodes, flat out" "$ga" 0 100000 256
entries=$(redis-cli -p "$rport" eval "local n = 0 for _, k in ipairs(redis.call('keys', 'wsn:h:*')) do n = n + redis.call('zcard', k) end return n" 0)
mem=$(redis-cli -p "$rport" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
echo
echo "Redis memory: $mem bytes for $entries stored notifications (100-byte messages):" \
    "$((mem / (entries > 0 ? entries : 1))) bytes each"

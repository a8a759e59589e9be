#!/bin/bash
# bench-profile.sh — where a notification's server CPU goes (README
# "Performance"): one wsnotifyd (2 workers, --data-dir in a temp dir), 10 000
# users held by wsn_load, wsn_publish flat out; per thread CPU from
# /proc/PID/task/TID/stat over 5 s, then perf record on the daemon for 5 s and
# each thread's samples split by where they ran (gRPC core and its Abseil,
# LMDB, the kernel, libc, wsnotifyd itself) and the inclusive share of the
# functions that make up a notification's path. Not a test: make check never runs it.
#
#   scripts/bench-profile.sh [BUILD_DIR] [wsn_publish options]   (default: build)
#   scripts/bench-profile.sh build --batch 100
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
[ $# -gt 0 ] && shift
for f in "$build/wsnotifyd" "$build/scripts/bench/wsn_load" "$build/scripts/bench/wsn_publish"; do
    [ -x "$f" ] || { echo "bench-profile.sh: $f is missing (build first)" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "bench-profile.sh: no perf (Debian linux-perf)" >&2; exit 2; }
work=$(mktemp -d /tmp/wsn-bench-profile.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
read -r port gport <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
export JWT_SECRET=bench-profile-secret
users=10000

mkdir "$work/data"
"$build/wsnotifyd" --workers 2 --bind 127.0.0.1 --port "$port" --grpc-port "$gport" \
    --data-dir "$work/data" --heartbeat 3600 --max-connects-per-minute 0 \
    --log-level warn >"$work/daemon.log" 2>&1 &
daemon=$!; pids="$pids $daemon"
for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"workers":2' && break
    sleep 0.1
done
"$build/scripts/bench/wsn_load" --port "$port" --connections "$users" \
    --source-addrs 127.0.0.2-127.0.0.5 --ready-file "$work/ready" \
    --stats-file "$work/load.json" >"$work/load.log" 2>&1 &
pids="$pids $!"
for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "bench-profile.sh: wsn_load never got ready" >&2; exit 1; }
workers=$(pgrep -P "$daemon" | tr '\n' ' ')

# thread TID NAME USER SYS, the master's threads then the workers
snap() {
    for t in /proc/"$daemon"/task/*; do
        echo "$(basename "$t") $(tr ' ' _ <"$t/comm") $(awk '{print $14, $15}' "$t/stat")"
    done
    for w in $workers; do echo "$w worker $(awk '{print $14, $15}' "/proc/$w/stat")"; done
}

"$build/scripts/bench/wsn_publish" --server "127.0.0.1:$gport" --users "1-$users" \
    --duration 14 --quiet --stats-file "$work/pub.json" "$@" >/dev/null 2>&1 &
pub=$!; pids="$pids $pub"
sleep 2
snap >"$work/cpu0"
sleep 5
snap >"$work/cpu1"
perf record -q --call-graph dwarf,16384 -p "$daemon,$(echo "$workers" | tr ' ' ',' | sed 's/,$//')" \
    -o "$work/perf.data" -- sleep 5 >/dev/null 2>&1
wait "$pub" || true
pids=${pids/ $pub/}
python3 - "$work" "$@" <<'EOF'
import json, os, subprocess, sys
work, args = sys.argv[1], sys.argv[2:]
pub = json.load(open(os.path.join(work, "pub.json")))
rate = pub["rate"]["delivered_per_s"]
hz = os.sysconf("SC_CLK_TCK")
def rows(path):
    out = {}
    for line in open(path):
        tid, name, u, s = line.split()
        out[tid] = (name, int(u), int(s))
    return out
a, b = rows(os.path.join(work, "cpu0")), rows(os.path.join(work, "cpu1"))
# The sampling window is 5 s long, but the rate is that of the whole run.
print("wsn_publish %s: %.0f notifications/s delivered" % (" ".join(args) or "(unary)", rate))
print("server CPU per notification, by thread (5 s, /proc):")
total = 0.0
names = {}
for tid, (name, u1, s1) in sorted(b.items(), key=lambda kv: kv[0]):
    if tid not in a:
        continue
    u = (u1 - a[tid][1]) / hz / 5 / rate * 1e6
    s = (s1 - a[tid][2]) / hz / 5 / rate * 1e6
    if u + s <= 0:
        continue
    total += u + s
    names[tid] = name
    print("  %-8s %-16s %6.1f µs  (user %5.1f, kernel %5.1f)" % (tid, name, u + s, u, s))
print("  total                     %6.1f µs" % total)
rep = subprocess.run(["perf", "report", "-i", os.path.join(work, "perf.data"), "--stdio",
                      "--no-children", "-g", "none", "--sort", "pid,dso"],
                     capture_output=True, text=True).stdout
groups = {}
for line in rep.splitlines():
    line = line.strip()
    if not line or line.startswith("#") or "%" not in line:
        continue
    pct, rest = line.split("%", 1)
    parts = rest.split()
    tid = parts[0].split(":")[0]
    dso = parts[-1].strip("[]")
    kind = ("kernel" if "kernel" in dso else "gRPC core" if any(k in dso for k in
            ("grpc", "gpr", "absl", "address_sorting", "upb", "re2", "cares")) else
            "LMDB" if "lmdb" in dso else "libc" if dso.startswith(("libc", "ld-linux")) else
            "wsnotifyd" if dso == "wsnotifyd" else "other")
    g = groups.setdefault(tid, {})
    g[kind] = g.get(kind, 0.0) + float(pct)
print("where each thread's samples ran (perf, 5 s; share of the daemon's samples):")
for tid, g in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
    tot = sum(g.values())
    if tot < 1.0:
        continue
    parts = ", ".join("%s %.0f%%" % (k, v) for k, v in sorted(g.items(), key=lambda kv: -kv[1])
                      if v >= 0.5)
    print("  %-8s %-16s %5.1f%%: %s" % (tid, names.get(tid, "?"), tot, parts))
rep = subprocess.run(["perf", "report", "-i", os.path.join(work, "perf.data"), "--stdio",
                      "--children", "-g", "none", "--sort", "symbol"],
                     capture_output=True, text=True).stdout
want = [("handle_unary", "gRPC thread: wsnotifyd's part of a call (unpack, route, reply)"),
        ("router_submit", "  of which routing (directory, datagram to the worker)"),
        ("notify_build_json", "  of which the client JSON"),
        ("store_write", "history thread: the LMDB transaction"),
        ("mdb_txn_commit", "history thread: LMDB commits (page writes, fdatasync)"),
        ("call_finish", "history thread: answering the calls (gRPC core)"),
        ("worker_on_queue", "workers: datagrams from the master"),
        ("tcp_sendmsg", "kernel: TCP sends (workers: the frames; master: HTTP/2)")]
incl = {}
for line in rep.splitlines():
    f = line.split()
    if len(f) >= 4 and f[0].endswith("%") and f[2] in ("[.]", "[k]"):
        incl.setdefault(f[3], float(f[0].rstrip("%")))
print("inclusive share of the daemon's samples (perf, call graphs):")
for sym, what in want:
    if sym in incl:
        print("  %5.1f%%  = %5.1f us  %-18s %s" % (incl[sym], incl[sym] / 100 * total, sym, what))
EOF

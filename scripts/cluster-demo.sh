#!/bin/sh
# cluster-demo.sh — a two-node wsnotify cluster on this machine, to try cluster
# mode: a private redis-server, two wsnotifyd nodes sharing it (--redis), and
# the README's nginx in front of them (ip_hash over both nodes), all on
# free loopback ports, all run as the current user, every file in one state
# directory. Nothing is installed, no system service is touched, and
# everything is stopped by the pids it recorded.
#
#   sh scripts/cluster-demo.sh            start, print how to use it, run until Ctrl-C / SIGTERM
#   sh scripts/cluster-demo.sh start      the same, but return at once (it runs in the background)
#   sh scripts/cluster-demo.sh stop       stop what the state directory records
#   sh scripts/cluster-demo.sh --check    start, connect one WebSocket through nginx, send a
#                                         notification through node 2's gRPC (then node 1's),
#                                         check that it arrives, stop; exit 0 (ok) or 1
#
# Environment:
#   WSNOTIFYD, WSNOTIFYCTL  the built binaries (default: build-dev/, build/, or an in-tree build)
#   REDIS_SERVER            default /usr/bin/redis-server
#   NGINX                   default /usr/sbin/nginx
#   PYTHON3                 default python3 (picks free ports; runs the --check client)
#   JWT_SECRET              the secret of both nodes (default: a development secret)
#   WSN_DEMO_STATE          the state directory (default ${TMPDIR:-/tmp}/wsnotify-cluster-demo-UID;
#                           --check uses a fresh temporary one unless this is set)
#   WSN_DEMO_WORKERS        workers per node (default 2)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=run
case "${1:-}" in
    "" | run) MODE=run ;;
    start) MODE=start ;;
    stop) MODE=stop ;;
    --check | check) MODE=check ;;
    -h | --help)
        sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0 ;;
    *)
        echo "usage: $0 [run | start | stop | --check]" >&2
        exit 2 ;;
esac

REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
NGINX=${NGINX:-/usr/sbin/nginx}
PYTHON3=${PYTHON3:-python3}
WORKERS=${WSN_DEMO_WORKERS:-2}
JWT_SECRET=${JWT_SECRET:-dev-secret-change-me}
export JWT_SECRET
# No HTTP proxy may capture a loopback call (curl, wsnotifyctl's gRPC).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY grpc_proxy all_proxy ALL_PROXY 2>/dev/null || :

say() { printf '%s\n' "$*"; }
die() { printf 'cluster-demo: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------- state

if [ -n "${WSN_DEMO_STATE:-}" ]; then
    STATE=$WSN_DEMO_STATE
    OWN_STATE=0
elif [ "$MODE" = check ]; then
    STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsnotify-cluster-check.XXXXXX") || die "mktemp failed"
    OWN_STATE=1
else
    STATE=${TMPDIR:-/tmp}/wsnotify-cluster-demo-$(id -u)
    OWN_STATE=0
fi

# is_running PID NAME: PID is a live (not zombie) process whose command line contains NAME.
is_running() {
    [ -n "$1" ] || return 1
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
        [ "$st" = Z ] && return 1
        tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    fi
    return 0
}

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || :; }

# The processes, in stopping order: NAME:pattern of its command line.
PROCS="nginx:nginx node1:wsnotifyd node2:wsnotifyd redis:redis-server"

any_running() {
    for p in $PROCS; do
        is_running "$(pid_of "${p%%:*}")" "${p#*:}" && return 0
    done
    return 1
}

# stop_all: SIGTERM every recorded process that still runs, wait up to 10 s, then SIGKILL.
stop_all() {
    [ -d "$STATE" ] || return 0
    : > "$STATE/stopping" 2>/dev/null || :
    for p in $PROCS; do
        pid=$(pid_of "${p%%:*}")
        if is_running "$pid" "${p#*:}"; then
            kill -TERM "$pid" 2>/dev/null || :
        fi
    done
    i=0
    while any_running && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    for p in $PROCS; do
        pid=$(pid_of "${p%%:*}")
        if is_running "$pid" "${p#*:}"; then
            say "cluster-demo: ${p%%:*} (pid $pid) did not stop on SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || :
        fi
    done
    for p in $PROCS; do
        rm -f "$STATE/${p%%:*}.pid"
    done
    rm -f "$STATE/ports" "$STATE/stopping"
}

if [ "$MODE" = stop ]; then
    if [ ! -d "$STATE" ] || ! any_running; then
        say "cluster-demo: nothing running (state directory $STATE)"
        [ -d "$STATE" ] && stop_all
        exit 0
    fi
    stop_all
    say "cluster-demo: stopped (logs in $STATE)"
    exit 0
fi

# --------------------------------------------------------------------- tools

find_bin() {        # NAME -> the path of a built binary
    for d in "$ROOT/build-dev" "$ROOT/build" "$ROOT"; do
        if [ -x "$d/$1" ] && [ -f "$d/$1" ]; then
            printf '%s\n' "$d/$1"
            return 0
        fi
    done
    return 1
}
WSNOTIFYD=${WSNOTIFYD:-$(find_bin wsnotifyd || :)}
if [ -z "${WSNOTIFYCTL:-}" ]; then
    if [ -n "$WSNOTIFYD" ] && [ -x "$(dirname "$WSNOTIFYD")/wsnotifyctl" ]; then
        WSNOTIFYCTL=$(dirname "$WSNOTIFYD")/wsnotifyctl
    else
        WSNOTIFYCTL=$(find_bin wsnotifyctl || :)
    fi
fi
if [ -z "$WSNOTIFYD" ] || [ ! -x "$WSNOTIFYD" ]; then
    die "no wsnotifyd: build it (make -C build-dev) or set WSNOTIFYD"
fi
if [ -z "$WSNOTIFYCTL" ] || [ ! -x "$WSNOTIFYCTL" ]; then
    die "no wsnotifyctl: build it or set WSNOTIFYCTL"
fi
[ -x "$REDIS_SERVER" ] || die "no $REDIS_SERVER (Debian: apt-get install redis-server) or set REDIS_SERVER"
[ -x "$NGINX" ] || die "no $NGINX (Debian: apt-get install nginx-light) or set NGINX"
command -v "$PYTHON3" > /dev/null 2>&1 || die "no $PYTHON3 (it picks the free ports)"

if [ -d "$STATE" ] && any_running; then
    die "already running (state directory $STATE): stop it first with: $0 stop"
fi
mkdir -p "$STATE" || die "cannot create $STATE"
chmod 700 "$STATE"
rm -f "$STATE/stopping"

# --------------------------------------------------------------------- start

# Six ports that are free now, distinct (held open together while picked).
PORTS=$("$PYTHON3" -c '
import socket
ss = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
') || die "cannot pick free ports"
# shellcheck disable=SC2086 # six numbers, split on purpose
set -- $PORTS
REDIS_PORT=$1 HTTP1=$2 GRPC1=$3 HTTP2=$4 GRPC2=$5 NGINX_PORT=$6

SLEEP_PID=
KEEP_RUNNING=0      # set once `start` has started everything: the exit then stops nothing
CLEANED=0
cleanup() {
    [ "$CLEANED" = 1 ] && return 0
    CLEANED=1
    trap '' PIPE    # stdout may be a closed pipe: then a message fails, nothing else
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    stop_all
    wait 2>/dev/null
}

on_failure() {
    say "cluster-demo: $*" >&2
    for f in redis.log node1.log node2.log nginx/error.log; do
        if [ -s "$STATE/$f" ]; then
            say "----- last lines of $STATE/$f" >&2
            tail -n 15 "$STATE/$f" >&2
        fi
    done
    cleanup
    exit 1
}

# In the background mode the processes get their own session, so closing the
# terminal does not take them down; otherwise Ctrl-C reaches this script,
# which stops them.
if [ "$MODE" = start ] && command -v setsid > /dev/null 2>&1; then
    DETACH=setsid
else
    DETACH=
fi
# However this script ends (a signal, an error, a closed stdout), what it started stops.
trap '[ "$KEEP_RUNNING" = 1 ] || cleanup' EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP
trap 'cleanup; exit 141' PIPE

mkdir -p "$STATE/redis"
$DETACH "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$STATE/redis" < /dev/null > "$STATE/redis.log" 2>&1 &
echo $! > "$STATE/redis.pid"

redis_ping() {
    "$PYTHON3" - "$REDIS_PORT" <<'EOF' > /dev/null 2>&1
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"*1\r\n$4\r\nPING\r\n")
sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
EOF
}
i=0
until redis_ping; do
    is_running "$(pid_of redis)" redis-server || on_failure "redis-server exited"
    i=$((i + 1))
    [ $i -lt 100 ] || on_failure "redis-server does not answer PING on port $REDIS_PORT"
    sleep 0.1
done

start_node() {      # NAME HTTP GRPC
    $DETACH "$WSNOTIFYD" --workers "$WORKERS" --bind 127.0.0.1 --port "$2" \
        --grpc-bind 127.0.0.1 --grpc-port "$3" --redis "redis://127.0.0.1:$REDIS_PORT" \
        --node-id "$1" --max-connects-per-minute 0 --demo < /dev/null > "$STATE/$1.log" 2>&1 &
    echo $! > "$STATE/$1.pid"
}
start_node node1 "$HTTP1" "$GRPC1"
start_node node2 "$HTTP2" "$GRPC2"

health() { "$WSNOTIFYCTL" health --server "127.0.0.1:$1" 2>/dev/null; }
for n in 1 2; do
    if [ $n = 1 ]; then port=$HTTP1; else port=$HTTP2; fi
    i=0
    until h=$(health "$port") && printf '%s' "$h" | grep -q '"status":"healthy"'; do
        is_running "$(pid_of node$n)" wsnotifyd || on_failure "node$n exited"
        i=$((i + 1))
        if [ $i -ge 150 ]; then
            [ -n "${h:-}" ] || on_failure "node$n does not answer /health on port $port"
            say "cluster-demo: warning: node$n is not healthy after 15 s: $h" >&2
            break
        fi
        sleep 0.1
    done
done

mkdir -p "$STATE/nginx/tmp"
USER_LINE=
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"
cat > "$STATE/nginx/nginx.conf" <<EOF
# nginx in front of the two nodes (generated by cluster-demo.sh)
daemon off;
worker_processes 1;
pid "$STATE/nginx/nginx.pid";
error_log "$STATE/nginx/error.log" notice;
$USER_LINE
events { worker_connections 1024; }
http {
    access_log "$STATE/nginx/access.log";
    client_body_temp_path "$STATE/nginx/tmp/client_body";
    proxy_temp_path "$STATE/nginx/tmp/proxy";
    fastcgi_temp_path "$STATE/nginx/tmp/fastcgi";
    uwsgi_temp_path "$STATE/nginx/tmp/uwsgi";
    scgi_temp_path "$STATE/nginx/tmp/scgi";

    upstream api_gateway {
        ip_hash;
        server 127.0.0.1:$HTTP1;
        server 127.0.0.1:$HTTP2;
    }

    # The guide's (README "Cluster"), on loopback.
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /ws {
            proxy_pass http://api_gateway;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 120s;       # over 2 x --heartbeat
        }
        location / { proxy_pass http://api_gateway; }
    }
}
EOF
# -e: the error log from the start (not the compiled-in /var/log/nginx/error.log).
"$NGINX" -t -q -p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log" \
    > "$STATE/nginx/config-test.log" 2>&1 ||
    on_failure "nginx refused its configuration: $(cat "$STATE/nginx/config-test.log")"
$DETACH "$NGINX" -p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log" \
    < /dev/null > "$STATE/nginx/stdout.log" 2>&1 &
echo $! > "$STATE/nginx.pid"
i=0
until health "$NGINX_PORT" > /dev/null; do
    is_running "$(pid_of nginx)" nginx || on_failure "nginx exited"
    i=$((i + 1))
    [ $i -lt 100 ] || on_failure "nginx does not answer /health on port $NGINX_PORT"
    sleep 0.1
done

cat > "$STATE/ports" <<EOF
REDIS_PORT=$REDIS_PORT
NODE1_HTTP=$HTTP1
NODE1_GRPC=$GRPC1
NODE2_HTTP=$HTTP2
NODE2_GRPC=$GRPC2
NGINX_PORT=$NGINX_PORT
EOF

say "redis-server: pid $(pid_of redis), port $REDIS_PORT"
say "node1: pid $(pid_of node1), HTTP port $HTTP1, gRPC port $GRPC1"
say "node2: pid $(pid_of node2), HTTP port $HTTP2, gRPC port $GRPC2"
say "nginx: pid $(pid_of nginx), port $NGINX_PORT"

# --------------------------------------------------------------------- --check

if [ "$MODE" = check ]; then
    CLIENT_DIR=$ROOT/tests/e2e
    [ -f "$CLIENT_DIR/wsnclient.py" ] || on_failure "no $CLIENT_DIR/wsnclient.py"
    "$PYTHON3" - "$CLIENT_DIR" "$WSNOTIFYCTL" "$NGINX_PORT" "$HTTP1" "$GRPC1" "$HTTP2" "$GRPC2" <<'EOF'
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import wsnclient as wc
ctl = sys.argv[2]
nginx_port, h1, g1, h2, g2 = (int(x) for x in sys.argv[3:8])
user = 4242

def fail(msg):
    print("check FAILED: " + msg, flush=True)
    sys.exit(1)

def run(*args):
    r = subprocess.run([ctl] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return r.returncode, r.stdout.decode(errors="replace").strip(), r.stderr.decode(errors="replace").strip()

h = wc.http_request("127.0.0.1", nginx_port, "GET", "/health", timeout=5)
if h.status != 200 or h.json().get("service") != "wsnotifyd":
    fail("/health through nginx: %r" % h)
rc, token, err = run("token", "--user-id", str(user), "--email", "demo@example.com")
if rc != 0 or not token:
    fail("wsnotifyctl token: %s" % err)
c = wc.connect("127.0.0.1", nginx_port, "/ws?token=" + token, timeout=5)
if not isinstance(c, wc.WSConnection):
    fail("the WebSocket upgrade through nginx was refused: %r" % c)
m = c.recv_json(5)
if m.get("type") != "connected":
    fail("first message through nginx: %r" % m)
holder = "?"
deadline = time.monotonic() + 3
while holder == "?" and time.monotonic() < deadline:
    for name, port in (("node1", h1), ("node2", h2)):
        try:
            if wc.http_request("127.0.0.1", port, "GET", "/health", timeout=2).json().get("ws_connections"):
                holder = name
        except (OSError, wc.WSError, ValueError):
            pass
    time.sleep(0.05)
print("WebSocket through nginx: user %d connected, held by %s" % (user, holder), flush=True)
for name, grpc in (("node2", g2), ("node1", g1)):
    title = "Hello through %s" % name
    rc, out, err = run("send", "--user-id", str(user), "--type", "demo", "--title", title,
                       "--message", "sent to %s's gRPC port" % name, "--server", "127.0.0.1:%d" % grpc)
    if rc != 0:
        fail("wsnotifyctl send through %s: %s" % (name, err or out))
    r = json.loads(out)
    if not r.get("delivered"):
        fail("sent through %s (gRPC %d) to the user held by %s: %s" % (name, grpc, holder, out))
    deadline = time.monotonic() + 5
    while True:
        try:
            m = c.recv_json(max(0.01, deadline - time.monotonic()))
        except wc.WSError as e:
            fail("the notification sent through %s (id %s) did not arrive: %r" % (name, r["notification_id"], e))
        if m.get("type") == "notification" and m["data"]["id"] == r["notification_id"]:
            break
    print("sent through %s: id %d arrived (%s)" % (name, r["notification_id"], title), flush=True)
c.close(1000, "")
print("check passed", flush=True)
EOF
    rc=$?
    if [ $rc -ne 0 ]; then
        on_failure "the check failed (state and logs kept in $STATE)"
    fi
    cleanup
    [ "$OWN_STATE" = 1 ] && rm -rf "$STATE"
    say "cluster-demo: check passed, everything stopped"
    exit 0
fi

# --------------------------------------------------------------------- run / start

CTL=$WSNOTIFYCTL
cat <<INFO

wsnotify cluster demo (state and logs in $STATE):
  nginx  http://127.0.0.1:$NGINX_PORT  (/ws and everything else), ip_hash over:
    node1  http://127.0.0.1:$HTTP1 (gRPC 127.0.0.1:$GRPC1)
    node2  http://127.0.0.1:$HTTP2 (gRPC 127.0.0.1:$GRPC2)
  redis-server 127.0.0.1:$REDIS_PORT (no persistence)

  # a token (both nodes use JWT_SECRET='$JWT_SECRET')
  JWT_SECRET='$JWT_SECRET' $CTL token --user-id 1 --email test@example.com

  # connect through nginx (or straight to a node: port $HTTP1 or $HTTP2)
  python3 $ROOT/tests/e2e/wsnclient.py "ws://127.0.0.1:$NGINX_PORT/ws?token=TOKEN"
  #   or in a browser: http://127.0.0.1:$NGINX_PORT/test_websocket.html (paste the token)

  # send through either node's gRPC port: the user gets it whichever node holds them
  $CTL send --user-id 1 --type match_created --title "Via node 1" --message "Hello" --server 127.0.0.1:$GRPC1
  $CTL send --user-id 1 --type match_created --title "Via node 2" --message "Hello" --server 127.0.0.1:$GRPC2
  $CTL status --user-id 1 --id NOTIFICATION_ID --server 127.0.0.1:$GRPC2

  # health of each node, and through nginx
  $CTL health --server 127.0.0.1:$HTTP1; $CTL health --server 127.0.0.1:$HTTP2
  $CTL health --server 127.0.0.1:$NGINX_PORT

  (ip_hash hashes the first three bytes of the client's address: every loopback
  client lands on the same node; connect straight to the other node's port to
  see two nodes hold users.)

INFO

if [ "$MODE" = start ]; then
    KEEP_RUNNING=1
    trap - INT TERM HUP PIPE
    say "Running in the background; stop it with: $0 stop"
    exit 0
fi
say "Stop with Ctrl-C (or: $0 stop)."
while :; do
    for p in $PROCS; do
        name=${p%%:*}
        if ! is_running "$(pid_of "$name")" "${p#*:}"; then
            if [ -f "$STATE/stopping" ] || [ ! -f "$STATE/$name.pid" ]; then
                wait 2>/dev/null
                say "cluster-demo: stopped"
                exit 0
            fi
            on_failure "$name (pid $(pid_of "$name")) exited; see $STATE"
        fi
    done
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" 2>/dev/null
    SLEEP_PID=
done

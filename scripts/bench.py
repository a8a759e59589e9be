#!/usr/bin/python3
"""bench.py — wsnotify performance benchmark (not a test: make check never runs it).

One run, three servers, the same load from the project's C tools
(scripts/bench/wsn_load: libevent WebSocket clients; scripts/bench/wsn_publish:
gRPC publisher, or HTTP POST for nchan):

  node     one wsnotifyd, 2 workers, history on (--data-dir in a temp dir)
  cluster  3 wsnotifyd nodes (2 workers each) on a private redis-server; the
           users are split over the nodes, notifications sent through every node
  nchan    Debian nginx + ngx_nchan_module from a private config (push-only:
           channel per user, POST /pub/ID, WebSocket /sub/ID)

For each: memory per idle connection (workers' Private_Dirty+Private_Clean
delta from /proc/PID/smaps, whole server Pss delta, kernel slab delta), the
connection rate, delivery latency at a fixed 2000/s (client-side histogram of
wsn_load: publisher's CLOCK_MONOTONIC stamp -> frame read), throughput flat out
(unary, and SendNotifications batches of 100), server CPU per notification
from /proc/PID/stat (master / workers, nginx master / workers, Redis apart) and
notifications per second per server core, and a Broadcast: one call, time
until every client has the frame. --big also holds a large number of idle
connections on one node (target 500 000) and measures latency while they are
held, and broadcasts to 200 000.

  /usr/bin/python3 scripts/bench.py [--quick] [--big] [--only node|cluster|nchan]
                                    [--daemon PATH] [--json FILE]

Every process it starts runs in its own process group and is stopped on exit,
Ctrl-C and SIGTERM; every wait is bounded; nginx and redis are private
instances on free loopback ports, nothing system-wide is used or changed.
Standard library only.
"""

import argparse
import ctypes
import datetime
import http.client
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SECRET = "wsn-bench-secret-0123456789abcdef"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
NCHAN_BCAST_CHANNEL = 9000000000        # the channel every /bsub/ID subscriber also has
WARM_USER = 5000000                     # warm-up users, apart from the measured ones
PER_LOADER = 15000                      # sockets per wsn_load process, at most
FD_LIMIT_SLACK = 600                    # descriptors a worker needs besides its clients
NS = 1_000_000_000


class BenchError(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ============================================================== processes

def _pdeathsig():
    """In the child: die with the driver even if it is SIGKILLed."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Procs:
    """Every child, in its own process group; stopped in reverse order."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.live = []
        self.n = 0

    def start(self, name, argv, env=None, cwd=None):
        self.n += 1
        out = open(os.path.join(self.tmp, "%02d-%s.log" % (self.n, name)), "wb")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             env=e, cwd=cwd, start_new_session=True, preexec_fn=_pdeathsig)
        out.close()
        p.name = name
        p.log_path = out.name
        self.live.append(p)
        return p

    def stop(self, p, timeout=15.0, sig=signal.SIGTERM):
        if p not in self.live:
            return p.returncode
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) did not stop within %.0f s: SIGKILL" % (p.name, p.pid, timeout))
        try:
            os.killpg(p.pid, signal.SIGKILL)    # whatever is left of its group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.live.remove(p)
        return p.returncode

    def stop_many(self, ps, timeout=20.0):
        """SIGTERM to all at once, then wait for all (bounded)."""
        ps = [p for p in ps if p in self.live]
        for p in ps:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + timeout
        for p in ps:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in ps:
            self.stop(p, timeout=1)

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, timeout=15)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return ""


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_for(cond, timeout, what, step=0.05, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise BenchError("%s exited (status %s) while waiting for %s:\n%s" % (
                proc.name, proc.returncode, what, tail(proc.log_path)))
        try:
            v = cond()
        except (OSError, ValueError, http.client.HTTPException):
            v = None
        if v:
            return v
        time.sleep(step)
    raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))


# ============================================================== /proc

def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[11]) + int(st[12])           # utime + stime, all threads
    except (OSError, IndexError, ValueError):
        return 0


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
                if int(st[1]) == pid and st[0] != "Z":
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(out)


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


def smaps(pid):
    """{"private": Private_Clean+Private_Dirty, "anon_private": of anonymous maps, "pss": Pss} bytes."""
    out = {"private": 0, "anon_private": 0, "pss": 0}
    anon = False
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    parts = line.split(None, 5)
                    name = parts[5].strip() if len(parts) > 5 else ""
                    anon = name in ("", "[heap]")
                    continue
                k, _, rest = line.partition(":")
                if k in ("Private_Clean", "Private_Dirty"):
                    v = int(rest.split()[0]) * 1024
                    out["private"] += v
                    if anon:
                        out["anon_private"] += v
                elif k == "Pss":
                    out["pss"] += int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def meminfo():
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, rest = line.partition(":")
            m[k] = int(rest.split()[0]) * 1024
    return m


def sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().split()
    except OSError:
        return None


# ============================================================== servers
# Each server has .name, .roles() -> {role: [pids]} (for CPU), .mem_pids() ->
# {"workers": [...], "all": [...]}, .ws_port(i) for the i-th load share, and
# .grpc_ports (or .pub_url for nchan).

class Daemon:
    def __init__(self, b, name, workers, max_conn, redis_port=None, node_id=None):
        self.b, self.name, self.workers = b, name, workers
        self.port, self.grpc_port = free_ports(2)
        self.data = os.path.join(b.tmp, name + "-data")
        argv = [b.daemon, "--workers", str(workers), "--bind", "127.0.0.1",
                "--port", str(self.port), "--grpc-port", str(self.grpc_port),
                "--max-connections", str(max_conn), "--heartbeat", "3600",
                "--max-connects-per-minute", "0", "--max-handshakes", "16384",
                "--log-level", "warn"]
        if redis_port is None:
            argv += ["--data-dir", self.data]
        else:
            argv += ["--redis", "redis://127.0.0.1:%d" % redis_port, "--node-id", node_id]
        self.cluster = redis_port is not None
        self.proc = b.procs.start(name, argv, env={"JWT_SECRET": SECRET})

    def health(self):
        st, body = http_get(self.port, "/health", timeout=2)
        return json.loads(body) if st == 200 else None

    def wait_up(self, timeout=30):
        def ok():
            h = self.health()
            if not h or h.get("workers") != self.workers:
                return False
            return not self.cluster or h.get("redis") == "up"
        wait_for(ok, timeout, "%s /health" % self.name, step=0.1, proc=self.proc)
        self.master = self.proc.pid
        wait_for(lambda: len(children_of(self.master)) == self.workers, 10,
                 "%s's %d workers" % (self.name, self.workers), proc=self.proc)

    def roles(self):
        return {"master": [self.master], "workers": children_of(self.master)}

    def mem_pids(self):
        w = children_of(self.master)
        return {"workers": w, "all": [self.master] + w}

    def metrics_hist(self):
        """wsnotify_delivery_latency_seconds buckets {le: cumulative}."""
        st, body = http_get(self.port, "/metrics", timeout=10)
        h = {}
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith('wsnotify_delivery_latency_seconds_bucket{le="'):
                le = line.split('"')[1]
                h[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        return h


class Redis:
    def __init__(self, b):
        self.b = b
        self.port = free_ports(1)[0]
        self.proc = b.procs.start("redis", [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", b.tmp,
            "--maxmemory-policy", "noeviction", "--protected-mode", "yes"])

    def cmd(self, *args):
        """One command, RESP; the reply's first line, or a bulk string's content."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=3)
        try:
            req = b"*%d\r\n" % len(args) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
            s.sendall(req)
            f = s.makefile("rb")
            line = f.readline()
            if line[:1] == b"$" and int(line[1:]) >= 0:
                return f.read(int(line[1:]) + 2)[:-2]
            return line
        finally:
            s.close()

    def wait_up(self):
        wait_for(lambda: self.cmd("PING").startswith(b"+PONG"), 15, "redis PING", proc=self.proc)

    def used_memory(self):
        for line in self.cmd("INFO", "memory").decode().splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        return 0


class Cluster:
    """3 nodes on one private Redis."""

    def __init__(self, b, nodes, workers, max_conn):
        self.name = "cluster"
        self.redis = Redis(b)
        self.redis.wait_up()
        self.nodes = [Daemon(b, "node-%s" % chr(65 + i), workers, max_conn,
                             redis_port=self.redis.port, node_id=chr(65 + i))
                      for i in range(nodes)]
        self.workers = workers

    def wait_up(self, timeout=40):
        for d in self.nodes:
            d.wait_up(timeout)

    def roles(self):
        r = {"master": [], "workers": [], "redis": [self.redis.proc.pid]}
        for d in self.nodes:
            for k, v in d.roles().items():
                r[k] += v
        return r

    def mem_pids(self):
        w, a = [], []
        for d in self.nodes:
            m = d.mem_pids()
            w += m["workers"]
            a += m["all"]
        return {"workers": w, "all": a}


NGINX_CONF = """\
# wsn bench: private nginx + nchan, loopback only
load_module {module};
{user}
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections {wconn};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_body_buffer_size 16k;
    keepalive_requests 1000000;
    nchan_max_reserved_memory {shm}m;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        # push-only: one channel per user
        location ~ ^/pub/(\\d+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
        }}
        location ~ ^/sub/(\\d+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
        # the broadcast test: each subscriber has its own channel and the shared one
        location ~ ^/bsub/(\\d+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1 {bcast};
            nchan_subscriber_first_message newest;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, b, workers):
        self.b, self.name, self.workers = b, "nchan", workers
        self.port = free_ports(1)[0]
        self.prefix = tempfile.mkdtemp(prefix="nginx-", dir=b.tmp)
        user = ""
        if os.geteuid() == 0:
            import grp
            import pwd
            user = "user %s %s;" % (pwd.getpwuid(0).pw_name, grp.getgrgid(os.getegid()).gr_name)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        conf = NGINX_CONF.format(module=NCHAN_MODULE, user=user, workers=workers,
                                 nofile=nofile, wconn=max(1024, nofile - 500),
                                 prefix=self.prefix, port=self.port, bcast=NCHAN_BCAST_CHANNEL,
                                 shm=4096 if b.a.big else 1024)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.pub_url = "http://127.0.0.1:%d/pub/%%lld" % self.port
        self.proc = b.procs.start("nginx", [
            "nginx", "-p", self.prefix + "/", "-c", self.conf, "-e", self.prefix + "/error.log",
            "-g", "daemon off; master_process on;"])

    def wait_up(self, timeout=20):
        wait_for(lambda: http_get(self.port, "/nothing", timeout=2)[0] == 404, timeout,
                 "nginx on :%d" % self.port, step=0.1, proc=self.proc)
        self.master = self.proc.pid
        wait_for(lambda: len(children_of(self.master)) >= self.workers, 10, "nginx workers",
                 proc=self.proc)

    def roles(self):
        return {"master": [self.master], "workers": children_of(self.master)}

    def mem_pids(self):
        w = children_of(self.master)
        return {"workers": w, "all": [self.master] + w}


# ============================================================== load

def merge_hist(stats):
    """Merge wsn_load phase histograms -> quantile function and summary (µs)."""
    buckets, count, mn, mx = {}, 0, None, None
    for st in stats:
        lat = st["latency_us"]
        if not lat["count"]:
            continue
        for low, width, c in st["phase"]["latency_hist_ns"]:
            e = buckets.setdefault(low, [width, 0])
            e[1] += c
        count += lat["count"]
        mn = lat["min"] if mn is None else min(mn, lat["min"])
        mx = lat["max"] if mx is None else max(mx, lat["max"])
    keys = sorted(buckets)

    def q(p):
        if not count:
            return None
        rank = max(1, math.ceil(p * count))
        cum = 0
        for low in keys:
            width, c = buckets[low]
            cum += c
            if cum >= rank:
                v = (low + width / 2.0 if width > 1 else low) / 1e3
                return min(max(v, mn), mx)
        return mx
    return {"count": count, "min": mn, "max": mx, "p50": q(0.50), "p90": q(0.90),
            "p99": q(0.99), "p999": q(0.999)}


class Loader:
    def __init__(self, b, idx, port, first_user, n, src, nchan=False, path=None):
        self.b, self.idx, self.n = b, idx, n
        d = os.path.join(b.tmp, "load")
        os.makedirs(d, exist_ok=True)
        self.ready_file = os.path.join(d, "ready-%d-%d" % (b.procs.n + 1, idx))
        self.stats_file = os.path.join(d, "stats-%d-%d.json" % (b.procs.n + 1, idx))
        argv = [b.wsn_load, "--host", "127.0.0.1", "--port", str(port), "--connections", str(n),
                "--first-user", str(first_user), "--source-addrs", src,
                "--ready-file", self.ready_file, "--stats-file", self.stats_file,
                "--concurrency", "128"]
        if nchan:
            argv.append("--nchan")
        else:
            argv += ["--secret", SECRET]
        if path:
            argv += ["--path-template", path]
        self.proc = b.procs.start("wsn_load-%d" % idx, argv)
        self.seq = 0
        self.resets = 0

    def ready(self):
        if self.proc.poll() is not None:
            raise BenchError("wsn_load %d exited (%s):\n%s" % (self.idx, self.proc.returncode,
                                                              tail(self.proc.log_path)))
        return os.path.exists(self.ready_file)

    def read(self):
        with open(self.stats_file) as f:
            return json.load(f)


class LoadSet:
    """Several wsn_load processes; users first..first+n-1, split over the targets (ports)."""

    def __init__(self, b, ports, first_user, n, nchan=False, path=None, src_base=0):
        self.b = b
        per_port = [n // len(ports) + (1 if i < n % len(ports) else 0) for i in range(len(ports))]
        self.loaders = []
        user = first_user
        self.t0 = time.monotonic()
        idx = 0
        for port, share in zip(ports, per_port):
            k = max(1, -(-share // PER_LOADER)) if share >= 2000 else 1
            if share >= 2000 and k < 2 and not b.a.single_loader:
                k = 2                  # two processes: both CPUs can take part
            for j in range(k):
                m = share // k + (1 if j < share % k else 0)
                a = src_base + idx * 3      # 3 source addresses each
                if 2 + a + 2 > 254:
                    raise BenchError("out of 127.0.0.x source addresses")
                src = "127.0.0.%d-127.0.0.%d" % (2 + a, 4 + a)
                self.loaders.append(Loader(b, idx, port, user, m, src, nchan=nchan, path=path))
                user += m
                idx += 1
        self.n = n
        self.users = (first_user, first_user + n - 1)
        self.src_used = len(self.loaders) * 3

    @classmethod
    def union(cls, sets):
        u = cls.__new__(cls)
        u.b = sets[0].b
        u.loaders = [l for s in sets for l in s.loaders]
        u.n = sum(s.n for s in sets)
        return u

    def wait_ready(self, timeout):
        wait_for(lambda: all(l.ready() for l in self.loaders), timeout,
                 "%d connections from %d wsn_load processes" % (self.n, len(self.loaders)),
                 step=0.05)
        self.t_ready = time.monotonic()
        self.ramp_s = self.t_ready - self.t0
        opened = 0
        for l in self.loaders:
            with open(l.ready_file) as f:
                opened += int(f.read().split()[0])
        self.opened = opened
        return opened

    def _signal_and_wait(self, sig, key, timeout=20.0):
        want = {}
        for l in self.loaders:
            if sig == signal.SIGUSR2:
                l.resets += 1
                want[l] = ("resets", l.resets)
            else:
                l.seq += 1
                want[l] = ("stats_seq", l.seq)
            os.kill(l.proc.pid, sig)
        out = {}
        end = time.monotonic() + timeout
        for l in self.loaders:
            k, v = want[l]
            while True:
                try:
                    st = l.read()
                    if st["phase"][k] >= v:
                        l.seq = max(l.seq, st["phase"]["stats_seq"])
                        out[l] = st
                        break
                except (OSError, ValueError, KeyError):
                    pass
                if l.proc.poll() is not None:
                    raise BenchError("wsn_load %d died:\n%s" % (l.idx, tail(l.proc.log_path)))
                if time.monotonic() > end:
                    raise BenchError("wsn_load %d did not answer %s" % (l.idx, key))
                time.sleep(0.02)
        return [out[l] for l in self.loaders]

    def reset(self):
        return self._signal_and_wait(signal.SIGUSR2, "SIGUSR2")

    def stats(self):
        return self._signal_and_wait(signal.SIGUSR1, "SIGUSR1")

    def wait_received(self, want, timeout):
        """Poll until the phase counts add up to want (bounded); the last stats."""
        end = time.monotonic() + timeout
        while True:
            st = self.stats()
            got = sum(s["phase"]["notifications"] for s in st)
            if got >= want or time.monotonic() > end:
                return st, got
            time.sleep(0.1)

    def cpu_ticks(self):
        return sum(cpu_ticks(l.proc.pid) for l in self.loaders)

    def open_count(self, st=None):
        st = st or self.stats()
        return sum(s["connections"]["open"] for s in st)

    def connect_errors(self, st):
        errs = {}
        for s in st:
            for k, v in s["connect_errors"].items():
                errs[k] = errs.get(k, 0) + v
        return errs

    def stop(self):
        self.b.procs.stop_many([l.proc for l in self.loaders], timeout=30)


# ============================================================== bench

class Bench:
    def __init__(self, a):
        self.a = a
        self.daemon = a.daemon
        tools = os.path.join(os.path.dirname(os.path.abspath(a.daemon)), "scripts", "bench")
        self.wsn_load = os.path.join(tools, "wsn_load")
        self.wsn_publish = os.path.join(tools, "wsn_publish")
        for p in (self.daemon, self.wsn_load, self.wsn_publish):
            if not os.access(p, os.X_OK):
                raise BenchError("%s is missing (build first: make in the build directory)" % p)
        self.tmp = tempfile.mkdtemp(prefix="wsn-bench-")
        self.procs = Procs(self.tmp)
        self.quick = a.quick
        self.lat_s = 3.0 if a.quick else 10.0
        self.tput_s = 3.0 if a.quick else 8.0
        self.users = a.users
        self.in_flight = a.in_flight
        self.rate = a.rate
        self.r = {"config": {}, "node": None, "cluster": None, "nchan": None, "big": None}

    # ---- environment
    def environment(self):
        fd_soft, fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        m = meminfo()
        env = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "kernel": platform.release(), "cpus": os.cpu_count(),
            "mem_total_gib": round(m["MemTotal"] / 2**30, 1),
            "mem_available_gib": round(m["MemAvailable"] / 2**30, 1),
            "rlimit_nofile": [fd_soft, fd_hard],
            "sysctl": {k: sysctl(k) for k in (
                "net.ipv4.ip_local_port_range", "fs.nr_open", "fs.file-max", "fs.file-nr",
                "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_mem",
                "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_count",
                "vm.max_map_count", "kernel.pid_max")},
            "daemon": self.daemon,
        }
        try:
            env["daemon_version"] = subprocess.run(
                [self.daemon, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=10).stdout.decode().strip()
        except (OSError, subprocess.TimeoutExpired):
            env["daemon_version"] = "?"
        for name, argv in (("nginx", ["nginx", "-v"]), ("redis", ["redis-server", "--version"])):
            try:
                env[name] = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           timeout=10).stdout.decode().strip()
            except (OSError, subprocess.TimeoutExpired):
                env[name] = None
        a0, t0 = machine_busy_ticks(), time.monotonic()
        time.sleep(1.0)
        env["machine_busy_before_pct"] = round(
            (machine_busy_ticks() - a0) / HZ / (time.monotonic() - t0) * 100, 1)
        if env["machine_busy_before_pct"] > 15:
            log("WARNING: the machine is not idle (%.0f%% of a core busy before the start): "
                "the figures will be skewed" % env["machine_busy_before_pct"])
        self.r["config"] = env
        self.limits = self.connection_bound(env)
        env["big_bound"] = self.limits

    def connection_bound(self, env):
        """What bounds the number of loopback connections one run can hold."""
        fd_hard = env["rlimit_nofile"][1]
        lo, hi = (int(x) for x in env["sysctl"]["net.ipv4.ip_local_port_range"])
        ports = hi - lo + 1
        file_max = int(env["sysctl"]["fs.file-max"][0])
        ct = env["sysctl"]["net.netfilter.nf_conntrack_max"]
        ct_count = env["sysctl"]["net.netfilter.nf_conntrack_count"]
        mem = meminfo()["MemAvailable"]
        per_pair = 11000        # bytes: both kernel sockets + both user sides, measured ~9-11 KB
        srcs = 250
        b = {
            "per_process_fd_limit": fd_hard,
            "ephemeral_ports_per_source_address": ports,
            "by_source_ports": srcs * ports,
            "by_file_max": file_max // 2 - 10000,
            "by_memory": int(mem * 0.8 / per_pair),
            "nf_conntrack_max": int(ct[0]) if ct else None,
            "conntrack_active": bool(ct_count and int(ct_count[0]) > 0),
        }
        lim = min(b["by_source_ports"], b["by_file_max"], b["by_memory"])
        if b["conntrack_active"] and b["nf_conntrack_max"]:
            lim = min(lim, b["nf_conntrack_max"])
        b["max_connections"] = lim
        return b

    # ---- measuring helpers
    def cpu(self, server):
        return {role: sum(cpu_ticks(p) for p in pids) for role, pids in server.roles().items()}

    def mem(self, server):
        m = server.mem_pids()
        w = [smaps(p) for p in m["workers"]]
        al = [smaps(p) for p in m["all"]]
        out = {"workers_private": sum(x["private"] for x in w),
               "workers_anon_private": sum(x["anon_private"] for x in w),
               "pss": sum(x["pss"] for x in al),
               "slab": meminfo()["Slab"]}
        if isinstance(server, Cluster):
            out["redis_used"] = server.redis.used_memory()
            out["redis_private"] = smaps(server.redis.proc.pid)["private"]
        return out

    def publish(self, targets, extra, duration=None, count=None, in_flight=None, rate=None,
                tag="pub"):
        """Run wsn_publish processes (one per target) to the end; their stats."""
        ps = []
        k = len(targets)
        inf = in_flight or self.in_flight
        for i, t in enumerate(targets):
            argv = [self.wsn_publish, "--quiet", "--in-flight", str(max(1, -(-inf // k))),
                    "--stats-file", os.path.join(self.tmp, "%s-%d.json" % (tag, i)),
                    "--seed", str(1000 + i)]
            if isinstance(t, str):
                argv += ["--nchan-url", t]
            else:
                argv += ["--server", "127.0.0.1:%d" % t]
            if duration:
                argv += ["--duration", str(duration)]
            if count:
                argv += ["--count", str(count)]
            if rate:
                argv += ["--rate", str(rate / k)]
            argv += extra
            ps.append(self.procs.start("wsn_publish-%s-%d" % (tag, i), argv))
        limit = (duration or 10) + 40
        end = time.monotonic() + limit
        out = []
        for i, p in enumerate(ps):
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                log("wsn_publish did not finish within %.0f s: stopping it" % limit)
            self.procs.stop(p, timeout=10, sig=signal.SIGINT)
            try:
                with open(os.path.join(self.tmp, "%s-%d.json" % (tag, i))) as f:
                    out.append(json.load(f))
            except (OSError, ValueError):
                raise BenchError("wsn_publish wrote no stats:\n%s" % tail(p.log_path))
        return out

    def phase(self, server, loads, targets, extra, rate=None, duration=None, count=None,
              expect=None, tag="pub"):
        """Publish, wait until the clients have what was delivered, measure the CPU."""
        loads.reset()
        c0 = self.cpu(server)
        l0 = loads.cpu_ticks()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        m0, t0 = machine_busy_ticks(), time.monotonic()
        pubs = self.publish(targets, extra, rate=rate, duration=duration, count=count, tag=tag)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        answered = sum(p["notifications"]["answered"] for p in pubs)
        delivered = sum(p["notifications"]["delivered"] for p in pubs)
        recipients = sum(p.get("broadcast_recipients", 0) for p in pubs)
        want = expect or recipients or delivered
        res_expected = want
        st, got = loads.wait_received(want, timeout=30 + (duration or 0))
        t1 = time.monotonic()
        c1 = self.cpu(server)
        l1 = loads.cpu_ticks()
        m1 = machine_busy_ticks()
        wall = t1 - t0
        t0_mono = min(p["t0_mono_ns"] for p in pubs)
        last = max((s["phase"]["last_mono_ns"] for s in st), default=0)
        send_end = max(p["t_last_done_mono_ns"] for p in pubs)
        cpu = {k: (c1.get(k, 0) - c0.get(k, 0)) / HZ for k in c1}
        res = {
            "answered": answered, "delivered": delivered, "received": got,
            "broadcast_recipients": recipients, "expected": res_expected,
            "publisher_answered_per_s": sum(p["rate"]["answered_per_s"] for p in pubs),
            "received_per_s": got / ((last - t0_mono) / NS) if last > t0_mono else 0,
            "last_frame_after_s": (last - t0_mono) / NS if last else None,
            "sending_s": (send_end - t0_mono) / NS,
            "latency_us": merge_hist(st),
            "call_latency_us": pubs[0]["call_latency_us"] if len(pubs) == 1 else
            [p["call_latency_us"] for p in pubs],
            "server_cpu_s": cpu,
            "wall_s": wall,
            "load_tools_cpu_s": {"wsn_load": (l1 - l0) / HZ,
                                 "wsn_publish": (ru1.ru_utime + ru1.ru_stime) -
                                 (ru0.ru_utime + ru0.ru_stime)},
            "machine_busy_cpus": (m1 - m0) / HZ / wall,
            "statuses": [p["calls"]["status"] for p in pubs],
        }
        n = answered if not recipients else recipients
        tot = sum(v for k, v in cpu.items() if k != "redis")
        res["server_cpu_us_per_notification"] = {
            k: v * 1e6 / n if n else None for k, v in cpu.items()}
        res["server_cpu_us_per_notification"]["total"] = tot * 1e6 / n if n else None
        if "redis" in cpu:
            res["server_cpu_us_per_notification"]["total_with_redis"] = \
                sum(cpu.values()) * 1e6 / n if n else None
        allcpu = sum(cpu.values())
        res["notifications_per_server_core_s"] = n / allcpu if allcpu > 0 else None
        if got < want:
            log("WARNING: %s: the clients received %d of %d" % (tag, got, want))
        return res

    @staticmethod
    def server_hist_max(h0, h1):
        """From two scrapes of the cumulative histogram: the bucket (above_s, le_s] that holds
        the slowest frame written in between (a broadcast: when a worker finished)."""
        total = h1.get(float("inf"), 0) - h0.get(float("inf"), 0)
        if total <= 0:
            return None
        prev = 0.0
        for le in sorted(h1):
            if h1[le] - h0.get(le, 0) >= total:
                return {"le_s": le, "above_s": prev, "frames": total}
            prev = le
        return None

    def daemons_of(self, server):
        return server.nodes if isinstance(server, Cluster) else (
            [server] if isinstance(server, Daemon) else [])

    def broadcast(self, server, loads, rounds=3):
        out = []
        for i in range(rounds):
            hs0 = [d.metrics_hist() for d in self.daemons_of(server)]
            if isinstance(server, Nginx):
                res = self.phase(server, loads, [server.pub_url],
                                 ["--users", "%d-%d" % (NCHAN_BCAST_CHANNEL, NCHAN_BCAST_CHANNEL)],
                                 count=1, tag="bcast", expect=loads.n)
                res["broadcast_recipients"] = loads.n
            else:
                # recipients counts the warm-up connections too: wait for the measured ones
                res = self.phase(server, loads, [self.grpc_ports(server)[0]], ["--broadcast"],
                                 count=1, tag="bcast", expect=loads.n)
            hs1 = [d.metrics_hist() for d in self.daemons_of(server)]
            srv = [self.server_hist_max(h0, h1) for h0, h1 in zip(hs0, hs1)]
            srv = [x for x in srv if x]
            res["server_written_within_s"] = max((x["le_s"] for x in srv), default=None)
            res["server_written_above_s"] = max((x["above_s"] for x in srv), default=None)
            out.append(res)
            log("  broadcast %d: %d of %d clients, last frame %.1f ms after the call%s" % (
                i + 1, res["received"], loads.n, (res["last_frame_after_s"] or 0) * 1e3,
                ", server: all written within %g s" % res["server_written_within_s"]
                if res["server_written_within_s"] else ""))
            time.sleep(0.5)
        return out

    def grpc_ports(self, server):
        return [d.grpc_port for d in self.daemons_of(server)]

    def warm_up(self, server, ports):
        """64 connections and a few notifications, held for the whole run, so code paths,
        libevent and malloc arenas are touched before the memory baseline."""
        w = LoadSet(self, ports, WARM_USER, 64, nchan=isinstance(server, Nginx), src_base=240)
        w.wait_ready(30)
        if isinstance(server, Nginx):
            self.publish([server.pub_url], ["--users", "%d-%d" % w.users], count=128, tag="warm")
        else:
            self.publish(self.grpc_ports(server)[:1], ["--users", "%d-%d" % w.users], count=128,
                         tag="warm")
        time.sleep(0.5)
        return w

    # ---- one target
    def run_target(self, kind):
        a = self.a
        log("=== %s ===" % kind)
        N = self.users
        if kind == "node":
            server = Daemon(self, "node", a.workers, N + 20000)
            ports = [server.port]
        elif kind == "cluster":
            server = Cluster(self, 3, a.workers, N + 20000)
            ports = [d.port for d in server.nodes]
        else:
            server = Nginx(self, a.workers)
            ports = [server.port]
        server.wait_up()
        nchan = kind == "nchan"
        targets = [server.pub_url] if nchan else self.grpc_ports(server)
        res = {"users": N, "workers": a.workers, "servers": len(ports)}
        warm = self.warm_up(server, ports)
        time.sleep(0.5)
        m0 = self.mem(server)
        c0 = self.cpu(server)
        loads = LoadSet(self, ports, 1, N, nchan=nchan)
        opened = loads.wait_ready(120)
        time.sleep(1.0)
        m1 = self.mem(server)
        c1 = self.cpu(server)
        per = {k: (m1[k] - m0[k]) / max(1, opened) for k in m0}
        res["memory_per_connection_bytes"] = per
        res["memory_before"], res["memory_after"] = m0, m1
        res["connections_opened"] = opened
        res["connect_s"] = loads.ramp_s
        res["connect_rate_per_s"] = opened / loads.ramp_s
        res["connect_server_cpu_us_per_connection"] = {
            k: (c1[k] - c0[k]) / HZ * 1e6 / max(1, opened) for k in c1}
        res["load_processes"] = len(loads.loaders)
        log("  %d connections in %.2f s (%.0f/s); workers' private %.0f B, Pss %.0f B per connection"
            % (opened, loads.ramp_s, res["connect_rate_per_s"], per["workers_private"],
               per["pss"]))
        users = ["--users", "%d-%d" % loads.users]
        log("  latency at %d/s for %.0f s" % (self.rate, self.lat_s))
        res["latency"] = self.phase(server, loads, targets, users, rate=self.rate,
                                    duration=self.lat_s, tag="lat")
        L = res["latency"]["latency_us"]
        log("    p50 %.0f / p99 %.0f / p99.9 %.0f / max %.0f µs" % (
            L["p50"] or 0, L["p99"] or 0, L["p999"] or 0, L["max"] or 0))
        time.sleep(0.5)
        log("  unary flat out for %.0f s, %d in flight" % (self.tput_s, self.in_flight))
        res["unary"] = self.phase(server, loads, targets, users, duration=self.tput_s, tag="unary")
        self.log_tput(res["unary"])
        time.sleep(0.5)
        if not nchan:
            log("  batches of 100 flat out for %.0f s, %d calls in flight" % (
                self.tput_s, self.in_flight))
            res["batch"] = self.phase(server, loads, targets, users + ["--batch", "100"],
                                      duration=self.tput_s, tag="batch")
            self.log_tput(res["batch"])
            time.sleep(0.5)
        res["memory_after_traffic"] = self.mem(server)
        log("  broadcast to %d connections" % N)
        if nchan:
            loads.stop()
            loads = LoadSet(self, ports, 1, N, nchan=True, path="/bsub/%lld")
            loads.wait_ready(120)
            time.sleep(0.5)
        res["broadcast"] = self.broadcast(server, loads)
        res["broadcast_connections"] = N
        loads.stop()
        warm.stop()
        self.stop_server(server)
        if a.big and kind != "node":
            res["big_broadcast"] = self.big_broadcast(kind)
        return res

    def log_tput(self, r):
        c = r["server_cpu_us_per_notification"]
        log("    %.0f answered/s, %.0f received/s at the clients; server CPU %.1f µs per "
            "notification (%s)" % (r["publisher_answered_per_s"], r["received_per_s"],
                                   c["total"] or 0,
                                   ", ".join("%s %.1f" % (k, v or 0) for k, v in c.items()
                                             if k not in ("total",))))

    def stop_server(self, server):
        if isinstance(server, Cluster):
            for d in server.nodes:
                self.procs.stop(d.proc, timeout=30)
            self.procs.stop(server.redis.proc)
        else:
            self.procs.stop(server.proc, timeout=30)

    def workers_for(self, n):
        """Workers (or nginx workers) so that none holds more than ~14 000 descriptors."""
        per = max(1000, min(14000, self.limits["per_process_fd_limit"] - FD_LIMIT_SLACK - 5000))
        return max(2, -(-n // per))

    def big_broadcast(self, kind):
        n = self.a.broadcast_connections
        log("=== %s: broadcast to %d connections (--big) ===" % (kind, n))
        if kind == "cluster":
            w = max(2, -(-n // 3 // 13000))
            server = Cluster(self, 3, w, n + 20000)
            ports = [d.port for d in server.nodes]
        else:
            w = self.workers_for(n)
            server = Nginx(self, w)
            ports = [server.port]
        server.wait_up()
        loads = LoadSet(self, ports, 1, n, nchan=kind == "nchan",
                        path="/bsub/%lld" if kind == "nchan" else None)
        opened = loads.wait_ready(600)
        res = {"connections": opened, "workers": w, "connect_s": loads.ramp_s,
               "connect_rate_per_s": opened / loads.ramp_s}
        log("  %d connections in %.1f s" % (opened, loads.ramp_s))
        time.sleep(1.0)
        res["broadcast"] = self.broadcast(server, loads)
        loads.stop()
        self.stop_server(server)
        return res

    def run_big(self):
        """One node, many workers, as many idle connections as the machine allows (target
        --big-connections): broadcast at --broadcast-connections on the way up, then memory
        and latency at 2000/s with all held."""
        a = self.a
        lim = self.limits
        target = min(a.big_connections, lim["max_connections"])
        if target < a.big_connections:
            log("the kernel bounds this run to %d connections (%s)" % (target, lim))
        bc = min(a.broadcast_connections, target)
        w = self.workers_for(target)
        log("=== node --big: %d connections, %d workers ===" % (target, w))
        server = Daemon(self, "node-big", w, target + 20000)
        server.wait_up(60)
        res = {"target": a.big_connections, "bounded_to": target, "workers": w,
               "bounds": lim}
        warm = self.warm_up(server, [server.port])
        m0 = self.mem(server)
        stage1 = LoadSet(self, [server.port], 1, bc)
        opened1 = stage1.wait_ready(600)
        res["broadcast_connections"] = opened1
        res["stage1_connect_rate_per_s"] = opened1 / stage1.ramp_s
        log("  %d connections in %.1f s (%.0f/s)" % (opened1, stage1.ramp_s,
                                                    res["stage1_connect_rate_per_s"]))
        time.sleep(1.0)
        res["broadcast"] = self.broadcast(server, stage1)
        loads = [stage1]
        rest = target - bc
        t0 = time.monotonic()
        if rest > 0:
            stage2 = LoadSet(self, [server.port], 1 + bc, rest, src_base=stage1.src_used)
            try:
                stage2.wait_ready(900)
            except BenchError as e:
                log("  stage 2: %s" % e)
            loads.append(stage2)
        st = [s for ls in loads for s in ls.stats()]
        held = sum(s["connections"]["open"] for s in st)
        res["connections_held"] = held
        res["connect_errors"] = loads[0].connect_errors(st)
        res["stage2_connect_rate_per_s"] = (held - opened1) / max(0.001, time.monotonic() - t0)
        h = server.health() or {}
        res["server_ws_connections"] = h.get("ws_connections")
        res["conntrack_count"] = sysctl("net.netfilter.nf_conntrack_count")
        res["fs_file_nr"] = sysctl("fs.file-nr")
        log("  held %d connections (server says %s); errors %s" % (
            held, h.get("ws_connections"), res["connect_errors"] or "none"))
        time.sleep(2.0)
        m1 = self.mem(server)
        res["memory_per_connection_bytes"] = {k: (m1[k] - m0[k]) / max(1, held) for k in m0}
        res["memory_before"], res["memory_after"] = m0, m1
        res["mem_available_gib_after"] = round(meminfo()["MemAvailable"] / 2**30, 1)

        allset = LoadSet.union(loads)
        allset.n = held
        log("  latency at %d/s for %.0f s with %d held" % (self.rate, self.lat_s, held))
        res["latency"] = self.phase(server, allset, [server.grpc_port],
                                    ["--users", "1-%d" % held], rate=self.rate,
                                    duration=self.lat_s, tag="biglat")
        L = res["latency"]["latency_us"]
        log("    p50 %.0f / p99 %.0f / p99.9 %.0f / max %.0f µs" % (
            L["p50"] or 0, L["p99"] or 0, L["p999"] or 0, L["max"] or 0))
        log("  one broadcast to all %d" % held)
        res["broadcast_all"] = self.broadcast(server, allset, rounds=1)
        for ls in reversed(loads):
            ls.stop()
        warm.stop()
        self.stop_server(server)
        return res

    def run(self):
        self.environment()
        kinds = [self.a.only] if self.a.only else ["node", "cluster", "nchan"]
        for k in kinds:
            if k == "cluster" and not shutil.which("redis-server"):
                log("no redis-server: cluster skipped")
                continue
            if k == "nchan" and not (shutil.which("nginx") and os.path.exists(NCHAN_MODULE)):
                log("no nginx or %s: nchan skipped" % NCHAN_MODULE)
                continue
            self.r[k] = self.run_target(k)
        if self.a.big and (not self.a.only or self.a.only == "node"):
            self.r["big"] = self.run_big()

    def cleanup(self):
        self.procs.stop_all()
        if self.a.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ============================================================== report

def fmt_n(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 100:
        s = "{:,.0f}".format(v).replace(",", " ")
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.2f" % v
    return s + unit


def fmt_us(v):
    if v is None:
        return "—"
    return "%.3f ms" % (v / 1000.0) if v < 10000 else "%.1f ms" % (v / 1000.0)


def cpu_split(r, kind):
    c = r["server_cpu_us_per_notification"]
    if kind == "nchan":
        return "%s (nginx master %s + workers %s)" % (fmt_n(c["total"], " µs"), fmt_n(c["master"]),
                                                     fmt_n(c["workers"]))
    s = "%s (master %s + workers %s)" % (fmt_n(c["total"], " µs"), fmt_n(c["master"]),
                                         fmt_n(c["workers"]))
    if "redis" in c:
        s += " + Redis %s" % fmt_n(c["redis"], " µs")
    return s


def lat_cell(r):
    L = r["latency_us"]
    return "%s / %s / %s (max %s)" % (fmt_us(L["p50"]), fmt_us(L["p99"]), fmt_us(L["p999"]),
                                      fmt_us(L["max"]))


def bcast_cell(rounds):
    if not rounds:
        return "—"
    last = [x["last_frame_after_s"] for x in rounds if x["last_frame_after_s"] is not None]
    got = min(x["received"] for x in rounds)
    want = rounds[0]["expected"]
    s = "%s ms (median of %d; worst %s ms)" % (
        fmt_n(sorted(last)[len(last) // 2] * 1e3), len(last), fmt_n(max(last) * 1e3))
    srv = [x.get("server_written_within_s") for x in rounds]
    if all(v is not None for v in srv) and srv:
        s += "; server: all written ≤ %g ms" % (max(srv) * 1e3)
    if got < want:
        s += "; only %d of %d received" % (got, want)
    return s


def report(b):
    r = b.r
    cfg = r["config"]
    L = []
    cols = [k for k in ("node", "cluster", "nchan") if r.get(k)]
    names = {"node": "wsnotifyd, 1 node", "cluster": "wsnotifyd, 3-node cluster",
             "nchan": "nginx + nchan"}
    L.append("Measured %s on %d CPUs, %.1f GiB, Linux %s; %s; %s; %s. "
             "Loopback only; servers and load tools share the CPUs." % (
                 cfg["date"][:10], cfg["cpus"], cfg["mem_total_gib"], cfg["kernel"],
                 cfg["daemon_version"], (cfg.get("nginx") or "").replace("nginx version: ", ""),
                 (cfg.get("redis") or "").split(" sha=")[0]))
    L.append("")
    if cols:
        hdr = "| | " + " | ".join(
            "%s (%s)" % (names[k], "%d workers each" % r[k]["workers"] if k == "cluster"
                         else "%d workers" % r[k]["workers"]) for k in cols) + " |"
        L.append(hdr)
        L.append("|---" * (len(cols) + 1) + "|")

        def row(label, f):
            cells = []
            for k in cols:
                try:
                    cells.append(f(r[k], k))
                except (KeyError, TypeError, IndexError, ValueError):
                    cells.append("—")
            L.append("| %s | %s |" % (label, " | ".join(cells)))
        row("idle connections held", lambda x, k: fmt_n(x["connections_opened"]))
        row("**user space per idle connection** (workers' Private_Dirty+Private_Clean Δ)",
            lambda x, k: "**%s**" % fmt_n(x["memory_per_connection_bytes"]["workers_private"], " B"))
        row("whole server per idle connection (Pss Δ, master + workers, shared memory once)",
            lambda x, k: fmt_n(x["memory_per_connection_bytes"]["pss"], " B"))
        row("Redis per connection (used_memory Δ)",
            lambda x, k: fmt_n(x["memory_per_connection_bytes"]["redis_used"], " B")
            if k == "cluster" else "—")
        row("kernel slab Δ per connection (both ends of the loopback pair)",
            lambda x, k: fmt_n(x["memory_per_connection_bytes"]["slab"], " B"))
        row("connection rate (whole set-up)", lambda x, k: fmt_n(x["connect_rate_per_s"], "/s"))
        row("latency at %d/s, p50 / p99 / p99.9 (client: send → frame read)" % b.rate,
            lambda x, k: lat_cell(x["latency"]))
        row("server CPU per notification at %d/s" % b.rate,
            lambda x, k: cpu_split(x["latency"], k))
        row("**throughput, unary** flat out, %d in flight (delivered at the clients)" % b.in_flight,
            lambda x, k: "**%s**" % fmt_n(x["unary"]["received_per_s"], "/s"))
        row("server CPU per notification, unary", lambda x, k: cpu_split(x["unary"], k))
        row("notifications/s per server core, unary",
            lambda x, k: fmt_n(x["unary"]["notifications_per_server_core_s"]))
        row("**throughput, batches of 100** (SendNotifications, %d calls in flight)" % b.in_flight,
            lambda x, k: "**%s**" % fmt_n(x["batch"]["received_per_s"], "/s")
            if k != "nchan" else "— (no batch API)")
        row("server CPU per notification, batches of 100",
            lambda x, k: cpu_split(x["batch"], k) if k != "nchan" else "—")
        row("notifications/s per server core, batches",
            lambda x, k: fmt_n(x["batch"]["notifications_per_server_core_s"])
            if k != "nchan" else "—")
        row("flat out (unary): CPU used by the load tools / the whole machine",
            lambda x, k: "%.2f / %.2f of %d CPUs" % (
                (x["unary"]["load_tools_cpu_s"]["wsn_load"] +
                 x["unary"]["load_tools_cpu_s"]["wsn_publish"]) / x["unary"]["wall_s"],
                x["unary"]["machine_busy_cpus"], cfg["cpus"]))
        row("Broadcast to %s connections: last frame at a client" % fmt_n(b.users),
            lambda x, k: bcast_cell(x["broadcast"]))
        if b.a.big:
            row("Broadcast to %s connections (--big): last frame at a client" %
                fmt_n(b.a.broadcast_connections),
                lambda x, k: bcast_cell((r["big"] or {}).get("broadcast") if k == "node"
                                        else x["big_broadcast"]["broadcast"]))
        L.append("")
    big = r.get("big")
    if big:
        L.append("--big, one node, %d workers (target %s idle connections; %s)" % (
            big["workers"], fmt_n(big["target"]),
            "reachable by the kernel's limits" if big["bounded_to"] >= big["target"] else
            "bounded to %s by the kernel's limits" % fmt_n(big["bounded_to"])))
        L.append("")
        L.append("| | |")
        L.append("|---|---|")
        L.append("| idle connections held | %s (server /health: %s) |" % (
            fmt_n(big["connections_held"]), big["server_ws_connections"]))
        L.append("| user space per idle connection (workers' private Δ) | %s |" %
                 fmt_n(big["memory_per_connection_bytes"]["workers_private"], " B"))
        L.append("| whole daemon per idle connection (Pss Δ) | %s |" %
                 fmt_n(big["memory_per_connection_bytes"]["pss"], " B"))
        L.append("| kernel slab Δ per connection (both ends) | %s |" %
                 fmt_n(big["memory_per_connection_bytes"]["slab"], " B"))
        L.append("| connection rate, first %s / the rest | %s / %s |" % (
            fmt_n(big["broadcast_connections"]), fmt_n(big["stage1_connect_rate_per_s"], "/s"),
            fmt_n(big["stage2_connect_rate_per_s"], "/s")))
        L.append("| latency at %d/s with all held, p50 / p99 / p99.9 | %s |" % (
            b.rate, lat_cell(big["latency"])))
        L.append("| server CPU per notification at %d/s | %s |" % (
            b.rate, cpu_split(big["latency"], "node")))
        L.append("| Broadcast to %s | %s |" % (fmt_n(big["broadcast_connections"]),
                                            bcast_cell(big["broadcast"])))
        L.append("| Broadcast to all %s held | %s |" % (fmt_n(big["connections_held"]),
                                                     bcast_cell(big["broadcast_all"])))
        if big["connect_errors"]:
            L.append("| connect errors | %s |" % ", ".join(
                "%s: %d" % kv for kv in sorted(big["connect_errors"].items())))
        L.append("")
    L.append("Targets:")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    for name, val, ok in targets(b):
        L.append("| %s | %s | %s |" % (name, val, "n/a" if ok is None else
                                       ("PASS" if ok else "**MISS**")))
    L.append("")
    return "\n".join(L)


def targets(b):
    r = b.r
    node, nchan, big = r.get("node"), r.get("nchan"), r.get("big")
    out = []

    def get(f):
        try:
            return f()
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            return None
    u = get(lambda: node["unary"]["server_cpu_us_per_notification"]["total"])
    out.append(("unary SendNotification: server CPU per notification (master + workers) ≤ 20 µs",
                fmt_n(u, " µs"), None if u is None else u <= 20))
    nu = get(lambda: node["unary"]["notifications_per_server_core_s"])
    xu = get(lambda: nchan["unary"]["notifications_per_server_core_s"])
    ratio = nu / xu if nu and xu else None
    out.append(("unary: notifications/s per server core ≥ 1.5 × nchan's",
                "%s vs nchan %s: %s×" % (fmt_n(nu), fmt_n(xu), fmt_n(ratio)) if ratio else "—",
                None if ratio is None else ratio >= 1.5))
    bt = get(lambda: node["batch"]["server_cpu_us_per_notification"]["total"])
    out.append(("batches of 100: server CPU per notification ≤ 8 µs", fmt_n(bt, " µs"),
                None if bt is None else bt <= 8))
    bb = get(lambda: big["broadcast"])
    if bb:
        w = max(x["server_written_within_s"] or float("inf") for x in bb)
        cl = max(x["last_frame_after_s"] or float("inf") for x in bb)
        got = min(x["received"] for x in bb)
        out.append(("Broadcast to 200 000 connections all written within 0.5 s",
                    "%s connections: server ≤ %s ms (histogram bucket), last client frame %s ms%s"
                    % (fmt_n(big["broadcast_connections"]), fmt_n(w * 1e3), fmt_n(cl * 1e3),
                       "" if got >= big["broadcast_connections"] else
                       ", only %d received" % got),
                    w <= 0.5 and big["broadcast_connections"] >= 200000))
    else:
        out.append(("Broadcast to 200 000 connections all written within 0.5 s",
                    "not run (needs --big)", None))
    lat = get(lambda: node["latency"]["latency_us"])
    if lat:
        out.append(("latency at %d/s, %s users: p99 ≤ 0.5 ms" % (b.rate, fmt_n(b.users)),
                    fmt_us(lat["p99"]), lat["p99"] <= 500))
        out.append(("latency at %d/s, %s users: p99.9 ≤ 1 ms" % (b.rate, fmt_n(b.users)),
                    fmt_us(lat["p999"]), lat["p999"] <= 1000))
    if big:
        p = big["latency"]["latency_us"]["p99"]
        held = big["connections_held"]
        out.append(("500 000 idle connections held, p99 ≤ 2 ms at %d/s" % b.rate,
                    "%s held, p99 %s" % (fmt_n(held), fmt_us(p)),
                    held >= 500000 and p is not None and p <= 2000))
    else:
        out.append(("500 000 idle connections held, p99 ≤ 2 ms at 2000/s",
                    "not run (needs --big)", None))
    return out


# ============================================================== main

def find_daemon(given):
    if given:
        return os.path.abspath(given)
    for p in ("wsnotifyd", "build/wsnotifyd", os.path.join(SRCDIR, "build", "wsnotifyd")):
        if os.access(p, os.X_OK):
            return os.path.abspath(p)
    raise BenchError("no wsnotifyd found: pass --daemon BUILD_DIR/wsnotifyd")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="wsnotify benchmark: one node, a 3-node cluster and nginx+nchan under the "
                    "same C load tools (wsn_load, wsn_publish from the daemon's build directory).")
    p.add_argument("--quick", action="store_true", help="3 s phases instead of 8-10 s")
    p.add_argument("--big", action="store_true",
                   help="also hold --big-connections idle connections on one node (many workers, "
                        "many wsn_load processes) and broadcast to --broadcast-connections")
    p.add_argument("--only", choices=("node", "cluster", "nchan"))
    p.add_argument("--daemon", help="wsnotifyd binary (default ./wsnotifyd or build/wsnotifyd); "
                                    "wsn_load and wsn_publish are taken from its scripts/bench/")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE (- = stdout)")
    # rarely needed
    p.add_argument("--users", type=int, default=10000, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--in-flight", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=int, default=2000, help=argparse.SUPPRESS)
    p.add_argument("--big-connections", type=int, default=500000, help=argparse.SUPPRESS)
    p.add_argument("--broadcast-connections", type=int, default=200000, help=argparse.SUPPRESS)
    p.add_argument("--single-loader", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.daemon = find_daemon(a.daemon)
    return a


def main(argv):
    a = parse_args(argv)

    def on_term(sig, frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    b = Bench(a)
    rc = 0
    try:
        b.run()
    except BenchError as e:
        log("FAILED: %s" % e)
        rc = 1
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            b.cleanup()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    if any(b.r.get(k) for k in ("node", "cluster", "nchan", "big")):
        print(report(b))
    if a.json:
        data = json.dumps(b.r, indent=1, sort_keys=True, default=str)
        if a.json == "-":
            print(data)
        else:
            with open(a.json, "w") as f:
                f.write(data + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

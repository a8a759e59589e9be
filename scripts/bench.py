#!/usr/bin/python3
"""bench.py — wsnotifyd performance benchmark (not a test: never run by make check).

Starts the real wsnotifyd on free loopback ports and measures, in this order:
  1. memory per idle WebSocket connection: each worker's /proc/PID/smaps after a
     warm-up and again with N authenticated idle connections open (user space), and
     /proc/meminfo, /proc/net/sockstat, /proc/slabinfo deltas (kernel, both ends);
  2. connection rate while the N connections are opened;
  3. delivery latency: K notifications, one at a time, gRPC call start → frame
     arrival at the receiving client, plus the server's own
     wsnotify_delivery_latency_seconds histogram from GET /metrics;
  4. throughput: many SendNotification calls in flight (grpcio futures, from
     --senders processes) for a few seconds, every delivery counted at the clients and
     checked exactly once, with the CPU each process used.

The N connections are held by several load processes (multiprocessing, fork), each
with at most --per-process sockets and its own source address 127.0.0.2, .3, … so
ephemeral ports never run out. They answer pings and time-stamp every notification
frame with time.monotonic_ns (CLOCK_MONOTONIC, one clock for the whole host); the
main process sends the gRPC calls and compares.

Run:  /usr/bin/python3 scripts/bench.py [--workers 2] [--connections 20000]
      [--notifications 2000] [--json FILE|-]        (see --help)
Needs python3-grpcio, python3-protobuf, protoc and grpc_python_plugin (stubs are
generated at run time, like tests/e2e/e2e_grpc.py). Every wait is bounded; the daemon
and the load processes are stopped on exit, on Ctrl-C and on SIGTERM.
"""

import argparse
import collections
import ctypes
import datetime
import errno
import gc
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import wsnclient as wc  # noqa: E402

# The load processes are forked before grpc is imported; grpc's own fork handlers
# are not wanted.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

PROTOC = shutil.which("protoc") or "/usr/bin/protoc"
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PR_SET_PDEATHSIG = 1
NOTIF_PREFIX = b'{"type":"notification","data":{"id":'
CONNECTED_PREFIX = b'{"type":"connected"'
LATENCY_ID_BASE = 1_000_000_000
THROUGHPUT_ID_BASE = 2_000_000_000
WARM_ID_BASE = 3_000_000_000
WARM_UID_BASE = 900_000
LOAD_UID_BASE = 1_000_000
TITLE = "Benchmark notification"
MESSAGE = "Somebody replied to your post: a message of a realistic length, about a hundred bytes."
LINK = "/posts/12345#reply-678"


class BenchError(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# =========================================================================== load process
# Runs in a forked child. Holds its share of the connections on one epoll, answers
# pings, time-stamps notifications; talks to the parent over a multiprocessing Pipe:
#   parent → child: ("ramp",) ("live", bool) ("collect",) ("stats",) ("stop",)
#   child → parent: ("ready", info) ("ramped", info) ("arr", [(id, t_ns, uid)])
#                   ("collected", [...]) ("stats", info) ("stopped", None) ("error", text)

ST_CONNECTING, ST_HEAD, ST_WAIT_CONNECTED, ST_OPEN = range(4)


class _Client:
    __slots__ = ("sock", "fd", "uid", "state", "buf", "t0")

    def __init__(self, sock, uid, t0):
        self.sock, self.fd, self.uid, self.t0 = sock, sock.fileno(), uid, t0
        self.state = ST_CONNECTING
        self.buf = bytearray()


def _child_setup():
    """Die with the parent; leave Ctrl-C and SIGTERM to the parent's clean-up."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, signal.SIG_DFL)
    signal.alarm(0)
    if os.getppid() == 1:
        os._exit(1)


class _Loader:
    def __init__(self, ctl, spec):
        self.ctl = ctl
        self.spec = spec
        self.host, self.port, self.src = spec["host"], spec["port"], spec["src"]
        self.uids = list(range(spec["uid_first"], spec["uid_first"] + spec["count"]))
        self.ep = select.epoll()
        self.ep.register(ctl.fileno(), select.EPOLLIN)
        self.by_fd = {}
        self.requests = []
        self.ramping = False
        self.ramp_deadline = 0.0
        self.next = 0
        self.in_flight = 0
        self.opened = 0
        self.failures = collections.Counter()
        self.handshake_ns = []
        self.t_ramp_start = self.t_ramp_end = 0
        self.live = False
        self.arrivals = []
        self.unsent = []
        self.total_arrivals = 0
        self.lost = collections.Counter()
        self.pings = 0
        self.other_msgs = 0
        self.stop = False

    # ---- set-up
    def prepare(self):
        t = time.monotonic()
        hostport = "%s:%d" % (self.host, self.port)
        exp = int(time.time()) + 4 * 3600
        for uid in self.uids:
            tok = wc.make_token(self.spec["secret"], uid, "user%d@example.com" % uid, exp=exp)
            self.requests.append((
                "GET /ws?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (tok, hostport, wc._ws_key())).encode("ascii"))
        self.ctl.send(("ready", {"prepare_s": time.monotonic() - t, "count": len(self.uids)}))

    # ---- ramp-up
    def _start_more(self):
        window = self.spec["window"]
        while self.in_flight < window and self.next < len(self.uids):
            i = self.next
            self.next += 1
            uid = self.uids[i]
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((self.src, 0))
                rc = s.connect_ex((self.host, self.port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, os.strerror(rc))
            except OSError as e:
                s.close()
                self.failures["connect: %s" % (errno.errorcode.get(e.errno, e.errno),)] += 1
                continue
            c = _Client(s, uid, time.monotonic_ns())
            self.by_fd[c.fd] = c
            self.ep.register(c.fd, select.EPOLLOUT)
            self.in_flight += 1

    def _fail(self, c, why):
        self.failures[why] += 1
        self._drop(c)
        self.in_flight -= 1

    def _drop(self, c):
        self.by_fd.pop(c.fd, None)
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()

    def _on_writable(self, c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(c, "connect: %s" % errno.errorcode.get(err, err))
            return
        req = self.requests[c.uid - self.uids[0]]
        try:
            n = c.sock.send(req)
        except OSError as e:
            self._fail(c, "send: %s" % errno.errorcode.get(e.errno, e.errno))
            return
        if n != len(req):
            self._fail(c, "short send")
            return
        c.state = ST_HEAD
        self.ep.modify(c.fd, select.EPOLLIN)

    def _opened(self, c, t):
        c.state = ST_OPEN
        self.in_flight -= 1
        self.opened += 1
        self.handshake_ns.append(t - c.t0)

    def _ramp_check(self):
        if self.ramping and self.next >= len(self.uids) and self.in_flight == 0:
            self._ramp_finish()
        elif self.ramping and time.monotonic() > self.ramp_deadline:
            for c in list(self.by_fd.values()):
                if c.state != ST_OPEN:
                    self._fail(c, "ramp timeout")
            self.failures["not started (ramp timeout)"] += len(self.uids) - self.next
            self.next = len(self.uids)
            self._ramp_finish()

    def _ramp_finish(self):
        self.ramping = False
        self.t_ramp_end = time.monotonic_ns()
        self.requests = []
        self.ctl.send(("ramped", {
            "opened": self.opened, "failures": dict(self.failures),
            "t_start": self.t_ramp_start, "t_end": self.t_ramp_end,
            "handshake_ns": self.handshake_ns}))
        self.handshake_ns = []

    # ---- frames
    def _on_readable(self, c, t):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(c, "recv: %s" % errno.errorcode.get(e.errno, e.errno))
            return
        if not data:
            self._lost(c, "eof")
            return
        c.buf += data
        if c.state == ST_HEAD:
            i = c.buf.find(b"\r\n\r\n")
            if i < 0:
                if len(c.buf) > 16384:
                    self._fail(c, "response head too large")
                return
            head = bytes(c.buf[:i])
            del c.buf[:i + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(c, "HTTP " + head[9:12].decode("latin-1", "replace"))
                return
            c.state = ST_WAIT_CONNECTED
        self._frames(c, t)

    def _lost(self, c, why):
        if c.state == ST_OPEN:
            self.lost[why] += 1
            self._drop(c)
        else:
            self._fail(c, why)

    def _frames(self, c, t):
        buf = c.buf
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln, hl = b1 & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hl = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hl = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if n - pos < hl + ln:
                break
            payload = bytes(buf[pos + hl:pos + hl + ln])
            pos += hl + ln
            op = b0 & 0x0F
            if op == wc.OP_TEXT:
                self._text(c, payload, t)
            elif op == wc.OP_PING:
                self.pings += 1
                try:
                    c.sock.send(wc.encode_frame(wc.OP_PONG, payload))
                except OSError:
                    pass
            elif op == wc.OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                try:
                    c.sock.send(wc.encode_frame(wc.OP_CLOSE, payload[:2]))
                except OSError:
                    pass
                self._lost(c, "close %d" % code)
                return
            else:
                self.other_msgs += 1
        if pos:
            del buf[:pos]

    def _text(self, c, payload, t):
        if payload.startswith(NOTIF_PREFIX):
            end = payload.index(b",", len(NOTIF_PREFIX))
            rec = (int(payload[len(NOTIF_PREFIX):end]), t, c.uid)
            self.arrivals.append(rec)
            self.total_arrivals += 1
            if self.live:
                self.unsent.append(rec)
        elif c.state == ST_WAIT_CONNECTED and payload.startswith(CONNECTED_PREFIX):
            self._opened(c, t)
        else:
            self.other_msgs += 1

    # ---- control
    def _commands(self):
        while self.ctl.poll():
            try:
                msg = self.ctl.recv()
            except EOFError:
                self.stop = True
                return
            cmd = msg[0]
            if cmd == "ramp":
                self.ramping = True
                self.ramp_deadline = time.monotonic() + msg[1]
                self.t_ramp_start = time.monotonic_ns()
            elif cmd == "live":
                self.live = bool(msg[1])
            elif cmd == "collect":
                self.ctl.send(("collected", self.arrivals))
                self.arrivals = []
            elif cmd == "stats":
                self.ctl.send(("stats", {
                    "open": sum(1 for c in self.by_fd.values() if c.state == ST_OPEN),
                    "lost": dict(self.lost), "arrivals": self.total_arrivals,
                    "pings": self.pings, "other_msgs": self.other_msgs}))
            elif cmd == "stop":
                self.stop = True
                self.ctl.send(("stopped", None))
                return

    def run(self):
        self.prepare()
        gc.disable()           # nothing cyclic here; keeps pauses out of the timings
        ctl_fd = self.ctl.fileno()
        while not self.stop:
            if self.ramping:
                self._start_more()
            events = self.ep.poll(0.05 if self.ramping else 1.0)
            t = time.monotonic_ns()
            for fd, ev in events:
                if fd == ctl_fd:
                    self._commands()
                    continue
                c = self.by_fd.get(fd)
                if c is None:
                    continue
                if c.state == ST_CONNECTING:
                    self._on_writable(c)
                else:
                    self._on_readable(c, t)
            if self.unsent:
                self.ctl.send(("arr", self.unsent))
                self.unsent = []
            if self.ramping:
                self._ramp_check()
        for c in list(self.by_fd.values()):
            c.sock.close()


def _load_main(ctl, spec):
    _child_setup()
    try:
        _Loader(ctl, spec).run()
    except BaseException:      # noqa: BLE001 — reported to the parent, then exit
        try:
            ctl.send(("error", "load process %d: %s" % (spec["index"], traceback.format_exc())))
        except OSError:
            pass


# =========================================================================== sender process
# A fresh interpreter (multiprocessing "spawn": grpc may already be loaded in the
# parent) that sends SendNotification calls with grpcio futures, at most in_flight
# at a time, for a given number of seconds.
#   parent → child: ("go", {seconds, in_flight, id_first, id_step, uids, seed}) ("stop",)
#   child → parent: ("ready", None) ("done", {...}) ("error", text)

def _sender_main(ctl, spec):
    _child_setup()
    try:
        sys.path.insert(0, spec["stubs"])
        sender = Sender(spec["grpc_port"])
        ctl.send(("ready", None))
        while True:
            msg = ctl.recv()
            if msg[0] == "go":
                ctl.send(("done", _send_for(sender, msg[1])))
            elif msg[0] == "stop":
                ctl.send(("stopped", None))
                return
    except EOFError:
        return
    except BaseException:      # noqa: BLE001 — reported to the parent, then exit
        try:
            ctl.send(("error", "sender process %d: %s" % (spec["index"], traceback.format_exc())))
        except OSError:
            pass


def _send_for(sender, job):
    grpc = sender.grpc
    sem = threading.BoundedSemaphore(job["in_flight"])
    lock = threading.Lock()
    target = {}
    res = {"delivered_true": 0, "delivered_false": 0}
    errors = collections.Counter()

    def done(fut):
        try:
            resp = fut.result()
            with lock:
                res["delivered_true" if resp.delivered else "delivered_false"] += 1
        except grpc.RpcError as e:
            with lock:
                errors[str(e.code())] += 1
        except Exception as e:     # noqa: BLE001 — counted, never lost
            with lock:
                errors[type(e).__name__] += 1
        sem.release()

    rng = random.Random(job["seed"])
    uids, choice = job["uids"], rng.choice
    nid, step = job["id_first"], job["id_step"]
    call = sender.stub.SendNotification.future
    request = sender.request
    stalled = False
    t_start = time.monotonic_ns()
    end = time.monotonic() + job["seconds"]
    while time.monotonic() < end:
        if not sem.acquire(timeout=10):
            stalled = True
            break
        uid = choice(uids)
        target[nid] = uid
        call(request(uid, nid), timeout=30).add_done_callback(done)
        nid += step
    t_sent = time.monotonic_ns()
    drained = 0
    deadline = time.monotonic() + 40
    while drained < job["in_flight"] and time.monotonic() < deadline:
        if sem.acquire(timeout=1):
            drained += 1
    res.update({"target": target, "errors": dict(errors), "stalled": stalled,
                "undrained": job["in_flight"] - drained, "t_start": t_start, "t_sent": t_sent,
                "t_done": time.monotonic_ns()})
    return res


class Child:
    """The parent's handle on one load or sender process."""

    def __init__(self, mp, target, spec, name):
        self.spec = spec
        self.index = spec["index"]
        self.pipe, child = mp.Pipe()
        self.proc = mp.Process(target=target, args=(child, spec), daemon=True,
                               name="%s-%d" % (name, spec["index"]))
        self.proc.start()
        child.close()
        self.live_arrivals = []
        self.replies = collections.deque()

    def pump(self, timeout=0.0):
        while self.pipe.poll(timeout):
            timeout = 0.0
            try:
                msg = self.pipe.recv()
            except (EOFError, OSError):
                raise BenchError("%s died (exit code %s)" % (self.proc.name, self.proc.exitcode))
            if msg[0] == "arr":
                self.live_arrivals.extend(msg[1])
            elif msg[0] == "error":
                raise BenchError(msg[1])
            else:
                self.replies.append(msg)

    def expect(self, kind, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for m in self.replies:
                if m[0] == kind:
                    self.replies.remove(m)
                    return m[1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s: no %r within %.0f s" % (self.proc.name, kind, timeout))
            if not self.proc.is_alive() and not self.pipe.poll(0):
                raise BenchError("%s died (exit code %s)" % (self.proc.name, self.proc.exitcode))
            self.pump(min(left, 0.5))

    def send(self, *msg):
        self.pipe.send(msg)

    def request(self, cmd, kind, timeout=10.0):
        self.send(cmd)
        return self.expect(kind, timeout)

    def stop(self):
        try:
            if self.proc.is_alive():
                self.send("stop")
                self.proc.join(5)
        except (OSError, ValueError, BrokenPipeError):
            pass
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)


# =========================================================================== measuring

SMAPS_HEAD_RE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
MEM_FIELDS = ("Size", "Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")


def _classify(name):
    if name in ("", "[heap]"):
        return "heap_anon"          # malloc heap and anonymous mmaps (large allocations)
    if "wsnotifyd-shm" in name:
        return "shm"                # the shared region: directory, counters
    if name.startswith("["):
        return "other"              # [stack], [vdso], …
    return "file"                   # binary and libraries


def process_memory(pid):
    """{class: {field: bytes}} from /proc/PID/smaps, plus "total"."""
    out = {k: dict.fromkeys(MEM_FIELDS, 0) for k in ("heap_anon", "shm", "file", "other", "total")}
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if SMAPS_HEAD_RE.match(line):
                parts = line.split(None, 5)
                cur = _classify(parts[5].strip() if len(parts) > 5 else "")
                continue
            key, _, rest = line.partition(":")
            if key in MEM_FIELDS and cur is not None:
                v = int(rest.split()[0]) * 1024
                out[cur][key] += v
                out["total"][key] += v
    return out


def kernel_memory():
    k = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Slab", "SReclaimable", "SUnreclaim", "PageTables", "MemFree", "KernelStack"):
                k[name] = int(rest.split()[0]) * 1024
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()[1:]
                d = dict(zip(p[::2], p[1::2]))
                k["tcp_inuse"] = int(d.get("inuse", 0))
                k["tcp_mem"] = int(d.get("mem", 0)) * os.sysconf("SC_PAGE_SIZE")
    slabs, objsize = {}, {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith(("slabinfo", "#")):
                    continue
                p = line.split()
                # name active_objs num_objs objsize objperslab pagesperslab : …
                slabs[p[0]] = int(p[2]) * int(p[3])
                objsize[p[0]] = int(p[3])
    except OSError:
        slabs = objsize = None        # readable by root only
    k["slabs"] = slabs
    k["objsize"] = objsize
    return k


# What one idle accepted TCP socket registered in epoll holds in the kernel: the
# tcp_sock, the socket+inode, its dentry and struct file, the epoll item, and the
# LSM blobs. (Caches SLUB merged under another name are simply absent.)
SOCKET_CACHES = ("TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq",
                 "lsm_file_cache", "lsm_inode_cache")


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[11]) + int(st[12])      # utime + stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return 0


def machine_busy_ticks():
    """Busy jiffies of the whole machine (all CPUs): user nice system irq softirq steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
            if int(st[1]) == pid and st[0] != "Z":
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return sorted(out)


def snapshot(master_pid, worker_pids):
    return {
        "t": time.time(),
        "master": process_memory(master_pid),
        "workers": {pid: process_memory(pid) for pid in worker_pids},
        "kernel": kernel_memory(),
    }


def percentiles(values, qs=(50, 90, 99)):
    if not values:
        return {}
    v = sorted(values)
    out = {"p%d" % q: v[min(len(v) - 1, max(0, math.ceil(q / 100.0 * len(v)) - 1))] for q in qs}
    out["min"], out["max"], out["mean"] = v[0], v[-1], sum(v) / len(v)
    out["n"] = len(v)
    return out


HIST_RE = re.compile(r'^wsnotify_delivery_latency_seconds_bucket\{le="([^"]+)"\}\s+(\S+)')
COUNT_RE = re.compile(r"^wsnotify_delivery_latency_seconds_(count|sum)\s+(\S+)")


def latency_histogram(daemon):
    """{"buckets": [(le, cumulative)], "count": n, "sum": s} from GET /metrics."""
    r = daemon.http("GET", "/metrics", timeout=10)
    if r.status != 200:
        raise BenchError("/metrics answered %d" % r.status)
    h = {"buckets": [], "count": 0, "sum": 0.0}
    for line in r.body.decode("utf-8", "replace").splitlines():
        m = HIST_RE.match(line)
        if m:
            h["buckets"].append((float(m.group(1)), float(m.group(2))))
            continue
        m = COUNT_RE.match(line)
        if m:
            h[m.group(1)] = float(m.group(2))
    h["buckets"].sort()
    return h


def histogram_delta(a, b):
    return {"buckets": [(le, cb - ca) for (le, ca), (_, cb) in zip(a["buckets"], b["buckets"])],
            "count": b["count"] - a["count"], "sum": b["sum"] - a["sum"]}


def histogram_quantile(h, q):
    """Prometheus' histogram_quantile: linear inside the bucket. -> (value, lo, hi) s."""
    total = h["count"]
    if total <= 0 or not h["buckets"]:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in h["buckets"]:
        if c >= rank:
            if le == float("inf"):
                return prev_le, prev_le, le
            frac = (rank - prev_c) / (c - prev_c) if c > prev_c else 1.0
            return prev_le + (le - prev_le) * frac, prev_le, le
        prev_le, prev_c = le, c
    return prev_le, prev_le, float("inf")


# =========================================================================== gRPC

def generate_stubs(tmp):
    """protoc --python_out --grpc_python_out for proto/notification.proto into tmp."""
    out = os.path.join(tmp, "wsn_stubs")
    os.makedirs(out)
    proto = os.path.join(SRCDIR, "proto", "notification.proto")
    if not os.path.exists(GRPC_PYTHON_PLUGIN) or not os.path.exists(PROTOC):
        raise BenchError("protoc and %s are needed (apt-get install protobuf-compiler "
                         "protobuf-compiler-grpc)" % GRPC_PYTHON_PLUGIN)
    argv = [PROTOC, "-I", os.path.dirname(proto), "--python_out", out, "--grpc_python_out", out,
            "--plugin=protoc-gen-grpc_python=" + GRPC_PYTHON_PLUGIN, proto]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise BenchError("%s failed: %s" % (" ".join(argv), r.stdout.decode(errors="replace")))
    sys.path.insert(0, out)
    return out


class Sender:
    """The gRPC side, created only after the load processes are forked."""

    def __init__(self, port):
        import grpc
        import notification_pb2
        import notification_pb2_grpc
        self.grpc = grpc
        self.pb = notification_pb2
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=CHANNEL_OPTIONS)
        grpc.channel_ready_future(self.ch).result(timeout=10)
        self.stub = notification_pb2_grpc.NotificationServiceStub(self.ch)

    def request(self, uid, nid):
        return self.pb.SendNotificationRequest(user_id=uid, id=nid, type="match_created",
                                               title=TITLE, message=MESSAGE, link=LINK,
                                               send_push=True)

    def send(self, uid, nid, timeout=5.0):
        return self.stub.SendNotification(self.request(uid, nid), timeout=timeout)

    def close(self):
        self.ch.close()


# =========================================================================== phases

class WarmKeeper(threading.Thread):
    """Answers the server's pings on the warm-up connections, which this process holds
    (wsnclient answers a ping when it reads it), so a short --heartbeat closes none."""

    def __init__(self, conns):
        super().__init__(name="wsn-bench-warm", daemon=True)
        self.by_fd = {c.fileno(): c for c in conns}
        self.stopping = threading.Event()
        self.lost = 0

    def run(self):
        p = select.poll()
        for fd in self.by_fd:
            p.register(fd, select.POLLIN)
        while not self.stopping.is_set() and self.by_fd:
            for fd, _ in p.poll(200):
                c = self.by_fd.get(fd)
                if c is None:
                    continue
                try:
                    f = c.recv_frame(0.05)
                    closed = f.opcode == wc.OP_CLOSE
                except wc.WSTimeout:
                    closed = False
                except (wc.WSError, OSError):
                    closed = True
                if closed:
                    p.unregister(fd)
                    del self.by_fd[fd]
                    self.lost += 1

    def stop(self):
        self.stopping.set()
        self.join(2)


class Bench:
    def __init__(self, args):
        self.a = args
        self.daemon = None
        self.loads = []
        self.senders = []
        self.stubs = None
        self.sender = None
        self.warm = []
        self.warm_keeper = None
        self.tmp = tempfile.mkdtemp(prefix="wsn-bench-")
        self.r = {"config": {}, "memory": {}, "ramp": {}, "latency": {}, "throughput": {}}
        self.rng = random.Random(args.seed)
        self.load_uids = []

    # ---- set-up and tear-down
    def idle_check(self):
        """Other processes sharing the machine skew every figure: measure them first."""
        a0, t0 = machine_busy_ticks(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_busy_ticks() - a0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100
        self.r["config"]["machine_busy_before_percent"] = busy
        with open("/proc/loadavg") as f:
            self.r["config"]["loadavg_before"] = f.read().split()[:3]
        if busy > 20:
            log("WARNING: the machine is not idle (%.0f%% of a core busy before the start): "
                "the numbers will be skewed" % busy)

    def start_daemon(self):
        a = self.a
        extra = ["--log-level", a.log_level]
        self.max_connections = max(100000, a.connections + 2 * a.warmup + 1000)
        self.daemon = wc.Daemon(binary=a.daemon, workers=a.workers, heartbeat=a.heartbeat,
                                max_connections=self.max_connections,
                                extra_args=extra, name="bench")
        self.daemon.start(timeout=20)
        self.master_pid = self.daemon.proc.pid
        deadline = time.monotonic() + 10
        while True:
            self.worker_pids = children_of(self.master_pid)
            if len(self.worker_pids) == a.workers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(self.worker_pids) != a.workers:
            raise BenchError("expected %d worker processes under master %d, found %r" % (
                a.workers, self.master_pid, self.worker_pids))
        ver = subprocess.run([a.daemon, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=10).stdout.decode().strip()
        self.r["config"].update({
            "daemon": a.daemon, "version": ver, "argv": self.daemon.argv,
            "workers": a.workers, "worker_pids": self.worker_pids, "master_pid": self.master_pid})
        log("daemon %s: master %d, workers %s, ws :%d, grpc :%d" % (
            ver, self.master_pid, self.worker_pids, self.daemon.port, self.daemon.grpc_port))

    def start_loads(self):
        a = self.a
        nproc = max(1, -(-a.connections // a.per_process))
        if nproc > 250:
            raise BenchError("too many load processes (%d); raise --per-process" % nproc)
        mp = multiprocessing.get_context("fork")
        first = LOAD_UID_BASE
        for i in range(nproc):
            count = a.connections // nproc + (1 if i < a.connections % nproc else 0)
            spec = {"index": i, "host": "127.0.0.1", "port": self.daemon.port,
                    "src": "127.0.0.%d" % (2 + i), "uid_first": first, "count": count,
                    "secret": self.daemon.secret, "window": a.window}
            self.loads.append(Child(mp, _load_main, spec, "wsn-bench-load"))
            self.load_uids.extend(range(first, first + count))
            first += count
        for lp in self.loads:
            lp.expect("ready", 60)
        self.r["config"].update({"load_processes": nproc,
                                 "sources": "127.0.0.2-127.0.0.%d" % (1 + nproc)})
        log("%d load processes ready (%s)" % (nproc, self.r["config"]["sources"]))

    def cleanup(self):
        for ch in self.loads + self.senders:
            ch.stop()
        if self.warm_keeper is not None:
            self.warm_keeper.stop()
        for c in self.warm:
            c.abort()
        if self.sender is not None:
            try:
                self.sender.close()
            except Exception:      # noqa: BLE001 — best effort
                pass
        if self.daemon is not None:
            rc = self.daemon.stop(timeout=15)
            if rc is None:
                log("wsnotifyd did not stop within 15 s of SIGTERM: killed")
            self.daemon.cleanup(keep_log=self.a.keep_log)
            if self.a.keep_log:
                log("daemon log kept: %s" % self.daemon.log_path)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- warm-up
    def warm_up(self):
        """A few connections and notifications so code paths, libevent and malloc arenas
        are touched before the baseline; these stay open for the whole run."""
        n = self.a.warmup
        d = self.daemon
        paths = ["/ws?token=" + d.token(WARM_UID_BASE + i) for i in range(n)]
        res = wc.connect_many(d.host, d.port, paths, timeout=10)
        bad = [x for x in res if not isinstance(x, wc.WSConnection)]
        self.warm = [x for x in res if isinstance(x, wc.WSConnection)]
        if bad:
            raise BenchError("warm-up: %d of %d connections failed: %r" % (len(bad), n, bad[:3]))
        for c in self.warm:
            if c.recv_json(5).get("type") != "connected":
                raise BenchError("warm-up: no connected message")
        for i, c in enumerate(self.warm):
            resp = self.sender.send(WARM_UID_BASE + i, WARM_ID_BASE + i)
            if not resp.delivered:
                raise BenchError("warm-up notification not delivered")
            m = c.recv_json(5)
            if m.get("type") != "notification":
                raise BenchError("warm-up: expected a notification, got %r" % m)
        d.health()
        latency_histogram(d)
        self.warm_keeper = WarmKeeper(self.warm)
        self.warm_keeper.start()

    def wait_health_connections(self, want, timeout):
        ok, h = self.daemon.wait_health(lambda h: h.get("ws_connections") == want, timeout=timeout,
                                        interval=0.25)
        if not ok:
            raise BenchError("/health: ws_connections %r, expected %d" % (
                h.get("ws_connections") if isinstance(h, dict) else h, want))

    # ---- 1+2: ramp and memory
    def ramp(self):
        a = self.a
        self.wait_health_connections(a.warmup, 10)
        time.sleep(0.5)
        self.mem_before = snapshot(self.master_pid, self.worker_pids)
        ramp_timeout = 30 + a.connections / 200.0
        log("opening %d connections ..." % a.connections)
        t0 = time.monotonic_ns()
        for lp in self.loads:
            lp.send("ramp", ramp_timeout)
        infos = [lp.expect("ramped", ramp_timeout + 30) for lp in self.loads]
        t1 = time.monotonic_ns()
        opened = sum(i["opened"] for i in infos)
        failures = collections.Counter()
        for i in infos:
            failures.update(i["failures"])
        start = min(i["t_start"] for i in infos)
        end = max(i["t_end"] for i in infos)
        hs = [x for i in infos for x in i["handshake_ns"]]
        secs = (end - start) / 1e9
        self.r["ramp"] = {
            "connections": a.connections, "opened": opened, "failures": dict(failures),
            "seconds": secs, "per_second": opened / secs if secs > 0 else None,
            "wall_seconds": (t1 - t0) / 1e9, "window_per_process": a.window,
            "handshake_ms": {k: (v / 1e6 if k != "n" else v) for k, v in percentiles(hs).items()},
            "per_process": [{"opened": i["opened"], "seconds": (i["t_end"] - i["t_start"]) / 1e9}
                            for i in infos]}
        log("opened %d of %d in %.2f s (%.0f/s)%s" % (
            opened, a.connections, secs, opened / secs if secs else 0,
            ", failures: %r" % dict(failures) if failures else ""))
        if opened != a.connections:
            raise BenchError("only %d of %d connections opened: %r" % (opened, a.connections,
                                                                        dict(failures)))
        self.wait_health_connections(a.warmup + a.connections, 20)
        time.sleep(a.settle)
        self.mem_open = snapshot(self.master_pid, self.worker_pids)
        self.r["memory"]["idle"] = self.memory_report(self.mem_before, self.mem_open, a.connections)

    def memory_report(self, before, after, n):
        def delta(cls, field, procs="workers"):
            if procs == "workers":
                return sum(after["workers"][p][cls][field] - before["workers"][p][cls][field]
                           for p in after["workers"])
            return after["master"][cls][field] - before["master"][cls][field]

        rep = {"connections": n, "user_space": {}, "kernel": {}}
        u = rep["user_space"]
        for cls in ("total", "heap_anon", "shm", "file", "other"):
            priv = delta(cls, "Private_Dirty") + delta(cls, "Private_Clean")
            u[cls] = {"private_bytes": priv, "private_per_conn": priv / n,
                      "rss_bytes": delta(cls, "Rss"), "rss_per_conn": delta(cls, "Rss") / n,
                      "pss_bytes": delta(cls, "Pss"), "pss_per_conn": delta(cls, "Pss") / n}

        def shm_resident(snap):
            # Pss of the region summed over every process = its pages mapped anywhere.
            return snap["master"]["shm"]["Pss"] + sum(w["shm"]["Pss"] for w in snap["workers"].values())

        rep["shared_region"] = {"size": after["master"]["shm"]["Size"],
                                "max_connections": self.max_connections,
                                "resident_before": shm_resident(before),
                                "resident_after": shm_resident(after)}
        mp = delta("total", "Pss", "master")
        u["master_pss_bytes"] = mp
        whole = u["total"]["pss_bytes"] + mp
        u["daemon_pss_bytes"] = whole
        u["daemon_pss_per_conn"] = whole / n
        u["per_worker"] = {}
        for p in after["workers"]:
            wa, wb = after["workers"][p], before["workers"][p]
            u["per_worker"][str(p)] = {
                "private_delta": sum(wa["total"][f] - wb["total"][f]
                                     for f in ("Private_Dirty", "Private_Clean")),
                "heap_anon_private_delta": sum(wa["heap_anon"][f] - wb["heap_anon"][f]
                                               for f in ("Private_Dirty", "Private_Clean")),
                "rss_after": wa["total"]["Rss"]}
        kb, ka = before["kernel"], after["kernel"]
        k = rep["kernel"]
        for f in ("Slab", "SUnreclaim", "SReclaimable", "PageTables", "tcp_mem"):
            k[f] = {"bytes": ka[f] - kb[f], "per_conn": (ka[f] - kb[f]) / n}
        k["tcp_sockets"] = ka["tcp_inuse"] - kb["tcp_inuse"]
        if ka["slabs"] is not None and kb["slabs"] is not None:
            d = {name: ka["slabs"].get(name, 0) - kb["slabs"].get(name, 0)
                 for name in set(ka["slabs"]) | set(kb["slabs"])}
            top = sorted(d.items(), key=lambda kv: -kv[1])[:10]
            k["top_slab_caches_per_conn"] = [(name, v / n) for name, v in top if v > 0]
            k["proc_inode_cache_per_conn"] = d.get("proc_inode_cache", 0) / n
            k["server_socket_objects"] = {name: ka["objsize"][name] for name in SOCKET_CACHES
                                          if name in ka["objsize"]}
            k["server_socket_bytes"] = sum(k["server_socket_objects"].values())
        return rep

    # ---- 3: latency
    def wait_arrivals(self, want_ids, timeout):
        """Pump live arrivals until every id in want_ids arrived, or the timeout.
        -> {id: [(id, t_ns, uid), ...]} of everything that arrived meanwhile."""
        deadline = time.monotonic() + timeout
        got = {}
        pipes = {lp.pipe: lp for lp in self.loads}
        while True:
            for lp in self.loads:
                for rec in lp.live_arrivals:
                    got.setdefault(rec[0], []).append(rec)
                lp.live_arrivals = []
            if all(i in got for i in want_ids):
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            for p in multiprocessing.connection.wait(list(pipes), min(left, 0.5)):
                pipes[p].pump()

    def latency(self):
        a = self.a
        k = a.notifications
        log("latency: %d notifications, one at a time ..." % k)
        for lp in self.loads:
            lp.send("live", True)
        h0 = latency_histogram(self.daemon)
        cpu0 = self.cpu_sample()
        lat, rtt, missing, dups, wrong, undelivered = [], [], 0, 0, 0, 0
        gc.collect()
        gc.disable()
        try:
            for i in range(k):
                uid = self.rng.choice(self.load_uids)
                nid = LATENCY_ID_BASE + i
                req = self.sender.request(uid, nid)
                t0 = time.monotonic_ns()
                resp = self.sender.stub.SendNotification(req, timeout=5)
                t1 = time.monotonic_ns()
                rtt.append(t1 - t0)
                if not resp.delivered:
                    undelivered += 1
                    continue
                got = self.wait_arrivals([nid], 2.0)
                recs = got.get(nid)
                if not recs:
                    missing += 1
                    continue
                if len(recs) > 1:
                    dups += 1
                if recs[0][2] != uid:
                    wrong += 1
                lat.append(recs[0][1] - t0)
                for other in got:
                    if other != nid:
                        dups += 1      # a late duplicate of an earlier one
                if a.gap_ms:
                    time.sleep(a.gap_ms / 1000.0)
        finally:
            gc.enable()
        cpu1 = self.cpu_sample()
        for lp in self.loads:
            lp.send("live", False)
        time.sleep(0.2)
        for lp in self.loads:
            lp.pump()
            lp.live_arrivals = []
        h1 = latency_histogram(self.daemon)
        hd = histogram_delta(h0, h1)
        srv = {"count": hd["count"], "mean_ms": hd["sum"] / hd["count"] * 1e3 if hd["count"] else None,
               "buckets": hd["buckets"]}
        for q in (0.5, 0.9, 0.99):
            v = histogram_quantile(hd, q)
            if v:
                srv["p%d_ms" % round(q * 100)] = v[0] * 1e3
                srv["p%d_bucket_ms" % round(q * 100)] = [v[1] * 1e3, v[2] * 1e3]
        self.r["latency"] = {
            "notifications": k, "undelivered": undelivered, "missing": missing, "duplicates": dups,
            "wrong_recipient": wrong,
            "client_ms": {kk: (v / 1e6 if kk != "n" else v) for kk, v in percentiles(lat).items()},
            "grpc_call_ms": {kk: (v / 1e6 if kk != "n" else v) for kk, v in percentiles(rtt).items()},
            "server_histogram": srv, "cpu_percent": self.cpu_report(cpu0, cpu1)}
        for lp in self.loads:
            lp.request("collect", "collected", 30)       # drop the local copies

    # ---- 4: throughput
    def start_senders(self):
        """Fresh interpreters (spawn) for the throughput phase, started early so their
        start-up is over before anything is measured."""
        if self.a.seconds <= 0:
            return
        mp = multiprocessing.get_context("spawn")
        for i in range(self.a.senders):
            spec = {"index": i, "stubs": self.stubs, "grpc_port": self.daemon.grpc_port}
            self.senders.append(Child(mp, _sender_main, spec, "wsn-bench-sender"))

    def our_pids(self):
        return ([self.master_pid] + self.worker_pids + [lp.proc.pid for lp in self.loads] +
                [sp.proc.pid for sp in self.senders] + [os.getpid()])

    def cpu_sample(self):
        return {"t": time.monotonic(), "machine": machine_busy_ticks(),
                "pids": {p: cpu_ticks(p) for p in self.our_pids()}}

    def cpu_report(self, a, b):
        """% of one core per process group between two samples, and what the rest of
        the machine (other processes, interrupts) used meanwhile."""
        tck = os.sysconf("SC_CLK_TCK")
        wall = b["t"] - a["t"]

        def pct(pids):
            return sum(b["pids"].get(p, 0) - a["pids"].get(p, 0) for p in pids) / tck / wall * 100.0

        ours = pct(a["pids"])
        machine = (b["machine"] - a["machine"]) / tck / wall * 100.0
        return {"seconds": wall, "master": pct([self.master_pid]),
                "workers": [pct([p]) for p in self.worker_pids],
                "load_processes": pct([lp.proc.pid for lp in self.loads]),
                "senders": [pct([sp.proc.pid]) for sp in self.senders],
                "main": pct([os.getpid()]), "machine_busy": machine,
                "other": max(0.0, machine - ours)}

    def throughput(self):
        a = self.a
        log("throughput: %d calls in flight from %d sender process(es) for %.1f s ..." % (
            a.in_flight, len(self.senders), a.seconds))
        for lp in self.loads:
            lp.request("collect", "collected", 30)
        before_arr = sum(lp.request("stats", "stats")["arrivals"] for lp in self.loads)
        cpu0 = self.cpu_sample()
        n = len(self.senders)
        for i, sp in enumerate(self.senders):
            sp.send("go", {"seconds": a.seconds, "in_flight": max(1, a.in_flight // n),
                           "id_first": THROUGHPUT_ID_BASE + i, "id_step": n,
                           "uids": self.load_uids, "seed": a.seed + 1 + i})
        results = [sp.expect("done", a.seconds + 90) for sp in self.senders]
        cpu1 = self.cpu_sample()
        target = {}
        errors = collections.Counter()
        for res in results:
            target.update(res["target"])
            errors.update(res["errors"])
        delivered = sum(res["delivered_true"] for res in results)
        undelivered = sum(res["delivered_false"] for res in results)
        t_start = min(res["t_start"] for res in results)
        t_sent = max(res["t_sent"] for res in results)
        t_done = max(res["t_done"] for res in results)
        # Deliveries may still be on their way to the clients.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = sum(lp.request("stats", "stats")["arrivals"] for lp in self.loads) - before_arr
            if got >= delivered:
                break
            time.sleep(0.2)
        time.sleep(0.3)
        arrivals = []
        for lp in self.loads:
            arrivals.extend(lp.request("collect", "collected", 60))
        seen = collections.Counter(rec[0] for rec in arrivals)
        missing = sum(1 for i in target if i not in seen)
        dups = sum(1 for c in seen.values() if c > 1)
        unexpected = sum(1 for i in seen if i not in target)
        wrong = sum(1 for (i, _, u) in arrivals if i in target and target[i] != u)
        last_arr = max((rec[1] for rec in arrivals), default=t_done)
        calls_wall = (t_done - t_start) / 1e9
        span = (max(last_arr, t_done) - t_start) / 1e9
        cpu = self.cpu_report(cpu0, cpu1)
        tck = os.sysconf("SC_CLK_TCK")
        daemon_ticks = sum(cpu1["pids"][p] - cpu0["pids"][p] for p in [self.master_pid] + self.worker_pids)
        master_ticks = cpu1["pids"][self.master_pid] - cpu0["pids"][self.master_pid]
        calls = len(target)
        self.r["throughput"] = {
            "in_flight": a.in_flight, "senders": n, "seconds_sending": (t_sent - t_start) / 1e9,
            "calls": calls, "delivered_true": delivered, "delivered_false": undelivered,
            "rpc_errors": dict(errors), "stalled": any(res["stalled"] for res in results),
            "calls_per_second": calls / calls_wall if calls_wall > 0 else None,
            "arrivals": len(arrivals), "missing": missing, "duplicates": dups,
            "unexpected": unexpected, "wrong_recipient": wrong,
            "deliveries_per_second": len(seen) / span if span > 0 else None,
            "exactly_once": (missing == 0 and dups == 0 and unexpected == 0 and wrong == 0
                             and not errors and undelivered == 0 and calls > 0),
            "cpu_percent": cpu,
            "daemon_cpu_us_per_notification": daemon_ticks / tck / calls * 1e6 if calls else None,
            "master_cpu_us_per_notification": master_ticks / tck / calls * 1e6 if calls else None}
        log("throughput: %d calls, %.0f/s, %d arrivals, exactly once: %s" % (
            calls, self.r["throughput"]["calls_per_second"] or 0, len(arrivals),
            self.r["throughput"]["exactly_once"]))

    def after_traffic(self):
        a = self.a
        lost = collections.Counter()
        pings = 0
        for lp in self.loads:
            st = lp.request("stats", "stats")
            lost.update(st["lost"])
            pings += st["pings"]
        if self.warm_keeper.lost:
            lost["warm-up connections"] = self.warm_keeper.lost
        self.r["connections_lost"] = dict(lost)
        self.r["pings_answered"] = pings
        now = children_of(self.master_pid)
        if not self.daemon.alive() or now != self.worker_pids:
            self.r["daemon_restarted"] = {"master_alive": self.daemon.alive(), "workers_before":
                                          self.worker_pids, "workers_now": now}
            raise BenchError("the daemon lost a process during the run: %r" % self.r["daemon_restarted"])
        self.wait_health_connections(a.warmup + a.connections, 10)
        time.sleep(a.settle)
        mem = snapshot(self.master_pid, self.worker_pids)
        self.r["memory"]["after_traffic"] = self.memory_report(self.mem_before, mem, a.connections)
        h = latency_histogram(self.daemon)
        self.r["server_histogram_total_count"] = h["count"]

    # ---- run
    def run(self):
        a = self.a
        self.r["config"].update({
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": {"cpus": os.cpu_count(), "mem_gib": round(os.sysconf("SC_PHYS_PAGES") *
                                                              os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
                     "kernel": platform.release(), "python": platform.python_version()},
            "connections": a.connections, "notifications": a.notifications,
            "heartbeat": a.heartbeat, "warmup_connections": a.warmup,
            "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])})
        self.stubs = generate_stubs(self.tmp)
        self.idle_check()
        self.start_daemon()
        self.start_loads()          # fork before grpc is imported
        self.start_senders()
        self.sender = Sender(self.daemon.grpc_port)
        for sp in self.senders:
            sp.expect("ready", 60)
        self.warm_up()
        self.ramp()
        if a.notifications > 0:
            self.latency()
        if a.seconds > 0:
            self.throughput()
        self.after_traffic()
        return self.r


# =========================================================================== report

def _mib(n):
    return "%.1f MiB" % (n / 2**20)


def _dmib(n):
    return "%+.1f MiB" % (n / 2**20)


def _cpu_line(cp):
    parts = ["master %.0f" % cp["master"], "workers %s" % "/".join("%.0f" % x for x in cp["workers"]),
             "load processes %.0f" % cp["load_processes"]]
    if cp["senders"]:
        parts.append("senders %s" % "/".join("%.0f" % x for x in cp["senders"]))
    parts.append("bench main %.0f" % cp["main"])
    parts.append("rest of the machine %.0f" % cp["other"])
    return "CPU, %% of one core: %s (machine busy %.0f of %d)" % (
        ", ".join(parts), cp["machine_busy"], 100 * (os.cpu_count() or 1))


def format_memory(L, title, m, workers):
    add = L.append
    n = m["connections"]
    u = m["user_space"]
    add("%s (%d connections; change from the warmed-up baseline)" % (title, n))
    add("  USER SPACE, the %d worker processes together:" % workers)
    add("    malloc heap + anonymous, private    %s = %5.0f B/connection   <- per-connection cost" % (
        _dmib(u["heap_anon"]["private_bytes"]), u["heap_anon"]["private_per_conn"]))
    add("    all private (Private_Dirty+_Clean)  %s = %5.0f B/connection   (adds shared-region pages "
        "a worker touched first)" % (_dmib(u["total"]["private_bytes"]), u["total"]["private_per_conn"]))
    add("    Rss %s = %.0f B/connection, Pss %s = %.0f B/connection (both count shared-region pages)" % (
        _dmib(u["total"]["rss_bytes"]), u["total"]["rss_per_conn"],
        _dmib(u["total"]["pss_bytes"]), u["total"]["pss_per_conn"]))
    sr = m.get("shared_region")
    if sr:
        add("  SHARED REGION (memfd: directory, rate limiter, counters), fixed size for "
            "--max-connections %d: %s, resident %s before, %s after" % (
                sr["max_connections"], _mib(sr["size"]), _mib(sr["resident_before"]),
                _mib(sr["resident_after"])))
        add("    = %.0f B per --max-connections slot once touched; sized by capacity, not by open "
            "connections" % (sr["size"] / sr["max_connections"]))
    add("  USER SPACE, whole daemon (master + workers, Pss; shared region counted once): "
        "%s = %.0f B/connection" % (_dmib(u["daemon_pss_bytes"]), u["daemon_pss_per_conn"]))
    k = m["kernel"]
    add("  KERNEL, both ends of every loopback connection (the client's socket and the server's):")
    add("    Slab %s = %.0f B/connection (unreclaimable %.0f, reclaimable %.0f); the server's end "
        "is about half" % (_dmib(k["Slab"]["bytes"]), k["Slab"]["per_conn"],
                           k["SUnreclaim"]["per_conn"], k["SReclaimable"]["per_conn"]))
    add("    TCP buffer memory (sockstat mem) %s = %.0f B/connection; TCP sockets %+d" % (
        _dmib(k["tcp_mem"]["bytes"]), k["tcp_mem"]["per_conn"], k["tcp_sockets"]))
    if k.get("top_slab_caches_per_conn"):
        add("    largest slab caches, B/connection: " + ", ".join(
            "%s %.0f" % (nm, v) for nm, v in k["top_slab_caches_per_conn"][:8]))
        if k["proc_inode_cache_per_conn"] > 100:
            add("    (proc_inode_cache, and part of dentry, come from something reading "
                "/proc/PID/fd/* of every process, not from the sockets themselves)")
    if k.get("server_socket_bytes"):
        add("    the server's end, from slab object sizes (one each of %s): %d B/connection" % (
            ", ".join("%s %d" % kv for kv in k["server_socket_objects"].items()),
            k["server_socket_bytes"]))
    add("")


def format_report(r):
    c = r["config"]
    L = []
    add = L.append
    add("wsnotifyd benchmark — %s" % c["date"])
    add("host: %d CPUs, %.1f GiB, Linux %s, Python %s; before the start: load average %s, "
        "%.0f%% of a core busy" % (c["host"]["cpus"], c["host"]["mem_gib"], c["host"]["kernel"],
                                   c["host"]["python"], " ".join(c["loadavg_before"]),
                                   c["machine_busy_before_percent"]))
    add("daemon: %s (%s), --workers %d, --heartbeat %s" % (c["daemon"], c["version"], c["workers"],
                                                           c["heartbeat"]))
    add("load: %d WebSocket connections held by %d load processes (sources %s), plus %d warm-up "
        "connections" % (c["connections"], c["load_processes"], c["sources"], c["warmup_connections"]))
    add("command: %s" % c["command"])
    add("")
    if r["memory"].get("idle"):
        format_memory(L, "1. Memory per idle connection", r["memory"]["idle"], c["workers"])
    ramp = r["ramp"]
    if ramp:
        hs = ramp["handshake_ms"]
        add("2. Connection rate")
        add("  %d connections opened in %.2f s = %.0f connections/s (TCP connect, upgrade with JWT, "
            "101, `connected` message; %d handshakes in flight per load process)" % (
                ramp["opened"], ramp["seconds"], ramp["per_second"] or 0, ramp["window_per_process"]))
        if hs:
            add("  time per handshake under that load: p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (
                hs["p50"], hs["p99"], hs["max"]))
        if ramp["failures"]:
            add("  failures: %r" % ramp["failures"])
        add("  (clients and server share the machine's CPUs: this is the rate of the whole set-up)")
        add("")
    lat = r["latency"]
    if lat:
        cm, gm, sv = lat["client_ms"], lat["grpc_call_ms"], lat["server_histogram"]
        add("3. Delivery latency (%d notifications, one at a time, to random connected users)" %
            lat["notifications"])
        if cm:
            add("  client-measured, just before the gRPC call -> frame read by the client: p50 %.3f ms, "
                "p90 %.3f ms, p99 %.3f ms, max %.3f ms" % (cm["p50"], cm["p90"], cm["p99"], cm["max"]))
        if gm:
            add("  the gRPC call's round trip alone (Python grpcio, blocking): p50 %.3f ms, p99 %.3f ms" % (
                gm["p50"], gm["p99"]))
        if sv.get("count"):
            add("  server's wsnotify_delivery_latency_seconds (gRPC acceptance -> frame written), this "
                "phase: count %d, mean %.3f ms," % (sv["count"], sv["mean_ms"]))
            add("    p50 ~ %.3f ms (bucket %g-%g ms), p90 ~ %.3f ms (bucket %g-%g ms), p99 ~ %.3f ms "
                "(bucket %g-%g ms)" % (
                    sv["p50_ms"], sv["p50_bucket_ms"][0], sv["p50_bucket_ms"][1],
                    sv["p90_ms"], sv["p90_bucket_ms"][0], sv["p90_bucket_ms"][1],
                    sv["p99_ms"], sv["p99_bucket_ms"][0], sv["p99_bucket_ms"][1]))
        add("  delivered:false %d, never arrived %d, duplicates %d, wrong recipient %d" % (
            lat["undelivered"], lat["missing"], lat["duplicates"], lat["wrong_recipient"]))
        add("  " + _cpu_line(lat["cpu_percent"]))
        if lat["cpu_percent"]["other"] > 20:
            add("  WARNING: other processes used %.0f%% of a core during this phase: the latency "
                "is skewed; run again on a quiet machine" % lat["cpu_percent"]["other"])
        add("")
    t = r["throughput"]
    if t:
        add("4. Throughput (%d calls in flight, grpcio futures, %d Python sender process(es), %.1f s)" % (
            t["in_flight"], t["senders"], t["seconds_sending"]))
        add("  %d calls = %.0f calls/s; %d deliveries counted at the clients = %.0f deliveries/s" % (
            t["calls"], t["calls_per_second"] or 0, t["arrivals"], t["deliveries_per_second"] or 0))
        add("  exactly once: %s (never arrived %d, duplicates %d, unexpected %d, wrong recipient %d, "
            "delivered:false %d, RPC errors %r)" % (
                "yes" if t["exactly_once"] else "NO", t["missing"], t["duplicates"], t["unexpected"],
                t["wrong_recipient"], t["delivered_false"], t["rpc_errors"]))
        add("  " + _cpu_line(t["cpu_percent"]))
        if t["cpu_percent"]["other"] > 20:
            add("  WARNING: other processes used %.0f%% of a core during this phase" %
                t["cpu_percent"]["other"])
        if t["daemon_cpu_us_per_notification"]:
            add("  daemon CPU per notification: %.0f us (master, gRPC + routing: %.0f us; workers: %.0f us)" % (
                t["daemon_cpu_us_per_notification"], t["master_cpu_us_per_notification"],
                t["daemon_cpu_us_per_notification"] - t["master_cpu_us_per_notification"]))
        add("  The Python clients (grpcio sender, load processes) are the bottleneck, not the daemon: "
            "they use most of the %d CPUs; the daemon's figure is the CPU it spends per notification." %
            c["host"]["cpus"])
        add("")
    if r["memory"].get("after_traffic"):
        format_memory(L, "5. Memory per connection again, after the latency and throughput traffic",
                      r["memory"]["after_traffic"], c["workers"])
    if r.get("connections_lost"):
        add("connections lost during the run: %r" % r["connections_lost"])
    return "\n".join(L)


# =========================================================================== main

def find_daemon(given):
    if given:
        return given
    for cand in ("./wsnotifyd", "build/wsnotifyd", os.path.join(SRCDIR, "wsnotifyd"),
                 os.path.join(SRCDIR, "build", "wsnotifyd")):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise BenchError("wsnotifyd not found: build it or pass --daemon PATH")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="wsnotifyd benchmark: memory per idle connection, connection rate, "
                    "delivery latency, throughput. Loopback only.")
    p.add_argument("--daemon", help="wsnotifyd binary (default: ./wsnotifyd or build/wsnotifyd)")
    p.add_argument("--workers", type=int, default=2, help="wsnotifyd --workers (default 2)")
    p.add_argument("--connections", type=int, default=20000, help="idle connections held (default 20000)")
    p.add_argument("--per-process", type=int, default=8000,
                   help="connections per load process, one source address each (default 8000)")
    p.add_argument("--window", type=int, default=64,
                   help="handshakes in flight per load process during the ramp (default 64)")
    p.add_argument("--notifications", type=int, default=2000,
                   help="notifications sent one at a time for the latency (default 2000; 0 skips)")
    p.add_argument("--gap-ms", type=float, default=0.0,
                   help="pause between latency notifications, ms (default 0)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="length of the throughput phase, s (default 5; 0 skips)")
    p.add_argument("--in-flight", type=int, default=256,
                   help="gRPC calls in flight for throughput, all senders together (default 256)")
    p.add_argument("--senders", type=int, default=2,
                   help="sender processes for throughput, grpcio futures each (default 2)")
    p.add_argument("--heartbeat", type=int, default=3600, help="wsnotifyd --heartbeat (default 3600)")
    p.add_argument("--warmup", type=int, default=64, help="warm-up connections before the baseline (default 64)")
    p.add_argument("--settle", type=float, default=1.0, help="pause before a memory reading, s (default 1)")
    p.add_argument("--log-level", default="info", help="wsnotifyd --log-level (default info)")
    p.add_argument("--seed", type=int, default=1, help="random seed for the recipients (default 1)")
    p.add_argument("--timeout", type=float, default=900, help="abort the whole run after this many s (default 900)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE (- = stdout)")
    p.add_argument("--keep-log", action="store_true", help="keep the daemon's log file")
    a = p.parse_args(argv)
    if min(a.connections, a.workers, a.per_process, a.window, a.in_flight, a.senders) < 1:
        p.error("--connections, --workers, --per-process, --window, --in-flight and --senders "
                "must be positive")
    if a.per_process > 9000:
        p.error("--per-process at most 9000 (open-file limit 20000, ephemeral ports per source address)")
    return a


class _Abort(BaseException):
    pass


def _raise_abort(signum, frame):
    raise _Abort("signal %d" % signum)


def main(argv):
    a = parse_args(argv)
    try:
        a.daemon = find_daemon(a.daemon)
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.default_int_handler)    # even when started with SIGINT ignored
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, _raise_abort)
    signal.alarm(int(a.timeout))
    b = Bench(a)
    rc = 0
    try:
        r = b.run()
        signal.alarm(0)
        print(format_report(r))
        if a.json:
            text = json.dumps(r, indent=1, default=str)
            if a.json == "-":
                print(text)
            else:
                with open(a.json, "w") as f:
                    f.write(text + "\n")
        t = r.get("throughput") or {}
        lat = r.get("latency") or {}
        if (t and not t["exactly_once"]) or lat.get("missing") or r.get("connections_lost"):
            rc = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        rc = 130
    except _Abort as e:
        print("bench: aborted (%s)" % e, file=sys.stderr)
        rc = 1
    except (BenchError, RuntimeError, OSError) as e:
        print("bench: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # let the clean-up finish
        b.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""soak.py — long-running soak test of wsnotifyd (a benchmark-style tool: make check
does not run it; CI runs a 2-minute one).

  /usr/bin/python3 scripts/soak.py --daemon build/wsnotifyd [--duration 1800]
  /usr/bin/python3 scripts/soak.py --daemon build-sanitizers/wsnotifyd --duration 120 --connections 4000

Starts the real wsnotifyd on free loopback ports (JWT_SECRET set, --heartbeat 30,
--max-connects-per-minute 0, --max-messages-per-second 0, --max-connections 2 x
connections + 1024, log level info), holds --connections WebSocket connections with
the C load tool wsn_load (processes of at most --per-load connections, users 1..N,
each process bound to its own range of 127.0.0.x source addresses, closing and
reopening --churn connections per second between them), publishes --rate
notifications per second with wsn_publish to users 1..--users (more users than
connections, so some go to users who are offline), SIGKILLs one worker every
--kill-every seconds (round robin over the slots, the pid taken from the master's
log line "worker N started, pid P"), SIGHUPs the master every --hup-every seconds,
for --duration seconds. Then it lets the last notifications arrive, snapshots the
load tools' counters (SIGUSR1), stops the daemon with SIGTERM while its clients are
still connected, then the load tools, and SIGKILLs whatever is left, process group
by process group. Then it reads the record files and the daemon's log and checks:

 1. exactly once. wsn_publish records "user id delivered" per answered call, wsn_load
    "user id recv_mono_ns" per notification received. Every id answered
    delivered=true must arrive exactly once, at its user. One that did not arrive is
    legitimate only (a) if its user's connection was on a worker that the tool
    SIGKILLed and the notification was accepted between --loss-window seconds
    before the kill and --loss-window seconds after the master reaped the worker,
    or (b) if its user's connection was closed by the client (churn: a "Client
    disconnected" line with no server-side reason before it, or an eviction by
    the user's own reconnection) within --loss-window seconds of its acceptance.
    Those are counted by reason; any other missing one is a failure, and so is a
    duplicate (same id twice, on any of the user's connections), a notification
    at another user, a call that failed with a status other than
    DEADLINE_EXCEEDED, and a delivered=false notification that arrives (with
    --allow-replays only counted: the coming history feature replays them).
    Which worker held which user comes from the daemon's log ("[worker N]:
    Client connected/disconnected: UserID=U" with the writing process's pid).
    The acceptance time of a missing notification is bracketed from the others:
    the daemon numbers notifications from one counter as it accepts them, so for
    ids p < x < q, recv(p) - Lmax <= accepted(x) <= recv(q), Lmax being the
    largest latency the load tools measured. Because the reasons trust the
    daemon's log, the load tools' own counters must agree: every connection they
    lost without a close frame was on a killed worker, and every close frame
    they received answered one of their churn closes.
    With a daemon that keeps a history (--history-size in its --help; run with
    its default size, the store under the work directory), each notification to
    a user connected at the end of the run must arrive exactly once, whatever
    happened in between: a kill or a churn excuses nothing any more (the next
    connection's offline replay brings what was lost), and delivered=false ones
    to those users must arrive too (replayed once; so replays are allowed).
 2. leaks. Every --sample-every seconds: open descriptors (/proc/PID/fd) and VmRSS
    (/proc/PID/status) of the master and of each worker slot's current pid (a
    respawned worker is a new series), with each slot's open WebSocket
    connections from /metrics. After the warm-up (--warmup-fraction of the run;
    a respawned worker's first --series-warmup seconds too), every sample must be
    within +2% +16 descriptors and +10% +8 MiB RSS of its series' minimum (RSS
    less its file-backed pages, RssFile: the history store is a memory-mapped file
    that grows through the run by design; VmRSS is reported too). A
    worker's descriptors are judged net of its WebSocket connections (which move
    between workers with every kill and churn), and not in the --settle seconds
    after a kill (handshakes of the reconnection burst hold descriptors). A
    sanitizer build gets ASAN_OPTIONS quarantine_size_mb=4 (unless set) and that
    quarantine on top of the RSS bound.
 3. sanitizers. No "ERROR: AddressSanitizer", "LeakSanitizer" or "runtime error:"
    in the daemon's log (its stderr), and no worker exit that the tool did not
    cause (a kill by another signal, or any exit before the stop).
 4. clean stop. The master exits with status 0 within 30 s of SIGTERM (x3 for a
    sanitizer build) and nothing of the daemon's or the tools' process groups is
    left.

Exit status: 0 all checks passed, 1 a check failed (or the master died), 2 the run
could not be made (a tool failed, the daemon did not start), 130/143 interrupted.
A sanitizer build (detected from the binary) gets every wait x3 and a doubled
--loss-window default, so that it does not fail for mere slowness.

Only the Python 3 standard library; the load tools are built by `make` into the
build directory (scripts/bench/wsn_load, scripts/bench/wsn_publish). Every wait is
bounded. The record files and the log are parsed at the end, not live, so the tool
stays light on a 2-CPU machine. --keep-logs DIR keeps every file (a failed run keeps
its temporary directory anyway) and --analyze DIR judges such a directory again.
"""

import argparse
import bisect
import calendar
import collections
import http.client
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)

SANITIZER_PATTERNS = (b"ERROR: AddressSanitizer", b"LeakSanitizer", b"runtime error:")
# ASan's default quarantine (256 MiB per process) keeps freed memory resident until
# it is full, which reads as a steady RSS growth for many minutes (measured: a worker
# grows ~60 KiB/s at 500 notifications/s until it is full); a small one still catches
# use-after-free of recent frees. Only set where ASAN_OPTIONS does not say; the RSS
# bound of a sanitizer build allows for the quarantine's size on top.
SANITIZER_ASAN_DEFAULTS = {"quarantine_size_mb": "4", "detect_leaks": "1"}
SANITIZER_UBSAN_DEFAULTS = {"print_stacktrace": "1"}
# Slowness allowance of a sanitizer build (every bounded wait is multiplied by it).
SANITIZER_SLOWNESS = 3.0

NS = 1_000_000_000


class SoakError(Exception):
    """The run could not be made (not a failed check)."""


class Interrupted(Exception):
    pass


class DaemonDied(Exception):
    """The master died during the run: a daemon failure (exit status 1)."""


def log(msg):
    print("[soak %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def mono_ns():
    return time.monotonic_ns()


# =========================================================================== processes

class Child:
    """One helper process in its own process group (start_new_session), so that it and
    anything it started can be stopped by group, and a Ctrl-C at the terminal reaches
    only this tool, which then stops them in order."""

    def __init__(self, name, argv, env=None, stdout=None, stderr=None):
        self.name = name
        self.argv = argv
        self.rc = None
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=stdout if stdout is not None else subprocess.DEVNULL,
                                  stderr=stderr if stderr is not None else subprocess.DEVNULL,
                                  env=env, start_new_session=True, close_fds=True)
        self.pid = self.p.pid
        self.pgid = self.p.pid

    def alive(self):
        if self.rc is None:
            self.rc = self.p.poll()
        return self.rc is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout, stop_flag=None):
        """Exit status, or None if still running after timeout seconds."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline or (stop_flag is not None and stop_flag()):
                return None
            time.sleep(0.05)
        return self.rc

    def group_alive(self):
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill_group(self):
        """SIGKILL whatever is left in the group; True if something was left."""
        left = self.group_alive()
        if left:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.alive():
            self.wait(5)
        return left


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def http_get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def proc_mem_kb(pid):
    """VmRSS, and its file-backed part RssFile, from /proc/PID/status (KiB)."""
    out = {"rss_kb": None, "rss_file_kb": None}
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith(b"RssFile:"):
                    out["rss_file_kb"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def judged_rss(p):
    """What the RSS check judges: VmRSS less its file-backed pages (RssFile). The
    history store is a memory-mapped file that grows through the run by design;
    the pages of it that a process touched count in its VmRSS, not in its heap."""
    if p.get("rss_kb") is None:
        return None
    return p["rss_kb"] - (p.get("rss_file_kb") or 0)


def proc_ppid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def is_sanitizer_build(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"AddressSanitizer" in data


def has_history(path):
    """Whether this wsnotifyd keeps a history (replays on reconnect): --history-size
    in its --help (the soak runs it with the default size)."""
    try:
        r = subprocess.run([path, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return b"--history-size" in r.stdout


def merge_options(current, defaults):
    """'a=1:b=2' with the defaults added where current does not set them."""
    have = {}
    for part in (current or "").split(":"):
        if "=" in part:
            k, v = part.split("=", 1)
            have[k] = v
    parts = [p for p in (current or "").split(":") if p]
    for k, v in defaults.items():
        if k not in have:
            parts.append("%s=%s" % (k, v))
    return ":".join(parts)


# =========================================================================== daemon log

LINE_RE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d):(\d\d(?:\.\d+)?)Z \S+?\[(\d+)\] (\w+) "
                     rb"\[(master|worker (\d+))\]: (.*)$")
STARTED_RE = re.compile(rb"^worker (\d+) started, pid (\d+)")
DIED_RE = re.compile(rb"^worker (\d+) \(pid (\d+)\) (killed by signal (\d+)|exited with status (\d+))")
CONNECTED_RE = re.compile(rb"^Client connected: UserID=(\d+)")
DISCONNECTED_RE = re.compile(rb"^Client disconnected: UserID=(\d+)")
USER_RE = re.compile(rb"UserID=(\d+)")
# Worker lines that close a user's connection from the server's side; the next
# "Client disconnected" of that user on that worker is then not the client's own.
SERVER_CLOSE_PREFIXES = (b"evicting UserID=", b"closing UserID=", b"slow client",
                         b"dropping UserID=")

_minute_cache = {}


def log_time_ms(minute, seconds):
    """Epoch milliseconds of a log time stamp (UTC), from 'YYYY-MM-DDTHH:MM' and 'SS.mmm'."""
    base = _minute_cache.get(minute)
    if base is None:
        base = calendar.timegm(time.strptime(minute.decode(), "%Y-%m-%dT%H:%M")) * 1000
        _minute_cache[minute] = base
    return base + int(round(float(seconds) * 1000))


class LogTail:
    """Reads the daemon's log as it grows (the master's lines only, and a sanitizer
    scan of every byte), cheaply: only new bytes each time."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.partial = b""
        self.slot_pid = {}          # slot -> current pid
        self.pid_slot = {}          # pid -> slot
        self.started = []           # (slot, pid, epoch_ms)
        self.died = []              # (slot, pid, epoch_ms, text)
        self.sanitizer_hits = 0
        self.ready_line = False
        self.grpc_line = False
        self.reloads = 0
        self.tail_keep = b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return
        if not data:
            return
        self.off += len(data)
        scan = self.tail_keep + data
        for pat in SANITIZER_PATTERNS:
            self.sanitizer_hits += scan.count(pat)
        self.tail_keep = data[-64:]
        # Overlap may count a hit twice (only its truth matters live).
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b"[master]" not in line:
                if b"reloaded:" in line or b"reload incomplete" in line:
                    self.reloads += 1
                continue
            m = LINE_RE.match(line)
            if m is None:
                continue
            msg = m.group(7)
            t = log_time_ms(m.group(1), m.group(2))
            s = STARTED_RE.match(msg)
            if s:
                slot, pid = int(s.group(1)), int(s.group(2))
                self.slot_pid[slot] = pid
                self.pid_slot[pid] = slot
                self.started.append((slot, pid, t))
                continue
            d = DIED_RE.match(msg)
            if d:
                slot, pid = int(d.group(1)), int(d.group(2))
                if self.slot_pid.get(slot) == pid:
                    del self.slot_pid[slot]
                self.died.append((slot, pid, t, msg.decode(errors="replace")))
                continue
            if msg.startswith(b"listening on"):
                self.ready_line = True
            elif msg.startswith(b"gRPC listening"):
                self.grpc_line = True


class Clock:
    """CLOCK_REALTIME (the daemon's log) to CLOCK_MONOTONIC (the tools' records, the
    tool's own events). The offset between them is not constant: the wall clock can
    be stepped or slewed during a run (seen here: 9.9 s within five minutes, a
    paused VM catching up), so the tool records (mono, wall - mono) whenever it
    changes by over a millisecond, and each log time is converted with the offset in
    force at that time."""

    def __init__(self, points):
        self.pts = sorted((int(m), int(o)) for m, o in points)
        starts = []
        best = -math.inf
        for m, o in self.pts:
            best = max(best, m + o)   # a step back: the later segment wins the overlap
            starts.append(best)
        self.wall_starts = starts

    def to_mono(self, wall_ns):
        i = bisect.bisect_right(self.wall_starts, wall_ns) - 1
        return wall_ns - self.pts[max(i, 0)][1]


def clock_from_log(meta, path):
    """For runs kept before the tool tracked the clock: offsets from the master's
    log lines that follow the tool's own signals (a kill's "killed by signal 9",
    a SIGHUP's "SIGHUP: forwarding"), milliseconds after them."""
    pts = [(meta.get("pub_start", 0), meta["offset_ns"])]
    kills = {k["pid"]: k["t"] for k in meta.get("kills", [])}
    hups = [h["t"] for h in meta.get("hups", [])]
    n_hup = 0
    with open(path, "rb") as f:
        for line in f:
            if b"[master]" not in line:
                continue
            m = LINE_RE.match(line.rstrip(b"\n"))
            if m is None:
                continue
            wall = log_time_ms(m.group(1), m.group(2)) * 1_000_000
            msg = m.group(7)
            d = DIED_RE.match(msg)
            if d and int(d.group(2)) in kills:
                t = kills[int(d.group(2))]
                pts.append((t, wall - t))
            elif msg.startswith(b"SIGHUP: forwarding") and n_hup < len(hups):
                t = hups[n_hup]
                n_hup += 1
                pts.append((t, wall - t))
    return pts


def parse_daemon_log(path, clock, stop_mono):
    """Everything the checks need from the daemon's log.

    clock converts the log's wall-clock time stamps to CLOCK_MONOTONIC. stop_mono:
    when the tool sent SIGTERM to the master (disconnects after it are the
    shutdown's, not churn)."""
    intervals = collections.defaultdict(list)   # user -> [(pid, slot, t0, t1, reason)]
    open_ = collections.defaultdict(collections.deque)   # (pid, user) -> deque[(t0, slot)]
    pending = {}                                 # (pid, user) -> server close reason
    server_closes = collections.Counter()
    pid_last = {}                                # pid -> last line's mono time
    started = []
    died = []
    sanitizer = []
    reloads = 0
    reload_incomplete = 0
    evictions = 0
    other_warnings = collections.Counter()
    n_lines = 0
    with open(path, "rb") as f:
        data = f.read()
    for pat in SANITIZER_PATTERNS:
        start = 0
        while True:
            i = data.find(pat, start)
            if i < 0:
                break
            ls = data.rfind(b"\n", 0, i) + 1
            le = data.find(b"\n", i)
            sanitizer.append(data[ls:le if le >= 0 else len(data)].decode(errors="replace")[:300])
            start = i + len(pat)
    for line in data.split(b"\n"):
        m = LINE_RE.match(line)
        if m is None:
            continue
        n_lines += 1
        t = clock.to_mono(log_time_ms(m.group(1), m.group(2)) * 1_000_000)
        pid = int(m.group(3))
        level = m.group(4)
        msg = m.group(7)
        pid_last[pid] = t
        if m.group(6) is None:  # master
            s = STARTED_RE.match(msg)
            if s:
                started.append({"slot": int(s.group(1)), "pid": int(s.group(2)), "t": t})
                continue
            d = DIED_RE.match(msg)
            if d:
                died.append({"slot": int(d.group(1)), "pid": int(d.group(2)), "t": t,
                             "signal": int(d.group(4)) if d.group(4) else None,
                             "status": int(d.group(5)) if d.group(5) else None,
                             "text": msg.decode(errors="replace")})
                continue
            if level in (b"warn", b"error"):
                other_warnings[re.sub(rb"\d+", b"N", msg)[:100].decode(errors="replace")] += 1
            continue
        slot = int(m.group(6))
        c = CONNECTED_RE.match(msg)
        if c:
            open_[(pid, int(c.group(1)))].append((t, slot))
            continue
        d = DISCONNECTED_RE.match(msg)
        if d:
            user = int(d.group(1))
            key = (pid, user)
            q = open_.get(key)
            reason = pending.pop(key, None)
            if reason is None:
                reason = "shutdown" if stop_mono is not None and t >= stop_mono else "client"
            if q:
                t0, _ = q.popleft()
                if not q:
                    del open_[key]
            else:
                t0 = None
            intervals[user].append((pid, slot, t0, t, reason))
            continue
        if msg.startswith(b"reloaded:"):
            reloads += 1
            continue
        if msg.startswith(b"reload incomplete"):
            reload_incomplete += 1
            continue
        if msg.startswith(SERVER_CLOSE_PREFIXES):
            u = USER_RE.search(msg)
            if u:
                why = msg.split(b":")[0] if msg.startswith(b"slow") else b" ".join(msg.split()[:1])
                why = why.decode(errors="replace")
                if msg.startswith(b"evicting"):
                    evictions += 1
                    why = "evicted"
                elif msg.startswith(b"closing"):
                    why = "server close: " + re.sub(r"UserID=\d+ ", "", msg.decode(errors="replace"))[:60]
                pending[(pid, int(u.group(1)))] = why
                server_closes[why if not why.startswith("server close") else
                              re.sub(r"\d+", "N", why)] += 1
                continue
        if level in (b"warn", b"error"):
            other_warnings[re.sub(rb"\d+", b"N", msg)[:100].decode(errors="replace")] += 1
    # Connections still open when their process's log ends: died with a killed worker,
    # or open until the end (then the shutdown line is missing: counted apart).
    still_open = collections.defaultdict(set)    # pid -> users
    for (pid, user), q in open_.items():
        for t0, slot in q:
            intervals[user].append((pid, slot, t0, None, "open"))
            still_open[pid].add(user)
    return {
        "lines": n_lines, "intervals": intervals, "still_open": still_open,
        "started": started, "died": died, "sanitizer": sanitizer, "reloads": reloads,
        "reload_incomplete": reload_incomplete, "evictions": evictions,
        "server_closes": dict(server_closes), "warnings": dict(other_warnings),
        "pid_last": pid_last,
    }


# =========================================================================== records

def read_publish_record(path):
    """id -> (user, delivered); and the ids answered twice (a publisher or daemon bug)."""
    pub = {}
    dup_answers = 0
    with open(path, "rb") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            user, nid, dl = int(parts[0]), int(parts[1]), parts[2] == b"1"
            if nid in pub:
                dup_answers += 1
            pub[nid] = (user, dl)
    return pub, dup_answers


def read_load_records(paths):
    """id -> list of (user, recv_mono_ns), over every load process's record."""
    recv = collections.defaultdict(list)
    lines = 0
    for path in paths:
        try:
            f = open(path, "rb")
        except OSError:
            continue
        with f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue
                lines += 1
                recv[int(parts[1])].append((int(parts[0]), int(parts[2])))
    return recv, lines


# =========================================================================== analysis

def overlaps(lo, hi, a, b):
    return lo <= b and hi >= a


def analyse_delivery(meta, pub, recv, dlog, allow_replays):
    """Check 1. Times are CLOCK_MONOTONIC ns.

    Each answered notification's acceptance time A(x) is bracketed without any help
    from the tools: the daemon numbers notifications from one counter at acceptance,
    so ids increase with acceptance time; for a notification x that did not arrive,
    A(x) <= A(q) <= recv(q) for every later id q that arrived live, and
    A(x) >= A(p) >= recv(p) - Lmax for every earlier id p that arrived live, where
    Lmax is the largest delivery latency the load tools measured (from the
    publisher's send-time stamp, which precedes acceptance).

    With a daemon that keeps a history (meta["history"]), a notification to a user
    whose connection is open at the end of the run must arrive exactly once
    whatever happened in between: delivered=true ones lost to a kill or a churn
    come back in the offline replay of the next connection, delivered=false ones
    (the user was between connections) too. Only the users not connected at the
    end (never, or given up) keep the rules of a daemon without history."""
    W = int(meta["loss_window_s"] * NS)
    history = bool(meta.get("history"))
    if history:
        allow_replays = True
    pub_start, pub_end = meta["pub_start"], meta["pub_end"]
    lmax = int(meta.get("latency_max_us", 0) * 1000) + 10_000_000
    ids = sorted(pub)
    n = len(ids)
    # Users connected when the daemon was stopped (closed by the shutdown).
    at_end = {u for u, ivs in dlog["intervals"].items() if any(iv[4] == "shutdown" for iv in ivs)}
    first = [None] * n      # first arrival at its own user, delivered=true ones only
    copies = [0] * n        # arrivals at its own user
    dup_ids = dup_extra = misrouted = replays = 0
    misrouted_ex = []
    dup_ex = []
    replay_ex = []
    for i, nid in enumerate(ids):
        user, dl = pub[nid]
        arr = recv.get(nid)
        if not arr:
            continue
        mine = [t for (u, t) in arr if u == user]
        copies[i] = len(mine)
        if len(mine) != len(arr):
            misrouted += len(arr) - len(mine)
            if len(misrouted_ex) < 10:
                misrouted_ex.append({"id": nid, "user": user, "at_users": sorted({u for u, _ in arr})})
        if len(mine) > 1:
            dup_ids += 1
            dup_extra += len(mine) - 1
            if len(dup_ex) < 10:
                dup_ex.append({"id": nid, "user": user, "delivered": dl, "copies": len(mine),
                               "t_rel_s": [round((t - pub_start) / NS, 3) for t in sorted(mine)]})
        if not mine:
            continue
        if not dl:
            replays += 1
            if len(replay_ex) < 10:
                replay_ex.append({"id": nid, "user": user, "t_rel_s": round((min(mine) - pub_start) / NS, 3)})
            continue
        first[i] = min(mine)
    unknown = sum(len(v) for k, v in recv.items() if k not in pub)
    unknown_ex = [k for k in recv if k not in pub][:10]
    # Brackets: prefix max / suffix min of live arrival times over the id order.
    prefix = [0] * n
    best = -math.inf
    for i in range(n):
        if first[i] is not None and first[i] > best:
            best = first[i]
        prefix[i] = best
    suffix = [0] * n
    best = math.inf
    for i in range(n - 1, -1, -1):
        if first[i] is not None and first[i] < best:
            best = first[i]
        suffix[i] = best
    # Reasons, per user.
    kills = meta["kills"]
    killed_users = [dlog["still_open"].get(k["pid"], set()) for k in kills]
    reap = {d["pid"]: d["t"] for d in dlog["died"]}
    kill_at = {k["pid"]: k["t"] for k in kills}
    kill_windows = []
    for k, users in zip(kills, killed_users):
        t_end = max(k["t"], reap.get(k["pid"], k["t"]))
        kill_windows.append((k["t"] - W, t_end + W, users, k))
    churn_times = collections.defaultdict(list)
    for user, ivs in dlog["intervals"].items():
        for (_pid, _slot, _t0, t1, reason) in ivs:
            # An eviction here can only be the old connection of a churned client
            # that reconnected before the daemon had seen its close to the end.
            if reason in ("client", "evicted") and t1 is not None:
                churn_times[user].append(t1)
    for v in churn_times.values():
        v.sort()

    def rel(t):
        return None if t is None else round((t - pub_start) / NS, 3)

    def describe(i, nid, user, dl, lo, hi):
        ivs = sorted(dlog["intervals"].get(user, []), key=lambda x: (x[2] or 0))
        ivs = [(p, s, t0, kill_at.get(p, t1) if r == "open" else t1,
                "killed" if r == "open" and p in kill_at else r) for (p, s, t0, t1, r) in ivs]
        return {"id": nid, "user": user, "delivered": dl, "accepted_between_s": [rel(lo), rel(hi)],
                "connections": [{"pid": p, "worker": s, "from_s": rel(t0), "to_s": rel(t1), "end": r}
                                for (p, s, t0, t1, r) in ivs
                                if (t1 is None or t1 >= lo - 60 * NS) and (t0 is None or t0 <= hi + 60 * NS)][:6]}

    delivered_true = 0
    missing_kill = missing_churn = 0
    unexplained = []
    not_replayed = []
    not_replayed_reasons = collections.Counter()
    replayed_ok = 0
    history_users_ids = 0
    widths = []
    kill_rel = []
    for i, nid in enumerate(ids):
        user, dl = pub[nid]
        if dl:
            delivered_true += 1
        strict = history and user in at_end
        if strict:
            history_users_ids += 1
            if not dl and copies[i] == 1:
                replayed_ok += 1
        if copies[i] > 0 or not (dl or strict):
            continue
        lo = prefix[i - 1] - lmax if i > 0 and prefix[i - 1] != -math.inf else pub_start
        lo = max(lo, pub_start - NS)
        hi = suffix[i + 1] if i + 1 < n and suffix[i + 1] != math.inf else pub_end + 10 * NS
        if hi < lo:
            lo, hi = hi, lo
        widths.append(hi - lo)
        reason = None
        for (a, b, users, k) in kill_windows:
            if user in users and overlaps(lo, hi, a, b):
                reason = "kill"
                if dl and not strict:
                    kill_rel.append((lo - k["t"], hi - k["t"]))
                break
        if reason is None:
            ts = churn_times.get(user)
            if ts:
                j = bisect.bisect_left(ts, lo - W)
                if j < len(ts) and ts[j] <= hi + W:
                    reason = "churn"
        if strict:
            # A history replays it on the next connection: no reason excuses it.
            not_replayed_reasons[reason or "none"] += 1
            if len(not_replayed) < 10:
                not_replayed.append(dict(describe(i, nid, user, dl, lo, hi), near=reason))
            else:
                not_replayed.append(None)
        elif reason == "kill":
            missing_kill += 1
        elif reason == "churn":
            missing_churn += 1
        else:
            unexplained.append(describe(i, nid, user, dl, lo, hi))
    widths.sort()
    # The reasons above trust the daemon's log to tell a client's close from its own;
    # the load tools' counters check that: every connection they lost without a close
    # frame must have been on a killed worker, and every close frame they received
    # must be the answer to one of their own churn closes.
    loads = meta["load_summary"]
    killed_conns = sum(len(u) for u in killed_users)
    abrupt = sum(loads["disconnects"].values())
    frames = sum(loads["close_codes"].values())
    server_frames = frames - loads["churn_acked"]
    accounting = {
        "lost_without_close_frame": abrupt, "on_killed_workers": killed_conns,
        "close_frames_received": frames, "answers_to_churn_closes": loads["churn_acked"],
        "server_initiated_close_frames": server_frames,
        "close_codes": loads["close_codes"], "disconnects": loads["disconnects"],
        "ok": abrupt <= killed_conns and server_frames == 0}
    if any(meta.get("load_stats_final", [])):
        # Taken after the daemon's stop: its 1001 closes are in them; not judged.
        accounting["ok"] = True
        accounting["note"] = "not judged: a load process's stats were taken after the daemon's stop"
    n_not_replayed = len(not_replayed)
    ok = (not unexplained and n_not_replayed == 0 and dup_extra == 0 and misrouted == 0
          and (allow_replays or replays == 0) and accounting["ok"])
    return {
        "ok": ok,
        "history": history,
        "answered": n, "delivered_true": delivered_true,
        "delivered_false": n - delivered_true,
        "received_lines": sum(len(v) for v in recv.values()),
        "received_exactly_once": sum(1 for i in range(n) if copies[i] == 1 and pub[ids[i]][1]
                                     and len(recv.get(ids[i], ())) == 1),
        "received_delivered_true": sum(1 for i in range(n) if first[i] is not None),
        "missing_legitimate": {"worker_killed": missing_kill, "client_churn": missing_churn},
        "missing_unexplained": len(unexplained),
        "missing_unexplained_examples": unexplained[:10],
        "history_check": {
            "users_connected_at_end": len(at_end),
            "their_notifications": history_users_ids,
            "delivered_false_replayed_once": replayed_ok,
            "not_arrived": n_not_replayed,
            "not_arrived_near": dict(not_replayed_reasons),
            "examples": [x for x in not_replayed if x is not None][:10]} if history else None,
        "duplicates": {"ids": dup_ids, "extra_copies": dup_extra, "examples": dup_ex},
        "misrouted": {"copies": misrouted, "examples": misrouted_ex},
        "replays_delivered_false_received": {"count": replays, "allowed": allow_replays,
                                             "examples": replay_ex},
        "received_unanswered_ids": {"copies": unknown, "examples": unknown_ex},
        "send_time_bracket_ms": {
            "median": round(widths[len(widths) // 2] / 1e6, 3) if widths else None,
            "max": round(widths[-1] / 1e6, 3) if widths else None},
        "loss_window_s": meta["loss_window_s"],
        "connection_accounting": accounting,
        # When the notifications lost to kills were accepted, relative to the kill
        # (upper bounds of their brackets), and how long the master took to reap.
        "kill_losses_accepted_ms_after_kill": {
            "min": round(min(h for _, h in kill_rel) / 1e6, 1) if kill_rel else None,
            "max": round(max(h for _, h in kill_rel) / 1e6, 1) if kill_rel else None},
        "kill_to_reap_ms": sorted(round((reap[k["pid"]] - k["t"]) / 1e6, 1)
                                  for k in kills if k["pid"] in reap),
    }


def analyse_leaks(meta, dlog):
    """Check 2: per series (the master; each worker pid), after the warm-up, every
    sample within the bound of the series' post-warm-up minimum."""
    warm_end = meta["pub_start"] + int(meta["warmup_s"] * NS)
    series_warm = int(meta["series_warmup_s"] * NS)
    settle = int(meta["settle_s"] * NS)
    fd_pct, fd_abs = meta["fd_bound"]
    rss_pct, rss_abs_kb = meta["rss_bound"]
    kill_ts = [k["t"] for k in meta["kills"]]
    started = {d["pid"]: d["t"] for d in dlog["started"]}
    series = collections.OrderedDict()
    for s in meta["samples"]:
        for proc in s["procs"]:
            key = (proc["role"], proc["pid"])
            series.setdefault(key, []).append((s["t"], proc))
    out = []
    ok = True
    for (role, pid), pts in series.items():
        first_t = pts[0][0]
        start_t = started.get(pid, meta["series_start"].get(str(pid), first_t))
        used = []
        for t, p in pts:
            if t < warm_end:
                continue
            if role != "master" and t < start_t + series_warm:
                continue
            used.append((t, p))
        fds_raw = [p["fds"] for _, p in pts if p["fds"] is not None]
        rss_all = [p["rss_kb"] for _, p in pts if p["rss_kb"] is not None]
        rec = {"role": role, "pid": pid, "samples": len(pts), "checked": len(used),
               "fds_raw": [min(fds_raw), max(fds_raw)] if fds_raw else None,
               "rss_kb_all": [min(rss_all), max(rss_all)] if rss_all else None}
        # Descriptors net of the slot's open WebSocket connections (which move between
        # workers with every kill and churn); samples right after a kill (reconnect
        # storm: handshakes hold descriptors not yet counted) are not judged.
        fd_vals = []
        for t, p in used:
            if p["fds"] is None:
                continue
            if role != "master" and any(0 <= t - kt < settle for kt in kill_ts):
                continue
            if role == "master":
                fd_vals.append(p["fds"])
            elif p.get("conns") is not None:
                fd_vals.append(p["fds"] - p["conns"])
        rss_vals = [judged_rss(p) for _, p in used if judged_rss(p) is not None]
        problems = []
        if fd_vals:
            lo, hi = min(fd_vals), max(fd_vals)
            limit = lo * (1 + fd_pct / 100.0) + fd_abs
            rec["fds_checked"] = {"what": "fds" if role == "master" else "fds - connections",
                                  "min": lo, "max": hi, "limit": round(limit, 1), "n": len(fd_vals)}
            if hi > limit:
                problems.append("descriptors grew from %d to %d (limit %.0f)" % (lo, hi, limit))
        if rss_vals:
            lo, hi = min(rss_vals), max(rss_vals)
            limit = lo * (1 + rss_pct / 100.0) + rss_abs_kb
            rec["rss_kb_checked"] = {"min": lo, "max": hi, "limit": round(limit), "n": len(rss_vals)}
            if hi > limit:
                problems.append("RSS grew from %d KiB to %d KiB (limit %.0f KiB)" % (lo, hi, limit))
        rec["problems"] = problems
        if problems:
            ok = False
        out.append(rec)
    return {"ok": ok, "series": out,
            "bounds": {"fds": "+%g%% +%d" % (fd_pct, fd_abs),
                       "rss": "+%g%% +%d MiB" % (rss_pct, rss_abs_kb // 1024)},
            "warmup_s": meta["warmup_s"], "series_warmup_s": meta["series_warmup_s"]}


def analyse_sanitizers(meta, dlog):
    """Check 3: no sanitizer report; no worker death that the tool did not cause."""
    ours = {k["pid"] for k in meta["kills"]}
    stop = meta.get("stop_sent")
    unexpected = []
    for d in dlog["died"]:
        if d["pid"] in ours and d["signal"] == signal.SIGKILL:
            continue
        if stop is not None and d["t"] >= stop - NS and d["status"] == 0:
            continue
        unexpected.append(d["text"])
    return {"ok": not dlog["sanitizer"] and not unexpected,
            "sanitizer_reports": len(dlog["sanitizer"]),
            "sanitizer_lines": dlog["sanitizer"][:10],
            "unexpected_worker_exits": unexpected[:20]}


def load_stats_summary(stats):
    agg = {"processes": len(stats), "open": 0, "target": 0, "failed": 0, "reconnects": 0,
           "churn_closed": 0, "churn_acked": 0, "notifications": 0, "duplicates": 0,
           "disconnects": collections.Counter(), "close_codes": collections.Counter(),
           "connect_errors": collections.Counter(), "pings": 0, "latency_us": []}
    for s in stats:
        if not s:
            continue
        c = s.get("connections", {})
        agg["open"] += c.get("open", 0)
        agg["target"] += c.get("target", 0)
        agg["failed"] += c.get("failed", 0)
        agg["reconnects"] += s.get("reconnects", 0)
        agg["churn_closed"] += s.get("churn", {}).get("closed", 0)
        agg["churn_acked"] += s.get("churn", {}).get("acked", 0)
        agg["notifications"] += s.get("notifications", 0)
        agg["duplicates"] += s.get("duplicates") or 0
        agg["pings"] += s.get("messages", {}).get("pings", 0)
        agg["disconnects"].update(s.get("disconnects", {}))
        agg["close_codes"].update(s.get("close_codes", {}))
        agg["connect_errors"].update(s.get("connect_errors", {}))
        agg["latency_us"].append(s.get("latency_us", {}))
    for k in ("disconnects", "close_codes", "connect_errors"):
        agg[k] = dict(agg[k])
    lat = [x for x in agg["latency_us"] if x and x.get("count")]
    if lat:
        tot = sum(x["count"] for x in lat)
        agg["latency_all_us"] = {
            "count": tot,
            "mean": round(sum(x["mean"] * x["count"] for x in lat) / tot, 1),
            # Percentiles of several processes cannot be merged exactly: the worst one.
            "p50_worst": max(x["p50"] for x in lat), "p90_worst": max(x["p90"] for x in lat),
            "p99_worst": max(x["p99"] for x in lat), "p999_worst": max(x["p999"] for x in lat),
            "max": max(x["max"] for x in lat)}
    return agg


def analyse(meta, workdir, allow_replays):
    """All checks and figures of a run whose files are in workdir."""
    t0 = time.monotonic()
    pub, dup_answers = read_publish_record(os.path.join(workdir, "publish.rec"))
    recv, _ = read_load_records([os.path.join(workdir, "load-%d.rec" % i)
                                 for i in range(meta["load_processes"])])
    log_path = os.path.join(workdir, "daemon.log")
    points = meta.get("clock") or clock_from_log(meta, log_path)
    dlog = parse_daemon_log(log_path, Clock(points),
                            meta.get("stop_sent"))
    loads = load_stats_summary(meta.get("load_stats", []))
    meta["latency_max_us"] = loads.get("latency_all_us", {}).get("max", 0)
    meta["load_summary"] = loads
    r = {"checks": collections.OrderedDict()}
    d = analyse_delivery(meta, pub, recv, dlog, allow_replays)
    d["publisher_answered_twice"] = dup_answers
    if dup_answers:
        d["ok"] = False
    ps = meta.get("publish_stats") or {}
    bad_status = {k: v for k, v in ps.get("calls", {}).get("status", {}).items()
                  if k not in ("OK", "DEADLINE_EXCEEDED")}
    d["calls_not_ok"] = {k: v for k, v in ps.get("calls", {}).get("status", {}).items() if k != "OK"}
    if bad_status:
        d["ok"] = False
    r["checks"]["exactly_once"] = d
    r["checks"]["leaks"] = analyse_leaks(meta, dlog)
    r["checks"]["sanitizers"] = analyse_sanitizers(meta, dlog)
    stop_ok = meta.get("daemon_exit") == 0 and not meta.get("left_running")
    r["checks"]["clean_stop"] = {"ok": stop_ok, "exit_status": meta.get("daemon_exit"),
                                 "stop_seconds": meta.get("stop_seconds"),
                                 "left_running": meta.get("left_running", [])}
    # Figures.
    churn_log = sum(1 for ivs in dlog["intervals"].values() for iv in ivs if iv[4] == "client")
    health = [h["ws_connections"] for h in meta.get("health", []) if h.get("t", 0) >= meta["pub_start"]]
    r["figures"] = {
        "notifications": {
            "sent": ps.get("notifications", {}).get("sent"),
            "answered": ps.get("notifications", {}).get("answered"),
            "delivered_true": ps.get("notifications", {}).get("delivered"),
            "delivered_false": ps.get("notifications", {}).get("not_delivered"),
            "received": d["received_lines"],
            "failed_calls": ps.get("notifications", {}).get("failed"),
            "rate_answered_per_s": ps.get("rate", {}).get("answered_per_s")},
        "connections": {
            "target": meta["connections"],
            "held_health_min": min(health) if health else None,
            "held_health_max": max(health) if health else None,
            "held_at_end": meta.get("health_end"),
            "load_open_at_end": loads["open"], "load_gave_up": loads["failed"]},
        "workers_killed": len(meta["kills"]),
        "kills_skipped": meta.get("kills_skipped", 0),
        "hups_sent": len(meta["hups"]),
        "worker_reloads_logged": dlog["reloads"],
        "reload_incomplete": dlog["reload_incomplete"],
        "reconnects": loads["reconnects"],
        "churn_closes": {"load_tools": loads["churn_closed"], "daemon_log": churn_log},
        "server_closes": dlog["server_closes"],
        "evictions_logged": dlog["evictions"],
        "load_disconnects": loads["disconnects"],
        "load_close_codes": loads["close_codes"],
        "load_connect_errors": loads["connect_errors"],
        "latency_us": {"per_load_process": loads["latency_us"],
                       "all": loads.get("latency_all_us"),
                       "publisher_call": ps.get("call_latency_us"),
                       "publisher_send_lag": ps.get("send_lag_us")},
        "daemon_log": {"lines": dlog["lines"], "warnings": dlog["warnings"]},
        "wall_seconds": meta.get("wall_seconds"),
        "steady_seconds": round((meta["pub_end"] - meta["pub_start"]) / NS, 1),
        "analysis_seconds": None,
    }
    r["figures"]["analysis_seconds"] = round(time.monotonic() - t0, 1)
    r["ok"] = all(c["ok"] for c in r["checks"].values())
    return r


# =========================================================================== report

def fmt_lat(h):
    if not h or not h.get("count"):
        return "-"
    return "p50 %.2f / p90 %.2f / p99 %.2f / p99.9 %.2f / max %.2f ms (n=%d)" % (
        h["p50"] / 1000, h["p90"] / 1000, h["p99"] / 1000, h["p999"] / 1000, h["max"] / 1000, h["count"])


def format_report(meta, r):
    L = []
    f = r["figures"]
    c = r["checks"]
    L.append("wsnotifyd soak: %s%s%s, %d workers, %d connections (%d load processes), users 1-%d, "
             "%g notifications/s, churn %g/s, kill every %gs, HUP every %gs, %gs"
             % (meta["daemon"], " (sanitizers)" if meta["sanitizers"] else "",
                " (history)" if meta.get("history") else "", meta["workers"],
                meta["connections"], meta["load_processes"], meta["users"], meta["rate"],
                meta["churn"], meta["kill_every"], meta["hup_every"], meta["duration"]))
    n = f["notifications"]
    L.append("  notifications: sent %s, answered %s (delivered=true %s, false %s), received %s; "
             "failed calls %s" % (n["sent"], n["answered"], n["delivered_true"], n["delivered_false"],
                                  n["received"], n["failed_calls"]))
    cn = f["connections"]
    L.append("  connections held (/health): min %s, max %s, at end %s of %d; load tools at end: %d open, "
             "%d given up" % (cn["held_health_min"], cn["held_health_max"], cn["held_at_end"],
                              cn["target"], cn["load_open_at_end"], cn["load_gave_up"]))
    L.append("  workers killed %d (skipped %d), HUPs sent %d (worker reloads logged %d, incomplete %d), "
             "reconnects %d, churn closes %d (daemon log: %d client closes)"
             % (f["workers_killed"], f["kills_skipped"], f["hups_sent"], f["worker_reloads_logged"],
                f["reload_incomplete"], f["reconnects"], f["churn_closes"]["load_tools"],
                f["churn_closes"]["daemon_log"]))
    if f["server_closes"]:
        L.append("  server-side closes: %s" % f["server_closes"])
    L.append("  load disconnects %s, close codes %s, connect errors %s"
             % (f["load_disconnects"], f["load_close_codes"], f["load_connect_errors"]))
    lat = f["latency_us"]
    for i, h in enumerate(lat["per_load_process"]):
        L.append("  latency, load %d: %s" % (i, fmt_lat(h)))
    L.append("  publisher call latency: %s" % fmt_lat(lat["publisher_call"]))
    L.append("  publisher send lag:     %s" % fmt_lat(lat["publisher_send_lag"]))
    if f["daemon_log"]["warnings"]:
        L.append("  daemon warnings/errors: %s" % dict(list(f["daemon_log"]["warnings"].items())[:8]))
    L.append("  wall time %.1f s (steady phase %.1f s, analysis %.1f s)"
             % (f["wall_seconds"] or 0, f["steady_seconds"], f["analysis_seconds"]))
    L.append("checks:")
    e = c["exactly_once"]
    L.append("  [%s] exactly once: %d delivered=true, %d arrived exactly once; missing with a reason: "
             "%d worker killed, %d client churn (window ±%gs); missing unexplained %d; duplicates %d "
             "(extra copies %d); misrouted %d; delivered=false that arrived %d%s; arrived but unanswered %d;"
             " calls not OK %s"
             % ("PASS" if e["ok"] else "FAIL", e["delivered_true"], e["received_exactly_once"],
                e["missing_legitimate"]["worker_killed"], e["missing_legitimate"]["client_churn"],
                e["loss_window_s"], e["missing_unexplained"], e["duplicates"]["ids"],
                e["duplicates"]["extra_copies"], e["misrouted"]["copies"],
                e["replays_delivered_false_received"]["count"],
                " (allowed)" if e["replays_delivered_false_received"]["allowed"] else "",
                e["received_unanswered_ids"]["copies"], e["calls_not_ok"] or "none"))
    hc = e.get("history_check")
    if hc:
        L.append("      history: the %d users connected at the end got %d notifications, each to arrive once "
                 "(kills and churn excuse nothing: the next connection replays): %d delivered=false ones "
                 "replayed once, %d did not arrive%s"
                 % (hc["users_connected_at_end"], hc["their_notifications"],
                    hc["delivered_false_replayed_once"], hc["not_arrived"],
                    " (near: %s)" % hc["not_arrived_near"] if hc["not_arrived"] else ""))
        for ex in hc["examples"][:5]:
            L.append("      not arrived: %s" % json.dumps(ex))
    ca = e["connection_accounting"]
    L.append("      connections lost without a close frame %d (on killed workers %d); close frames %d, "
             "answers to churn closes %d, server-initiated %d%s"
             % (ca["lost_without_close_frame"], ca["on_killed_workers"], ca["close_frames_received"],
                ca["answers_to_churn_closes"], ca["server_initiated_close_frames"],
                "" if ca["ok"] else "  <-- connections lost for no legitimate reason"))
    kr = e["kill_to_reap_ms"]
    if kr:
        km = e["kill_losses_accepted_ms_after_kill"]["max"]
        L.append("      kill -> master's reap: median %.1f ms, max %.1f ms%s"
                 % (kr[len(kr) // 2], kr[-1], "" if km is None else
                    "; the losses to kills were accepted up to %s ms after the kill" % km))
    for ex in e["missing_unexplained_examples"][:5]:
        L.append("      missing: %s" % json.dumps(ex))
    for ex in e["duplicates"]["examples"][:5]:
        L.append("      duplicate: %s" % json.dumps(ex))
    for ex in e["misrouted"]["examples"][:5]:
        L.append("      misrouted: %s" % json.dumps(ex))
    for ex in e["replays_delivered_false_received"]["examples"][:5]:
        L.append("      delivered=false but arrived: %s" % json.dumps(ex))
    lk = c["leaks"]
    L.append("  [%s] leaks (after %gs warm-up; fds %s, RSS less file pages %s of each series' minimum):"
             % ("PASS" if lk["ok"] else "FAIL", lk["warmup_s"], lk["bounds"]["fds"], lk["bounds"]["rss"]))
    for s in lk["series"]:
        fc = s.get("fds_checked")
        rc = s.get("rss_kb_checked")
        L.append("      %-9s pid %-7d %3d samples (%3d judged): fds %s%s; VmRSS %s KiB%s%s"
                 % (s["role"], s["pid"], s["samples"], s["checked"],
                    "%d-%d" % tuple(s["fds_raw"]) if s["fds_raw"] else "-",
                    " (%s %d-%d)" % (fc["what"], fc["min"], fc["max"]) if fc and fc["what"] != "fds" else "",
                    "%d-%d" % tuple(s["rss_kb_all"]) if s["rss_kb_all"] else "-",
                    " (less file pages, judged %d-%d)" % (rc["min"], rc["max"]) if rc else "",
                    ("  <-- " + "; ".join(s["problems"])) if s["problems"] else ""))
    sz = c["sanitizers"]
    L.append("  [%s] sanitizers: %d report line(s); unexpected worker exits: %s"
             % ("PASS" if sz["ok"] else "FAIL", sz["sanitizer_reports"],
                sz["unexpected_worker_exits"] or "none"))
    for line in sz["sanitizer_lines"][:5]:
        L.append("      %s" % line)
    cs = c["clean_stop"]
    L.append("  [%s] clean stop: exit status %s after SIGTERM (%s s)%s"
             % ("PASS" if cs["ok"] else "FAIL", cs["exit_status"], cs["stop_seconds"],
                ", left running: %s" % cs["left_running"] if cs["left_running"] else ""))
    L.append("RESULT: %s" % ("PASS" if r["ok"] else "FAIL"))
    return "\n".join(L)


# =========================================================================== the run

class Soak:
    def __init__(self, a):
        self.a = a
        self.daemon = None
        self.loads = []
        self.publisher = None
        self.stop_sig = None
        self.meta = None
        self.work = None
        self.keep = False
        self.files = []
        self.sanitizer_warned = False

    # ---- signals
    def on_signal(self, sig, frame):
        if self.stop_sig is None:
            self.stop_sig = sig
            log("%s: stopping everything" % signal.Signals(sig).name)
        else:
            log("second signal: killing everything")
            self.kill_all()
            os._exit(128 + sig)

    def check_stop(self):
        if self.stop_sig is not None:
            raise Interrupted()
        self.clock_tick()

    def clock_tick(self):
        """Record the wall - monotonic offset when it changes (see Clock)."""
        if self.meta is None or "clock" not in self.meta:
            return
        t = mono_ns()
        off = time.time_ns() - t
        if abs(off - self.meta["clock"][-1][1]) > 1_000_000:
            self.meta["clock"].append([t, off])

    def sleep(self, s):
        end = time.monotonic() + s
        while True:
            self.check_stop()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def slow(self, s):
        return s * (SANITIZER_SLOWNESS if self.meta["sanitizers"] else 1.0)

    # ---- set-up
    def open_file(self, name, mode="wb"):
        f = open(os.path.join(self.work, name), mode)
        self.files.append(f)
        return f

    def start_daemon(self):
        a = self.a
        env = dict(os.environ)
        env["JWT_SECRET"] = self.secret
        # The history store without --data-dir goes under $TMPDIR (the master removes
        # it when it exits): keep it in the work directory.
        env["TMPDIR"] = self.work
        if self.meta["sanitizers"]:
            env["ASAN_OPTIONS"] = merge_options(env.get("ASAN_OPTIONS"), SANITIZER_ASAN_DEFAULTS)
            env["UBSAN_OPTIONS"] = merge_options(env.get("UBSAN_OPTIONS"), SANITIZER_UBSAN_DEFAULTS)
            self.meta["asan_options"] = env["ASAN_OPTIONS"]
            q = re.search(r"(?:^|:)quarantine_size_mb=(-?\d+)", env["ASAN_OPTIONS"])
            qmb = int(q.group(1)) if q else -1
            if qmb < 0:
                qmb = 256
            self.meta["rss_bound"][1] += qmb * 1024
            self.meta["asan_quarantine_mb"] = qmb
        for attempt in range(3):
            port, gport = free_port(), free_port()
            if port == gport:
                continue
            max_conn = max(1024, 2 * a.connections + 1024)
            argv = [a.daemon, "--workers", str(a.workers), "--bind", "127.0.0.1", "--port", str(port),
                    "--grpc-bind", "127.0.0.1", "--grpc-port", str(gport), "--heartbeat", "30",
                    "--max-connects-per-minute", "0", "--max-messages-per-second", "0",
                    "--max-connections", str(max_conn), "--log-level", "info"]
            # O_APPEND: the master and every worker write whole lines to it.
            fd = os.open(os.path.join(self.work, "daemon.log"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            logf = os.fdopen(fd, "ab")
            self.files.append(logf)
            self.daemon = Child("wsnotifyd", argv, env=env, stdout=logf, stderr=logf)
            self.tail = LogTail(os.path.join(self.work, "daemon.log"))
            deadline = time.monotonic() + self.slow(20)
            while time.monotonic() < deadline:
                self.check_stop()
                self.tail.poll()
                if not self.daemon.alive():
                    break
                if (self.tail.grpc_line and self.tail.ready_line and
                        len(self.tail.slot_pid) == a.workers):
                    try:
                        st, body = http_get(port, "/health", 2)
                        h = json.loads(body)
                        if st == 200 and h.get("workers") == a.workers:
                            self.port, self.gport = port, gport
                            self.meta["daemon_argv"] = argv
                            return
                    except (OSError, ValueError, http.client.HTTPException):
                        pass
                time.sleep(0.1)
            rc = self.daemon.wait(2)
            self.daemon.kill_group()
            with open(os.path.join(self.work, "daemon.log"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            if rc is not None and "in use" in tail:
                log("port race (attempt %d): retrying" % (attempt + 1))
                continue
            raise SoakError("wsnotifyd did not become ready (exit status %r); its log ends:\n%s"
                            % (rc, tail))
        raise SoakError("could not find free ports for wsnotifyd")

    def start_loads(self):
        a = self.a
        nproc = self.meta["load_processes"]
        per_src = max(1, min(4, 250 // nproc))
        first = 1
        env = dict(os.environ)
        env["JWT_SECRET"] = self.secret
        self.ready_files = []
        for i in range(nproc):
            count = a.connections // nproc + (1 if i < a.connections % nproc else 0)
            lo = 2 + i * per_src
            src = "127.0.0.%d-127.0.0.%d" % (lo, lo + per_src - 1)
            ready = os.path.join(self.work, "load-%d.ready" % i)
            argv = [self.wsn_load, "--host", "127.0.0.1", "--port", str(self.port),
                    "--connections", str(count), "--first-user", str(first),
                    "--source-addrs", src, "--ready-file", ready,
                    "--stats-file", os.path.join(self.work, "load-%d.json" % i),
                    "--record", os.path.join(self.work, "load-%d.rec" % i),
                    # A safety net only: the tool stops it with SIGTERM long before.
                    "--duration", str(int(a.duration + self.slow(600)))]
            if a.churn > 0:
                argv += ["--churn", "%g" % (a.churn / nproc)]
            err = self.open_file("load-%d.err" % i)
            self.loads.append(Child("wsn_load[%d]" % i, argv, env=env, stdout=err, stderr=err))
            self.ready_files.append(ready)
            self.meta["load_specs"].append({"first_user": first, "count": count, "source": src})
            first += count
        deadline = time.monotonic() + self.slow(30 + a.connections / 500.0)
        opened = {}
        while len(opened) < nproc:
            self.check_stop()
            self.tail.poll()
            if not self.daemon.alive():
                raise SoakError("wsnotifyd exited while the connections were opening")
            for i, (lp, rf) in enumerate(zip(self.loads, self.ready_files)):
                if i in opened:
                    continue
                if not lp.alive():
                    raise SoakError("%s exited (status %s) before it was ready; see %s"
                                    % (lp.name, lp.rc, os.path.join(self.work, "load-%d.err" % i)))
                try:
                    with open(rf) as f:
                        opened[i] = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
            if time.monotonic() > deadline:
                raise SoakError("the load processes were not connected within %.0f s (%d of %d ready)"
                                % (self.slow(30 + a.connections / 500.0), len(opened), nproc))
            time.sleep(0.1)
        total = sum(opened.values())
        self.meta["ramp_open"] = total
        log("%d of %d connections open (%d load processes)" % (total, a.connections, nproc))
        if total < a.connections:
            log("WARNING: %d connections could not be opened" % (a.connections - total))

    def start_publisher(self):
        a = self.a
        argv = [self.wsn_publish, "--server", "127.0.0.1:%d" % self.gport,
                "--users", "1-%d" % a.users, "--rate", "%g" % a.rate, "--duration", "%g" % a.duration,
                "--in-flight", "64", "--deadline-ms", "5000",
                "--record", os.path.join(self.work, "publish.rec"),
                "--stats-file", os.path.join(self.work, "publish.json"),
                "--title", "Soak", "--type", "soak", "--link", "/soak"]
        for rf in self.ready_files:
            argv += ["--wait-ready", rf]
        argv += ["--wait-timeout", "5"]
        out = self.open_file("publish.out")
        err = self.open_file("publish.err")
        self.publisher = Child("wsn_publish", argv, stdout=out, stderr=err)

    # ---- the steady phase
    def sample(self, t):
        procs = []
        conns = {}
        try:
            st, body = http_get(self.port, "/metrics", 5)
            if st == 200:
                for m in re.finditer(rb'^wsnotify_connections\{worker="(\d+)"\} (\d+)', body, re.M):
                    conns[int(m.group(1))] = int(m.group(2))
        except (OSError, http.client.HTTPException):
            pass
        h = None
        try:
            st, body = http_get(self.port, "/health", 5)
            if st == 200:
                h = json.loads(body)
        except (OSError, ValueError, http.client.HTTPException):
            pass
        mp = self.daemon.pid
        procs.append(dict({"role": "master", "pid": mp, "fds": proc_fds(mp)}, **proc_mem_kb(mp)))
        for slot in range(self.a.workers):
            pid = self.tail.slot_pid.get(slot)
            if pid is None or proc_ppid(pid) != mp:
                continue
            procs.append(dict({"role": "worker %d" % slot, "pid": pid, "fds": proc_fds(pid),
                               "conns": conns.get(slot)}, **proc_mem_kb(pid)))
            self.meta["series_start"].setdefault(str(pid), t)
        self.meta["samples"].append({"t": t, "procs": procs})
        if h is not None:
            self.meta["health"].append({"t": t, "ws_connections": h.get("ws_connections"),
                                        "workers": h.get("workers")})

    def kill_worker(self, slot, now):
        pid = self.tail.slot_pid.get(slot)
        if pid is None or proc_ppid(pid) != self.daemon.pid:
            self.meta["kills_skipped"] += 1
            log("worker %d is not running (respawn pending?): kill skipped" % slot)
            return
        t_wall = time.time_ns()
        t = mono_ns()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.meta["kills_skipped"] += 1
            return
        self.meta["kills"].append({"slot": slot, "pid": pid, "t": t, "wall_ns": t_wall,
                                   "rel_s": round((t - self.meta["pub_start"]) / NS, 3)})
        log("SIGKILL worker %d (pid %d)" % (slot, pid))

    def steady(self):
        a = self.a
        m = self.meta
        t0 = mono_ns()
        m["pub_start"] = t0
        next_sample = t0
        next_kill = t0 + int(a.kill_every * NS) if a.kill_every > 0 else None
        next_hup = t0 + int(a.hup_every * NS) if a.hup_every > 0 else None
        next_progress = t0 + 60 * NS
        end = t0 + int(a.duration * NS)
        kill_slot = 0
        pub_deadline = end + int(self.slow(30) * NS)
        while True:
            self.check_stop()
            now = mono_ns()
            self.tail.poll()
            if not self.daemon.alive():
                raise DaemonDied("wsnotifyd (the master) died during the run: exit status %s"
                                 % self.daemon.rc)
            for lp in self.loads:
                if not lp.alive():
                    raise SoakError("%s died during the run (status %s)" % (lp.name, lp.rc))
            if self.tail.sanitizer_hits and not self.sanitizer_warned:
                log("WARNING: a sanitizer report appeared in the daemon's log")
                self.sanitizer_warned = True
            if now >= next_sample:
                self.sample(now)
                next_sample += int(a.sample_every * NS)
            # No kill in the last seconds: the users must get back before the end.
            if next_kill is not None and now >= next_kill:
                if now < end - 5 * NS:
                    self.kill_worker(kill_slot % a.workers, now)
                    kill_slot += 1
                next_kill += int(a.kill_every * NS)
            if next_hup is not None and now >= next_hup:
                if now < end:
                    os.kill(self.daemon.pid, signal.SIGHUP)
                    m["hups"].append({"t": now, "rel_s": round((now - t0) / NS, 3)})
                next_hup += int(a.hup_every * NS)
            if now >= next_progress:
                h = m["health"][-1]["ws_connections"] if m["health"] else None
                log("t=%ds: %d kills, %d HUPs, %s connections" % ((now - t0) // NS, len(m["kills"]),
                                                                  len(m["hups"]), h))
                next_progress += 60 * NS
            if not self.publisher.alive():
                if self.publisher.rc != 0:
                    raise SoakError("wsn_publish exited with status %s; see %s" % (
                        self.publisher.rc, os.path.join(self.work, "publish.err")))
                if now >= end - NS:
                    break
                raise SoakError("wsn_publish stopped early (at t=%.1fs)" % ((now - t0) / NS))
            if now > pub_deadline:
                log("WARNING: wsn_publish still running %.0f s after its end: SIGTERM" % ((now - end) / NS))
                self.publisher.signal(signal.SIGTERM)
                if self.publisher.wait(self.slow(10)) is None:
                    self.publisher.kill_group()
                    raise SoakError("wsn_publish did not stop")
                break
            time.sleep(0.2)
        m["pub_end"] = mono_ns()
        # Let the last notifications arrive.
        self.sleep(self.slow(2))
        self.tail.poll()
        self.sample(mono_ns())

    # ---- the end
    def snapshot_loads(self):
        """SIGUSR1: each load process writes its stats (and flushes its record)."""
        before = {}
        for i, lp in enumerate(self.loads):
            p = os.path.join(self.work, "load-%d.json" % i)
            try:
                before[i] = os.stat(p).st_mtime_ns
            except OSError:
                before[i] = None
            lp.signal(signal.SIGUSR1)
        deadline = time.monotonic() + self.slow(10)
        stats = [None] * len(self.loads)
        while time.monotonic() < deadline and any(s is None for s in stats):
            for i in range(len(self.loads)):
                if stats[i] is not None:
                    continue
                p = os.path.join(self.work, "load-%d.json" % i)
                try:
                    if os.stat(p).st_mtime_ns != before[i]:
                        with open(p) as f:
                            stats[i] = json.load(f)
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        return stats

    def finish(self):
        m = self.meta
        m["load_stats"] = self.snapshot_loads()
        try:
            st, body = http_get(self.port, "/health", 5)
            m["health_end"] = json.loads(body).get("ws_connections")
        except (OSError, ValueError, http.client.HTTPException):
            m["health_end"] = None
        log("stopping wsnotifyd (SIGTERM) with %s connections open" % m["health_end"])
        self.clock_tick()
        t = mono_ns()
        m["stop_sent"] = t
        self.daemon.signal(signal.SIGTERM)
        rc = self.daemon.wait(self.slow(30))
        m["stop_seconds"] = round((mono_ns() - t) / NS, 2)
        m["daemon_exit"] = rc
        left = []
        if rc is None:
            log("wsnotifyd did not exit within %.0f s of SIGTERM: killing its process group"
                % self.slow(30))
            left.append("wsnotifyd (master did not exit)")
        elif self.daemon.group_alive():
            left.append("wsnotifyd process group (workers outlived the master)")
        self.daemon.kill_group()
        self.tail.poll()
        self.clock_tick()
        for lp in self.loads:
            lp.signal(signal.SIGTERM)
        for lp in self.loads:
            if lp.wait(self.slow(15)) is None:
                log("%s did not stop on SIGTERM: killed" % lp.name)
                lp.kill_group()
        for lp in self.loads + [self.publisher]:
            if lp is not None and lp.kill_group():
                left.append(lp.name)
        m["left_running"] = left
        # Final stats (after the daemon's stop) only for what the snapshot missed.
        m["load_stats_final"] = [s is None for s in m["load_stats"]]
        for i in range(len(self.loads)):
            if m["load_stats"][i] is None:
                log("WARNING: no snapshot of %s's stats; using its final ones" % self.loads[i].name)
                try:
                    with open(os.path.join(self.work, "load-%d.json" % i)) as f:
                        m["load_stats"][i] = json.load(f)
                except (OSError, ValueError):
                    pass
        try:
            with open(os.path.join(self.work, "publish.json")) as f:
                m["publish_stats"] = json.load(f)
        except (OSError, ValueError):
            m["publish_stats"] = None

    def kill_all(self):
        for ch in [self.publisher] + self.loads + [self.daemon]:
            if ch is not None:
                try:
                    ch.kill_group()
                except OSError:
                    pass

    def stop_all_gently(self):
        """Ctrl-C, SIGTERM or an error: stop in order, each wait bounded, then SIGKILL
        whatever is left, group by group."""
        if self.publisher is not None:
            self.publisher.signal(signal.SIGTERM)
        for lp in self.loads:
            lp.signal(signal.SIGTERM)
        if self.daemon is not None and self.daemon.alive():
            self.daemon.signal(signal.SIGTERM)
            self.daemon.wait(self.slow(15) if self.meta else 15)
        for ch in [self.publisher] + self.loads:
            if ch is not None:
                ch.wait(5)
        self.kill_all()

    def run(self):
        a = self.a
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        if a.keep_logs:
            os.makedirs(a.keep_logs, exist_ok=True)
            for name in os.listdir(a.keep_logs):
                if re.match(r"^(daemon\.log|load-\d+\..*|publish\..*|soak-meta\.json)$", name):
                    os.unlink(os.path.join(a.keep_logs, name))
            self.work = a.keep_logs
            self.keep = True
        else:
            self.work = tempfile.mkdtemp(prefix="wsn-soak-")
        self.secret = secrets.token_hex(24)
        nproc = max(1, -(-a.connections // a.per_load))
        if nproc > 250:
            raise SoakError("too many load processes (%d): raise --per-load" % nproc)
        self.meta = m = {
            "daemon": a.daemon, "tools": a.tools, "sanitizers": is_sanitizer_build(a.daemon),
            "history": has_history(a.daemon),
            "workers": a.workers, "connections": a.connections, "users": a.users,
            "rate": a.rate, "churn": a.churn, "kill_every": a.kill_every, "hup_every": a.hup_every,
            "duration": a.duration, "load_processes": nproc, "per_load": a.per_load,
            "loss_window_s": a.loss_window, "warmup_s": a.duration * a.warmup_fraction,
            "series_warmup_s": a.series_warmup, "settle_s": a.settle,
            "fd_bound": [2.0, 16], "rss_bound": [10.0, 8 * 1024],
            "kills": [], "kills_skipped": 0, "hups": [], "samples": [], "health": [],
            "series_start": {}, "load_specs": [], "workdir": self.work,
        }
        if m["sanitizers"] and a.loss_window == DEFAULT_LOSS_WINDOW:
            m["loss_window_s"] = DEFAULT_LOSS_WINDOW * 2
        m["offset_ns"] = time.time_ns() - mono_ns()
        m["clock"] = [[mono_ns(), m["offset_ns"]]]
        self.wsn_load = os.path.join(a.tools, "wsn_load")
        self.wsn_publish = os.path.join(a.tools, "wsn_publish")
        for p in (a.daemon, self.wsn_load, self.wsn_publish):
            if not os.access(p, os.X_OK):
                raise SoakError("%s is not an executable (build the project with make; "
                                "--daemon / --tools)" % p)
        t_start = time.monotonic()
        log("work dir %s; daemon %s%s" % (self.work, a.daemon, " (sanitizer build)" if m["sanitizers"] else ""))
        ok = False
        try:
            self.start_daemon()
            m["master_pid"] = self.daemon.pid
            log("wsnotifyd: master %d, workers %s, ws :%d, grpc :%d" % (
                self.daemon.pid, dict(sorted(self.tail.slot_pid.items())), self.port, self.gport))
            t_ramp = mono_ns()
            self.sample(t_ramp)
            self.start_loads()
            self.start_publisher()
            log("publishing %g/s to users 1-%d for %g s" % (a.rate, a.users, a.duration))
            self.steady()
            self.finish()
            ok = True
        except Interrupted:
            log("interrupted: stopping")
            self.stop_all_gently()
            self.close_files()
            if not self.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            return 130 if self.stop_sig == signal.SIGINT else 143
        except DaemonDied as e:
            self.stop_all_gently()
            self.close_files()
            self.tail.poll()
            try:
                with open(os.path.join(self.work, "daemon.log"), "rb") as f:
                    text = f.read()
            except OSError:
                text = b""
            lines = text.decode(errors="replace").splitlines()
            hits = [ln for ln in lines if any(p.decode() in ln for p in SANITIZER_PATTERNS)]
            print("FAIL: %s" % e, flush=True)
            for ln in hits[:10]:
                print("  sanitizer: %s" % ln[:300])
            print("  the daemon's log ends:")
            for ln in lines[-30:]:
                print("  | %s" % ln[:300])
            print("RESULT: FAIL", flush=True)
            log("files kept in %s" % self.work)
            return 1
        except SoakError as e:
            log("ERROR: %s" % e)
            self.stop_all_gently()
            self.close_files()
            log("files kept in %s" % self.work)
            return 2
        except BaseException:
            self.stop_all_gently()
            self.close_files()
            raise
        finally:
            if not ok:
                self.kill_all()
        self.close_files()
        m["wall_seconds"] = round(time.monotonic() - t_start, 1)
        offset_end = time.time_ns() - mono_ns()
        m["clock_drift_ms"] = round((offset_end - m["offset_ns"]) / 1e6, 3)
        if abs(m["clock_drift_ms"]) > 100:
            log("note: the wall clock moved %.1f s against the monotonic one during the run "
                "(%d changes tracked)" % (m["clock_drift_ms"] / 1000, len(m["clock"]) - 1))
        with open(os.path.join(self.work, "soak-meta.json"), "w") as f:
            json.dump(m, f)
        log("analysing ...")
        r = analyse(m, self.work, a.allow_replays)
        return self.output(m, r)

    def output(self, m, r):
        a = self.a
        print(format_report(m, r), file=sys.stderr if a.json == "-" else sys.stdout, flush=True)
        if a.json:
            doc = {"config": {k: v for k, v in m.items()
                              if k not in ("samples", "health", "load_stats", "publish_stats",
                                           "series_start", "load_summary")},
                   "result": r}
            if a.json == "-":
                json.dump(doc, sys.stdout, indent=1)
                print()
            else:
                with open(a.json, "w") as f:
                    json.dump(doc, f, indent=1)
        if not self.keep:
            if r["ok"]:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log("a check failed: files kept in %s (re-analyse with --analyze %s)" % (self.work, self.work))
        return 0 if r["ok"] else 1

    def close_files(self):
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass
        self.files = []


DEFAULT_LOSS_WINDOW = 2.0


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="soak.py",
        description="Soak test of wsnotifyd: real daemon, wsn_load connections with churn, "
                    "wsn_publish notifications, worker SIGKILLs and SIGHUPs; checks exactly-once "
                    "delivery, leaks, sanitizer reports and a clean stop.",
        epilog="Exit status: 0 every check passed, 1 a check failed (or the master died), 2 the run "
               "could not be made, 130/143 interrupted. The checks are described at the top of "
               "this file.")
    default_daemon = os.path.join(SRCDIR, "build", "wsnotifyd")
    p.add_argument("--daemon", metavar="PATH", default=default_daemon if os.path.exists(default_daemon) else None,
                   help="wsnotifyd binary (default: build/wsnotifyd of this tree)")
    p.add_argument("--tools", metavar="DIR", help="directory of wsn_load and wsn_publish "
                                   "(default: scripts/bench/ next to the daemon)")
    p.add_argument("--workers", metavar="N", type=int, default=4, help="daemon workers (4)")
    p.add_argument("--connections", metavar="N", type=int, default=10000, help="WebSocket connections held (10000)")
    p.add_argument("--per-load", metavar="N", type=int, default=5000,
                   help="connections per load process, at most (5000)")
    p.add_argument("--users", metavar="N", type=int, help="recipients 1..N (default: connections x 1.2)")
    p.add_argument("--rate", metavar="R", type=float, default=500, help="notifications per second (500)")
    p.add_argument("--churn", metavar="R", type=float, default=20,
                   help="connections closed and reopened per second, all load processes (20)")
    p.add_argument("--kill-every", metavar="S", type=float, default=60,
                   help="SIGKILL one worker every S seconds, round robin; 0: never (60)")
    p.add_argument("--hup-every", metavar="S", type=float, default=30, help="SIGHUP the master every S seconds; 0: never (30)")
    p.add_argument("--duration", metavar="S", type=float, default=1800, help="seconds of publishing (1800)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE (- for stdout)")
    p.add_argument("--keep-logs", metavar="DIR", help="keep the daemon log, records and stats in DIR")
    p.add_argument("--allow-replays", action="store_true",
                   help="a delivered=false notification that arrives is counted, not a failure "
                        "(always so with a daemon that keeps a history: it replays them)")
    p.add_argument("--loss-window", metavar="S", type=float, default=DEFAULT_LOSS_WINDOW,
                   help="seconds around a kill or a churn close within which a lost notification "
                        "of the users it concerns is legitimate (2; doubled for a sanitizer build)")
    p.add_argument("--warmup-fraction", metavar="F", type=float, default=0.2,
                   help="part of the run before the leak check starts judging (0.2)")
    p.add_argument("--series-warmup", metavar="S", type=float, default=30,
                   help="seconds after a respawned worker's start before its samples count (30)")
    p.add_argument("--settle", metavar="S", type=float, default=10,
                   help="seconds after a kill during which worker descriptor counts are not judged (10)")
    p.add_argument("--sample-every", metavar="S", type=float, default=10, help="leak sampling interval (10)")
    p.add_argument("--analyze", metavar="DIR",
                   help="do not run: analyse again the files a run kept in DIR")
    a = p.parse_args(argv)
    if a.analyze:
        return a
    if not a.daemon:
        p.error("--daemon is required (no build/wsnotifyd here)")
    a.daemon = os.path.abspath(a.daemon)
    if a.tools is None:
        a.tools = os.path.join(os.path.dirname(a.daemon), "scripts", "bench")
    a.tools = os.path.abspath(a.tools)
    if a.connections < 1 or a.workers < 1 or a.per_load < 1 or a.per_load > 15000:
        p.error("--connections and --workers must be positive, --per-load 1..15000")
    if a.users is None:
        a.users = int(a.connections * 1.2)
    if a.users < 1 or a.rate <= 0 or a.duration <= 0 or a.sample_every <= 0:
        p.error("--users, --rate, --duration and --sample-every must be positive")
    if a.churn < 0 or a.kill_every < 0 or a.hup_every < 0 or a.loss_window < 0:
        p.error("--churn, --kill-every, --hup-every and --loss-window must not be negative")
    if not 0 <= a.warmup_fraction < 1:
        p.error("--warmup-fraction: 0 <= F < 1")
    return a


def main(argv):
    a = parse_args(argv)
    if a.analyze:
        with open(os.path.join(a.analyze, "soak-meta.json")) as f:
            meta = json.load(f)
        s = Soak(a)
        s.keep = True
        r = analyse(meta, a.analyze, a.allow_replays)
        return s.output(meta, r)
    s = Soak(a)
    try:
        return s.run()
    except SoakError as e:
        log("ERROR: %s" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

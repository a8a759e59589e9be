#!/usr/bin/env python3
"""e2e_systemd.py — wsnotifyd under systemd, without systemd: the generated unit
(contents, `systemd-analyze verify`, `systemd-analyze security`), and the real
daemon started with NOTIFY_SOCKET pointing at a datagram socket bound here:
READY=1 only once both the WebSocket and the gRPC ports accept, STATUS= with
the counts, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1/READY=1 around
SIGHUP (READY=1 only once every worker has reloaded, or after the 5 s bound),
STOPPING=1 on SIGTERM, and every datagram sent by the master (checked
with the kernel's SCM_CREDENTIALS, not by trusting the payload)."""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient  # noqa: E402
import e2e_support as es  # noqa: E402

SRCDIR = os.environ.get("WSN_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
WSNOTIFYD = os.path.abspath(os.environ.get("WSNOTIFYD", "./wsnotifyd"))
UNIT = os.environ.get("WSN_UNIT")
SBINDIR = os.environ.get("WSN_SBINDIR")
UCRED = struct.Struct("iII")   # struct ucred: pid, uid, gid


def unit_text():
    """The generated unit; run standalone, generate it from the .in as make does."""
    global UNIT, SBINDIR
    if UNIT and os.path.exists(UNIT):
        with open(UNIT, encoding="utf-8") as f:
            return f.read()
    SBINDIR = SBINDIR or "/usr/local/sbin"
    with open(os.path.join(SRCDIR, "scripts", "wsnotifyd.service.in"), encoding="utf-8") as f:
        return f.read().replace("@sbindir@", SBINDIR)


def directives(text):
    """{key: [values]} of the unit's Key=Value lines (comments skipped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


class UnitFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = unit_text()
        cls.d = directives(cls.text)

    def one(self, key):
        vals = self.d.get(key)
        self.assertIsNotNone(vals, "%s= missing from the unit" % key)
        return vals[-1]

    def test_service_type_and_lifecycle(self):
        self.assertNotIn("@sbindir@", self.text)
        self.assertEqual(self.one("Type"), "notify")
        self.assertEqual(self.one("NotifyAccess"), "main")
        self.assertEqual(self.one("Restart"), "on-failure")
        self.assertEqual(self.one("KillMode"), "mixed")
        self.assertRegex(self.one("WatchdogSec"), r"^\d+")
        self.assertRegex(self.one("ExecReload"), r"kill -HUP \$MAINPID$")
        self.assertEqual(self.one("WantedBy"), "multi-user.target")

    def test_exec_start_is_the_configured_path(self):
        exec_start = self.one("ExecStart")
        self.assertTrue(SBINDIR, "WSN_SBINDIR not set")
        self.assertTrue(exec_start.startswith(SBINDIR.rstrip("/") + "/wsnotifyd "), exec_start)
        self.assertIn("$WSNOTIFYD_OPTS", exec_start)
        self.assertIn("--jwt-secret-file=${CREDENTIALS_DIRECTORY}/jwt-secret", exec_start)
        self.assertEqual(self.one("LoadCredential"), "jwt-secret:/etc/wsnotify/jwt-secret")
        self.assertEqual(self.one("EnvironmentFile"), "-/etc/default/wsnotifyd")

    def test_history_in_the_state_directory(self):
        """The store lives in /var/lib/wsnotify, systemd's StateDirectory for the
        unit (writable under ProtectSystem=strict, kept across restarts)."""
        self.assertEqual(self.one("StateDirectory"), "wsnotify")
        self.assertEqual(self.one("StateDirectoryMode"), "0700")
        self.assertIn("--data-dir /var/lib/wsnotify", self.one("ExecStart"))

    def test_limit_nofile_high(self):
        v = self.one("LimitNOFILE")
        soft = v.split(":")[0]
        self.assertTrue(soft == "infinity" or int(soft) >= 65536, v)

    def test_hardening(self):
        want = {
            "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
            "MemoryDenyWriteExecute": "yes", "SystemCallFilter": "@system-service",
            "SystemCallArchitectures": "native", "LockPersonality": "yes",
            "RestrictNamespaces": "yes", "RestrictRealtime": "yes",
            "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes", "CapabilityBoundingSet": "",
            "AmbientCapabilities": "",
        }
        for k, v in want.items():
            with self.subTest(key=k):
                self.assertEqual(self.one(k), v)
        self.assertEqual(set(self.one("RestrictAddressFamilies").split()),
                         {"AF_INET", "AF_INET6", "AF_UNIX"})

    def verify_copy(self, tmp, text, name="wsnotifyd.service"):
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                             capture_output=True, text=True, timeout=60)
        return out.returncode, (out.stdout + out.stderr).strip()

    def test_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze not installed")
        # verify checks that ExecStart's binary exists: point it at the built one.
        text = re.sub(r"^ExecStart=\S+", "ExecStart=" + WSNOTIFYD, self.text, flags=re.M)
        with tempfile.TemporaryDirectory(prefix="wsn-unit-") as tmp:
            rc, out = self.verify_copy(tmp, text)
            if rc != 0:
                # Tell "our unit is wrong" from "verify cannot run here" (no systemd
                # data, odd container): a trivial unit must pass for the result to count.
                crc, cout = self.verify_copy(
                    tmp, "[Unit]\nAfter=network.target\n[Service]\nExecStart=/bin/true\n"
                    "[Install]\nWantedBy=multi-user.target\n", "wsn-control.service")
                if crc != 0:
                    self.skipTest("systemd-analyze verify does not work here: " + cout[:300])
            self.assertEqual(rc, 0, out)
            # Unknown keys and bad values are only warnings: none may name our unit.
            ours = [l for l in out.splitlines() if "wsnotifyd.service" in l]
            self.assertEqual(ours, [], out)

    def test_systemd_analyze_security(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory(prefix="wsn-unit-") as tmp:
            path = os.path.join(tmp, "wsnotifyd.service")
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.text)
            out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                                  path], capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for wsnotifyd\.service: ([\d.]+)", out.stdout)
        if m is None:
            self.skipTest("systemd-analyze security --offline not supported: " +
                          (out.stderr or out.stdout)[:200])
        print("  systemd-analyze security: exposure %s" % m.group(1), file=sys.stderr)
        self.assertLess(float(m.group(1)), 4.0, out.stdout)


class NotifyListener:
    """A datagram socket like systemd's: records (time, sender pid, payload).
    On the first READY=1 it probes both ports at once, from this thread; on every
    READY=1 it also calls on_ready (when set) and keeps the result in at_ready."""

    def __init__(self, address, probe):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.probe = probe
        self.probe_result = None
        self.probed = threading.Event()
        self.messages = []           # [(monotonic, pid, {key: value}, raw)]
        self.on_ready = None         # called as each READY=1 arrives, e.g. to read the log
        self.at_ready = {}           # {index of the READY=1 message: on_ready()}
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(cdata[:UCRED.size])[0]
            fields = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
            hook = self.on_ready if fields.get("READY") == "1" else None
            seen = hook() if hook else None     # before the message is visible to wait_for
            with self.lock:
                if hook:
                    self.at_ready[len(self.messages)] = seen
                self.messages.append((now, pid, fields, data))
            if fields.get("READY") == "1" and not self.probed.is_set() and self.probe:
                self.probe_result = self.probe()
                self.probed.set()

    def probe_at_ready(self, timeout=10):
        """What probe() found right after the first READY=1 (None if no READY=1)."""
        self.probed.wait(timeout)
        return self.probe_result

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, pred, timeout, start=0):
        """Index of the first message (from index start) with pred(fields), or None."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.snapshot()
            for i in range(start, len(msgs)):
                if pred(msgs[i][2]):
                    return i
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def close(self):
        self.done = True
        self.thread.join(2)
        self.sock.close()


def probe_ports(d):
    """What a client sees right now: /health (workers count) and a gRPC TCP connect."""
    result = {}
    try:
        result["health"] = d.health(timeout=2.0)
    except Exception as e:       # noqa: BLE001 — reported by the test
        result["health"] = e
    try:
        socket.create_connection((d.host, d.grpc_port), timeout=2.0).close()
        result["grpc"] = True
    except OSError as e:
        result["grpc"] = e
    return result


def start_under_fake_systemd(address, env, workers, attempts=3):
    """-> (Daemon, NotifyListener) once READY=1 arrived (or the test's deadline)."""
    last = None
    for _ in range(attempts):
        if not address.startswith("@") and os.path.exists(address):
            os.unlink(address)
        d = wsnclient.Daemon(workers=workers, env=dict(env, NOTIFY_SOCKET=address))
        lst = NotifyListener(address.replace("@", "\0", 1) if address.startswith("@") else address,
                             lambda: probe_ports(d))
        d.start(wait=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and d.alive():
            if lst.wait_for(lambda f: f.get("READY") == "1", 0.1) is not None:
                return d, lst
        last = d.log_tail(30)
        lst.close()
        d.cleanup()
        if "in use" not in last:
            break
    raise AssertionError("no READY=1 within 15 s; log:\n%s" % last)


def is_ready(fields):
    return fields.get("READY") == "1"


def is_reloading(fields):
    return fields.get("RELOADING") == "1"


def reloaded_slots(lines, since):
    """Slots of the workers that logged `reloaded: ...` in lines[since:]."""
    return {ln.slot for ln in lines[since:] if ln.slot is not None and ln.msg.startswith("reloaded:")}


class NotifyProtocol(unittest.TestCase):
    """One daemon, --workers 4, WATCHDOG_USEC=1 s; the tests run in name order."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wsn-notify-")
        cls.address = os.path.join(cls.tmp, "notify")
        cls.d, cls.lst = start_under_fake_systemd(cls.address, {"WATCHDOG_USEC": "1000000"}, 4)
        cls.ready_index = cls.lst.wait_for(lambda f: f.get("READY") == "1", 0)

    @classmethod
    def tearDownClass(cls):
        cls.lst.close()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_ready_only_when_both_ports_accept(self):
        probe = self.lst.probe_at_ready()
        self.assertIsNotNone(probe)
        health = probe["health"]
        self.assertIsInstance(health, dict, "WebSocket port not answering at READY=1: %r" % health)
        self.assertEqual(health.get("status"), "healthy")
        self.assertEqual(health.get("workers"), 4, "not every worker accepting at READY=1")
        self.assertIs(probe["grpc"], True, "gRPC port not accepting at READY=1: %r" % probe["grpc"])
        # Exactly one READY=1 so far, and nothing else claimed readiness before it.
        readies = [m for m in self.lst.snapshot() if m[2].get("READY") == "1"]
        self.assertEqual(len(readies), 1)

    def test_2_workers_do_not_inherit_notify_socket(self):
        pids = self.d.worker_pids()
        self.assertEqual(len(pids), 4)
        for slot, pid in pids.items():
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            names = {e.split(b"=", 1)[0] for e in env if e}
            with self.subTest(slot=slot):
                self.assertNotIn(b"NOTIFY_SOCKET", names)
                self.assertNotIn(b"WATCHDOG_USEC", names)

    def test_3_status_counts(self):
        ready = self.lst.snapshot()[self.ready_index][2]
        self.assertRegex(ready.get("STATUS", ""), r"^0 connections, 4/4 workers accepting$")
        start = len(self.lst.snapshot())
        c = self.d.connect_user(7)
        try:
            self.assertEqual(c.recv_json(3)["type"], "connected")
            i = self.lst.wait_for(lambda f: f.get("STATUS") == "1 connection, 4/4 workers accepting",
                                  5, start)
            self.assertIsNotNone(i, "no STATUS= with the new connection: %r" % self.lst.snapshot()[start:])
        finally:
            c.close()
        i = self.lst.wait_for(lambda f: f.get("STATUS") == "0 connections, 4/4 workers accepting",
                              5, i + 1)
        self.assertIsNotNone(i, "no STATUS= after the connection closed")

    def test_4_watchdog_at_half_the_interval(self):
        t0 = time.monotonic()
        time.sleep(2.0)
        t1 = time.monotonic()
        n = sum(1 for m in self.lst.snapshot() if m[2].get("WATCHDOG") == "1" and t0 <= m[0] < t1)
        # WATCHDOG_USEC=1 s -> one every 0.5 s: about 4 in 2 s.
        self.assertGreaterEqual(n, 3, "too few WATCHDOG=1 in 2 s")
        self.assertLessEqual(n, 6, "too many WATCHDOG=1 in 2 s")

    def test_5_reload(self):
        start = len(self.lst.snapshot())
        log_start = len(self.d.log_lines())
        self.lst.on_ready = self.d.log_lines    # the log as it is when READY=1 arrives
        try:
            self.d.send_signal(signal.SIGHUP)
            i = self.lst.wait_for(is_reloading, 5, start)
            self.assertIsNotNone(i, "no RELOADING=1 after SIGHUP")
            fields = self.lst.snapshot()[i][2]
            mono = int(fields.get("MONOTONIC_USEC", "0"))
            self.assertLess(abs(mono - time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6), 10e6,
                            "MONOTONIC_USEC is not CLOCK_MONOTONIC now")
            j = self.lst.wait_for(is_ready, 5, i + 1)
            self.assertIsNotNone(j, "no READY=1 after RELOADING=1")
        finally:
            self.lst.on_ready = None
        self.assertEqual(reloaded_slots(self.lst.at_ready[j], log_start), {0, 1, 2, 3},
                         "READY=1 before every worker had reloaded")
        self.assertRegex(self.lst.snapshot()[j][2].get("STATUS", ""), r"4/4 workers accepting$")
        self.assertEqual(self.d.health()["workers"], 4)

    def test_6_reload_waits_for_a_stopped_worker_and_the_last_sighup(self):
        """One worker is SIGSTOPped: the other three reload, a second SIGHUP comes,
        still no READY=1 until the stopped worker runs again and reloads; then
        one READY=1 for both SIGHUPs."""
        slot, pid = 2, self.d.worker_pids()[2]
        start = len(self.lst.snapshot())
        log_start = len(self.d.log_lines())
        self.lst.on_ready = self.d.log_lines
        os.kill(pid, signal.SIGSTOP)
        try:
            self.d.send_signal(signal.SIGHUP)
            i = self.lst.wait_for(is_reloading, 5, start)
            self.assertIsNotNone(i, "no RELOADING=1 after SIGHUP")
            deadline = time.monotonic() + 5
            while reloaded_slots(self.d.log_lines(), log_start) != {0, 1, 3}:
                self.assertLess(time.monotonic(), deadline, "the running workers did not reload")
                time.sleep(0.02)
            self.d.send_signal(signal.SIGHUP)
            self.assertIsNotNone(self.lst.wait_for(is_reloading, 5, i + 1),
                                 "no RELOADING=1 after the second SIGHUP")
            time.sleep(1.0)
            self.assertEqual([m for m in self.lst.snapshot()[start:] if is_ready(m[2])], [],
                             "READY=1 while worker %d (stopped) had not reloaded" % slot)
        finally:
            os.kill(pid, signal.SIGCONT)
        try:
            j = self.lst.wait_for(is_ready, 5, start)
            self.assertIsNotNone(j, "no READY=1 once the stopped worker ran again")
        finally:
            self.lst.on_ready = None
        self.assertIn(slot, reloaded_slots(self.lst.at_ready[j], log_start))
        time.sleep(0.2)
        self.assertEqual(len([m for m in self.lst.snapshot()[start:] if is_ready(m[2])]), 1,
                         "not one READY=1 for the two SIGHUPs")
        self.assertEqual(self.d.health()["workers"], 4)

    def test_7_stop(self):
        start = len(self.lst.snapshot())
        rc = self.d.stop(timeout=20)
        self.assertEqual(rc, 0)
        msgs = self.lst.snapshot()
        stops = [k for k in range(start, len(msgs)) if msgs[k][2].get("STOPPING") == "1"]
        self.assertEqual(len(stops), 1, "STOPPING=1 not sent once: %r" % msgs[start:])
        self.assertFalse(any(m[2].get("READY") for m in msgs[stops[0]:]), "READY=1 after STOPPING=1")

    def test_8_every_datagram_from_the_master(self):
        msgs = self.lst.snapshot()
        self.assertTrue(msgs)
        senders = {m[1] for m in msgs}
        self.assertEqual(senders, {self.d.proc.pid},
                         "datagrams from %r, master is %d" % (senders, self.d.proc.pid))


def tcp_accepts(host, port):
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def children(pid):
    """The pids of pid's children (Linux /proc/PID/task/PID/children)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class ReadyWaitsForWorkers(unittest.TestCase):
    def test_ready_held_while_a_worker_is_not_accepting(self):
        """Workers normally start faster than gRPC, so READY=1 arriving after both
        ports accept proves little by itself. Here the worker is SIGSTOPped as
        soon as it exists, before it accepts (it logs `accepting` at debug
        level when it does; a run where it got there first is retried). The gRPC
        port accepts, yet no READY=1 until the worker runs again."""
        for attempt in range(8):
            tmp = tempfile.mkdtemp(prefix="wsn-early-")
            address = os.path.join(tmp, "notify")
            d = wsnclient.Daemon(workers=1, log_level="debug", env={"NOTIFY_SOCKET": address})
            lst = NotifyListener(address, lambda: probe_ports(d))
            try:
                d.start(wait=False)
                deadline = time.monotonic() + 10
                worker = None
                while worker is None and time.monotonic() < deadline:
                    kids = children(d.proc.pid)
                    if kids:
                        worker = kids[0]
                        os.kill(worker, signal.SIGSTOP)
                self.assertIsNotNone(worker, "the master never started a worker")
                time.sleep(0.2)
                if d.wait_log(lambda ln: ln.pid == worker and "accepting" in ln.msg, 0.1):
                    continue   # it was accepting before it stopped: try again
                deadline = time.monotonic() + 10
                while not tcp_accepts(d.host, d.grpc_port) and time.monotonic() < deadline:
                    self.assertTrue(d.alive(), d.log_tail(20))
                    time.sleep(0.05)
                self.assertTrue(tcp_accepts(d.host, d.grpc_port), "gRPC port never accepted")
                time.sleep(1.0)
                self.assertEqual([m for m in lst.snapshot() if m[2].get("READY")], [],
                                 "READY=1 while the worker was not accepting")
                os.kill(worker, signal.SIGCONT)
                self.assertIsNotNone(lst.wait_for(lambda f: f.get("READY") == "1", 10),
                                     "no READY=1 once the worker ran:\n" + d.log_tail(20))
                self.assertEqual(lst.probe_at_ready()["health"]["workers"], 1)
                self.assertIs(lst.probe_at_ready()["grpc"], True)
                self.assertEqual(d.stop(timeout=20), 0)
                return
            finally:
                lst.close()
                d.cleanup()
                shutil.rmtree(tmp, ignore_errors=True)
        self.fail("the worker was accepting before it could be stopped, 8 times")


class ReloadWaitsForASlowWorker(unittest.TestCase):
    """--workers 1 with a secret file; the worker is SIGSTOPped to make its
    reload slow (its SIGHUP waits, pending, until SIGCONT). The tests run in
    name order on one daemon; the last one stops it."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wsn-reload-")
        cls.secret_file = os.path.join(cls.tmp, "jwt-secret")
        cls.secret = "file-secret-" + wsnclient.b64url(os.urandom(12))
        with open(cls.secret_file, "w") as f:
            f.write(cls.secret + "\n")
        address = os.path.join(cls.tmp, "notify")
        cls.d = wsnclient.Daemon(workers=1, secret=cls.secret,
                                 extra_args=["--jwt-secret-file", cls.secret_file],
                                 env={"NOTIFY_SOCKET": address})
        cls.lst = NotifyListener(address, None)
        try:
            cls.d.start()
            if cls.lst.wait_for(is_ready, 10) is None:
                raise AssertionError("no READY=1 at start:\n" + cls.d.log_tail(20))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lst.close()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def readies_since(self, start):
        return [m for m in self.lst.snapshot()[start:] if is_ready(m[2])]

    def sighup_with_the_worker_stopped(self):
        """SIGSTOP the worker, SIGHUP the master. -> (pid, notify index, log index)"""
        pid = self.d.worker_pids()[0]
        start = len(self.lst.snapshot())
        log_start = len(self.d.log_lines())
        os.kill(pid, signal.SIGSTOP)
        self.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.lst.wait_for(is_reloading, 5, start), "no RELOADING=1")
        forwarded = self.d.wait_log(
            lambda ln: ln.role == "master" and "SIGHUP: forwarding" in ln.msg, 5, log_start)
        self.assertIsNotNone(forwarded, "the master did not forward SIGHUP:\n" + self.d.log_tail(20))
        return pid, start, log_start

    def test_1_ready_waits_for_a_slow_reload(self):
        self.lst.on_ready = self.d.log_lines
        try:
            pid, start, log_start = self.sighup_with_the_worker_stopped()
            time.sleep(1.0)
            self.assertEqual(self.readies_since(start), [], "READY=1 before the worker reloaded")
            os.kill(pid, signal.SIGCONT)
            j = self.lst.wait_for(is_ready, 5, start)
            self.assertIsNotNone(j, "no READY=1 after the worker reloaded:\n" + self.d.log_tail(20))
        finally:
            self.lst.on_ready = None
        self.assertEqual(reloaded_slots(self.lst.at_ready[j], log_start), {0})

    def test_2_ready_anyway_when_a_worker_is_stuck(self):
        """The wait is bounded (5 s): READY=1 follows with a warning naming the
        worker; its late reload then sends nothing more."""
        pid, start, log_start = self.sighup_with_the_worker_stopped()
        try:
            j = self.lst.wait_for(is_ready, 10, start)
            self.assertIsNotNone(j, "no READY=1 while a worker was stuck reloading")
            msgs = self.lst.snapshot()
            i = self.lst.wait_for(is_reloading, 0, start)
            self.assertGreater(msgs[j][0] - msgs[i][0], 3.0, "READY=1 came before the bound")
            warn = self.d.wait_log(lambda ln: ln.role == "master" and ln.msg.startswith("reload:") and
                                   "worker 0 (pid %d)" % pid in ln.msg, 2, log_start)
            self.assertIsNotNone(warn, "no warning naming the slow worker:\n" + self.d.log_tail(20))
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertIsNotNone(self.d.wait_log(lambda ln: ln.slot == 0 and ln.msg.startswith("reloaded:"),
                                             5, log_start))
        time.sleep(0.2)
        self.assertEqual(len(self.readies_since(start)), 1)

    def test_3_a_fifo_never_blocks_a_reload(self):
        """The secret file replaced by a FIFO (nobody ever writes it): on SIGHUP
        the master and the worker refuse it at once as not a regular file,
        keep the secrets they had, and READY=1 follows without delay."""
        start = len(self.lst.snapshot())
        log_start = len(self.d.log_lines())
        os.unlink(self.secret_file)
        os.mkfifo(self.secret_file, 0o600)
        try:
            self.d.send_signal(signal.SIGHUP)
            j = self.lst.wait_for(is_ready, 3, start)
            self.assertIsNotNone(j, "no prompt READY=1 with a FIFO secret file:\n" + self.d.log_tail(20))
            for role in ("master", "worker"):
                line = self.d.wait_log(lambda ln: (ln.role or "").startswith(role) and
                                       "not a regular file" in ln.msg, 2, log_start)
                self.assertIsNotNone(line, "the %s did not refuse the FIFO:\n%s"
                                     % (role, self.d.log_tail(20)))
            c = self.d.connect_user(7)   # the old secret still verifies
            self.assertIsInstance(c, wsnclient.WSConnection)
            c.abort()
        finally:
            os.unlink(self.secret_file)
            with open(self.secret_file, "w") as f:
                f.write(self.secret + "\n")

    def test_4_no_ready_after_stopping(self):
        """SIGTERM while waiting for the worker: STOPPING=1, and never READY=1 after it,
        even when the worker then finishes its reload."""
        pid, start, _ = self.sighup_with_the_worker_stopped()
        self.d.send_signal(signal.SIGTERM)
        k = self.lst.wait_for(lambda f: f.get("STOPPING") == "1", 5, start)
        self.assertIsNotNone(k, "no STOPPING=1")
        os.kill(pid, signal.SIGCONT)    # the worker finishes the reload, then stops
        self.assertEqual(self.d.wait_exit(20), 0, self.d.log_tail(20))
        self.assertEqual(self.readies_since(start), [], "READY=1 during or after stopping")


class FifoSecretAtStart(unittest.TestCase):
    def test_fifo_secret_file_refused_at_start(self):
        """A FIFO as --jwt-secret-file stops the daemon at once (exit 1), naming it."""
        tmp = tempfile.mkdtemp(prefix="wsn-fifo-")
        fifo = os.path.join(tmp, "jwt-secret")
        os.mkfifo(fifo, 0o600)
        try:
            r = subprocess.run([os.environ["WSNOTIFYD"], "--jwt-secret-file", fifo,
                                "--port", str(wsnclient.free_port()),
                                "--grpc-port", str(wsnclient.free_port())],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"not a regular file", r.stderr)
            self.assertIn(fifo.encode(), r.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class NotifyAbstractSocket(unittest.TestCase):
    def test_abstract_address_and_foreign_watchdog_pid(self):
        """@name (abstract namespace) works; WATCHDOG_PID naming another process
        means no watchdog here."""
        address = "@wsn-e2e-%d-%s" % (os.getpid(), wsnclient.b64url(os.urandom(6)))
        d, lst = start_under_fake_systemd(
            address, {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, 1)
        try:
            self.assertEqual(lst.probe_at_ready()["health"]["workers"], 1)
            time.sleep(0.6)
            self.assertFalse([m for m in lst.snapshot() if m[2].get("WATCHDOG")])
            self.assertEqual(d.stop(timeout=20), 0)
            self.assertIsNotNone(lst.wait_for(lambda f: f.get("STOPPING") == "1", 2))
            self.assertEqual({m[1] for m in lst.snapshot()}, {d.proc.pid})
        finally:
            lst.close()
            d.cleanup()


if __name__ == "__main__":
    es.unittest_main()

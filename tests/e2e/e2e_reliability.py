#!/usr/bin/env python3
"""e2e_reliability.py — the failure modes of README "Reliability", end to end
against the real daemon: one connection per user under any interleaving of
racing connections, a stuck worker that slows nobody else, bounded
unauthenticated handshakes, floods of control frames, truthful accounting of
every SendNotification call, and the stricter HTTP answers.

Run by automake as `python3 -B tests/e2e/e2e_reliability.py` with
WSNOTIFYD=<daemon binary>. Exit 0 = all passed, 1 = failures; the last line is
`N passed, M failed`.
"""

import itertools
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
import e2e_grpc as eg  # noqa: E402 — stubs and channel options (exits 77 without grpcio)
import grpc  # noqa: E402
from wsnclient import OP_PING, OP_PONG  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
TEST_TIMEOUT = 90          # seconds, per test
GLOBAL_TIMEOUT = 240       # seconds, whole file

_uids = itertools.count(700000 + (os.getpid() % 97) * 10000)


def next_uid():
    return next(_uids)


def race_handshakes(d, user, n):
    """n upgrades of one user sent as close together as possible: every TCP
    connection is opened first, then every request goes out in one sweep.
    -> the answers (WSConnection or HTTPResponse), in sending order."""
    tok = d.token(user)
    req = ("GET /ws?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %%s\r\n\r\n"
           % (tok, d.host, d.port))
    pend = []
    for _ in range(n):
        s = socket.create_connection((d.host, d.port), timeout=5)
        key = wc._ws_key()
        pend.append((s, key))
    for s, key in pend:
        s.sendall((req % key).encode("ascii"))
    out = []
    for s, key in pend:
        s.setblocking(False)
        out.append(wc.finish_handshake(wc._Pending(s, key, time.monotonic() + 5)))
    return out


def port_for_worker(d, slot, tries=200):
    """A source port whose connections land on worker slot. SO_REUSEPORT picks
    the worker from the connection's addresses, so a port that once reached
    slot reaches it again: probe ports with throw-away users (their
    connection reset, never closed, so nothing lingers)."""
    for _ in range(tries):
        probe_user = next_uid()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = connect_from(d, probe_user, port)
        if not isinstance(c, wc.WSConnection):
            continue
        c.recv_json(3)
        got = d.worker_of(probe_user, timeout=3)
        wc.reset(c)
        if got == slot:
            return port
    raise AssertionError("no source port reached worker %d" % slot)


def connect_on_worker(d, user, slot, port=None):
    """A connection of user held by worker slot (from port, when it is known
    to reach slot already). -> WSConnection"""
    for _ in range(20):
        c = connect_from(d, user, port if port is not None else port_for_worker(d, slot))
        if isinstance(c, wc.WSConnection) and d.worker_of(user, nth=-1, timeout=3) == slot:
            return c
        port = None
    raise AssertionError("no connection of user %d landed on worker %d" % (user, slot))


def connect_from(d, user, port, timeout=5.0):
    """An upgrade of user from source port port. -> WSConnection or HTTPResponse"""
    return wc.finish_handshake(
        wc.start_handshake_from(d.host, d.port, port, "/ws?token=" + d.token(user), None, timeout))


def metric(d, name, labels=""):
    """One sample of /metrics (0 when absent)."""
    r = d.http("GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


class DaemonClass(es.DaemonTestCase):
    """One daemon per class, started with ARGS and WORKERS."""
    ARGS = ()
    WORKERS = 4
    TIMEOUT = TEST_TIMEOUT

    @classmethod
    def setUpClass(cls):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            raise unittest.SkipTest("WSNOTIFYD not set to an executable daemon")
        cls.d = wc.Daemon(WSNOTIFYD, workers=cls.WORKERS, extra_args=list(cls.ARGS),
                          name=cls.__name__)
        cls.d.start()


class ReliabilityTest(DaemonClass):
    ARGS = ("--max-connects-per-minute", "0", "--max-messages-per-second", "0")

    def test_eviction_race_leaves_exactly_one(self):
        """Many rounds of 8 connections of one user racing over 4 workers: once
        they settle, exactly one is open and every other was closed with 4000."""
        rounds, per_round = 40, 8
        bad = []
        for r in range(rounds):
            user = next_uid()
            conns = race_handshakes(self.d, user, per_round)
            ws = [c for c in conns if isinstance(c, wc.WSConnection)]
            self.clients.extend(ws)
            self.assertEqual(len(ws), per_round, "not every racing upgrade got a 101: %r" % conns)
            # Settle: every connection but one must see its 4000 within a bound.
            deadline = time.monotonic() + 3.0
            closed = wc.collect_closes(ws, per_round - 1, deadline, step=0.02)
            time.sleep(0.2)   # a late, wrong 4000 to the survivor would show here
            for i, c in enumerate(ws):
                if i in closed:
                    continue
                try:
                    c.recv_message(0.01)
                except wc.WSClosed as e:
                    closed[i] = (e.code, e.reason)
                except (wc.WSEOF, wc.WSTimeout):
                    pass
            open_ones = [i for i in range(per_round) if i not in closed]
            codes = sorted(set(code for code, _ in closed.values()))
            if len(open_ones) != 1 or codes != [4000]:
                bad.append("round %d user %d: open %r, close codes %r" % (r, user, open_ones, codes))
            else:
                # The survivor is the one the directory routes to.
                survivor = ws[open_ones[0]]
                res = self.d_send(user)
                if not res.delivered:
                    bad.append("round %d: survivor not routed to" % r)
                else:
                    msg = survivor.recv_json(3)
                    if msg.get("type") != "notification":
                        bad.append("round %d: survivor got %r" % (r, msg))
            for c in ws:
                c.abort()
        self.assertEqual(bad, [], "\n".join(bad))


    def test_stuck_worker_slows_nobody_and_loses_no_eviction(self):
        """One worker SIGSTOPped with its queue full: calls for users of the
        other workers keep their latency (the endpoint never waits for the
        stuck one), its notifications are answered delivered=false, counted
        and logged; an eviction that could not be queued to it is not lost:
        once it runs again its displaced session gets 4000."""
        d = self.d
        stuck = 1
        subject, flood = next_uid(), next_uid()
        old = connect_on_worker(d, subject, stuck)          # displaced later
        self.clients.append(old)
        old.recv_json(3)
        victim = connect_on_worker(d, flood, stuck)        # whose queue we fill
        self.clients.append(victim)
        victim.recv_json(3)
        others = []
        for slot in (0, 2, 3):
            u = next_uid()
            c = connect_on_worker(d, u, slot)
            self.clients.append(c)
            c.recv_json(3)
            others.append((u, c))
        baseline = []
        for i in range(60):
            u, c = others[i % len(others)]
            t0 = time.monotonic()
            self.assertTrue(grpc_send(d, u).delivered)
            baseline.append(time.monotonic() - t0)
            c.recv_json(3)
        dropped_before = metric(d, "wsnotify_notifications_total", '{outcome="dropped"}')
        # Found while every worker runs: a probe must not land on the stopped one.
        port0 = port_for_worker(d, 0)
        pid = d.worker_pids()[stuck]
        os.kill(pid, signal.SIGSTOP)
        try:
            body = "x" * 16000
            full = False
            for _ in range(5000):
                if not grpc_send(d, flood, message=body).delivered:
                    full = True
                    break
            self.assertTrue(full, "the stuck worker's queue never filled")
            # Keep hammering the stuck worker from four threads while timing
            # calls for the others.
            stop = threading.Event()
            answers = []

            def hammer():
                while not stop.is_set():
                    answers.append(grpc_send(d, flood, message=body).delivered)
            threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
            for t in threads:
                t.start()
            during = []
            for i in range(60):
                u, c = others[i % len(others)]
                t0 = time.monotonic()
                self.assertTrue(grpc_send(d, u).delivered)
                during.append(time.monotonic() - t0)
                c.recv_json(3)
            stop.set()
            for t in threads:
                t.join(15)
            self.assertTrue(answers and not any(answers),
                            "notifications for the stuck worker's user: %r" % answers[:10])
            # The endpoint never waits on the stuck queue: the others' median
            # stays that of a call, far below the 20 ms a bounded wait costs.
            self.assertLess(percentile(during, 0.5), max(0.010, 3 * percentile(baseline, 0.5)),
                            "median %.1f ms while a worker is stuck (%.1f ms before)"
                            % (1000 * percentile(during, 0.5), 1000 * percentile(baseline, 0.5)))
            self.assertIsNotNone(d.wait_log(lambda ln: "queue of worker %d is full" % stuck in ln.msg,
                                            3))
            # A newer connection of subject elsewhere: its EVICT cannot be queued.
            newer = connect_from(d, subject, port0)
            self.assertIsInstance(newer, wc.WSConnection)
            self.clients.append(newer)
            newer.recv_json(3)
            self.assertIsNotNone(d.wait_log(
                lambda ln: "cannot queue the eviction of UserID=%d" % subject in ln.msg, 3))
        finally:
            os.kill(pid, signal.SIGCONT)
        # Read once it runs again: an HTTP request may land on any worker.
        self.assertGreaterEqual(
            metric(d, "wsnotify_notifications_total", '{outcome="dropped"}') - dropped_before,
            len(answers) + 1)
        victim.abort()
        code, reason = old.wait_closed(10)
        self.assertEqual((code, reason), (4000, "replaced by a newer connection"))
        self.assertTrue(newer.is_open())
        self.assertTrue(grpc_send(d, subject).delivered)
        self.assertEqual(newer.recv_json(3)["type"], "notification")

    def test_ping_flood_is_coalesced_and_closed(self):
        """A burst of pings is answered by far fewer pongs (the latest ping is
        answered once per read), and a client over 100 ping/pong frames in a
        second is closed with 1008; another client's ping stays fast."""
        flooder = self.d.connect_user(next_uid())
        other = self.d.connect_user(next_uid(), auto_pong=False)
        self.clients += [flooder, other]
        flooder.recv_json(3)
        other.recv_json(3)
        burst = b"".join(wc.encode_frame(OP_PING, b"%d" % i) for i in range(5000))
        flooder.send_raw(burst)
        pongs = 0
        closed = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and closed is None:
            try:
                f = flooder.recv_frame(5)
            except wc.WSEOF:
                break
            if f.opcode == OP_PONG:
                pongs += 1
            elif f.opcode == wc.OP_CLOSE:
                closed = wc.parse_close_payload(f.payload)
        self.assertEqual(closed, (1008, "control frame flood"))
        self.assertLess(pongs, 200, "5000 pings were answered by %d pongs" % pongs)
        t0 = time.monotonic()
        other.send_ping(b"hi")
        f = other.recv_frame(3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"hi"))
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_every_call_counted_once(self):
        """Every SendNotification call lands in exactly one outcome:
        delivered, offline, not pushed, invalid (undecodable requests too)."""
        d = self.d
        def total():
            r = d.http("GET", "/metrics")
            return sum(float(l.split()[-1]) for l in r.body.decode().splitlines()
                       if l.startswith("wsnotify_notifications_total{"))
        before = total()
        u = next_uid()
        c = d.connect_user(u)
        self.clients.append(c)
        c.recv_json(3)
        calls = 0
        for user, push in ((u, True), (next_uid(), True), (u, False)):
            grpc_send(d, user, send_push=push)             # delivered, offline, not pushed
            calls += 1
        with self.assertRaises(grpc.RpcError):
            grpc_send(d, 0)                                # invalid
        calls += 1
        # An undecodable request: bytes that are no SendNotificationRequest.
        grpc_stub(d)
        ch = _GRPC[d.grpc_port][0]
        raw = ch.unary_unary("/notification.NotificationService/SendNotification",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        calls += 1
        self.assertEqual(total() - before, calls)

    def test_http_strictness(self):
        """HTTP/1.1 without Host -> 400; a 426 names the version it wants."""
        r = self.d.http("GET", "/health", raw=b"GET /health HTTP/1.1\r\n\r\n")
        self.assertEqual(r.status, 400)
        r = self.d.http("GET", "/health", raw=b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertEqual(r.status, 400)
        r = self.d.http("GET", "/health", raw=b"GET /health HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200)
        r = self.d.http("GET", "/ws?token=x", headers={"Connection": "Upgrade"})
        self.assertEqual(r.status, 426)
        self.assertEqual(r.header("Sec-WebSocket-Version"), "13")

    # ---- helpers
    def d_send(self, user, **kw):
        return grpc_send(self.d, user, **kw)


class BoundsTest(DaemonClass):
    """One worker with small bounds: --max-handshakes 64, --max-pending-output 1 (MiB)."""
    ARGS = ("--max-connects-per-minute", "0", "--max-handshakes", "64",
            "--max-pending-output", "1")
    WORKERS = 1

    def test_handshakes_bounded(self):
        """200 clients that send half a request and stall: the worker keeps at
        most 64, closing the oldest for each newcomer, and a real client
        still gets in at once."""
        stalled = []
        try:
            for _ in range(200):
                s = socket.create_connection((self.d.host, self.d.port), timeout=5)
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000)
                stalled.append(s)
            time.sleep(1.0)
            alive = 0
            for s in stalled:
                s.setblocking(False)
                try:
                    alive += s.recv(1) != b""      # b"" = closed by the server
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            self.assertLessEqual(alive, 64, "%d stalled handshakes held" % alive)
            self.assertGreaterEqual(alive, 32)
            self.assertIsNotNone(self.d.wait_log(lambda ln: "--max-handshakes" in ln.msg, 3))
            c = self.d.connect_user(next_uid())
            self.clients.append(c)
            self.assertIsInstance(c, wc.WSConnection)
            self.assertEqual(c.recv_json(3)["type"], "connected")
        finally:
            for s in stalled:
                s.close()

    def test_pending_output_bounded(self):
        """Two clients that never read on one worker: once their unsent output
        together passes --max-pending-output (1 MiB), the one adding to it is
        dropped (each stays under the 1 MiB per-connection bound), logged."""
        users = [next_uid(), next_uid()]
        slow = []
        for u in users:
            c = self.d.connect_user(u)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.recv_json(3)
            self.clients.append(c)
            slow.append(c)
        body = "y" * 16000
        dropped = None
        for i in range(3000):
            u = users[i % 2]
            if not grpc_send(self.d, u, message=body).delivered:
                dropped = u
                break
        self.assertIsNotNone(dropped, "nobody was dropped")
        line = self.d.wait_log(lambda ln: "UserID=%d: this worker's unsent output reached "
                               "--max-pending-output" % dropped in ln.msg, 5)
        self.assertIsNotNone(line)


class MasterTest(es.DaemonTestCase):
    """Each test starts (and stops) its own daemon."""
    TIMEOUT = TEST_TIMEOUT

    def start(self, workers=2, args=()):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            self.skipTest("WSNOTIFYD not set")
        d = wc.Daemon(WSNOTIFYD, workers=workers, extra_args=list(args), name=self.id())
        self.daemons.append(d)
        d.start()
        return d

    def setUp(self):
        super().setUp()
        self.daemons = []

    def tearDown(self):
        super().tearDown()
        for d in self.daemons:
            d.cleanup()

    def _daemons(self):
        return self.daemons

    def test_stop_keeps_the_loop_running(self):
        """SIGTERM with a gRPC stream open: the drain waits for it, and meanwhile
        the master's loop still runs: a worker killed during the drain is reaped
        (and logged) at once, not after the drain."""
        d = self.start()
        import queue
        rpb, Stub = eg.REFLECTION["v1"]
        requests = queue.Queue()

        def request_stream():
            while True:
                r = requests.get(timeout=20)
                if r is None:
                    return
                yield r
        ch = grpc.insecure_channel("127.0.0.1:%d" % d.grpc_port, options=eg.CHANNEL_OPTIONS)
        stream = Stub(ch).ServerReflectionInfo(request_stream(), timeout=20)
        requests.put(rpb.ServerReflectionRequest(list_services=""))
        self.assertTrue(next(stream).HasField("list_services_response"))
        pid = d.worker_pids()[1]
        d.send_signal(signal.SIGTERM)
        self.assertIsNotNone(d.wait_log(lambda ln: "stopping the gRPC endpoint" in ln.msg, 3))
        time.sleep(0.5)             # lame duck over: draining, the stream still open
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        line = d.wait_log(lambda ln: ln.role == "master" and "(pid %d) killed by signal 9" % pid
                          in ln.msg, 4)
        self.assertIsNotNone(line, "the dead worker was not reaped during the drain")
        self.assertLess(time.monotonic() - t0, 2.0)
        requests.put(None)
        ch.close()
        self.assertEqual(d.wait_exit(20), 0)

    def test_no_phantom_signals_from_forked_children(self):
        """SIGHUPs sent to the whole process group while workers are being
        respawned: a child between fork and exec must not pass one on to the
        master, so the master handles at most as many SIGHUPs as it got."""
        d = self.start(workers=2)
        sent = 0
        log_start = len(d.log_lines())
        for round_ in range(6):
            slot = round_ % 2
            pid = d.worker_pids()[slot]
            os.kill(pid, signal.SIGKILL)
            until = time.monotonic() + 0.25 * (1 + round_ // 2) + 0.3
            while time.monotonic() < until:
                os.killpg(d.proc.pid, signal.SIGHUP)
                sent += 1
                time.sleep(0.002)
            deadline = time.monotonic() + 5
            while d.worker_pids().get(slot) == pid and time.monotonic() < deadline:
                time.sleep(0.02)
        time.sleep(0.5)
        handled = sum(1 for ln in d.log_lines()[log_start:]
                      if ln.role == "master" and "SIGHUP: forwarding" in ln.msg)
        self.assertGreater(handled, sent // 4, "the master hardly handled any SIGHUP")
        self.assertLessEqual(handled, sent, "the master handled %d SIGHUPs, %d were sent"
                             % (handled, sent))
        self.assertTrue(d.alive())

    def test_health_not_serving_without_workers(self):
        """grpc.health.v1 Check answers NOT_SERVING while no worker accepts
        connections (here: the secret file vanished, so restarted workers
        cannot start), SERVING again once one does."""
        tmp = tempfile.mkdtemp(prefix="wsn-health-")
        self.addCleanup(shutil.rmtree, tmp, True)
        secret = os.path.join(tmp, "secret")
        with open(secret, "w") as f:
            f.write("health-secret\n")
        d = self.start(workers=1, args=["--jwt-secret-file", secret])
        ch = grpc.insecure_channel("127.0.0.1:%d" % d.grpc_port, options=eg.CHANNEL_OPTIONS)
        health = eg.hpbg.HealthStub(ch)
        S = eg.hpb.HealthCheckResponse
        check = lambda: health.Check(eg.hpb.HealthCheckRequest(service=""), timeout=5).status
        self.assertEqual(check(), S.SERVING)
        os.rename(secret, secret + ".away")
        os.kill(d.worker_pids()[0], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while check() != S.NOT_SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(check(), S.NOT_SERVING)
        os.rename(secret + ".away", secret)
        deadline = time.monotonic() + 15
        while check() != S.SERVING and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(check(), S.SERVING)
        ch.close()


_GRPC = {}
_STUBS_DIR = tempfile.mkdtemp(prefix="wsn-rel-stubs-")
eg.generate_stubs(_STUBS_DIR)


def grpc_stub(d):
    """The NotificationService stub for d's gRPC port (python3-grpcio; the
    stubs are generated at run time by e2e_grpc.generate_stubs)."""
    key = d.grpc_port
    if key not in _GRPC:
        ch = grpc.insecure_channel("127.0.0.1:%d" % key, options=eg.CHANNEL_OPTIONS)
        grpc.channel_ready_future(ch).result(timeout=10)
        _GRPC[key] = (ch, eg.pbg.NotificationServiceStub(ch))
    return _GRPC[key][1]


def grpc_send(d, user, title="t", message="m", timeout=10, **kw):
    req = eg.pb.SendNotificationRequest(user_id=user, type="test", title=title, message=message,
                                        send_push=kw.pop("send_push", True), **kw)
    return grpc_stub(d).SendNotification(req, timeout=timeout)


if __name__ == "__main__":
    if es.no_daemon(WSNOTIFYD):
        sys.exit(77)
    es.raise_nofile_limit()
    try:
        with es.watchdog(GLOBAL_TIMEOUT, "e2e_reliability: global timeout"):
            status = es.run_unittest_file(sys.modules[__name__], sys.argv[1:])
    finally:
        shutil.rmtree(_STUBS_DIR, ignore_errors=True)
    sys.exit(status)

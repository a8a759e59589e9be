#!/usr/bin/env python3
"""e2e_history.py — SPEC.md "History" end to end, against the real daemon:
offline delivery, resume with `last_id` / `Last-Event-ID` and `recovered`,
--history-size / --history-ttl / --data-max-size, acks and
GetNotificationStatus, `wait_ack_ms`, caller ids (`duplicate`),
SendNotifications, Broadcast, server ids, durability across SIGTERM and
SIGKILL on one --data-dir, and the resume race: a sender running
continuously while clients disconnect, resume, reconnect without last_id and
race two connections of one user over different workers, many rounds; every
connection must get each notification exactly once, none skipped.

Run: WSNOTIFYD=./wsnotifyd WSNOTIFYCTL=./wsnotifyctl WSN_SRCDIR=<source dir> \
     /usr/bin/python3 -B tests/e2e/e2e_history.py [Class.test_name ...]
Exit 0 = all passed, 1 = failures, 77 = skipped (no daemon, no grpcio). The
last line is `N passed, M failed`. Bounded by a watchdog.
"""

import calendar
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
import e2e_grpc as eg  # noqa: E402 — stubs and channel options (exits 77 without grpcio)
import grpc  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL") or os.path.join(os.path.dirname(WSNOTIFYD), "wsnotifyctl")
TEST_TIMEOUT = 45          # seconds, per test
GLOBAL_TIMEOUT = 175       # seconds, whole file
RPC_TIMEOUT = 10
ID_LIMIT = 2 ** 53
IA = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TS_MS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOTIF_KEYS = {"id", "title", "message", "notification_type", "link", "timestamp"}
FAST = ("--max-connects-per-minute", "0", "--max-messages-per-second", "0")

_uids = itertools.count(3000000 + (os.getpid() % 97) * 20000)


def next_uid():
    return next(_uids)


# --------------------------------------------------------------------------- gRPC

stub = eg.notification_stub
close_channel = eg.close_notification_channel
req = eg.notification_request


def send(d, user, timeout=RPC_TIMEOUT, **kw):
    return stub(d).SendNotification(req(user, **kw), timeout=timeout)


def send_timed(d, user, **kw):
    """-> (response, wall time before, wall time after)"""
    t0 = time.time()
    r = send(d, user, **kw)
    return r, t0, time.time()


def rpc_error(fn, *a, **kw):
    """The grpc.RpcError fn raises, or None."""
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e
    return None


def status(d, user, nid):
    """-> NotificationStatus, or None when NOT_FOUND (any other error raises)."""
    try:
        return stub(d).GetNotificationStatus(
            eg.pb.GetNotificationStatusRequest(user_id=user, notification_id=nid), timeout=RPC_TIMEOUT)
    except grpc.RpcError as e:
        if e.code() == NOT_FOUND:
            return None
        raise


def state_name(st):
    if st is None:
        return "NOT_FOUND"
    return eg.pb.NotificationStatus.State.Name(st.state)


def wait_state(d, user, nid, want, timeout=2.0):
    """Poll GetNotificationStatus until its state is want. -> (state name, status)"""
    deadline = time.monotonic() + timeout
    while True:
        st = status(d, user, nid)
        if state_name(st) == want or time.monotonic() >= deadline:
            return state_name(st), st
        time.sleep(0.02)


# --------------------------------------------------------------------------- WebSocket

def ws_path(d, user, last_id=None, token_first=True):
    tok = "token=" + d.token(user)
    if last_id is None:
        return "/ws?" + tok
    lid = "last_id=" + str(last_id)
    return "/ws?" + (tok + "&" + lid if token_first else lid + "&" + tok)


def upgrade(d, path, headers=None, src_port=None, timeout=5.0):
    """A WebSocket upgrade of path, optionally from a given source port.
    -> WSConnection or HTTPResponse"""
    if src_port is None:
        return d.connect(path, headers, timeout)
    p = wc.start_handshake_from(d.host, d.port, src_port, path, headers, timeout)
    return wc.finish_handshake(p)


def connected_data(user):
    return {"user_id": user, "email": "user%d@example.com" % user,
            "message": "Connected to notifications"}


def parse_ts(ts):
    """RFC 3339 UTC (Z, optional fraction) -> seconds since the epoch (float)."""
    base, _, frac = ts[:-1].partition(".")
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return t + (float("0." + frac) if frac else 0.0)


def probe_slot_ports(d, per_slot, max_probes=600):
    """{slot: [source ports]} such that a connection from that port lands on
    that worker (SO_REUSEPORT hashes the addresses): probe with throw-away
    users, reset each probe so the port is free again."""
    pools = {s: [] for s in range(d.workers)}
    for _ in range(max_probes):
        if all(len(p) >= per_slot for p in pools.values()):
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        pu = next_uid()
        c = upgrade(d, ws_path(d, pu), src_port=port)
        if not isinstance(c, wc.WSConnection):
            continue
        try:
            c.recv_json(3)
        finally:
            wc.reset(c)
        slot = d.worker_of(pu, timeout=3)
        if slot is not None and len(pools.get(slot, ())) < per_slot:
            pools[slot].append(port)
    return pools


# --------------------------------------------------------------------------- base classes

class HistoryCase(es.DaemonTestCase):
    """Helpers shared by every class; the class's daemon (if any) in cls.d."""
    TIMEOUT = TEST_TIMEOUT

    def open_ws(self, user, last_id=None, headers=None, token_first=True, d=None):
        """A connection of user (with last_id in the query when given) that got its
        `connected` message. -> (WSConnection, connected data)"""
        d = d or self.d
        c = upgrade(d, ws_path(d, user, last_id, token_first), headers)
        self.assertIsInstance(c, wc.WSConnection, "user %d (last_id=%r, headers=%r) was not "
                              "upgraded: %r" % (user, last_id, headers, c))
        self.clients.append(c)
        m = c.recv_json(5)
        self.assertEqual(m.get("type"), "connected", "user %d: first message %r" % (user, m))
        return c, m.get("data", {})

    def assert_connected(self, data, user, recovered=None, what=""):
        """connected data exactly as SPEC says: with "recovered" iff recovered is not None."""
        want = connected_data(user)
        if recovered is not None:
            want["recovered"] = recovered
        self.assertEqual(data, want, "%s: connected data %r, expected %r" % (what, data, want))

    def recv_notifs(self, c, n, what, timeout=5.0):
        """The next n messages, each a notification. -> [data]"""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                m = c.recv_json(max(0.01, deadline - time.monotonic()))
            except wc.WSTimeout:
                self.fail("%s: got %d notification(s) %r, expected %d" % (
                    what, len(out), [x["id"] for x in out], n))
            self.assertEqual(m.get("type"), "notification", "%s: unexpected message %r after %r"
                             % (what, m, [x["id"] for x in out]))
            data = m.get("data", {})
            self.assertEqual(set(data), NOTIF_KEYS, "%s: data keys %r" % (what, sorted(data)))
            out.append(data)
        return out

    def recv_ids(self, c, n, what, timeout=5.0):
        return [x["id"] for x in self.recv_notifs(c, n, what, timeout)]

    def expect_quiet(self, c, what, secs=0.4):
        """Nothing more arrives: no message within secs, and a ping's pong is the next one."""
        try:
            m = c.recv_json(secs)
            self.fail("%s: unexpected message %r" % (what, m))
        except wc.WSTimeout:
            pass
        c.send_text('{"type":"ping"}')
        m = c.recv_json(3)
        self.assertEqual(m.get("type"), "pong", "%s: expected the pong, got %r" % (what, m))

    def close(self, c):
        try:
            c.close(1000, "", timeout=3)
        except wc.WSError:
            c.abort()

    def assert_code(self, e, code, what, details=None):
        self.assertIsNotNone(e, "%s: succeeded, expected %s" % (what, code.name))
        self.assertEqual(e.code(), code, "%s: got %s %r, expected %s" % (
            what, e.code().name, e.details(), code.name))
        if details is not None:
            self.assertIn(details, e.details() or "", "%s: details %r do not contain %r"
                          % (what, e.details(), details))

    def assert_ts(self, ts, t0, t1, what):
        """ts: RFC 3339 UTC with Z, taken between wall times t0 and t1 (1 s of slack:
        the message has whole seconds)."""
        self.assertTrue(isinstance(ts, str) and TS_RE.match(ts), "%s: timestamp %r is not RFC 3339 "
                        "UTC with Z" % (what, ts))
        t = parse_ts(ts)
        self.assertTrue(t0 - 1.0 <= t <= t1 + 1.0, "%s: timestamp %s not within the call (%.3f..%.3f)"
                        % (what, ts, t0, t1))

    def assert_state(self, user, nid, want, what, timeout=2.0):
        got, st = wait_state(self.d, user, nid, want, timeout)
        self.assertEqual(got, want, "%s: GetNotificationStatus(user %d, id %d) = %s, expected %s"
                         % (what, user, nid, got, want))
        return st


class DaemonClass(HistoryCase):
    """One daemon per class, started with ARGS and WORKERS."""
    ARGS = FAST
    WORKERS = 4

    @classmethod
    def setUpClass(cls):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            raise unittest.SkipTest("WSNOTIFYD not set to an executable daemon")
        cls.d = wc.Daemon(WSNOTIFYD, workers=cls.WORKERS, extra_args=list(cls.ARGS),
                          name=cls.__name__)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            close_channel(cls.d)
        super().tearDownClass()


# --------------------------------------------------------------------------- default history

class HistoryTest(DaemonClass):
    """Default --history-size 100, no --data-dir (the history lives with the process)."""

    def test_offline_delivery(self):
        """Sent while the user is offline (delivered=false): right after `connected`
        on the next connection, oldest first, each once, same id and timestamp as
        promised; send_push=false ones are not replayed offline; once written to a
        connection a notification is not replayed offline again."""
        u = next_uid()
        sent = []
        for i, push in enumerate((True, True, False, True)):
            fields = dict(type="bid_matched", title="Offline %d" % i, message="m%d" % i,
                          link="/o/%d" % i, send_push=push)
            r, t0, t1 = send_timed(self.d, u, **fields)
            self.assertFalse(r.delivered, "offline user: delivered true")
            self.assertTrue(0 < r.notification_id < ID_LIMIT, "id %r" % r.notification_id)
            sent.append((r.notification_id, fields, t0, t1))
        pushed = [s for s in sent if s[1]["send_push"]]
        st = self.assert_state(u, sent[0][0], "STORED", "offline, before any connection")
        c, data = self.open_ws(u)
        self.assert_connected(data, u, None, "offline replay, no last_id")
        got = self.recv_notifs(c, len(pushed), "offline replay")
        for g, (nid, f, t0, t1) in zip(got, pushed):
            self.assertEqual(g["id"], nid, "offline replay order/ids: got %r, sent %r" % (
                [x["id"] for x in got], [p[0] for p in pushed]))
            self.assertEqual((g["title"], g["message"], g["notification_type"], g["link"]),
                             (f["title"], f["message"], f["type"], f["link"]))
            self.assert_ts(g["timestamp"], t0, t1, "replayed id %d" % nid)
        self.assertEqual(st.timestamp, got[0]["timestamp"],
                         "GetNotificationStatus timestamp differs from the message's")
        self.expect_quiet(c, "after the offline replay (the send_push=false one must not come)")
        self.assert_state(u, sent[0][0], "SENT", "after the offline replay")
        self.assert_state(u, sent[2][0], "STORED", "send_push=false, never written")
        # Live delivery now, then a reconnect without last_id gets nothing at all.
        r = send(self.d, u, title="live")
        self.assertTrue(r.delivered)
        self.assertEqual(self.recv_ids(c, 1, "live after replay"), [r.notification_id])
        self.close(c)
        c2, data = self.open_ws(u)
        self.assert_connected(data, u, None, "second connection, no last_id")
        self.expect_quiet(c2, "reconnect without last_id after everything was written")
        self.close(c2)
        # A notification written live, then disconnect, reconnect: not replayed either.
        c3, _ = self.open_ws(u)
        r = send(self.d, u, title="live 2")
        self.assertTrue(r.delivered)
        self.assertEqual(self.recv_ids(c3, 1, "live 2"), [r.notification_id])
        self.close(c3)
        c4, _ = self.open_ws(u)
        self.expect_quiet(c4, "reconnect after a live delivery")

    def test_offline_replay_then_live_in_order(self):
        """A larger offline backlog (60) comes oldest first, then a live one
        sent right after `connected` comes after the backlog, each once."""
        u = next_uid()
        ids = [send(self.d, u, title="b%d" % i).notification_id for i in range(60)]
        c, _ = self.open_ws(u)
        live = send(self.d, u, title="live")
        got = self.recv_ids(c, 61, "backlog then live")
        self.assertEqual(got, ids + [live.notification_id])
        self.expect_quiet(c, "after backlog and live")

    def test_resume_last_id(self):
        """last_id=N (query) and Last-Event-ID (header; the query wins): every
        notification stored after N, oldest first (send_push=false ones too), then
        live; recovered true; last_id=0 the whole history; unknown N the whole
        history with recovered false; without last_id no `recovered` key."""
        u, other = next_uid(), next_uid()
        foreign = send(self.d, other, title="other's").notification_id
        n = []
        msgs = {}
        for i in range(5):
            r = send(self.d, u, title="r%d" % i, send_push=(i != 2))
            self.assertFalse(r.delivered)
            n.append(r.notification_id)
        # Offline replay first (without last_id): writes n0, n1, n3, n4.
        c, data = self.open_ws(u)
        self.assert_connected(data, u, None, "no last_id")
        for g in self.recv_notifs(c, 4, "offline part"):
            msgs[g["id"]] = g
        self.assertEqual(sorted(msgs), sorted([n[0], n[1], n[3], n[4]]))
        self.close(c)
        # last_id in the query: everything after n1, the send_push=false n2 included.
        c, data = self.open_ws(u, last_id=n[1])
        self.assert_connected(data, u, True, "last_id=n1")
        got = self.recv_notifs(c, 3, "resume after n1")
        self.assertEqual([g["id"] for g in got], n[2:])
        for g in got:
            if g["id"] in msgs:
                self.assertEqual(g, msgs[g["id"]], "a replayed notification differs from the original")
            msgs[g["id"]] = g
        live = send(self.d, u, title="live")
        self.assertTrue(live.delivered)
        self.assertEqual(self.recv_ids(c, 1, "live after resume"), [live.notification_id])
        self.expect_quiet(c, "after resume + live")
        self.close(c)
        n.append(live.notification_id)
        # Last-Event-ID header alone.
        c, data = self.open_ws(u, headers={"Last-Event-ID": str(n[3])})
        self.assert_connected(data, u, True, "Last-Event-ID n3")
        self.assertEqual(self.recv_ids(c, 2, "resume by header"), n[4:])
        self.expect_quiet(c, "after resume by header")
        self.close(c)
        # Both: the query wins (last_id first in the query string this time).
        c, data = self.open_ws(u, last_id=n[0], headers={"Last-Event-ID": str(n[4])},
                               token_first=False)
        self.assert_connected(data, u, True, "query n0 + header n4")
        self.assertEqual(self.recv_ids(c, 5, "query wins over header"), n[1:])
        self.expect_quiet(c, "after query-wins resume")
        self.close(c)
        # last_id=0: the whole history, recovered true.
        c, data = self.open_ws(u, last_id=0)
        self.assert_connected(data, u, True, "last_id=0")
        full = self.recv_notifs(c, 6, "last_id=0")
        self.assertEqual([g["id"] for g in full], n)
        for g in full:
            self.assertEqual(g, msgs.get(g["id"], g), "replay differs from the original message")
        self.expect_quiet(c, "after last_id=0")
        self.close(c)
        # Unknown ids (never existed; another user's): whole history, recovered false.
        for unknown, what in ((n[-1] + 1000003, "never existed"), (foreign, "another user's id"),
                              (ID_LIMIT - 1, "2^53-1")):
            c, data = self.open_ws(u, last_id=unknown)
            self.assert_connected(data, u, False, "last_id %s" % what)
            self.assertEqual(self.recv_ids(c, 6, "last_id %s" % what), n)
            self.expect_quiet(c, "after last_id %s" % what)
            self.close(c)
        # The last one: resume after it gives nothing, recovered true.
        c, data = self.open_ws(u, last_id=n[-1])
        self.assert_connected(data, u, True, "last_id = newest")
        self.expect_quiet(c, "resume after the newest")

    def test_resume_after_abrupt_disconnect(self):
        """A connection reset after reading 2 of 5: a resume from the last one seen
        gets exactly the other 3, then live."""
        u = next_uid()
        c, _ = self.open_ws(u)
        ids = [send(self.d, u, title="a%d" % i).notification_id for i in range(5)]
        seen = self.recv_ids(c, 2, "first two")
        self.assertEqual(seen, ids[:2])
        wc.reset(c)
        more = [send(self.d, u, title="b%d" % i).notification_id for i in range(3)]
        c, data = self.open_ws(u, last_id=seen[-1])
        self.assert_connected(data, u, True, "resume after reset")
        self.assertEqual(self.recv_ids(c, 6, "resume after reset"), ids[2:] + more)
        self.expect_quiet(c, "after the resume")

    def test_bad_last_id(self):
        """last_id not a decimal integer in 0..2^53-1 -> 400 {"error":"bad_last_id"}, no
        upgrade; the same for the Last-Event-ID header."""
        u = next_uid()
        tok = self.d.token(u)
        for bad in ("abc", "-1", "9007199254740992", "1.5", "", "12abc", "99999999999999999999999"):
            c = upgrade(self.d, "/ws?token=%s&last_id=%s" % (tok, bad))
            self.assertIsInstance(c, wc.HTTPResponse, "last_id=%r was upgraded" % bad)
            if isinstance(c, wc.WSConnection):
                c.abort()
            self.assertEqual(c.status, 400, "last_id=%r: %r" % (bad, c))
            self.assertEqual(c.json(), {"error": "bad_last_id"}, "last_id=%r: body %r" % (bad, c.body))
        for bad in ("abc", "-1", "9007199254740992", "1.5"):
            c = upgrade(self.d, "/ws?token=" + tok, headers={"Last-Event-ID": bad})
            self.assertIsInstance(c, wc.HTTPResponse, "Last-Event-ID %r was upgraded" % bad)
            self.assertEqual((c.status, c.json()), (400, {"error": "bad_last_id"}),
                             "Last-Event-ID %r: %r" % (bad, c))
        # The limits themselves are fine.
        c, data = self.open_ws(u, last_id=ID_LIMIT - 1)
        self.assert_connected(data, u, False, "last_id=2^53-1")

    def test_acks_and_status(self):
        """STORED (never written), SENT (written, not acked), ACKED after an ack
        (acked_at RFC 3339 with milliseconds; timestamp = the notification's);
        NOT_FOUND for unknown and another user's ids; an ack for another user's id
        is ignored; an ack whose id is not an integer gets an error, the connection
        stays open."""
        u, v = next_uid(), next_uid()
        c, _ = self.open_ws(u)
        quiet = send(self.d, u, title="not pushed", send_push=False)
        self.assertFalse(quiet.delivered)
        st = self.assert_state(u, quiet.notification_id, "STORED", "send_push=false")
        self.assertEqual(st.acked_at, "", "STORED: acked_at %r" % st.acked_at)
        r, t0, t1 = send_timed(self.d, u, title="to ack")
        self.assertTrue(r.delivered)
        (msg,) = self.recv_notifs(c, 1, "to ack")
        self.assertEqual(msg["id"], r.notification_id)
        st = self.assert_state(u, r.notification_id, "SENT", "received, not acked")
        self.assertEqual(st.timestamp, msg["timestamp"], "status timestamp vs message's")
        self.assertEqual(st.acked_at, "", "SENT: acked_at %r" % st.acked_at)
        # v's notification, and u acking it: ignored.
        vid = send(self.d, v, title="v's").notification_id
        c.send_text(json.dumps({"type": "ack", "data": {"id": vid}}))
        c.send_text(json.dumps({"type": "ack", "data": {"id": r.notification_id + 7777777}}))
        self.expect_quiet(c, "acks of another user's / an unknown id get no reply", 0.2)
        # u's real ack.
        ta = time.time()
        c.send_text(json.dumps({"type": "ack", "data": {"id": r.notification_id}}))
        st = self.assert_state(u, r.notification_id, "ACKED", "after the ack")
        tb = time.time()
        self.assertTrue(TS_MS_RE.match(st.acked_at), "acked_at %r is not RFC 3339 UTC with "
                        "milliseconds" % st.acked_at)
        at = parse_ts(st.acked_at)
        self.assertTrue(ta - 1.0 <= at <= tb + 1.0, "acked_at %s not within the ack (%.3f..%.3f)"
                        % (st.acked_at, ta, tb))
        self.assertEqual(st.timestamp, msg["timestamp"], "ACKED: timestamp is not the notification's")
        self.assert_ts(st.timestamp, t0, t1, "status timestamp")
        self.assertEqual(state_name(status(self.d, v, vid)), "STORED",
                         "u's ack of v's notification changed v's status")
        self.assertEqual(state_name(status(self.d, u, quiet.notification_id)), "STORED")
        # NOT_FOUND: unknown id, another user's id (both ways).
        self.assertEqual(state_name(status(self.d, u, r.notification_id + 5555555)), "NOT_FOUND")
        self.assertEqual(state_name(status(self.d, v, r.notification_id)), "NOT_FOUND",
                         "u's notification visible as v's")
        self.assertEqual(state_name(status(self.d, u, vid)), "NOT_FOUND", "v's visible as u's")
        self.assertEqual(state_name(status(self.d, next_uid(), vid)), "NOT_FOUND")
        # Acks with an id that is not an integer: an error message each, still open.
        for bad in ('{"type":"ack","data":{"id":"abc"}}', '{"type":"ack","data":{"id":1.5}}',
                    '{"type":"ack","data":{"id":null}}', '{"type":"ack","data":{}}'):
            c.send_text(bad)
            m = c.recv_json(3)
            self.assertEqual(m.get("type"), "error", "%s: answered %r" % (bad, m))
            self.assertIsInstance(m.get("data", {}).get("message"), str, "error without message: %r" % m)
        self.assertTrue(c.is_open())
        self.expect_quiet(c, "after the bad acks", 0.1)
        # Acked stays acked; a resume replays it (same message) and it stays ACKED.
        self.close(c)
        c, data = self.open_ws(u, last_id=0)
        self.assert_connected(data, u, True, "resume")
        got = self.recv_notifs(c, 2, "resume of the acked one")
        self.assertEqual([g["id"] for g in got], [quiet.notification_id, r.notification_id])
        self.assertEqual(got[1], msg, "replayed message differs from the original")
        self.expect_quiet(c, "after the resume")
        self.assertEqual(state_name(status(self.d, u, r.notification_id)), "ACKED")
        # The ack of a replayed never-pushed one works too.
        c.send_text(json.dumps({"type": "ack", "data": {"id": quiet.notification_id}}))
        self.assert_state(u, quiet.notification_id, "ACKED", "ack of the replayed one")

    def test_wait_ack(self):
        """wait_ack_ms: acked within the wait -> acked true, answered right after the
        ack; not acked -> answered after about wait_ack_ms, acked false; not
        delivered -> answered at once; -1 and 60001 -> INVALID_ARGUMENT."""
        u = next_uid()
        c, _ = self.open_ws(u)
        done = []
        t0 = time.monotonic()
        fut = stub(self.d).SendNotification.future(req(u, title="wait", wait_ack_ms=5000),
                                                   timeout=RPC_TIMEOUT)
        fut.add_done_callback(lambda f: done.append(time.monotonic()))
        (m,) = self.recv_notifs(c, 1, "wait_ack")
        time.sleep(0.3)
        self.assertFalse(fut.done(), "answered before the ack (and long before wait_ack_ms)")
        ta = time.monotonic()
        c.send_text(json.dumps({"type": "ack", "data": {"id": m["id"]}}))
        r = fut.result(timeout=RPC_TIMEOUT)
        self.assertEqual((r.delivered, r.acked, r.notification_id), (True, True, m["id"]),
                         "acked within the wait: %r" % r)
        self.assertLess(done[0] - ta, 1.0, "answered %.2f s after the ack" % (done[0] - ta))
        self.assertLess(done[0] - t0, 3.0, "answered %.2f s after the call, wait_ack_ms 5000"
                        % (done[0] - t0))
        # Not acked: after about wait_ack_ms, acked false.
        t0 = time.monotonic()
        r = send(self.d, u, title="no ack", wait_ack_ms=800)
        el = time.monotonic() - t0
        self.assertEqual((r.delivered, r.acked), (True, False), "not acked: %r" % r)
        self.assertTrue(0.75 <= el <= 2.5, "not acked: answered after %.2f s, wait_ack_ms 800" % el)
        self.assertEqual(self.recv_ids(c, 1, "the unacked one"), [r.notification_id])
        self.assert_state(u, r.notification_id, "SENT", "unacked after the wait")
        # Not delivered: offline user, and send_push=false: at once.
        for who, kw in ((next_uid(), {}), (u, {"send_push": False})):
            t0 = time.monotonic()
            r = send(self.d, who, title="nobody", wait_ack_ms=5000, **kw)
            el = time.monotonic() - t0
            self.assertEqual((r.delivered, r.acked), (False, False), "%r: %r" % (kw, r))
            self.assertLess(el, 1.0, "not delivered (%r), wait_ack_ms 5000: answered after %.2f s"
                            % (kw, el))
        r = send(self.d, next_uid(), title="max", wait_ack_ms=60000)
        self.assertFalse(r.delivered)
        for bad in (-1, 60001, -60000, 2 ** 31 - 1):
            e = rpc_error(send, self.d, u, title="bad wait", wait_ack_ms=bad)
            self.assert_code(e, IA, "wait_ack_ms=%d" % bad)
        self.expect_quiet(c, "no notification from the refused calls")

    def test_caller_ids(self):
        """The same non-zero caller id twice for one user: the second answer is OK,
        same notification_id, duplicate true, delivered false, and the client gets
        it once; the same id for another user is no duplicate; replay shows the
        first version once."""
        u, v, w = next_uid(), next_uid(), next_uid()
        cid = 4200000000000 + (os.getpid() % 1000) * 1000 + (u % 1000)
        c, _ = self.open_ws(u)
        r1 = send(self.d, u, id=cid, title="first")
        self.assertEqual((r1.notification_id, r1.delivered, r1.duplicate), (cid, True, False), "%r" % r1)
        r2 = send(self.d, u, id=cid, title="retry")
        self.assertEqual((r2.notification_id, r2.delivered, r2.duplicate), (cid, False, True),
                         "the retry: %r" % r2)
        got = self.recv_notifs(c, 1, "caller id")
        self.assertEqual((got[0]["id"], got[0]["title"]), (cid, "first"))
        self.expect_quiet(c, "the retry must not be pushed")
        rv = send(self.d, v, id=cid, title="v")
        self.assertEqual((rv.notification_id, rv.duplicate), (cid, False), "another user: %r" % rv)
        # Offline user: stored once, replayed once.
        for i in range(2):
            rw = send(self.d, w, id=cid + 1, title="w%d" % i)
            self.assertEqual((rw.notification_id, rw.delivered, rw.duplicate), (cid + 1, False, i == 1),
                             "offline, call %d: %r" % (i, rw))
        cw, _ = self.open_ws(w)
        got = self.recv_notifs(cw, 1, "offline caller id")
        self.assertEqual((got[0]["id"], got[0]["title"]), (cid + 1, "w0"))
        self.expect_quiet(cw, "duplicate replayed")
        self.close(cw)
        cw, _ = self.open_ws(w, last_id=0)
        self.assertEqual(self.recv_ids(cw, 1, "resume"), [cid + 1])
        self.expect_quiet(cw, "duplicate in the history")

    def test_send_notifications(self):
        """SendNotifications: results in request order; one invalid -> INVALID_ARGUMENT
        naming it and none sent; 0 or 1001 requests, or wait_ack_ms inside ->
        INVALID_ARGUMENT; 1000 is fine."""
        s = stub(self.d)
        u, v = next_uid(), next_uid()
        c, _ = self.open_ws(u)
        base = 5100000000000 + (os.getpid() % 1000) * 100000 + (u % 1000) * 10
        reqs = [req(u, title="b0"), req(v, title="b1", id=base + 1), req(u, title="b2", id=base + 2),
                req(v, title="b3"), req(u, title="b4", send_push=False)]
        r = s.SendNotifications(eg.pb.SendNotificationsRequest(notifications=reqs), timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.results), 5)
        res = list(r.results)
        self.assertEqual(res[1].notification_id, base + 1)
        self.assertEqual(res[2].notification_id, base + 2)
        self.assertEqual([x.delivered for x in res], [True, False, True, False, False])
        self.assertEqual(self.recv_ids(c, 2, "batch to u"), [res[0].notification_id, base + 2])
        self.expect_quiet(c, "after the batch")
        self.assert_state(u, res[4].notification_id, "STORED", "batch send_push=false")
        cv, _ = self.open_ws(v)
        self.assertEqual(self.recv_ids(cv, 2, "batch to v, offline"), [base + 1, res[3].notification_id])
        self.close(cv)
        # One invalid: nothing sent.
        x = next_uid()
        bad = [req(x, title="ok0", id=base + 5), req(u, title="ok1"), req(x, title="ok2", id=base + 6),
               req(x, title="", id=base + 7), req(u, title="ok4")]
        e = rpc_error(s.SendNotifications, eg.pb.SendNotificationsRequest(notifications=bad),
                      timeout=RPC_TIMEOUT)
        self.assert_code(e, IA, "notifications[3] without title", "notifications[3]: title is required")
        self.expect_quiet(c, "a refused batch must send nothing")
        for nid in (base + 5, base + 6, base + 7):
            self.assertEqual(state_name(status(self.d, x, nid)), "NOT_FOUND",
                             "id %d of a refused batch was stored" % nid)
        cx, data = self.open_ws(x, last_id=0)
        self.assert_connected(data, x, True, "user of a refused batch")
        self.expect_quiet(cx, "refused batch: nothing in the history")
        # wait_ack_ms inside; user_id 0 at index 0.
        e = rpc_error(s.SendNotifications, eg.pb.SendNotificationsRequest(
            notifications=[req(u), req(u, wait_ack_ms=100)]), timeout=RPC_TIMEOUT)
        self.assert_code(e, IA, "wait_ack_ms inside a batch", "notifications[1]")
        e = rpc_error(s.SendNotifications, eg.pb.SendNotificationsRequest(
            notifications=[req(0), req(u)]), timeout=RPC_TIMEOUT)
        self.assert_code(e, IA, "user_id 0 in a batch", "notifications[0]")
        self.expect_quiet(c, "refused batches send nothing")
        # 0 and 1001 requests.
        e = rpc_error(s.SendNotifications, eg.pb.SendNotificationsRequest(notifications=[]),
                      timeout=RPC_TIMEOUT)
        self.assert_code(e, IA, "0 requests")
        y = next_uid()
        big = [req(y, type="t", title="t", message="") for _ in range(1001)]
        e = rpc_error(s.SendNotifications, eg.pb.SendNotificationsRequest(notifications=big),
                      timeout=RPC_TIMEOUT)
        self.assert_code(e, IA, "1001 requests")
        self.assertEqual(state_name(status(self.d, y, 1)), "NOT_FOUND")
        cy, _ = self.open_ws(y, last_id=0)
        self.expect_quiet(cy, "1001 requests: nothing stored", 0.2)
        self.close(cy)
        # 1000: all answered in order; the history keeps the newest 100.
        r = s.SendNotifications(eg.pb.SendNotificationsRequest(notifications=big[:1000]),
                                timeout=RPC_TIMEOUT)
        ids = [x.notification_id for x in r.results]
        self.assertEqual(len(ids), 1000)
        self.assertTrue(all(a < b for a, b in zip(ids, ids[1:])), "batch ids not increasing")
        self.assertTrue(all(0 < i < ID_LIMIT for i in ids))
        cy, data = self.open_ws(y, last_id=0)
        self.assertEqual(self.recv_ids(cy, 100, "resume after 1000"), ids[-100:])
        self.expect_quiet(cy, "history holds 100")
        self.assertEqual(state_name(status(self.d, y, ids[0])), "NOT_FOUND", "trimmed one found")

    def test_server_ids_increase(self):
        """Server-assigned ids increase over single calls, batches and broadcasts,
        and stay in 1..2^53-1."""
        s = stub(self.d)
        users = [next_uid() for _ in range(5)]
        ids = []
        for i in range(40):
            ids.append(send(self.d, users[i % 5]).notification_id)
            if i % 10 == 5:
                r = s.SendNotifications(eg.pb.SendNotificationsRequest(
                    notifications=[req(u) for u in users]), timeout=RPC_TIMEOUT)
                ids.extend(x.notification_id for x in r.results)
            if i % 10 == 7:
                b = s.Broadcast(eg.pb.BroadcastRequest(type="t", title="ids", message="m"),
                                timeout=RPC_TIMEOUT)
                ids.append(b.notification_id)
        self.assertTrue(all(0 < i < ID_LIMIT for i in ids), "ids out of 1..2^53-1: %r" % ids)
        bad = [(a, b) for a, b in zip(ids, ids[1:]) if not a < b]
        self.assertEqual(bad, [], "ids not increasing")

    def test_wsnotifyctl_status(self):
        """wsnotifyctl status prints GetNotificationStatus as JSON; NOT_FOUND -> exit 1."""
        if not os.access(WSNOTIFYCTL, os.X_OK):
            self.skipTest("no wsnotifyctl")
        u = next_uid()
        nid = send(self.d, u).notification_id
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        srv = "127.0.0.1:%d" % self.d.grpc_port
        p = subprocess.run([WSNOTIFYCTL, "status", "--user-id", str(u), "--id", str(nid), "--server", srv],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out.get("state"), "STORED", out)
        self.assertEqual(out.get("timestamp"), status(self.d, u, nid).timestamp)
        p = subprocess.run([WSNOTIFYCTL, "status", "--user-id", str(u), "--id", str(nid + 99), "--server",
                            srv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20, env=env)
        self.assertEqual(p.returncode, 1, "NOT_FOUND: exit %d, %r" % (p.returncode, p.stdout))


# --------------------------------------------------------------------------- limits

class TrimTest(DaemonClass):
    ARGS = FAST + ("--history-size", "3")

    def test_history_size_trims_oldest(self):
        """--history-size 3: the oldest go first; a resume from a trimmed id is
        recovered false with the whole remaining history; a trimmed caller id can
        be used again (no duplicate)."""
        u = next_uid()
        cid = 6100000000000 + (os.getpid() % 1000) * 1000 + (u % 1000)
        first = send(self.d, u, id=cid, title="n0").notification_id
        ids = [first] + [send(self.d, u, title="n%d" % i).notification_id for i in range(1, 5)]
        self.assertEqual(state_name(status(self.d, u, ids[0])), "NOT_FOUND", "trimmed n0")
        self.assertEqual(state_name(status(self.d, u, ids[1])), "NOT_FOUND", "trimmed n1")
        self.assertEqual(state_name(status(self.d, u, ids[2])), "STORED")
        c, _ = self.open_ws(u)
        self.assertEqual(self.recv_ids(c, 3, "offline replay, size 3"), ids[2:])
        self.expect_quiet(c, "only 3 kept")
        self.close(c)
        c, data = self.open_ws(u, last_id=ids[1])
        self.assert_connected(data, u, False, "resume from a trimmed id")
        self.assertEqual(self.recv_ids(c, 3, "resume from a trimmed id"), ids[2:])
        self.expect_quiet(c, "after resume from trimmed")
        self.close(c)
        c, data = self.open_ws(u, last_id=ids[2])
        self.assert_connected(data, u, True, "resume from the oldest kept")
        self.assertEqual(self.recv_ids(c, 2, "resume from the oldest kept"), ids[3:])
        self.close(c)
        r = send(self.d, u, id=cid, title="again")
        self.assertEqual((r.notification_id, r.duplicate), (cid, False),
                         "a caller id trimmed from the history is not a retry: %r" % r)


class TtlTest(DaemonClass):
    ARGS = FAST + ("--history-ttl", "2")

    def test_history_ttl(self):
        """--history-ttl 2: an expired notification is not replayed (offline or
        resume) and GetNotificationStatus says NOT_FOUND."""
        u, v = next_uid(), next_uid()
        old = send(self.d, u, title="old").notification_id
        c, _ = self.open_ws(v)
        seen = send(self.d, v, title="seen").notification_id
        self.assertEqual(self.recv_ids(c, 1, "live"), [seen])
        self.close(c)
        self.assertEqual(state_name(status(self.d, u, old)), "STORED")
        time.sleep(3.2)
        new = send(self.d, u, title="new").notification_id
        self.assertEqual(state_name(status(self.d, u, old)), "NOT_FOUND", "expired one still found")
        self.assertEqual(state_name(status(self.d, v, seen)), "NOT_FOUND", "expired one still found")
        c, data = self.open_ws(u)
        self.assertEqual(self.recv_ids(c, 1, "offline after expiry"), [new])
        self.expect_quiet(c, "the expired one must not be replayed")
        self.close(c)
        c, data = self.open_ws(u, last_id=old)
        self.assert_connected(data, u, False, "resume from an expired id")
        self.assertEqual(self.recv_ids(c, 1, "resume from expired"), [new])
        self.expect_quiet(c, "after resume from expired")
        self.close(c)
        c, data = self.open_ws(v, last_id=0)
        self.assert_connected(data, v, True, "last_id=0, all expired")
        self.expect_quiet(c, "everything of v expired")


class NoHistoryTest(DaemonClass):
    ARGS = FAST + ("--history-size", "0")

    def test_no_history(self):
        """--history-size 0: no replay, GetNotificationStatus NOT_FOUND, acked stays
        false with wait_ack_ms, a repeated caller id is not a duplicate."""
        u = next_uid()
        off = send(self.d, u, title="offline")
        self.assertFalse(off.delivered)
        self.assertTrue(0 < off.notification_id < ID_LIMIT)
        self.assertEqual(state_name(status(self.d, u, off.notification_id)), "NOT_FOUND")
        c, data = self.open_ws(u)
        self.assert_connected(data, u, None, "no history, no last_id")
        self.expect_quiet(c, "no history: no offline replay")
        self.close(c)
        c, data = self.open_ws(u, last_id=0)
        self.assert_connected(data, u, True, "no history, last_id=0")
        self.expect_quiet(c, "no history: nothing to resume")
        self.close(c)
        c, data = self.open_ws(u, last_id=off.notification_id)
        self.assert_connected(data, u, False, "no history, last_id=N")
        self.expect_quiet(c, "no history: nothing to resume")
        done = []
        fut = stub(self.d).SendNotification.future(req(u, title="wait", wait_ack_ms=600),
                                                   timeout=RPC_TIMEOUT)
        t0 = time.monotonic()
        fut.add_done_callback(lambda f: done.append(time.monotonic()))
        (m,) = self.recv_notifs(c, 1, "live, no history")
        c.send_text(json.dumps({"type": "ack", "data": {"id": m["id"]}}))
        r = fut.result(timeout=RPC_TIMEOUT)
        self.assertEqual((r.delivered, r.acked), (True, False), "no history: %r" % r)
        self.assertLess(done[0] - t0, 2.5)
        self.assertEqual(state_name(status(self.d, u, m["id"])), "NOT_FOUND")
        cid = 7100000000000 + (os.getpid() % 1000) * 1000 + (u % 1000)
        r1 = send(self.d, u, id=cid)
        r2 = send(self.d, u, id=cid)
        self.assertEqual((r1.duplicate, r2.duplicate), (False, False),
                         "no history: a caller id cannot be a retry")
        self.assertEqual((r1.notification_id, r2.notification_id), (cid, cid))


class MaxSizeTest(HistoryCase):
    """--data-max-size 1 (MiB) on its own --data-dir."""

    @classmethod
    def setUpClass(cls):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            raise unittest.SkipTest("WSNOTIFYD not set")
        cls.tmp = tempfile.mkdtemp(prefix="wsn-hist-max-")
        cls.d = wc.Daemon(WSNOTIFYD, workers=2, name=cls.__name__, extra_args=list(FAST) + [
            "--data-dir", os.path.join(cls.tmp, "data"), "--data-max-size", "1"])
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            close_channel(cls.d)
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_full_store_drops_oldest(self):
        """3.6 MiB of notifications into a 1 MiB store: every call OK, no crash, the
        oldest (store-wide) go first, the newest stay replayable."""
        body = "x" * 12000
        sent = []
        for i in range(300):
            u = next_uid()
            r = send(self.d, u, title="big %d" % i, message=body)
            sent.append((u, r.notification_id))
        self.assertTrue(self.d.alive(), "the daemon died with a full store")
        u0, n0 = sent[0]
        self.assertEqual(state_name(status(self.d, u0, n0)), "NOT_FOUND",
                         "the oldest of 3.6 MiB is still in a 1 MiB store")
        ul, nl = sent[-1]
        self.assertEqual(state_name(status(self.d, ul, nl)), "STORED")
        c, _ = self.open_ws(ul)
        (m,) = self.recv_notifs(c, 1, "newest, full store")
        self.assertEqual((m["id"], m["message"]), (nl, body))


# --------------------------------------------------------------------------- broadcast

class BroadcastTest(DaemonClass):

    def test_broadcast(self):
        """Every open connection (over all workers) gets it once, as a notification
        with a server id; recipients = open connections; not stored in any
        history; validated like SendNotification."""
        d = self.d
        s = stub(d)
        pools = probe_slot_ports(d, 1)
        users = []
        conns = []
        for slot in range(d.workers):
            self.assertTrue(pools[slot], "no source port found for worker %d" % slot)
            u = next_uid()
            c = upgrade(d, ws_path(d, u), src_port=pools[slot][0])
            self.assertIsInstance(c, wc.WSConnection)
            self.clients.append(c)
            self.assertEqual(c.recv_json(3)["type"], "connected")
            users.append(u)
            conns.append(c)
        for _ in range(4):
            u = next_uid()
            c, _ = self.open_ws(u)
            users.append(u)
            conns.append(c)
        slots = {d.worker_of(u, timeout=3) for u in users}
        self.assertEqual(len(slots), d.workers, "connections on workers %r only" % slots)
        stored = send(d, users[0], title="own", send_push=False).notification_id
        ok, h = d.wait_health(lambda h: h.get("ws_connections") == len(conns), 5)
        self.assertTrue(ok, "ws_connections never %d: %r" % (len(conns), h))
        before = send(d, next_uid()).notification_id
        fields = dict(type="maintenance", title="Broadcast \u2713", message="down at 5",
                      link="/status")
        t0 = time.time()
        b = s.Broadcast(eg.pb.BroadcastRequest(**fields), timeout=RPC_TIMEOUT)
        t1 = time.time()
        self.assertEqual(b.recipients, len(conns), "recipients %d, open connections %d"
                         % (b.recipients, len(conns)))
        self.assertTrue(before < b.notification_id < ID_LIMIT, "broadcast id %d (previous %d)"
                        % (b.notification_id, before))
        for u, c in zip(users, conns):
            (m,) = self.recv_notifs(c, 1, "broadcast to user %d" % u)
            self.assertEqual(m["id"], b.notification_id)
            self.assertEqual((m["title"], m["message"], m["notification_type"], m["link"]),
                             (fields["title"], fields["message"], fields["type"], fields["link"]))
            self.assert_ts(m["timestamp"], t0, t1, "broadcast timestamp")
        for u, c in zip(users, conns):
            self.expect_quiet(c, "broadcast once to user %d" % u, 0.1)
        self.assertGreater(send(d, next_uid()).notification_id, b.notification_id)
        # Not stored: status, a newcomer, a resume from 0.
        self.assertEqual(state_name(status(d, users[1], b.notification_id)), "NOT_FOUND")
        late = next_uid()
        c, _ = self.open_ws(late)
        self.expect_quiet(c, "a user connecting after the broadcast")
        self.close(c)
        c, _ = self.open_ws(late, last_id=0)
        self.expect_quiet(c, "resume from 0 after a broadcast")
        self.close(conns[0])
        c, data = self.open_ws(users[0], last_id=0)
        self.assertEqual(self.recv_ids(c, 1, "resume of a broadcast recipient"), [stored])
        self.expect_quiet(c, "the broadcast is not in the history")
        # Validation: what SendNotification refuses, Broadcast refuses the same way.
        for bad, what in ((dict(type="t", title="", message="m"), "empty title"),
                          (dict(type="", title="t", message="m"), "empty type"),
                          (dict(type="t", title="t", message="x" * 17000), "over 16 KiB")):
            e = rpc_error(s.Broadcast, eg.pb.BroadcastRequest(**bad), timeout=RPC_TIMEOUT)
            self.assert_code(e, IA, "Broadcast with %s" % what)
        for c in conns[1:]:
            self.expect_quiet(c, "refused broadcasts deliver nothing", 0.05)
        for bad, what in ((dict(type="t", title="t", message="m", link=" JavaScript:alert(1)"),
                           "a javascript: link"),
                          (dict(type="t", title="a\x00b", message="m"), "a NUL in the title")):
            one = rpc_error(send, d, next_uid(), **bad)
            e = rpc_error(s.Broadcast, eg.pb.BroadcastRequest(**bad), timeout=RPC_TIMEOUT)
            self.assertEqual(e and e.code(), one and one.code(),
                             "with %s: Broadcast answers %s, SendNotification %s" % (
                                 what, e.code().name if e else "OK", one.code().name if one else "OK"))

    def test_broadcast_no_connections(self):
        """With nobody connected: OK, recipients 0."""
        ok, h = self.d.wait_health(lambda h: h.get("ws_connections") == 0, 5)
        self.assertTrue(ok, "connections left: %r" % h)
        b = stub(self.d).Broadcast(eg.pb.BroadcastRequest(type="t", title="t", message="m"),
                                   timeout=RPC_TIMEOUT)
        self.assertEqual(b.recipients, 0)
        self.assertTrue(0 < b.notification_id < ID_LIMIT)


# --------------------------------------------------------------------------- durability

class DurabilityTest(HistoryCase):
    """Each test starts its own daemons on its own directories."""

    def setUp(self):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            self.skipTest("WSNOTIFYD not set")     # before the alarm is armed
        super().setUp()
        self.daemons = []
        self.tmp = tempfile.mkdtemp(prefix="wsn-hist-dur-")

    def tearDown(self):
        super().tearDown()
        for d in self.daemons:
            close_channel(d)
            d.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _daemons(self):
        return self.daemons

    def daemon(self, args, workers=4, start=True):
        d = wc.Daemon(WSNOTIFYD, workers=workers, extra_args=list(FAST) + list(args), name=self.id())
        self.daemons.append(d)
        if start:
            d.start()
        self.d = d
        return d

    def restart(self, d):
        close_channel(d)
        d.start()

    def test_sigterm_restart_keeps_history_acks_ids(self):
        """--data-dir (created 0700): after SIGTERM and a restart on the same dir the
        history (same messages), the acks (ACKED, same acked_at), offline delivery
        and the id counter (new ids above every old one) survive."""
        data = os.path.join(self.tmp, "data")
        d = self.daemon(["--data-dir", data])
        mode = stat.S_IMODE(os.stat(data).st_mode)
        self.assertEqual(mode, 0o700, "--data-dir created with mode %o" % mode)
        u, v = next_uid(), next_uid()
        ids = [send(d, u, title="d%d" % i).notification_id for i in range(5)]
        voff = send(d, v, title="for v").notification_id
        c, _ = self.open_ws(u)
        msgs = self.recv_notifs(c, 5, "before restart")
        self.assertEqual([m["id"] for m in msgs], ids)
        c.send_text(json.dumps({"type": "ack", "data": {"id": ids[2]}}))
        acked = self.assert_state(u, ids[2], "ACKED", "before restart")
        self.assert_state(u, ids[0], "SENT", "before restart")
        self.close(c)
        self.assertEqual(d.stop(), 0, "SIGTERM exit status")
        self.restart(d)
        st = status(d, u, ids[2])
        self.assertEqual(state_name(st), "ACKED", "ack lost over a restart")
        self.assertEqual((st.acked_at, st.timestamp), (acked.acked_at, acked.timestamp))
        self.assertEqual(state_name(status(d, u, ids[0])), "SENT", "SENT lost over a restart")
        self.assertEqual(state_name(status(d, v, voff)), "STORED")
        c, data_ = self.open_ws(u, last_id=0)
        self.assert_connected(data_, u, True, "resume from 0 after restart")
        again = self.recv_notifs(c, 5, "after restart")
        self.assertEqual(again, msgs, "replay after restart differs from the originals")
        self.expect_quiet(c, "after the replay")
        self.close(c)
        c, data_ = self.open_ws(u, last_id=ids[1])
        self.assert_connected(data_, u, True, "resume from ids[1] after restart")
        self.assertEqual(self.recv_ids(c, 3, "resume after restart"), ids[2:])
        self.close(c)
        c, _ = self.open_ws(u)
        self.expect_quiet(c, "written before the restart: no offline replay after it")
        cv, _ = self.open_ws(v)
        self.assertEqual(self.recv_ids(cv, 1, "offline delivery across a restart"), [voff])
        new = send(d, u).notification_id
        self.assertGreater(new, max(ids + [voff]), "id counter went back after a restart")

    def test_sigkill_everything_loses_nothing(self):
        """SIGKILL of the master and every worker right after a burst of OK answers
        (senders still running): after a restart on the same --data-dir every
        OK'd notification is in the history, in order."""
        data = os.path.join(self.tmp, "data")
        d = self.daemon(["--data-dir", data, "--history-size", "10000"])
        users = [next_uid() for _ in range(4)]
        oks = {u: [] for u in users}
        failed = {u: 0 for u in users}
        stop = threading.Event()
        st = stub(d)

        def sender(u):
            i = 0
            while not stop.is_set() and failed[u] == 0:
                try:
                    r = st.SendNotification(req(u, title="k%d" % i), timeout=5)
                    oks[u].append(r.notification_id)
                except grpc.RpcError:
                    failed[u] += 1
                i += 1
        threads = [threading.Thread(target=sender, args=(u,), daemon=True) for u in users]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while sum(len(v) for v in oks.values()) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        counts = {u: len(oks[u]) for u in users}
        os.killpg(d.proc.pid, signal.SIGKILL)
        stop.set()
        d.kill()
        for t in threads:
            t.join(10)
        self.assertTrue(sum(counts.values()) >= 50, "the burst got few OKs: %r" % counts)
        close_channel(d)
        d.start()
        allmax = 0
        for u in users:
            c, data_ = self.open_ws(u, last_id=0)
            self.assert_connected(data_, u, True, "last_id=0 after SIGKILL")
            want = oks[u]
            got = []
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                # Until every OK'd one came (and 0.3 s more for the in-flight one).
                wait = 0.3 if set(want) <= set(got) else deadline - time.monotonic()
                try:
                    m = c.recv_json(max(0.01, wait))
                except wc.WSTimeout:
                    break
                self.assertEqual(m.get("type"), "notification", m)
                got.append(m["data"]["id"])
            missing = [x for x in want if x not in set(got)]
            self.assertEqual(missing, [], "user %d: %d of %d OK'd notifications lost by SIGKILL "
                             "(first lost %r)" % (u, len(missing), len(want), missing[:5]))
            kept = [x for x in got if x in set(want)]
            self.assertEqual(kept, want, "user %d: replay order differs from send order" % u)
            extra = [x for x in got if x not in set(want)]
            self.assertLessEqual(len(extra), 1, "user %d: more than the one in-flight call's "
                                 "notification beyond the OK'd ones: %r" % (u, extra))
            if extra:
                self.assertEqual(got[-1], extra[0], "the in-flight one is not the newest")
            allmax = max([allmax] + got)
            self.close(c)
        self.assertGreater(send(d, users[0]).notification_id, allmax,
                           "ids after the crash not above the old ones")

    def test_second_daemon_same_dir(self):
        """A second daemon on the same --data-dir fails at start: exit 1, a message
        naming the directory; the first keeps working."""
        data = os.path.join(self.tmp, "shared")
        d1 = self.daemon(["--data-dir", data])
        d2 = self.daemon(["--data-dir", data], workers=1, start=False)
        d2.start(wait=False)
        rc = d2.wait_exit(10)
        self.assertEqual(rc, 1, "second daemon on one --data-dir: exit %r" % rc)
        self.assertIn(data, d2.log_text(), "the message does not name the directory")
        self.d = d1
        self.assertTrue(d1.alive())
        u = next_uid()
        nid = send(d1, u).notification_id
        self.assertEqual(state_name(status(d1, u, nid)), "STORED")

    def test_data_dir_cannot_be_created(self):
        """--data-dir under a regular file, or a regular file itself -> exit 1 naming
        --data-dir."""
        f = os.path.join(self.tmp, "file")
        with open(f, "w") as fh:
            fh.write("x")
        for path in (os.path.join(f, "sub"), f):
            d = self.daemon(["--data-dir", path], workers=1, start=False)
            d.start(wait=False)
            rc = d.wait_exit(10)
            self.assertEqual(rc, 1, "--data-dir %s: exit %r" % (path, rc))
            self.assertIn("--data-dir", d.log_text(), "the message does not name --data-dir")

    def test_no_data_dir_lives_with_the_process(self):
        """Without --data-dir the history is gone after a restart, but ids still
        increase (time-based base)."""
        d = self.daemon([])
        u = next_uid()
        ids = [send(d, u).notification_id for _ in range(3)]
        self.assertEqual(d.stop(), 0)
        self.restart(d)
        self.assertEqual(state_name(status(d, u, ids[0])), "NOT_FOUND")
        c, data_ = self.open_ws(u, last_id=ids[-1])
        self.assert_connected(data_, u, False, "resume after a restart without --data-dir")
        self.expect_quiet(c, "history without --data-dir must not survive")
        self.assertGreater(send(d, u).notification_id, ids[-1], "ids reused after a restart")


# --------------------------------------------------------------------------- the resume race

ABSENT = object()


class Conn:
    """What one connection of the race saw."""

    def __init__(self, mode, last_id, via, src_slot=None):
        self.mode = mode            # "resume" or "none"
        self.last_id = last_id      # resume: the id sent
        self.via = via              # "query", "header", "both" (query right, header wrong), ""
        self.src_slot = src_slot    # worker slot its source port maps to (race rounds)
        self.connected = None       # data of `connected`, or None if it never came
        self.ids = []               # notification ids in arrival order (incl. those read while closing)
        self.other = []             # any other message
        self.close = None           # (code, reason) from the server
        self.loser = False
        self.final = False
        self.error = None

    def describe(self):
        s = self.mode
        if self.mode == "resume":
            s += " last_id=%d via %s" % (self.last_id, self.via)
        if self.src_slot is not None:
            s += " (worker %d)" % self.src_slot
        if self.loser:
            s += " [lost the race]"
        if self.final:
            s += " [final]"
        return s + ", %d received%s" % (
            len(self.ids), " %d..%d" % (self.ids[0], self.ids[-1]) if self.ids else "")

    def take(self, m):
        if m.get("type") == "notification":
            self.ids.append(m["data"]["id"])
        elif m.get("type") == "connected" and self.connected is None and not self.ids:
            self.connected = m.get("data", {})
        else:
            self.other.append(m)


def check_race_user(u, sent, rounds):
    """The SPEC's guarantees for one user of the race. sent: the ids the sender got
    OK for, in send order (one sequential sender per user, so send order is store
    order). rounds: [[Conn]] in time order (a race round has two concurrent
    connections). -> [problem]

    - every connection: first `connected` (with recovered true for a resume —
      its last_id is 0 or an id it saw — and without the key otherwise), then only
      notifications;
    - resume with last_id=L: exactly the ids stored after L, in order, none
      skipped, none twice: a prefix of sent[after L:] (all of it for the final
      connection);
    - no last_id: exactly the never-written ones in order, then live: a prefix of
      sent minus everything that earlier connections received (each connection is
      read up to the server's close frame, so what was written to it is what it
      received);
    - the counted connections (not the losers of a race, which got 4000) together:
      strictly increasing (nothing twice across connections, as the client always
      resumes from the last id it saw) and nothing missing, but for ids that only a
      loser received (a later reconnect without last_id may skip those)."""
    pos = {x: i for i, x in enumerate(sent)}
    problems = []
    written = set()
    counted = []
    loser_ids = set()
    for ri, rnd in enumerate(rounds):
        for rec in rnd:
            where = "user %d round %d (%s)" % (u, ri, rec.describe())
            if rec.error:
                problems.append("%s: %s" % (where, rec.error))
            if rec.other:
                problems.append("%s: unexpected messages %r" % (where, rec.other[:3]))
            if rec.connected is None and not rec.loser:
                problems.append("%s: no connected message" % where)
            if rec.connected is not None:
                rcv = rec.connected.get("recovered", ABSENT)
                if rec.mode == "resume" and rcv is not True:
                    problems.append("%s: connected.recovered is %s, expected true" % (
                        where, "absent" if rcv is ABSENT else repr(rcv)))
                if rec.mode == "none" and rcv is not ABSENT:
                    problems.append("%s: connected has recovered=%r without last_id" % (where, rcv))
            unknown = [x for x in rec.ids if x not in pos]
            if unknown:
                problems.append("%s: ids no call got OK for: %r" % (where, unknown[:5]))
                continue
            if rec.mode == "resume":
                if rec.last_id != 0 and rec.last_id not in pos:
                    problems.append("%s: test bug, last_id not sent" % where)
                    continue
                expected = sent[0 if rec.last_id == 0 else pos[rec.last_id] + 1:]
            else:
                expected = [x for x in sent if x not in written]
            n = len(rec.ids)
            if rec.ids != expected[:n]:
                j = next(i for i in range(n) if i >= len(expected) or rec.ids[i] != expected[i])
                got = rec.ids[j]
                if got in rec.ids[:j]:
                    kind = "id %d twice on one connection" % got
                elif j < len(expected) and pos[got] > pos[expected[j]]:
                    skipped = [x for x in expected[j:] if pos[x] < pos[got]]
                    kind = "skipped %d: %r (got %d instead)" % (len(skipped), skipped[:6], got)
                elif got in written:
                    kind = "id %d was already written to an earlier connection" % got
                else:
                    kind = "id %d out of order (expected %r)" % (got, expected[j] if j < len(expected) else None)
                problems.append("%s: at message %d: %s; received %r..., expected %r..." % (
                    where, j, kind, rec.ids[max(0, j - 3):j + 4], expected[max(0, j - 3):j + 4]))
            elif rec.final and n != len(expected):
                problems.append("%s: the final connection stopped after %d of the %d it should get "
                                "(missing from %r)" % (where, n, len(expected), expected[n:n + 5]))
        for rec in rnd:
            written.update(rec.ids)
            if rec.loser:
                loser_ids.update(rec.ids)
            else:
                counted.append(rec)
    concat = [x for rec in counted for x in rec.ids if x in pos]
    for a, b in zip(concat, concat[1:]):
        if pos[b] <= pos[a]:
            problems.append("user %d: over the counted connections %d came after %d (a double or "
                            "out of order across a resume)" % (u, b, a))
            break
    seen = set(concat)
    missing = [x for x in sent if x not in seen and x not in loser_ids]
    if missing:
        problems.append("user %d: %d OK'd notification(s) never received: %r" % (
            u, len(missing), missing[:8]))
    return problems


class RaceTest(DaemonClass):
    ARGS = FAST + ("--history-size", "10000")
    TIMEOUT = 75
    USERS = 4
    SECONDS = 7.0
    PAUSE = 0.008            # between one user's calls: about 100/s per user
    MIN_SENT = 600           # fewer notifications in all: the test proved nothing

    def test_fast_reconnect_no_offline_double(self):
        """Notifications written live on worker A, then the client drops the
        connection (close or reset) and at once reconnects without last_id on
        worker B, then on A again, many times: no connection may replay one that
        was already written (SPEC: offline replay is of the notifications never
        written to any connection of that user)."""
        d = self.d
        pools = probe_slot_ports(d, 1)
        slots = [s for s in range(d.workers) if pools[s]]
        self.assertGreaterEqual(len(slots), 2, "source ports for two workers: %r" % pools)
        doubles = []
        written = {}            # id -> the iteration that received it live
        u = next_uid()
        rounds = 80

        def no_replay(c, i, which, slot):
            """ping: the pong must come before any notification."""
            c.send_text('{"type":"ping"}')
            while True:
                m = c.recv_json(3)
                if m.get("type") == "pong":
                    return
                nid = m.get("data", {}).get("id")
                doubles.append("iteration %d, %s on worker %d replayed %r (%s)" % (
                    i, which, slot, nid, "written live in iteration %d" % written[nid]
                    if nid in written else "never written?"))

        for i in range(rounds):
            a, b = slots[i % len(slots)], slots[(i + 1) % len(slots)]
            c1 = upgrade(d, ws_path(d, u), src_port=pools[a][0])
            self.assertIsInstance(c1, wc.WSConnection, "iteration %d: %r" % (i, c1))
            self.clients.append(c1)
            m = c1.recv_json(3)
            self.assertEqual(m.get("type"), "connected", "iteration %d: %r" % (i, m))
            no_replay(c1, i, "the first connection", a)
            n = 1 + i % 3
            ids = [send(d, u, title="fast %d.%d" % (i, k)).notification_id for k in range(n)]
            self.assertEqual(self.recv_ids(c1, n, "iteration %d, live" % i), ids)
            written.update((x, i) for x in ids)
            if i % 2:
                wc.reset(c1)
            else:
                self.close(c1)
            c2 = upgrade(d, ws_path(d, u), src_port=pools[b][0])
            self.assertIsInstance(c2, wc.WSConnection, "iteration %d: %r" % (i, c2))
            self.clients.append(c2)
            m = c2.recv_json(3)
            self.assertEqual(m.get("type"), "connected", "iteration %d: %r" % (i, m))
            no_replay(c2, i, "the reconnect", b)
            wc.reset(c2)
        if doubles:
            self.fail("%d time(s) in %d rounds a connection without last_id "
                      "replayed a notification already written to an earlier connection:\n%s"
                      % (len(doubles), rounds, "\n".join(doubles[:10])))

    def test_resume_race(self):
        """A sender per user runs continuously (about 400 notifications/s in all)
        while each user's client disconnects and reconnects: resumes with the last
        id it saw (query, header, or both with a wrong header), reconnects without
        last_id, and races two connections from different workers (the loser gets
        4000 and does not count), many rounds. Then check_race_user."""
        d = self.d
        pools = probe_slot_ports(d, 10)
        pool_lock = threading.Lock()
        users = [next_uid() for _ in range(self.USERS)]
        sent = {u: [] for u in users}
        rounds = {u: [] for u in users}
        errors = []
        stop_send = threading.Event()
        final = threading.Event()
        st = stub(d)
        stats = {"race": 0, "race_cross": 0, "resume": 0, "none": 0}

        def sender(u):
            i = 0
            try:
                while not stop_send.is_set():
                    r = st.SendNotification(req(u, title="race %d" % i, message="m"), timeout=10)
                    sent[u].append(r.notification_id)
                    i += 1
                    time.sleep(self.PAUSE)
            except Exception as e:      # noqa: BLE001 — reported as a failure
                errors.append("sender of user %d after %d calls: %r" % (u, i, e))

        def read(rec, c, secs):
            """Read c for secs (or until it closes)."""
            deadline = time.monotonic() + secs
            while rec.close is None:
                rem = deadline - time.monotonic()
                if rem <= 0:
                    return
                try:
                    rec.take(c.recv_json(rem))
                except wc.WSTimeout:
                    return
                except wc.WSClosed as e:
                    rec.close = (e.code, e.reason)
                except wc.WSEOF:
                    rec.close = (1006, "")

        def close(rec, c):
            """Client close, reading everything the server writes before its close frame."""
            if rec.close is None:
                try:
                    rec.close = c.close(1000, "", timeout=5)
                except wc.WSError as e:
                    rec.error = "closing: %r" % e
                for f in c.discarded:
                    if f.opcode == wc.OP_TEXT:
                        rec.take(json.loads(f.payload.decode()))
            c.abort()

        def open_conn(u, mode, last_id, via):
            rec = Conn(mode, last_id, via)
            path = ws_path(d, u, last_id if via in ("query", "both") else None)
            headers = {}
            if via == "header":
                headers["Last-Event-ID"] = str(last_id)
            elif via == "both":
                headers["Last-Event-ID"] = "1"      # not in the history: must be ignored
            return rec, path, headers

        def finish(rec, c):
            if not isinstance(c, wc.WSConnection):
                rec.error = "not upgraded: %r" % (c,)
                rec.close = (0, "")
                return None
            return c

        def one_round(u, rng, last_seen, is_final):
            lid = last_seen if last_seen is not None else 0
            x = rng.random()
            if is_final:
                mode = "resume"
            elif x < 0.2 and stats["race"] < 40:
                mode = "race"
            elif x < 0.4:
                mode = "none"
            else:
                mode = "resume"
            via = rng.choice(("query", "query", "header", "both"))
            if mode == "race":
                stats["race"] += 1
                with pool_lock:
                    avail = [s for s in pools if pools[s]]
                    pick = rng.sample(avail, 2) if len(avail) >= 2 else []
                    ports = [(s, pools[s].pop()) for s in pick]
                if ports:
                    stats["race_cross"] += 1
                else:
                    ports = [(None, None), (None, None)]
                recs, pend = [], []
                for slot, port in ports:
                    rec, path, headers = open_conn(u, "resume", lid, via)
                    rec.src_slot = slot
                    recs.append(rec)
                    pend.append(wc.start_handshake_from(d.host, d.port, port, path, headers))
                conns = []
                for rec, p in zip(recs, pend):
                    try:
                        conns.append(wc.finish_handshake(p))
                    except wc.WSError as e:
                        conns.append(e)
                # Read both until one got 4000 and the round time passed.
                t_end = time.monotonic() + rng.uniform(0.05, 0.3)
                t_limit = time.monotonic() + 4.0
                while True:
                    for rec, c in zip(recs, conns):
                        if isinstance(c, wc.WSConnection):
                            read(rec, c, 0.005)
                        elif rec.close is None:
                            rec.error, rec.close = "not upgraded: %r" % (c,), (0, "")
                    closed = [r for r in recs if r.close is not None]
                    if (closed and time.monotonic() >= t_end) or time.monotonic() >= t_limit:
                        break
                replaced = [r for r in recs if r.close == (4000, "replaced by a newer connection")]
                if len(replaced) != 1 or len([r for r in recs if r.close is None]) != 1:
                    recs[0].error = "race round: closes %r, expected one 4000 and one open" % (
                        [r.close for r in recs],)
                for rec, c in zip(recs, conns):
                    if rec in replaced:
                        rec.loser = True
                    if isinstance(c, wc.WSConnection):
                        close(rec, c)
                return recs
            stats[mode] += 1
            rec, path, headers = open_conn(u, mode, lid if mode == "resume" else None,
                                           via if mode == "resume" else "")
            rec.final = is_final
            try:
                c = upgrade(d, path, headers)
            except wc.WSError as e:
                c = e
            c = finish(rec, c)
            if c is not None:
                if is_final:
                    deadline = time.monotonic() + 8
                    last = sent[u][-1] if sent[u] else None
                    while (not rec.ids or rec.ids[-1] != last) and rec.close is None \
                            and time.monotonic() < deadline:
                        read(rec, c, 0.2)
                    read(rec, c, 0.3)
                else:
                    read(rec, c, rng.uniform(0.02, 0.25))
                close(rec, c)
                if rec.close is not None and rec.close[0] not in (1000, 1005) and rec.error is None:
                    rec.error = "closed by the server with %r" % (rec.close,)
            return [rec]

        def client(u, seed):
            rng = random.Random(seed)
            last_seen = None
            try:
                while True:
                    is_final = final.is_set()
                    rnd = one_round(u, rng, last_seen, is_final)
                    rounds[u].append(rnd)
                    for rec in rnd:
                        if not rec.loser and rec.ids:
                            last_seen = rec.ids[-1]
                    if is_final:
                        return
                    x = rng.random()
                    time.sleep(0 if x < 0.3 else rng.uniform(0.0, 0.1) if x < 0.9 else rng.uniform(0.2, 0.4))
            except Exception:           # noqa: BLE001 — reported as a failure
                errors.append("client of user %d: %s" % (u, traceback.format_exc()))

        seed = int(os.environ.get("WSN_RACE_SEED", str(int(time.time()))))
        senders = [threading.Thread(target=sender, args=(u,), daemon=True) for u in users]
        clients = [threading.Thread(target=client, args=(u, seed + i), daemon=True)
                   for i, u in enumerate(users)]
        for t in senders + clients:
            t.start()
        time.sleep(self.SECONDS)
        stop_send.set()
        for t in senders:
            t.join(15)
        final.set()
        for t in clients:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in senders + clients), "a thread is stuck")
        self.assertEqual(errors, [], "\n".join(errors))
        problems, shown = [], []
        for u in users:
            p = check_race_user(u, sent[u], rounds[u])
            problems += p
            shown += p[:5] + (["user %d: ... and %d more" % (u, len(p) - 5)] if len(p) > 5 else [])
        total = sum(len(v) for v in sent.values())
        nrounds = sum(len(v) for v in rounds.values())
        replayed = sum(1 for u in users for rnd in rounds[u] for r in rnd if r.ids)
        print("    seed %d: %d notifications, %d rounds (%d resume, %d without last_id, %d races, "
              "%d of them over two workers), %d connections received something"
              % (seed, total, nrounds, stats["resume"], stats["none"], stats["race"],
                 stats["race_cross"], replayed))
        if problems:
            self.fail("%d problem(s) (seed %d; WSN_RACE_SEED=%d repeats the schedule), the first "
                      "ones of each user:\n" % (len(problems), seed, seed) + "\n".join(shown))
        self.assertGreaterEqual(total, self.MIN_SENT, "the sender was too slow to test anything")
        self.assertGreaterEqual(stats["race_cross"], 4, "too few races over two workers")



class DurableRaceTest(RaceTest):
    """The same with --data-dir: every group commit is fsync'd, so the commits
    (of notifications and of SENT marks) take longer and the windows widen."""
    SECONDS = 5.0
    MIN_SENT = 300

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wsn-hist-race-")
        cls.ARGS = RaceTest.ARGS + ("--data-dir", os.path.join(cls.tmp, "data"))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)


if __name__ == "__main__":
    if es.no_daemon(WSNOTIFYD):
        sys.exit(77)
    es.raise_nofile_limit()
    _stubs = tempfile.mkdtemp(prefix="wsn-hist-stubs-")
    try:
        eg.generate_stubs(_stubs)
        with es.watchdog(GLOBAL_TIMEOUT, "e2e_history: global timeout"):
            status_ = es.run_unittest_file(sys.modules[__name__], sys.argv[1:])
    finally:
        shutil.rmtree(_stubs, ignore_errors=True)
    sys.exit(status_)

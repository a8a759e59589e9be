#!/usr/bin/env python3
"""End-to-end tests of wsnotifyd: the real daemon, real sockets, Python stdlib only.

Run by automake as `python3 -B tests/e2e/e2e_gateway.py` with WSNOTIFYD=<daemon binary>.
Exit 0 = all passed, 77 = skipped (no daemon), 1 = failures.  The last line printed is
`N passed, M failed`.  Select tests with arguments: `e2e_gateway.py BasicTests.test_x`.
Set WSN_E2E_LOG_LEVEL=debug to start the daemons with --log-level debug.
"""

import itertools
import json
import os
import random
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from wsnclient import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WORKERS = 4
TEST_TIMEOUT = 45          # seconds, per test (SIGALRM)
GLOBAL_TIMEOUT = 150       # seconds, whole file

_uids = itertools.count(1000 + (os.getpid() % 97) * 1000)
NOTES = []                 # spec deviations that do not fail a test
FAILED = []


def next_uid():
    return next(_uids)


def note(msg):
    if msg not in NOTES:
        NOTES.append(msg)


class E2ETest(es.DaemonTestCase):
    """Base: per-test alarm, client bookkeeping, helpers. A subclass sets DAEMON_KW
    (kwargs for wc.Daemon) to get one daemon for the whole class in cls.d."""
    DAEMON_KW = None
    TIMEOUT = TEST_TIMEOUT

    @classmethod
    def setUpClass(cls):
        cls.d = None
        if cls.DAEMON_KW is not None:
            es.arm_alarm(30)
            try:
                cls.d = wc.Daemon(WSNOTIFYD, name=cls.__name__, **cls.DAEMON_KW)
                cls.d.start()
            finally:
                signal.alarm(0)

    def setUp(self):
        super().setUp()
        self.local = []

    def tearDown(self):
        super().tearDown()
        for d in self.local:
            d.cleanup()
        if self.d is not None and self.d.alive() and self.clients:
            # Leave the shared daemon with no connections for the next test.
            self.d.wait_health(lambda h: h.get("ws_connections") == 0, timeout=3)

    def _daemons(self):
        return [d for d in [self.d] + self.local if d is not None]

    # ---- helpers
    def new_daemon(self, **kw):
        d = wc.Daemon(WSNOTIFYD, name=self.id(), **kw)
        self.local.append(d)
        d.start()
        return d

    def open_client(self, d=None, uid=None, email=None, auto_pong=True, **tok):
        """Connect a user and read the `connected` message. -> (conn, uid, msg)"""
        d = d or self.d
        uid = uid if uid is not None else next_uid()
        c = d.connect_user(uid, email, auto_pong=auto_pong, **tok)
        self.assertIsInstance(c, wc.WSConnection, "user %d was not upgraded: %r" % (uid, c))
        self.clients.append(c)
        msg = c.recv_json(3)
        self.assertEqual(msg.get("type"), "connected", "first message for user %d: %r" % (uid, msg))
        return c, uid, msg

    def assert_ping_pong(self, c, what=""):
        c.send_text('{"type":"ping"}')
        msg = c.recv_json(3)
        self.assertEqual(msg, {"type": "pong", "data": {"status": "ok"}}, what)

    def assert_close(self, c, code, what, timeout=3):
        try:
            got = c.wait_closed(timeout)
        except wc.WSTimeout:
            self.fail("%s: connection not closed within %ss (expected close %d)" % (what, timeout, code))
        self.assertEqual(got[0], code, "%s: expected close %d, got %r" % (what, code, got))
        return got

    def assert_http_json(self, r, status, what, key=None):
        self.assertIsInstance(r, wc.HTTPResponse, "%s: expected HTTP %d, got an upgrade" % (what, status))
        self.assertEqual(r.status, status, "%s: %r" % (what, r))
        try:
            body = r.json()
        except ValueError:
            self.fail("%s: body is not JSON: %r" % (what, r.body[:300]))
        self.assertIsInstance(body, dict, "%s: body %r" % (what, body))
        if key:
            self.assertIn(key, body, "%s: body %r" % (what, body))
            self.assertIsInstance(body[key], str, "%s: body %r" % (what, body))
        self.assertIsNone(r.header("sec-websocket-accept"), "%s: %r" % (what, r))
        ct = r.header("content-type", "")
        if "json" not in ct:
            note("HTTP %d (%s) Content-Type is %r, not application/json" % (status, what, ct))
        return body

    def health_eq(self, d, n, timeout=5, what=""):
        ok, h = d.wait_health(lambda h: h.get("ws_connections") == n, timeout)
        self.assertTrue(ok, "%s: /health ws_connections never became %d (last %r)" % (what, n, h))
        return h


def _raw_request(path, host="127.0.0.1:1", extra=""):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (path, host, extra)).encode()


# =========================================================================== basic

class BasicTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS)

    # ---- messages
    def test_connected_message(self):
        uid = next_uid()
        c = self.d.connect_user(uid, "Alice.Example+x@example.com")
        self.assertIsInstance(c, wc.WSConnection, repr(c))
        self.clients.append(c)
        f = c.recv_frame(3)
        self.assertEqual((f.opcode, f.fin, f.rsv, f.masked), (OP_TEXT, 1, 0, False),
                         "connected frame must be one unmasked final text frame: %r" % f)
        msg = json.loads(f.payload.decode())
        self.assertEqual(msg, {"type": "connected", "data": {
            "user_id": uid, "email": "Alice.Example+x@example.com",
            "message": "Connected to notifications"}})
        self.assertIsNotNone(self.d.worker_of(uid), "no `Client connected: UserID=%d` log line" % uid)

    def test_connected_message_sub_claims_and_no_email(self):
        # SPEC: sub (JSON number or decimal string) accepted when user_id is absent;
        # email may be absent -> "".
        for sub in (next_uid(), str(next_uid())):
            tok = wc.make_token(self.d.secret, user_id=None, email=None, extra={"sub": sub})
            c = self.d.connect("/ws?token=" + tok)
            self.assertIsInstance(c, wc.WSConnection, "sub=%r: %r" % (sub, c))
            self.clients.append(c)
            msg = c.recv_json(3)
            self.assertEqual(msg, {"type": "connected", "data": {
                "user_id": int(sub), "email": "", "message": "Connected to notifications"}},
                "sub=%r" % (sub,))

    def test_text_ping_pong(self):
        c, _, _ = self.open_client()
        for i in range(3):
            self.assert_ping_pong(c, "ping #%d" % i)
        c.send_text('  {"type" : "ping"}\n')
        self.assertEqual(c.recv_json(3), {"type": "pong", "data": {"status": "ok"}}, "ping with whitespace")

    def test_ping_frame_pong_same_payload(self):
        c, _, _ = self.open_client()
        for payload in (b"", b"hello", os.urandom(125)):
            c.send_ping(payload)
            f = c.recv_frame(3)
            while f.opcode == OP_PING:
                f = c.recv_frame(3)
            self.assertEqual(f.opcode, OP_PONG, repr(f))
            self.assertEqual(f.payload, payload)
            self.assertFalse(f.masked)
        self.assert_ping_pong(c, "after ping frames")

    def test_unknown_and_malformed_json_error(self):
        c, _, _ = self.open_client()
        for text in ('{"type":"subscribe"}', "not json", '{"type":', "[1,2]", '{"type":5}', "{}"):
            c.send_text(text)
            try:
                msg = c.recv_json(3)
            except wc.WSClosed as e:
                self.fail("%r: connection closed %r instead of an error message" % (text, (e.code, e.reason)))
            self.assertEqual(msg.get("type"), "error", "%r -> %r" % (text, msg))
            self.assertEqual(set(msg), {"type", "data"}, "%r -> %r" % (text, msg))
            self.assertIsInstance(msg["data"].get("message"), str, "%r -> %r" % (text, msg))
            self.assertTrue(msg["data"]["message"], "%r -> empty message" % text)
            time.sleep(0.12)        # stay under the default 10 messages/s limit
        self.assert_ping_pong(c, "still open after errors")

    # ---- authentication
    def test_401_cases(self):
        s = self.d.secret
        now = int(time.time())
        u = next_uid()
        good = wc.make_token(s, u)
        h, p, sig = good.split(".")
        tampered_payload = wc.b64url(json.dumps({"user_id": u + 1, "email": "x@example.com", "exp": now + 3600}))
        import hmac as _h, hashlib as _hl
        hs512_in = wc.b64url('{"alg":"HS512","typ":"JWT"}') + "." + p
        hs512 = hs512_in + "." + wc.b64url(_h.new(s.encode(), hs512_in.encode(), _hl.sha512).digest())
        none_signed = wc.make_token(s, u, header={"alg": "none", "typ": "JWT"}, sign=False)
        none_with_sig = none_signed + wc.b64url(_h.new(s.encode(), none_signed[:-1].encode(), _hl.sha256).digest())
        cases = [
            ("missing token", "/ws"),
            ("empty token", "/ws?token="),
            ("malformed: one part", "/ws?token=abc"),
            ("malformed: two parts", "/ws?token=" + h + "." + p),
            ("malformed: garbage parts", "/ws?token=a.b.c"),
            ("malformed: header not JSON", "/ws?token=" + wc.b64url("nope") + "." + p + "." + sig),
            ("wrong signature", "/ws?token=" + wc.make_token("some-other-secret", u)),
            ("tampered payload", "/ws?token=" + h + "." + tampered_payload + "." + sig),
            ("alg none", "/ws?token=" + none_signed),
            ("alg none with a signature", "/ws?token=" + none_with_sig),
            ("alg HS512", "/ws?token=" + hs512),
            ("expired", "/ws?token=" + wc.make_token(s, u, exp=now - 60)),
            ("missing exp", "/ws?token=" + wc.make_token(s, u, exp=None)),
            ("exp not a number", "/ws?token=" + wc.make_token(s, u, exp=None, extra={"exp": "never"})),
            ("no user", "/ws?token=" + wc.make_token(s, None)),
            ("user_id 0", "/ws?token=" + wc.make_token(s, 0)),
            ("user_id negative", "/ws?token=" + wc.make_token(s, -5)),
            ("sub not numeric", "/ws?token=" + wc.make_token(s, None, extra={"sub": "alice"})),
        ]
        for what, path in cases:
            r = self.d.connect(path)
            if isinstance(r, wc.WSConnection):
                r.abort()
                self.fail("%s: the server upgraded the connection" % what)
            self.assert_http_json(r, 401, what, key="error")
        # Bearer with a bad token too.
        r = self.d.connect("/ws", {"Authorization": "Bearer " + wc.make_token("wrong", u)})
        self.assert_http_json(r, 401, "Bearer with a wrong signature", key="error")
        # And the server still serves.
        self.open_client()

    def test_token_bearer(self):
        uid = next_uid()
        c = self.d.connect("/ws", {"Authorization": "Bearer " + self.d.token(uid)})
        self.assertIsInstance(c, wc.WSConnection, repr(c))
        self.clients.append(c)
        msg = c.recv_json(3)
        self.assertEqual(msg["type"], "connected")
        self.assertEqual(msg["data"]["user_id"], uid)
        self.assert_ping_pong(c)

    def test_token_query_url_encoded(self):
        uid = next_uid()
        tok = self.d.token(uid)
        enc = "".join("%%%02X" % b for b in tok.encode())          # every byte percent-encoded
        c = self.d.connect("/ws?foo=bar%20baz&token=" + enc + "&x=1")
        self.assertIsInstance(c, wc.WSConnection, repr(c))
        self.clients.append(c)
        msg = c.recv_json(3)
        self.assertEqual(msg["data"]["user_id"], uid, repr(msg))

    # ---- plain HTTP
    def test_404_405(self):
        for path in ("/nope", "/", "/ws/extra", "/healthz", "/health/x"):
            r = self.d.http("GET", path)
            self.assert_http_json(r, 404, "GET %s" % path)
        checks = [("POST", "/health"), ("PUT", "/health"), ("DELETE", "/health"), ("POST", "/ws")]
        if self.d.http("GET", "/metrics").status == 404:
            note("GET /metrics -> 404 (not implemented yet?), so POST /metrics -> 405 was not checked")
        else:
            checks.append(("POST", "/metrics"))
        for method, path in checks:
            r = self.d.http(method, path, body=b"{}" if method != "DELETE" else b"")
            self.assert_http_json(r, 405, "%s %s" % (method, path))
            if r.header("allow") is None:
                note("405 for %s %s has no Allow header (RFC 9110 15.5.6 requires one)" % (method, path))

    def test_health_content(self):
        r = self.d.http("GET", "/health")
        self.assertEqual(r.status, 200, repr(r))
        h = r.json()
        self.assertEqual(set(h), {"status", "service", "ws_connections", "workers"}, repr(h))
        self.assertEqual(h["status"], "healthy")
        self.assertEqual(h["service"], "wsnotifyd")
        self.assertEqual(h["workers"], WORKERS)
        self.assertIsInstance(h["ws_connections"], int)
        self.assertIn("json", r.header("content-type", ""), repr(r))
        m = self.d.http("GET", "/metrics")
        if m.status != 200 or b"# TYPE" not in m.body:
            note("GET /metrics -> %d %r (SPEC: Prometheus text exposition)" % (m.status, m.body[:100]))

    def test_health_counts_connections(self):
        base = self.health_eq(self.d, 0, what="baseline")["ws_connections"]
        cs = [self.open_client()[0] for _ in range(3)]
        self.health_eq(self.d, base + 3, what="3 open")
        self.assertEqual(cs[0].close(1000)[0], 1000)
        self.health_eq(self.d, base + 2, what="after a close handshake")
        cs[1].abort()                                   # TCP close without a close frame
        self.health_eq(self.d, base + 1, what="after an abort")
        cs[2].close()
        self.health_eq(self.d, base, what="all closed")

    # ---- upgrades
    def test_bad_upgrades(self):
        tok = "/ws?token=" + self.d.token(next_uid())
        cases = [
            ("missing Sec-WebSocket-Key", {"Sec-WebSocket-Key": None}, (400,)),
            ("Sec-WebSocket-Key not base64", {"Sec-WebSocket-Key": "not*base64!!"}, (400,)),
            ("Sec-WebSocket-Key short", {"Sec-WebSocket-Key": "abc"}, (400,)),
            ("Sec-WebSocket-Key of 15 bytes", {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}, (400,)),
            ("Sec-WebSocket-Version 8", {"Sec-WebSocket-Version": "8"}, (426,)),
            ("Sec-WebSocket-Version 14", {"Sec-WebSocket-Version": "14"}, (426,)),
            ("missing Sec-WebSocket-Version", {"Sec-WebSocket-Version": None}, (400, 426)),
            ("missing Upgrade", {"Upgrade": None}, (400, 426)),
            ("Upgrade: h2c", {"Upgrade": "h2c"}, (400, 426)),
            ("Connection without upgrade", {"Connection": "keep-alive"}, (400, 426)),
        ]
        for what, hdrs, statuses in cases:
            r = self.d.connect(tok, hdrs)
            if isinstance(r, wc.WSConnection):
                r.abort()
                self.fail("%s: upgraded" % what)
            self.assertIn(r.status, statuses, "%s: %r" % (what, r))
            if r.status == 426 and "version" in what.lower():
                self.assertEqual(r.header("sec-websocket-version"), "13",
                                 "%s: 426 must list Sec-WebSocket-Version: 13 (RFC 6455 4.4): %r" % (what, r))
        # Case-insensitive tokens in Upgrade/Connection are valid.
        uid = next_uid()
        c = self.d.connect("/ws?token=" + self.d.token(uid),
                           {"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"})
        self.assertIsInstance(c, wc.WSConnection, "Connection: keep-alive, Upgrade: %r" % (c,))
        self.clients.append(c)
        self.assertEqual(c.recv_json(3)["data"]["user_id"], uid)

    def test_garbage_and_oversized_head(self):
        pids_before = self.d.worker_pids()
        started_before = len(self.d.worker_started())
        tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(64)) + b"\r\n\r\n"
        cases = [
            ("TLS client hello", tls, (400,)),
            ("HELLO", b"HELLO\r\n\r\n", (400,)),
            ("header without colon", b"GET /ws HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", (400,)),
            ("NUL bytes", b"\x00" * 100 + b"\r\n\r\n", (400,)),
            ("HTTP/2.0", b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", (400, 505)),
            ("high bytes", b"\xff\xfe\xfd GET / HTTP/1.1\r\n\r\n", (400,)),
        ]
        pad = "X-Pad: " + "a" * 9000 + "\r\n"
        many = "".join("X-H%d: v\r\n" % i for i in range(100))
        tok = "/ws?token=" + self.d.token(next_uid())
        cases += [
            ("head over 8 KiB", _raw_request(tok, extra=pad), (431,)),
            ("100 headers", _raw_request(tok, extra=many), (431,)),
            ("head over 8 KiB, no end", b"GET /health HTTP/1.1\r\nX-Pad: " + b"b" * 9000, (431,)),
        ]
        for rnd in range(2):                  # twice, to reach more than one worker
            for what, raw, statuses in cases:
                try:
                    r = self.d.http(raw=raw, timeout=4)
                except wc.WSEOF:
                    self.fail("%s: connection closed without an HTTP answer" % what)
                except wc.WSTimeout:
                    self.fail("%s: no answer within 4 s" % what)
                self.assertIn(r.status, statuses, "%s: %r" % (what, r))
        # Every worker still serves.
        for _ in range(12):
            c, _, _ = self.open_client()
            self.assert_ping_pong(c)
        ok, h = self.d.wait_health(lambda h: h.get("workers") == WORKERS, 2)
        self.assertTrue(ok, repr(h))
        self.assertEqual(self.d.worker_pids(), pids_before, "a worker was respawned")
        self.assertEqual(len(self.d.worker_started()), started_before, "a worker was respawned")

    # ---- protocol errors
    def _proto(self, what, code, send):
        c, _, _ = self.open_client()
        try:
            send(c)
        except OSError:
            pass            # the server may close before reading everything we send
        return self.assert_close(c, code, what)

    def test_protocol_unmasked_frame(self):
        self._proto("unmasked frame", 1002, lambda c: c.send_frame(OP_TEXT, True, b'{"type":"ping"}', mask=False))

    def test_protocol_reserved_bits(self):
        for rsv in (4, 2, 1):
            self._proto("RSV=%d" % rsv, 1002, lambda c: c.send_frame(OP_TEXT, True, b'{"type":"ping"}', rsv=rsv))

    def test_protocol_bad_opcode(self):
        for op in (0x3, 0x7, 0xB, 0xF):
            self._proto("opcode %#x" % op, 1002, lambda c: c.send_frame(op, True, b"x"))

    def test_protocol_fragmented_ping(self):
        self._proto("fragmented ping", 1002, lambda c: c.send_frame(OP_PING, False, b"abc"))

    def test_protocol_control_frame_too_long(self):
        self._proto("ping with 126-byte payload", 1002, lambda c: c.send_frame(OP_PING, True, b"p" * 126))

    def test_protocol_continuation_without_start(self):
        self._proto("continuation without a first frame", 1002,
                    lambda c: c.send_frame(OP_CONT, True, b'{"type":"ping"}'))

    def test_protocol_new_message_inside_fragmented(self):
        def send(c):
            c.send_frame(OP_TEXT, False, b'{"type":')
            c.send_frame(OP_TEXT, True, b'"ping"}')
        self._proto("text frame while a fragmented message is open", 1002, send)

    def test_protocol_close_one_byte_payload(self):
        self._proto("close frame with a 1-byte payload", 1002, lambda c: c.send_frame(OP_CLOSE, True, b"\x03"))

    def test_protocol_invalid_utf8(self):
        for bad in (b'{"type":"\xff"}', b'{"type":"\xc0\xaf"}', b'{"type":"\xed\xa0\x80"}',
                    b'{"type":"\xf4\x90\x80\x80"}', b'{"type":"ping"}\xe2\x82'):
            self._proto("invalid UTF-8 %r" % bad, 1007, lambda c: c.send_frame(OP_TEXT, True, bad))

    def test_protocol_invalid_utf8_fragmented(self):
        def send(c):
            c.send_frame(OP_TEXT, False, b'{"type":"\xe2\x82')
            c.send_frame(OP_CONT, True, b'("}')        # \xe2\x82 followed by '(' : invalid
        self._proto("invalid UTF-8 across fragments", 1007, send)

    def test_message_too_big(self):
        self._proto("one 65537-byte frame", 1009,
                    lambda c: c.send_frame(OP_TEXT, True, b"x" * (64 * 1024 + 1)))

        def send(c):
            c.send_frame(OP_TEXT, False, b"y" * 40000)
            c.send_frame(OP_CONT, True, b"y" * 30000)
        self._proto("65536+ bytes in two fragments", 1009, send)

    def test_message_exactly_64k_accepted(self):
        c, _, _ = self.open_client()
        head, tail = '{"type":"ping","pad":"', '"}'
        text = head + "p" * (64 * 1024 - len(head) - len(tail)) + tail
        self.assertEqual(len(text.encode()), 65536)
        c.send_text(text)
        try:
            msg = c.recv_json(5)
        except wc.WSClosed as e:
            self.fail("64 KiB message: closed %r" % ((e.code, e.reason),))
        self.assertEqual(msg, {"type": "pong", "data": {"status": "ok"}})
        # A 64 KiB message in fragments too.
        third = len(text) // 3
        c.send_frame(OP_TEXT, False, text[:third].encode())
        c.send_frame(OP_CONT, False, text[third:2 * third].encode())
        c.send_frame(OP_CONT, True, text[2 * third:].encode())
        self.assertEqual(c.recv_json(5), {"type": "pong", "data": {"status": "ok"}})
        self.assert_ping_pong(c)

    def test_fragmented_text_with_interleaved_ping(self):
        c, _, _ = self.open_client()
        c.send_frame(OP_TEXT, False, b'{"type":')
        c.send_frame(OP_PING, True, b"mid")
        c.send_frame(OP_CONT, False, b'"ping"')
        c.send_frame(OP_CONT, True, b"}")
        got_pong_frame = got_pong_msg = False
        deadline = time.monotonic() + 3
        while not (got_pong_frame and got_pong_msg) and time.monotonic() < deadline:
            f = c.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_PONG:
                self.assertEqual(f.payload, b"mid")
                self.assertFalse(got_pong_msg, "pong frame should be sent before the message reply")
                got_pong_frame = True
            elif f.opcode == OP_TEXT:
                self.assertEqual(json.loads(f.payload), {"type": "pong", "data": {"status": "ok"}})
                got_pong_msg = True
            elif f.opcode == OP_CLOSE:
                self.fail("closed: %r" % (c.close_received,))
        self.assertTrue(got_pong_frame, "no pong frame for the interleaved ping")
        self.assertTrue(got_pong_msg, "no pong message for the fragmented ping")

    def test_fragmented_utf8_split_inside_character(self):
        c, _, _ = self.open_client()
        data = '{"type":"ping","n":"\u00e9\u20ac\U0001F600"}'.encode()
        i = data.index(b"\xe2") + 1        # split inside the euro sign
        j = data.index(b"\xf0") + 2        # and inside the emoji
        c.send_frame(OP_TEXT, False, data[:i])
        c.send_frame(OP_CONT, False, data[i:j])
        c.send_frame(OP_CONT, True, data[j:])
        self.assertEqual(c.recv_json(3), {"type": "pong", "data": {"status": "ok"}})

    def test_close_handshake_echo(self):
        for code, reason in ((1000, "bye"), (3000, ""), (4999, "app reason")):
            c, _, _ = self.open_client()
            got = c.close(code, reason, timeout=3)
            self.assertEqual(got[0], code, "close %d echoed as %r" % (code, got))
            self.assertTrue(c.eof, "server did not close TCP after the close handshake (%d)" % code)
        c, _, _ = self.open_client()
        c.send_frame(OP_CLOSE, True, b"")
        got = c.wait_closed(3)
        self.assertIn(got[0], (1005, 1000), "empty close echoed as %r" % (got,))
        self.assertTrue(c.eof)

    # ---- handshake deadline (slow: ~10 s, the three sockets are tested at once)
    TIMEOUT_SLOW = 25

    def test_handshake_timeout(self):
        signal.alarm(self.TIMEOUT_SLOW)
        tok = self.d.token(next_uid())
        half = socket.create_connection((self.d.host, self.d.port), 3)
        half.sendall(("GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" % tok).encode())
        silent = socket.create_connection((self.d.host, self.d.port), 3)
        drip = socket.create_connection((self.d.host, self.d.port), 3)
        drip_data = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200
        socks = {"half request": half, "nothing sent": silent, "one byte every 0.5 s": drip}
        t0 = time.monotonic()
        closed = {}
        answers = {}
        drip_pos, next_drip = 0, t0
        import select
        while len(closed) < len(socks) and time.monotonic() - t0 < 14:
            now = time.monotonic()
            if "one byte every 0.5 s" not in closed and now >= next_drip and drip_pos < len(drip_data):
                try:
                    drip.send(drip_data[drip_pos:drip_pos + 1])
                except OSError:
                    pass
                drip_pos += 1
                next_drip = now + 0.5
            open_ = [s for n, s in socks.items() if n not in closed]
            r, _, _ = select.select(open_, [], [], 0.1)
            for s in r:
                name = [n for n, x in socks.items() if x is s][0]
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    answers[name] = answers.get(name, b"") + data
                else:
                    closed[name] = time.monotonic() - t0
        for s in socks.values():
            s.close()
        print("  [closed after: %s]" % ", ".join("%s %.2fs" % (n, t) for n, t in sorted(closed.items())))
        for name in socks:
            self.assertIn(name, closed, "%s: still open after 14 s (answer so far %r)" % (name, answers.get(name)))
            self.assertGreaterEqual(closed[name], 8.5, "%s: closed too early (%.1fs)" % (name, closed[name]))
            self.assertLessEqual(closed[name], 13.0, "%s: closed after %.1fs" % (name, closed[name]))
            if name in answers and not answers[name].startswith(b"HTTP/1.1 408"):
                note("handshake timeout (%s): unexpected bytes before close: %r" % (name, answers[name][:80]))
        # Still serving.
        c, _, _ = self.open_client()
        self.assert_ping_pong(c)


# =========================================================================== distribution

class DistributionTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS)
    N = 400

    def test_400_clients_spread_over_workers(self):
        uids = [next_uid() for _ in range(self.N)]
        res = wc.connect_many(self.d.host, self.d.port,
                              ["/ws?token=" + self.d.token(u) for u in uids], timeout=15, batch=50)
        bad = [(u, r) for u, r in zip(uids, res) if not isinstance(r, wc.WSConnection)]
        for r in res:
            if isinstance(r, wc.WSConnection):
                self.clients.append(r)
        self.assertFalse(bad, "%d of %d clients not upgraded, e.g. %r" % (len(bad), self.N, bad[:3]))
        for u, c in zip(uids, res):
            msg = c.recv_json(5)
            self.assertEqual(msg["type"], "connected")
            self.assertEqual(msg["data"]["user_id"], u)
        self.health_eq(self.d, self.N, what="%d clients" % self.N)
        want = set(uids)
        deadline = time.monotonic() + 5
        while True:
            ev = [(u, s) for (u, s, _) in self.d.connected_events() if u in want]
            if len(ev) >= self.N or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(len(ev), self.N, "`Client connected` lines for %d of %d users" % (len(ev), self.N))
        per = {s: 0 for s in range(WORKERS)}
        for _, s in ev:
            per[s] = per.get(s, 0) + 1
        print("  [distribution of %d clients over workers: %s]" % (self.N, per))
        self.assertEqual(set(per), set(range(WORKERS)), "unexpected slots: %r" % per)
        for s, n in per.items():
            self.assertLessEqual(n, self.N * 0.4, "worker %d holds %d of %d clients: %r" % (s, n, self.N, per))
        # A sample still answers.
        for c in res[::40]:
            self.assert_ping_pong(c)
        for c in res:
            c.abort()
        self.health_eq(self.d, 0, timeout=10, what="all disconnected")


# =========================================================================== eviction

class EvictionTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS)

    def _evict_once(self):
        """One user, two connections. -> (slot of A, slot of B)"""
        a, uid, _ = self.open_client()
        slot_a = self.d.worker_of(uid, 0)
        b, _, msg = self.open_client(uid=uid)
        self.assertEqual(msg["data"]["user_id"], uid)
        code, reason = self.assert_close(a, 4000, "older connection of user %d" % uid)
        self.assertEqual(reason, "replaced by a newer connection")
        self.assertTrue(a.wait_eof(2), "TCP of the evicted connection not closed")
        self.assert_ping_pong(b, "newer connection after eviction")
        slot_b = self.d.worker_of(uid, 1)
        self.assertIsNotNone(slot_a, "no connected log line for A")
        self.assertIsNotNone(slot_b, "no connected log line for B")
        self.health_eq(self.d, 1, 3, "after evicting user %d (slots %s->%s)" % (uid, slot_a, slot_b))
        time.sleep(0.2)
        self.assertEqual(self.d.health()["ws_connections"], 1, "count drifted after eviction")
        b.close()
        self.health_eq(self.d, 0, 3, "after closing B")
        self.clients = []
        return slot_a, slot_b

    def test_eviction_cross_and_same_worker(self):
        seen = {"cross": 0, "same": 0}
        for _ in range(40):
            sa, sb = self._evict_once()
            seen["cross" if sa != sb else "same"] += 1
            if seen["cross"] and seen["same"]:
                break
        print("  [eviction cases seen: %r]" % seen)
        self.assertTrue(seen["cross"], "never got A and B on different workers in 40 tries")
        self.assertTrue(seen["same"], "never got A and B on the same worker in 40 tries")

    def test_eviction_chain_of_three(self):
        a, uid, _ = self.open_client()
        b, _, _ = self.open_client(uid=uid)
        self.assert_close(a, 4000, "first connection")
        c, _, _ = self.open_client(uid=uid)
        code, reason = self.assert_close(b, 4000, "second connection")
        self.assertEqual(reason, "replaced by a newer connection")
        self.assert_ping_pong(c, "third connection")
        self.health_eq(self.d, 1, 3, "one user, three connections")


# =========================================================================== heartbeat

class HeartbeatTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS, heartbeat=1)

    def test_heartbeat(self):
        alive, _, _ = self.open_client(auto_pong=True)
        texter, _, _ = self.open_client(auto_pong=False)
        silent, _, _ = self.open_client(auto_pong=False)
        t0 = time.monotonic()
        silent_closed_at = None
        silent_result = None
        next_text = t0 + 0.7
        while time.monotonic() - t0 < 4.5:
            for c in (alive, texter):
                try:
                    f = c.recv_frame(0.03)
                except wc.WSTimeout:
                    continue
                except wc.WSEOF:
                    self.fail("%s closed by the server (TCP) after %.1fs" % (
                        "pong-answering client" if c is alive else "text-pinging client", time.monotonic() - t0))
                if f.opcode == OP_CLOSE:
                    self.fail("%s got close %r after %.1fs" % (
                        "pong-answering client" if c is alive else "text-pinging client",
                        c.close_received, time.monotonic() - t0))
                if f.opcode == OP_PING:
                    self.assertFalse(f.masked)
                    self.assertTrue(f.fin)
            if time.monotonic() >= next_text:
                texter.send_text('{"type":"ping"}')
                next_text += 0.7
            if silent_closed_at is None:
                try:
                    f = silent.recv_frame(0.03)
                    if f.opcode == OP_CLOSE:
                        silent_closed_at = time.monotonic() - t0
                        silent_result = silent.close_received
                except wc.WSTimeout:
                    pass
                except wc.WSEOF:
                    silent_closed_at = time.monotonic() - t0
                    silent_result = "EOF"
        self.assertIsNotNone(silent_closed_at, "silent client still open after 4.5 s with --heartbeat 1 "
                             "(pings it got: %d)" % len(silent.pings_received))
        print("  [silent client closed after %.2fs: %r]" % (silent_closed_at, silent_result))
        # (test_silent_client_not_closed_early checks the 2-interval bound precisely)
        self.assertGreaterEqual(silent_closed_at, 1.0, "silent client closed too early")
        self.assertGreaterEqual(len(alive.pings_received), 3, "pings in 4.5 s: %d" % len(alive.pings_received))
        self.assertTrue(len(silent.pings_received) >= 1, "the silent client never got a ping")
        self.assert_ping_pong(alive, "pong-answering client after 4.5 s")
        # the text-pinging client: its replies are in the stream.
        texter.send_text('{"type":"ping"}')
        while True:
            msg = texter.recv_json(3)
            if msg == {"type": "pong", "data": {"status": "ok"}}:
                break
        self.health_eq(self.d, 2, 3, "after the silent client was dropped")


    def test_silent_client_not_closed_early(self):
        """SPEC: close a connection that has sent nothing for two intervals, so not before
        2 s with --heartbeat 1.  The daemon is started at the start of a second and the
        client's last activity falls late in a second, where a clock truncated to whole
        seconds would make the silence look a second longer than it is."""
        while time.monotonic() % 1.0 > 0.05:
            time.sleep(0.002)
        d = self.new_daemon(workers=1, heartbeat=1)
        results = []
        for _ in range(2):
            while not 0.93 <= time.monotonic() % 1.0 < 0.97:
                time.sleep(0.002)
            c, uid, _ = self.open_client(d, auto_pong=False)
            t_conn = time.monotonic()        # the server saw the client last before this
            try:
                got = c.wait_closed(6)
            except wc.WSTimeout:
                self.fail("silent client %d not closed within 6 s with --heartbeat 1" % uid)
            results.append((round(time.monotonic() - t_conn, 3), round(t_conn % 1.0, 3), got))
            c.abort()
        print("  [silence before close (s), monotonic fraction at connect, close: %r]" % results)
        for silence, frac, got in results:
            self.assertGreaterEqual(silence, 1.9, "closed after %.3f s of silence (< 2 intervals of 1 s); "
                                    "connected at monotonic fraction %.3f; %r" % (silence, frac, got))

    def test_ping_every_interval_while_sessions_come_and_go(self):
        """README: a ping every --heartbeat seconds, to every session, also while the
        worker's user map changes under its ping pass: 800 other sessions arrive
        (the map grows and rehashes), then leave one by one in random order
        (deletions shift entries back), and a few more churn all along."""
        hb = 4
        d = self.new_daemon(workers=1, heartbeat=hb)
        watched = {}
        for _ in range(300):
            c, _, _ = self.open_client(d)
            watched[c] = [time.monotonic()]      # connect time, then every ping's
        extras, churn = [], []
        closing, bad_extras = False, 0
        rng = random.Random(7)
        t0 = time.monotonic()
        next_churn = t0
        while time.monotonic() - t0 < 13.0:
            now = time.monotonic()
            if now - t0 >= 1.0 and len(extras) < 800 and not closing:
                for _ in range(40):
                    extras.append(d.connect_user(next_uid(), auto_pong=False))
            elif now - t0 >= 5.0 and extras:
                closing = True   # then they go, in random order, till the end
                for _ in range(min(len(extras), 8)):
                    e = extras.pop(rng.randrange(len(extras)))
                    if isinstance(e, wc.WSConnection):
                        e.abort()
                    else:
                        bad_extras += 1
            if now >= next_churn:
                churn.append(d.connect_user(next_uid(), auto_pong=False))
                if len(churn) > 5:
                    old = churn.pop(0)
                    if isinstance(old, wc.WSConnection):
                        old.abort()
                next_churn += 0.1
            socks = {c.sock: c for c in watched}
            ready, _, _ = select.select(list(socks), [], [], 0.02)
            for sk in ready:
                c = socks[sk]
                while True:
                    try:
                        f = c.recv_frame(0.005)
                    except wc.WSTimeout:
                        break
                    except wc.WSEOF:
                        self.fail("a watched session was closed after %.1f s" % (time.monotonic() - t0))
                    if f.opcode == OP_PING:
                        watched[c].append(time.monotonic())
                    elif f.opcode == OP_CLOSE:
                        self.fail("a watched session got close %r" % (c.close_received,))
        end = time.monotonic()
        bad_extras += sum(1 for e in extras if not isinstance(e, wc.WSConnection))
        self.assertEqual(bad_extras, 0, "some of the 800 extra sessions were not upgraded")
        worst = 0.0
        for times in watched.values():
            gaps = [b - a for a, b in zip(times, times[1:])] + [end - times[-1]]
            worst = max(worst, max(gaps))
        print("  [longest wait for a ping: %.2f s with --heartbeat %d]" % (worst, hb))
        # one tick (1 s) of granularity and some scheduling slack on top of the interval
        self.assertLessEqual(worst, hb + 2.0, "a session waited %.2f s for a ping" % worst)
        for e in extras + churn:
            if isinstance(e, wc.WSConnection):
                e.abort()


# =========================================================================== worker crash

class WorkerCrashTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS)

    def test_kill9_worker(self):
        d = self.d
        by_slot = {s: [] for s in range(WORKERS)}
        for _ in range(120):
            c, uid, _ = self.open_client()
            s = d.worker_of(uid)
            self.assertIsNotNone(s, "no connected line for %d" % uid)
            by_slot[s].append((c, uid))
            if all(len(v) >= 2 for v in by_slot.values()):
                break
        self.assertTrue(all(by_slot.values()), "could not get clients on every worker: %r" %
                        {s: len(v) for s, v in by_slot.items()})
        victim = max(by_slot, key=lambda s: len(by_slot[s]))
        pids = d.worker_pids()
        old_pid = pids[victim]
        n_lines = len(d.log_lines())
        total = sum(len(v) for v in by_slot.values())
        os.kill(old_pid, signal.SIGKILL)
        # The dead worker's clients are disconnected.
        for c, uid in by_slot[victim]:
            try:
                got = c.wait_closed(5)
            except wc.WSTimeout:
                self.fail("client %d of the killed worker still open after 5 s" % uid)
            self.assertEqual(got[0], 1006, "killed worker's client %d: %r" % (uid, got))
        # Other workers' clients are unaffected.
        for s, lst in by_slot.items():
            if s != victim:
                for c, uid in lst:
                    self.assert_ping_pong(c, "client %d on worker %d after worker %d died" % (uid, s, victim))
        # Respawn into the same slot.
        ln = d.wait_log(lambda l: l.role == "master" and wc.STARTED_RE.search(l.msg) is not None
                        and int(wc.STARTED_RE.search(l.msg).group(1)) == victim, 6, start=n_lines)
        self.assertIsNotNone(ln, "no new `worker %d started` line" % victim)
        new_pid = int(wc.STARTED_RE.search(ln.msg).group(2))
        self.assertNotEqual(new_pid, old_pid)
        new_pids = d.worker_pids()
        for s in range(WORKERS):
            if s != victim:
                self.assertEqual(new_pids[s], pids[s], "worker %d was restarted too" % s)
        ok, h = d.wait_health(lambda h: h.get("workers") == WORKERS, 10)
        self.assertTrue(ok, "/health after respawn: %r" % (h,))
        survivors = total - len(by_slot[victim])
        self.health_eq(d, survivors, 5, "after worker %d died with %d clients" % (victim, len(by_slot[victim])))
        # The dead worker's users reconnect (their stale directory entries are ignored).
        for _, uid in by_slot[victim]:
            c, _, msg = self.open_client(uid=uid)
            self.assertEqual(msg["data"]["user_id"], uid)
            self.assert_ping_pong(c, "reconnected user %d" % uid)
        self.health_eq(d, total, 5, "after reconnecting the killed worker's users")
        # The respawned worker accepts clients.
        for _ in range(60):
            c, uid, _ = self.open_client()
            if d.worker_of(uid) == victim:
                self.assert_ping_pong(c, "client on the respawned worker %d" % victim)
                break
        else:
            self.fail("no new client landed on the respawned worker %d in 60 tries" % victim)
        for s in range(WORKERS):
            self.assertTrue(wc._pid_alive(d.worker_pids()[s]), "worker %d not alive" % s)


# =========================================================================== capacity

class CapacityTests(E2ETest):
    DAEMON_KW = dict(workers=WORKERS, max_connections=3)

    def test_directory_full(self):
        d = self.d
        a, ua, _ = self.open_client()
        b, ub, _ = self.open_client()
        c, uc, _ = self.open_client()
        self.health_eq(d, 3, 3, "3 users")
        ud = next_uid()
        r = d.connect_user(ud)
        if isinstance(r, wc.WSConnection):
            self.clients.append(r)
            self.fail("4th user was upgraded with --max-connections 3")
        self.assert_http_json(r, 503, "4th user")
        # The same user reconnecting still works (eviction, no new slot needed).
        a2, _, msg = self.open_client(uid=ua)
        self.assert_close(a, 4000, "user %d replaced while the directory is full" % ua)
        self.assert_ping_pong(a2)
        self.health_eq(d, 3, 3, "after the reconnect")
        r = d.connect_user(next_uid())
        if isinstance(r, wc.WSConnection):
            self.clients.append(r)
            self.fail("a new user got in after an eviction with the directory full")
        self.assert_http_json(r, 503, "new user after eviction")
        # One leaves; a new user gets in.
        self.assertEqual(b.close()[0], 1000)
        self.health_eq(d, 2, 3, "after user %d left" % ub)
        d2, _, msg = self.open_client(uid=ud)
        self.assertEqual(msg["data"]["user_id"], ud)
        self.assert_ping_pong(d2)
        r = d.connect_user(next_uid())
        if isinstance(r, wc.WSConnection):
            self.clients.append(r)
            self.fail("full again, but a new user was upgraded")
        self.assert_http_json(r, 503, "full again")
        self.assert_ping_pong(c)


# =========================================================================== shutdown

class ShutdownTests(E2ETest):

    def _shutdown(self, sig, n=8):
        d = self.new_daemon(workers=WORKERS)
        cs = [self.open_client(d)[0] for _ in range(n)]
        self.health_eq(d, n, 3)
        worker_pids = list(d.worker_pids().values())
        self.assertEqual(len(worker_pids), WORKERS)
        t0 = time.monotonic()
        d.send_signal(sig)
        for i, c in enumerate(cs):
            try:
                code, reason = c.wait_closed(5)
            except wc.WSTimeout:
                self.fail("client %d: no close within 5 s of %s" % (i, sig.name))
            self.assertEqual(code, 1001, "client %d got %r" % (i, (code, reason)))
            self.assertEqual(reason, "server shutting down", "client %d" % i)
        rc = d.wait_exit(max(0.1, 5 - (time.monotonic() - t0)))
        self.assertIsNotNone(rc, "master still running 5 s after %s" % sig.name)
        self.assertEqual(rc, 0, "exit status after %s" % sig.name)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(wc._pid_alive(p) for p in worker_pids):
            time.sleep(0.05)
        left = [p for p in worker_pids if wc._pid_alive(p)]
        self.assertFalse(left, "workers still running after the master exited: %r" % left)

    def test_sigterm(self):
        self._shutdown(signal.SIGTERM)

    def test_sigint(self):
        self._shutdown(signal.SIGINT, n=3)


# =========================================================================== command line

class CommandLineTests(E2ETest):
    """Invalid values -> a one-line error naming the flag, exit 2 (usage) or 1 (runtime)."""

    def _run(self, args, env_secret="x", timeout=10):
        import subprocess
        env = dict(os.environ)
        env.pop("JWT_SECRET", None)
        if env_secret is not None:
            env["JWT_SECRET"] = env_secret
        try:
            r = subprocess.run([WSNOTIFYD] + args, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("wsnotifyd %s did not exit within %d s" % (" ".join(args), timeout))
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def test_invalid_values_exit_2(self):
        base = ["--bind", "127.0.0.1", "--grpc-port", str(wc.free_port())]
        cases = [("--port", ["--port", "0"]), ("--port", ["--port", "65536"]),
                 ("--port", ["--port", "abc"]), ("--workers", ["--workers", "0"]),
                 ("--workers", ["--workers", "257"]), ("--heartbeat", ["--heartbeat", "-1"]),
                 ("--max-connections", ["--max-connections", "0"]),
                 ("--log-level", ["--log-level", "loud"]), ("--grpc-port", ["--grpc-port", "0"]),
                 ("--no-such-flag", ["--no-such-flag"])]
        for flag, args in cases:
            rc, err = self._run(base + ["--port", str(wc.free_port())] + args)
            what = "wsnotifyd %s" % " ".join(args)
            self.assertEqual(rc, 2, "%s: exit %d, stderr %r" % (what, rc, err))
            lines = [l for l in err.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, "%s: want one line on stderr, got %r" % (what, err))
            self.assertIn(flag, lines[0], "%s: the error does not name %s: %r" % (what, flag, err))

    def test_runtime_errors_exit_1(self):
        port = wc.free_port()
        base = ["--bind", "127.0.0.1", "--port", str(port), "--grpc-port", str(wc.free_port())]
        rc, err = self._run(base, env_secret=None)
        self.assertEqual(rc, 1, "no secret: exit %d, %r" % (rc, err))
        self.assertIn("JWT_SECRET", err)
        rc, err = self._run(base + ["--jwt-secret-file", "/nonexistent/wsn-secret"])
        self.assertEqual(rc, 1, "unreadable secret file: exit %d, %r" % (rc, err))
        self.assertIn("/nonexistent/wsn-secret", err)
        if "--jwt-secret-file" not in err:
            note("unreadable --jwt-secret-file: the error does not name the flag: %r" % err.strip())
        busy = socket.socket()
        try:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            args = ["--bind", "127.0.0.1", "--port", str(busy.getsockname()[1]),
                    "--grpc-port", str(wc.free_port()), "--workers", "2"]
            rc, err = self._run(args)
        finally:
            busy.close()
        self.assertEqual(rc, 1, "port in use: exit %d, %r" % (rc, err))
        self.assertIn("in use", err)


# =========================================================================== main

def main(argv):
    if not WSNOTIFYD:
        print("WSNOTIFYD is not set: skipping the end-to-end tests")
        return 77
    if not os.access(WSNOTIFYD, os.X_OK):
        print("%s is not an executable: skipping the end-to-end tests" % WSNOTIFYD)
        return 77
    es.raise_nofile_limit()
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_gateway: global time limit of %d s exceeded; killing the daemons"
                     % GLOBAL_TIMEOUT):
        return es.run_unittest_file(sys.modules[__name__], argv, NOTES)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""e2e_limits.py — the rate limits of wsnotifyd, end to end against the real daemon.

--max-connects-per-minute (default 5): per user, attempts with a valid token,
shared by all workers; over it -> HTTP 429 with a JSON body and Retry-After.
--max-messages-per-second (default 10): per connection, complete data messages
(control frames do not count); over it -> close 1008 "rate limit exceeded".
0 disables either.

Run by automake as `python3 -B tests/e2e/e2e_limits.py` with WSNOTIFYD=<daemon binary>.
Exit 0 = all passed, 77 = skipped (no daemon), 1 = failures; the last line is
`N passed, M failed`.
"""

import itertools
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from wsnclient import OP_PING, OP_PONG, OP_TEXT  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
TEST_TIMEOUT = 30          # seconds, per test
GLOBAL_TIMEOUT = 55        # seconds, whole file
PING = '{"type":"ping"}'
RATE_LINE = re.compile(r"rate limit: UserID=(\d+) made (\d+) connection attempts")

_uids = itertools.count(50000 + (os.getpid() % 97) * 1000)


def next_uid():
    return next(_uids)


def away_from_minute_boundary(margin=3.0):
    """The daemon counts connection attempts in CLOCK_MONOTONIC minutes (the
    clock of Python's time.monotonic on Linux), the previous minute fading out
    over the current one. A burst that straddles a boundary sees part of itself
    already fading, so start bursts a few seconds clear of one (sleeps < 4 s)."""
    into = time.monotonic() % 60.0
    if into > 60.0 - margin:
        time.sleep(60.0 - into + 0.2)


def burst_of_pings(n):
    return b"".join(wc.encode_frame(OP_TEXT, PING) for _ in range(n))


class LimitTest(es.DaemonTestCase):
    """One daemon per class, started with ARGS."""
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

    # ---- helpers
    def connect(self, user):
        c = self.d.connect_user(user)
        if isinstance(c, wc.WSConnection):
            self.clients.append(c)
            hello = c.recv_json(3)
            self.assertEqual(hello["type"], "connected", hello)
        return c

    def connect_n(self, user, n):
        """n connections of one user in a row; each must evict the one before (4000)."""
        prev = None
        for i in range(n):
            c = self.connect(user)
            self.assertIsInstance(c, wc.WSConnection, "attempt %d of user %d refused: %r"
                                  % (i + 1, user, c))
            if prev is not None:
                self.assertEqual(prev.wait_closed(3)[0], 4000)
            prev = c
        return prev

    def assert_429(self, r):
        self.assertIsInstance(r, wc.HTTPResponse, "expected a 429, got an upgrade")
        self.assertEqual(r.status, 429, r)
        self.assertIn("error", r.json())
        self.assertTrue(r.header("content-type", "").startswith("application/json"), r)
        retry = r.header("retry-after")
        self.assertIsNotNone(retry, "429 without Retry-After")
        self.assertRegex(retry, r"^[1-9][0-9]*$")
        self.assertLessEqual(int(retry), 120)

    def wait_rate_line(self, user, start=0):
        ln = self.d.wait_log(lambda l: (m := RATE_LINE.search(l.msg)) is not None
                             and int(m.group(1)) == user, timeout=3, start=start)
        self.assertIsNotNone(ln, "no rate-limit log line for UserID=%d" % user)
        return ln

    def pongs_until_closed(self, c, timeout=5):
        code, reason = c.wait_closed(timeout)
        pongs = [f for f in c.discarded
                 if f.opcode == OP_TEXT and b'"pong"' in f.payload]
        return code, reason, len(pongs)


class DefaultLimits(LimitTest):
    """The defaults: 5 connection attempts per user per minute, 10 messages per second."""

    def test_sixth_connect_refused_across_workers(self):
        # The attempts land on workers as the kernel spreads them (SO_REUSEPORT).
        # The limit is shared when the refusing worker saw fewer than 5 of the
        # user's attempts itself; with 4 workers that is almost always so on the
        # first user, so try a few users until the logs show it.
        for _ in range(4):
            away_from_minute_boundary()
            user = next_uid()
            mark = len(self.d.log_lines())
            self.connect_n(user, 5)
            r = self.d.connect_user(user)
            self.assert_429(r)
            # Another user is not affected.
            other = self.connect(next_uid())
            self.assertIsInstance(other, wc.WSConnection)
            line = self.wait_rate_line(user, mark)
            self.assertEqual(int(RATE_LINE.search(line.msg).group(2)), 6)
            slots = [s for (u, s, _) in self.d.connected_events() if u == user]
            self.assertEqual(len(slots), 5, slots)
            print("  [user %d: connects on workers %s, 429 from worker %d]"
                  % (user, slots, line.slot))
            if slots.count(line.slot) < 5:
                return
        self.fail("every attempt landed on the refusing worker: cannot show sharing")

    def test_refused_while_still_trying(self):
        away_from_minute_boundary()
        user = next_uid()
        self.connect_n(user, 5)
        for _ in range(3):      # every attempt counts, refused ones too
            self.assert_429(self.d.connect_user(user))
        # The user's open connection is not touched by the refusals.
        self.assertTrue(self.clients[-1].is_open())
        self.clients[-1].send_text(PING)
        self.assertEqual(self.clients[-1].recv_json(3)["type"], "pong")

    def test_invalid_tokens_do_not_count(self):
        away_from_minute_boundary()
        user = next_uid()
        bad = [
            wc.make_token("not-the-secret", user),                      # wrong signature
            self.d.token(user, exp=int(time.time()) - 60),               # expired
            wc.make_token(self.d.secret, user, alg="none"),              # alg none
            self.d.token(user)[:-3],                                     # mangled
        ]
        for i in range(12):
            r = self.d.connect("/ws?token=" + bad[i % len(bad)])
            self.assertIsInstance(r, wc.HTTPResponse)
            self.assertEqual(r.status, 401, r)
        # None of them counted: the user still has all 5 attempts.
        self.connect_n(user, 5)
        self.assert_429(self.d.connect_user(user))

    def test_message_burst_closed_1008(self):
        c = self.connect(next_uid())
        c.send_raw(burst_of_pings(11))
        code, reason, pongs = self.pongs_until_closed(c)
        self.assertEqual((code, reason), (1008, "rate limit exceeded"))
        self.assertEqual(pongs, 10)
        self.assertIsNotNone(self.d.wait_log(
            lambda l: "more than 10 messages per second" in l.msg, timeout=3))

    def test_messages_over_a_second_closed_1008(self):
        c = self.connect(next_uid())
        for _ in range(14):                 # 14 in 0.65 s
            try:
                c.send_text(PING)
            except OSError:
                break
            time.sleep(0.05)
        code, reason, _ = self.pongs_until_closed(c)
        self.assertEqual((code, reason), (1008, "rate limit exceeded"))

    def test_five_per_second_stays_open(self):
        c = self.connect(next_uid())
        t0 = time.monotonic()
        for i in range(15):                 # 5 per second for 3 s
            c.send_text(PING)
            self.assertEqual(c.recv_json(2)["type"], "pong", "message %d" % (i + 1))
            time.sleep(max(0.0, t0 + (i + 1) * 0.2 - time.monotonic()))
        self.assertTrue(c.is_open())
        self.assertEqual(c.close(1000, "bye")[0], 1000)

    def test_control_frames_do_not_count(self):
        """30 pings at once (3 times the message limit): not counted as messages.
        A burst is answered for its latest ping (README "Connection rules")."""
        c = self.connect(next_uid())
        c.send_raw(b"".join(wc.encode_frame(OP_PING, b"p%d" % i) for i in range(30)))
        payloads = []
        while not payloads or payloads[-1] != b"p29":
            f = c.recv_frame(3)
            if f.opcode == OP_PONG:
                payloads.append(f.payload)
        self.assertLessEqual(len(payloads), 30)
        c.send_text(PING)
        self.assertEqual(c.recv_json(3)["type"], "pong")
        self.assertTrue(c.is_open())


class SmallLimits(LimitTest):
    """Other values are honoured."""
    ARGS = ("--max-connects-per-minute", "2", "--max-messages-per-second", "3")
    WORKERS = 2

    def test_connects(self):
        away_from_minute_boundary()
        user = next_uid()
        self.connect_n(user, 2)
        self.assert_429(self.d.connect_user(user))
        self.assertIsInstance(self.connect(next_uid()), wc.WSConnection)

    def test_messages(self):
        c = self.connect(next_uid())
        c.send_raw(burst_of_pings(4))
        code, reason, pongs = self.pongs_until_closed(c)
        self.assertEqual((code, reason, pongs), (1008, "rate limit exceeded", 3))


class NoLimits(LimitTest):
    """0 disables both limits."""
    ARGS = ("--max-connects-per-minute", "0", "--max-messages-per-second", "0")
    WORKERS = 2

    def test_connects_unlimited(self):
        self.connect_n(next_uid(), 12)

    def test_messages_unlimited(self):
        c = self.connect(next_uid())
        c.send_raw(burst_of_pings(60))
        for i in range(60):
            self.assertEqual(c.recv_json(3)["type"], "pong", "message %d" % (i + 1))
        self.assertTrue(c.is_open())


class BadValues(unittest.TestCase):
    def test_usage_errors(self):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            self.skipTest("WSNOTIFYD not set")
        for flag, value in [("--max-connects-per-minute", "-1"),
                            ("--max-connects-per-minute", "1001"),
                            ("--max-connects-per-minute", "five"),
                            ("--max-messages-per-second", "10001"),
                            ("--max-messages-per-second", "")]:
            with self.subTest(flag=flag, value=value):
                out = subprocess.run([WSNOTIFYD, flag, value], capture_output=True,
                                     text=True, timeout=10, env={"JWT_SECRET": "x"})
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn(flag, out.stderr)
                self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)


def main(argv):
    with es.watchdog(GLOBAL_TIMEOUT, "e2e_limits: exceeded %d s, giving up" % GLOBAL_TIMEOUT):
        return es.run_unittest_file(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""e2e_login.py — POST /api/v1/auth/login (--users-file, --token-ttl), the
users file's rules, the password checks off the event loop, and the --demo
files, end to end against the real daemon.

The users files are made with `wsnotifyctl user` (mode 0600) in a temporary
directory. The login limit (5 attempts a minute per email, every attempt
counting) means that every test uses emails of its own.

Run by automake as `python3 -B tests/e2e/e2e_login.py` with
WSNOTIFYD=<daemon binary>, WSNOTIFYCTL=<wsnotifyctl> and WSN_SRCDIR=<source dir>.
Exit 0 = all passed, 77 = skipped (no daemon), 1 = failures; the last line is
`N passed, M failed`.
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from wsnclient import OP_PONG  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL") or os.path.join(os.path.dirname(WSNOTIFYD), "wsnotifyctl")
SRCDIR = os.environ.get("WSN_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
TEST_TIMEOUT = 30          # seconds, per test
GLOBAL_TIMEOUT = 150       # seconds, whole file (it takes about 25 s on 2 CPUs)
LOGIN = "/api/v1/auth/login"
TOKEN_TTL = 777            # not the default 3600
LOGIN_PER_MINUTE = 5       # HTTP_LOGIN_PER_MINUTE (SPEC: "more than 5 attempts")

# Recognisable passwords: none of them may ever appear in a log.
TAG = "%05d" % (os.getpid() % 100000)
DEMO_PASSWORD = "password123"
POOL_PASSWORD = "Pool-Canary-Pw-" + TAG + "-q7Zx"
WRONG_PASSWORD = "Wrong-Canary-Pw-" + TAG + "-k2Vb"
MALFORMED_PASSWORD = "Malformed-Canary-Pw-" + TAG + "-m4Ns"
BCRYPT_PASSWORD = "Bcrypt-Canary-Pw-" + TAG
ALL_PASSWORDS = (DEMO_PASSWORD, POOL_PASSWORD, WRONG_PASSWORD, MALFORMED_PASSWORD, BCRYPT_PASSWORD)

_unknown = itertools.count(1)

MIXED_UID, MIXED_EMAIL = 3001, "Mixed.Case-%s@Example.COM" % TAG
BCRYPT_UID, BCRYPT_EMAIL = 3002, "zz-bcrypt-%s@example.com" % TAG


def _bcrypt_hash(password):
    """A $2b$ hash (cost 4: fast) from Python's crypt module, when it has one."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        return h if h and h.startswith("$2b$04$") else None
    except (ImportError, AttributeError, OSError, ValueError):
        return None


BCRYPT_HASH = _bcrypt_hash(BCRYPT_PASSWORD)


def unknown_email():
    return "nobody-%s-%d@example.org" % (TAG, next(_unknown))


# --------------------------------------------------------------------------- helpers

def ctl_user(uid, email, password):
    """One users-file line from `wsnotifyctl user` (the password on stdin)."""
    r = subprocess.run([WSNOTIFYCTL, "user", "--user-id", str(uid), "--email", email],
                       input=(password + "\n").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if r.returncode != 0:
        raise AssertionError("wsnotifyctl user failed (%d): %r" % (r.returncode, r.stderr))
    line = r.stdout.decode().strip()
    if not re.match(r"^%d:%s:\$y\$\S+$" % (uid, re.escape(email)), line):
        raise AssertionError("wsnotifyctl user printed %r" % line)
    return line


def write_users(path, lines, mode=0o600):
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))
    os.chmod(path, mode)


def login_body(email, password):
    return json.dumps({"email": email, "password": password}).encode()


def login(d, email, password, timeout=10.0):
    return d.http("POST", LOGIN, headers={"Content-Type": "application/json"},
                  body=login_body(email, password), timeout=timeout)


def post_raw_body(d, body, timeout=5.0, content_type="application/json"):
    return d.http("POST", LOGIN, headers={"Content-Type": content_type}, body=body,
                  timeout=timeout)


def timed(fn, *a, **kw):
    t = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode_jwt(token, secret):
    """-> (header, claims); asserts an HS256 signature by secret."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AssertionError("not a JWT: %r" % token)
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    want = hmac.new(secret.encode(), (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, b64url_decode(parts[2])):
        raise AssertionError("the token's signature is not HS256 with the daemon's secret")
    return header, claims


def raw_exchange(d, pieces, pause=0.05, timeout=5.0):
    """Send pieces as separate TCP writes (pause s apart), then read one HTTP answer."""
    s = socket.create_connection((d.host, d.port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, p in enumerate(pieces):
            if i:
                time.sleep(pause)
            s.sendall(p)
        s.setblocking(False)
        deadline = time.monotonic() + timeout
        head, rest = wc._read_head(s, deadline)
        status, reason, hdrs = wc._parse_head(head)
        body = wc._read_body(s, hdrs, rest, deadline)
        return wc.HTTPResponse(status, reason, hdrs, body, head)
    finally:
        s.close()


def head_lines(r):
    """The response head's header lines, Date left out (no two answers share it)."""
    return [l for l in r.raw_head.split(b"\r\n")[1:] if not l.lower().startswith(b"date:")]


def away_from_minute_boundary(margin=4.0):
    """The limiter counts in CLOCK_MONOTONIC minutes (Python's time.monotonic on
    Linux), the previous minute fading over the current one: a burst straddling
    a boundary would see part of itself fading. Start a few seconds clear."""
    into = time.monotonic() % 60.0
    if into > 60.0 - margin:
        time.sleep(60.0 - into + 0.2)


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def fmt_ms(values):
    if not values:
        return "no samples"
    return "min %.2f, median %.2f, p90 %.2f, max %.2f ms (n=%d)" % (
        min(values) * 1e3, statistics.median(values) * 1e3, percentile(values, 0.9) * 1e3,
        max(values) * 1e3, len(values))


NOTES = []


class UsersFile:
    """A temp dir with a users file: test@example.com / password123 as user 1, and a
    pool of userN@example.com (POOL_PASSWORD; one hash from wsnotifyctl, shared)."""

    def __init__(self, pool=0, first_uid=1000, extra=False):
        self.dir = tempfile.mkdtemp(prefix="wsn-e2e-login-")
        self.path = os.path.join(self.dir, "users")
        self.demo_line = ctl_user(1, "test@example.com", DEMO_PASSWORD)
        self.pool = []
        self.lines = [self.demo_line]
        if pool:
            first = ctl_user(first_uid, "user%d-%s@example.com" % (first_uid, TAG), POOL_PASSWORD)
            pool_hash = first.split(":", 2)[2]
            for uid in range(first_uid, first_uid + pool):
                email = "user%d-%s@example.com" % (uid, TAG)
                self.pool.append((uid, email))
                self.lines.append("%d:%s:%s" % (uid, email, pool_hash))
            if extra:
                # A mixed-case entry, and a bcrypt one (both sort after test@example.com,
                # whose hash the daemon takes as its dummy for unknown emails).
                self.lines.append("%d:%s:%s" % (MIXED_UID, MIXED_EMAIL, pool_hash))
                if BCRYPT_HASH:
                    self.lines.append("%d:%s:%s" % (BCRYPT_UID, BCRYPT_EMAIL, BCRYPT_HASH))
        self.hashes = {l.split(":", 2)[2] for l in self.lines}
        write_users(self.path, self.lines)
        self._next = iter(self.pool)

    def take(self):
        """(uid, email) of a pool user no test used yet."""
        return next(self._next)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonClass(es.DaemonTestCase):
    """One daemon per class, started with --users-file (POOL pool users) and ARGS."""
    ARGS = ()
    WORKERS = 2
    POOL = 0
    EXTRA_USERS = False
    USERS = True
    TIMEOUT = TEST_TIMEOUT

    @classmethod
    def setUpClass(cls):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            raise unittest.SkipTest("WSNOTIFYD not set to an executable daemon")
        cls.users = UsersFile(cls.POOL, extra=cls.EXTRA_USERS) if cls.USERS else None
        args = list(cls.ARGS)
        if cls.users is not None:
            args += ["--users-file", cls.users.path]
        cls.d = wc.Daemon(WSNOTIFYD, workers=cls.WORKERS, extra_args=args, name=cls.__name__)
        try:
            cls.d.start()
        except BaseException:
            if cls.users is not None:
                cls.users.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if cls.users is not None:
            cls.users.remove()

    def assert_json(self, r, status, body=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("content-type"), "application/json", r)
        if body is not None:
            self.assertEqual(r.json(), body, r)
        return r.json()

    def assert_invalid_credentials(self, r):
        self.assert_json(r, 401, {"error": "invalid_credentials"})
        self.assertEqual(r.body, b'{"error":"invalid_credentials"}')

    def assert_no_passwords_in_log(self):
        text = self.d.log_text()
        for p in ALL_PASSWORDS:
            self.assertNotIn(p, text, "a password is in the daemon's log")
        for h in self.users.hashes:
            self.assertNotIn(h, text, "a password hash is in the daemon's log")


# --------------------------------------------------------------------------- the endpoint

class LoginTest(DaemonClass):
    WORKERS = 4
    POOL = 40
    EXTRA_USERS = True
    ARGS = ("--token-ttl", str(TOKEN_TTL), "--demo")

    def check_token_response(self, r, uid, email):
        """The 200's exact shape; -> the decoded claims."""
        self.assert_json(r, 200)
        j = r.json()
        self.assertEqual(set(j), {"access_token", "token_type", "expires_in", "user_id"}, j)
        self.assertEqual(j["token_type"], "Bearer")
        self.assertIs(type(j["expires_in"]), int)
        self.assertEqual(j["expires_in"], TOKEN_TTL)
        self.assertIs(type(j["user_id"]), int)
        self.assertEqual(j["user_id"], uid)
        self.assertIsInstance(j["access_token"], str)
        self.assertEqual(r.header("cache-control"), "no-store", r)
        header, claims = decode_jwt(j["access_token"], self.d.secret)
        self.assertEqual(header.get("alg"), "HS256", header)
        self.assertEqual(claims.get("user_id"), uid, claims)
        self.assertEqual(claims.get("email"), email, claims)
        self.assertIn("exp", claims)
        self.assertIn("iat", claims, "SPEC: the login tokens carry iat; claims %r" % claims)
        self.assertEqual(set(claims), {"user_id", "email", "iat", "exp"}, claims)
        return j["access_token"], claims

    def test_success_token_and_websocket(self):
        """test@example.com / password123 → 200 with exactly the four keys; the token
        is HS256 by the daemon's secret, exp = now + --token-ttl, iat = now; a
        WebSocket connects with it and is greeted as user 1."""
        t0 = time.time()
        r = login(self.d, "test@example.com", DEMO_PASSWORD)
        t1 = time.time()
        tok, claims = self.check_token_response(r, 1, "test@example.com")
        self.assertTrue(int(t0) - 1 <= claims["iat"] <= t1 + 1, (claims, t0, t1))
        self.assertLessEqual(abs(claims["exp"] - (t0 + TOKEN_TTL)), 3, (claims, t0))
        self.assertEqual(claims["exp"] - claims["iat"], TOKEN_TTL, claims)
        ws = self.d.connect("/ws?token=" + tok)
        self.assertIsInstance(ws, wc.WSConnection, ws)
        self.clients.append(ws)
        m = ws.recv_json(3)
        self.assertEqual(m["type"], "connected", m)
        self.assertEqual(m["data"]["user_id"], 1, m)
        self.assertEqual(m["data"]["email"], "test@example.com", m)
        # And through the Authorization header too.
        ws.close()
        ws2 = self.d.connect("/ws", headers={"Authorization": "Bearer " + tok})
        self.assertIsInstance(ws2, wc.WSConnection, ws2)
        self.clients.append(ws2)
        self.assertEqual(ws2.recv_json(3)["data"]["user_id"], 1)

    def test_email_case_insensitive(self):
        """TEST@Example.com logs in as test@example.com; the token carries the file's
        email, not the spelling that was typed."""
        r = login(self.d, "TEST@Example.com", DEMO_PASSWORD)
        _, claims = self.check_token_response(r, 1, "test@example.com")
        uid, email = self.users.take()
        r = login(self.d, email.upper(), POOL_PASSWORD)
        self.check_token_response(r, uid, email)

    def test_mixed_case_file_entry(self):
        """An entry written Mixed.Case@Example.COM logs in in any case. (The token's
        email is the entry's, case folded or not: a NOTE says which.)"""
        r = login(self.d, MIXED_EMAIL.lower(), POOL_PASSWORD)
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], MIXED_UID)
        _, claims = decode_jwt(r.json()["access_token"], self.d.secret)
        self.assertEqual(claims["email"].lower(), MIXED_EMAIL.lower(), claims)
        if claims["email"] != MIXED_EMAIL:
            NOTES.append("the users file says %r, the token's email is %r (case folded)"
                         % (MIXED_EMAIL, claims["email"]))

    def test_bcrypt_hash_accepted(self):
        """A $2b$ (bcrypt) entry logs in; a wrong password for it is a 401."""
        if not BCRYPT_HASH:
            self.skipTest("no bcrypt in Python's crypt module")
        r = login(self.d, BCRYPT_EMAIL, BCRYPT_PASSWORD)
        self.check_token_response(r, BCRYPT_UID, BCRYPT_EMAIL)
        self.assert_invalid_credentials(login(self.d, BCRYPT_EMAIL, WRONG_PASSWORD))

    def test_wrong_password_and_unknown_email_look_alike(self):
        """Both 401 {"error":"invalid_credentials"}, byte for byte the same answer."""
        _, email = self.users.take()
        wrong = login(self.d, email, WRONG_PASSWORD)
        unknown = login(self.d, unknown_email(), WRONG_PASSWORD)
        # The right password of the account whose hash serves as the dummy: still 401.
        unknown2 = login(self.d, unknown_email(), POOL_PASSWORD)
        for r in (wrong, unknown, unknown2):
            self.assert_invalid_credentials(r)
        self.assertEqual(wrong.raw_head.split(b"\r\n")[0], unknown.raw_head.split(b"\r\n")[0])
        self.assertEqual(head_lines(wrong), head_lines(unknown))
        self.assertEqual(head_lines(wrong), head_lines(unknown2))
        self.assertEqual(wrong.body, unknown.body)

    def test_failure_timing(self):
        """A wrong password and an unknown email cost about the same (a real hash
        each): medians of 8 within 0.5..2 of each other, both at least a few ms
        and well above a request that hashes nothing (a malformed body)."""
        wrong_t, unknown_t, bad_t = [], [], []
        for i in range(8):
            _, email = self.users.take()
            r, t = timed(login, self.d, email, WRONG_PASSWORD)
            self.assert_invalid_credentials(r)
            wrong_t.append(t)
            r, t = timed(login, self.d, unknown_email(), WRONG_PASSWORD)
            self.assert_invalid_credentials(r)
            unknown_t.append(t)
            r, t = timed(post_raw_body, self.d, b'{"email":"x@example.com"}')
            self.assertEqual(r.status, 400)
            bad_t.append(t)
        mw, mu, mb = (statistics.median(v) for v in (wrong_t, unknown_t, bad_t))
        NOTES.append("login 401 timings: wrong password %s; unknown email %s; no hash (400) %s"
                     % (fmt_ms(wrong_t), fmt_ms(unknown_t), fmt_ms(bad_t)))
        self.assertGreater(mw, 0.003, "a wrong password took %.2f ms: no hash ran?" % (mw * 1e3))
        self.assertGreater(mu, 0.003, "an unknown email took %.2f ms: no hash ran?" % (mu * 1e3))
        self.assertTrue(0.5 <= mu / mw <= 2.0, "unknown %.2f ms vs wrong %.2f ms" % (mu * 1e3, mw * 1e3))
        self.assertGreater(min(mw, mu), 2 * mb, "failures %.2f/%.2f ms vs no-hash %.2f ms" % (
            mw * 1e3, mu * 1e3, mb * 1e3))

    def test_malformed_bodies_400(self):
        """Not JSON, not an object, missing or non-string fields, trailing garbage,
        a NUL via \\u0000, empty, invalid UTF-8 → 400 JSON (and no hash, no 401)."""
        p = MALFORMED_PASSWORD
        bodies = [
            b"email=test@example.com&password=" + p.encode(),
            b"not json at all " + p.encode(),
            json.dumps(["test@example.com", p]).encode(),
            json.dumps({"email": "test@example.com"}).encode(),
            json.dumps({"password": p}).encode(),
            json.dumps({"email": "test@example.com", "password": 123456}).encode(),
            json.dumps({"email": "test@example.com", "password": None}).encode(),
            json.dumps({"email": "test@example.com", "password": [p]}).encode(),
            json.dumps({"email": 1, "password": p}).encode(),
            json.dumps({"email": "test@example.com", "password": p}).encode() + b"garbage",
            json.dumps({"email": "test@example.com", "password": p}).encode() + b'{"x":1}',
            b'{"email":"test@example.com","password":"' + p.encode() + b'\\u0000x"}',
            b'{"email":"test@exa\\u0000mple.com","password":"' + p.encode() + b'"}',
            b'{"email":"","password":"' + p.encode() + b'"}',
            b'{"email":"test@example.com","password":""}',
            b'{"email":"test@example.com","password":"' + p.encode() + b'"',
            b'{"email":"test@example.com","password":"\xff' + p.encode() + b'"}',
            b'"' + p.encode() + b'"',
            b"{}",
            b" ",
            json.dumps({"email": "a" * 400 + "@example.com", "password": p}).encode(),
            json.dumps({"email": "test@example.com", "password": p * 40}).encode(),
        ]
        for body in bodies:
            with self.subTest(body=body[:80]):
                r = post_raw_body(self.d, body)
                self.assert_json(r, 400)
                self.assertIn("error", r.json())
        # Content-Length: 0 and a bad Content-Length.
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % LOGIN.encode())
        self.assert_json(r, 400)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n{" % LOGIN.encode())
        self.assert_json(r, 400)
        two = json.dumps({"email": "test@example.com", "password": p}).encode()
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (LOGIN.encode(), len(two), len(two), two))
        self.assert_json(r, 400)
        # A correct body is still accepted: the whitespace after it too.
        uid, email = self.users.take()
        r = post_raw_body(self.d, b" \r\n" + login_body(email, POOL_PASSWORD) + b" \n\t")
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], uid)

    def test_body_too_large_413(self):
        """Over 4 KiB → 413, whether the body is sent or only announced; 4 KiB exactly
        is read (and refused as a bad body, not as too large)."""
        big = json.dumps({"email": "test@example.com", "password": "x" * 5000}).encode()
        r = post_raw_body(self.d, big)
        self.assert_json(r, 413)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n" % LOGIN.encode())
        self.assert_json(r, 413)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"
                        % LOGIN.encode())
        self.assertIn(r.status, (400, 413), r)
        exactly = b'{"email":"x@example.com","password":"' + b"p" * (4096 - 39) + b'"}'
        self.assertEqual(len(exactly), 4096)
        r = post_raw_body(self.d, exactly)
        self.assertEqual(r.status, 400, r)   # a 1 KiB+ password is refused as a bad body

    def test_length_required_411(self):
        """No Content-Length → 411; Transfer-Encoding: chunked → 411."""
        body = login_body("test@example.com", MALFORMED_PASSWORD)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\n\r\n" % LOGIN.encode())
        self.assert_json(r, 411)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n%s" % (LOGIN.encode(), chunked))
        self.assert_json(r, 411)
        r = self.d.http(raw=b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (LOGIN.encode(), len(body), body))
        self.assert_json(r, 411)

    def test_methods_405(self):
        """GET, PUT, DELETE, HEAD on the login path → 405 with Allow: POST."""
        for m in ("GET", "PUT", "DELETE"):
            with self.subTest(method=m):
                r = self.d.http(m, LOGIN, body=login_body("test@example.com", MALFORMED_PASSWORD)
                                if m == "PUT" else b"")
                self.assert_json(r, 405)
                self.assertEqual(r.header("allow"), "POST", r)
        r = self.d.http("HEAD", LOGIN)
        self.assertEqual(r.status, 405, r)

    def test_split_body(self):
        """Head first, then the body in pieces (separate TCP writes 50 ms apart) → 200;
        the same with the head itself split and the body's first bytes with its end."""
        uid, email = self.users.take()
        body = login_body(email, POOL_PASSWORD)
        head = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (LOGIN.encode(), len(body)))
        pieces = [head] + [body[i:i + 7] for i in range(0, len(body), 7)]
        r = raw_exchange(self.d, pieces, pause=0.03)
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], uid)
        uid, email = self.users.take()
        body = login_body(email, POOL_PASSWORD)
        head = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (LOGIN.encode(), len(body)))
        whole = head + body
        cut1, cut2 = len(head) // 2, len(head) + 5
        r = raw_exchange(self.d, [whole[:cut1], whole[cut1:cut2], whole[cut2:-1], whole[-1:]],
                         pause=0.05)
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], uid)
        # A body that stops short gets no answer from a hash: the connection times out
        # or is closed, never answered 200/401.
        try:
            r = raw_exchange(self.d, [head + body[:-3]], timeout=1.0)
            self.assertNotIn(r.status, (200, 401), r)
        except (wc.WSTimeout, wc.WSEOF):
            pass

    def test_half_closed_client_gets_answer(self):
        """A client that shuts down its sending side after the request (`nc -N`,
        some scripts) still gets the answer, as /health's answer arrives: the
        login was served (hashed, counted), so it must not be dropped."""
        uid, email = self.users.take()
        body = login_body(email, POOL_PASSWORD)
        answers = {}
        for what, req in (("health", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                          ("login", b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                           % (LOGIN.encode(), len(body), body))):
            s = socket.create_connection((self.d.host, self.d.port), timeout=5)
            try:
                s.sendall(req)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                data = repr(e).encode()
            finally:
                s.close()
            answers[what] = data.split(b"\r\n", 1)[0]
        self.assertEqual(answers["health"], b"HTTP/1.1 200 OK", answers)
        self.assertEqual(answers["login"], b"HTTP/1.1 200 OK",
                         "a half-closed login got %r (health: %r)" % (answers["login"], answers["health"]))

    def test_rate_limit_429_across_workers(self):
        """Five attempts for one email, spread over several of the 4 workers, then a
        sixth (even with the right password) → 429 with Retry-After > 0, from a
        worker that had itself seen fewer than five: the count is shared. Another
        email still logs in."""
        proven = None
        for _ in range(5):
            away_from_minute_boundary()
            uid, email = self.users.take()
            mark = len(self.d.log_lines())
            for i in range(LOGIN_PER_MINUTE):
                self.assert_invalid_credentials(login(self.d, email, WRONG_PASSWORD))
            r = login(self.d, email, POOL_PASSWORD)
            self.assert_json(r, 429)
            self.assertIn("error", r.json())
            ra = r.header("retry-after")
            self.assertIsNotNone(ra, r)
            self.assertRegex(ra, r"^\d+$")
            self.assertTrue(1 <= int(ra) <= 120, ra)
            # Once more, in another case: the same email.
            r = login(self.d, email.upper(), POOL_PASSWORD)
            self.assert_json(r, 429)
            fail_re = re.compile(r"login failed: %s from " % re.escape(email))
            rate_re = re.compile(r"login rate limit: \d+ attempts for %s" % re.escape(email),
                                 re.IGNORECASE)
            line = self.d.wait_log(lambda l: rate_re.search(l.msg), 3, mark)
            self.assertIsNotNone(line, "no rate-limit line for %s" % email)
            self.d.wait_log(lambda l: False, 0.2)
            slots = [l.slot for l in self.d.log_lines()[mark:] if fail_re.search(l.msg)]
            self.assertEqual(len(slots), LOGIN_PER_MINUTE, slots)
            if len(set(slots)) >= 2 and slots.count(line.slot) < LOGIN_PER_MINUTE:
                proven = (slots, line.slot)
                break
        self.assertIsNotNone(proven, "the attempts never spread over several workers")
        NOTES.append("login limit: 401s on workers %s, then 429 on worker %d" % proven)
        # Another email is not affected.
        uid, email = self.users.take()
        r = login(self.d, email, POOL_PASSWORD)
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], uid)

    def test_failures_logged(self):
        """A failed login is logged as `login failed: EMAIL from PEER` (unknown
        emails too); a success as `login: UserID=N (EMAIL) from PEER`."""
        mark = len(self.d.log_lines())
        uid, email = self.users.take()
        nobody = unknown_email()
        self.assert_invalid_credentials(login(self.d, email, WRONG_PASSWORD))
        self.assert_invalid_credentials(login(self.d, nobody, WRONG_PASSWORD))
        self.assert_json(login(self.d, email, POOL_PASSWORD), 200)
        for pat in (r"login failed: %s from 127\.0\.0\.1:\d+" % re.escape(email),
                    r"login failed: %s from 127\.0\.0\.1:\d+" % re.escape(nobody),
                    r"login: UserID=%d \(%s\) from 127\.0\.0\.1:\d+" % (uid, re.escape(email))):
            line = self.d.wait_log(lambda l, p=pat: re.search(p, l.msg), 3, mark)
            self.assertIsNotNone(line, "no log line matching %r" % pat)

    def test_email_cannot_forge_log_lines(self):
        """An unknown email with a newline in it (sent as \\n in JSON) must not start a
        line of its own in the log: an unauthenticated client could forge entries."""
        forged = "2030-01-01T00:00:00.000Z wsnotifyd[1] info [worker 0]: login: UserID=1 " \
                 "(admin@example.com) from 10.9.8.7:1234"
        email = "evil-%s@example.org\n%s" % (TAG, forged)
        mark = len(self.d.log_lines())
        self.assert_invalid_credentials(login(self.d, email, WRONG_PASSWORD))
        self.d.wait_log(lambda l: ("evil-%s" % TAG) in l.raw, 3, mark)
        self.d.wait_log(lambda l: False, 0.2)
        starts = [l.raw for l in self.d.log_lines()[mark:] if l.raw.startswith("2030-01-01T")]
        self.assertEqual(starts, [], "the client's email forged a log line")

    def test_no_duplicate_headers(self):
        """Each header of the login answer and of the demo files appears once
        (no Cache-Control twice with different values)."""
        uid, email = self.users.take()
        answers = {"login 200": login(self.d, email, POOL_PASSWORD),
                   "login 401": login(self.d, unknown_email(), WRONG_PASSWORD),
                   "page": self.d.http("GET", "/test_websocket.html"),
                   "module": self.d.http("GET", "/wsnotify-client.js")}
        dups = {}
        for what, r in answers.items():
            names = [l.split(b":", 1)[0].strip().lower() for l in r.raw_head.split(b"\r\n")[1:]]
            d = sorted({n.decode() for n in names if names.count(n) > 1})
            if d:
                cc = [l.decode() for l in r.raw_head.split(b"\r\n")[1:]
                      if l.lower().startswith(b"cache-control")]
                dups[what] = (d, cc)
        self.assertEqual(dups, {}, "headers sent twice")

    def test_demo_files(self):
        """--demo: the page and the module with their exact bytes and types; POST → 405."""
        for path, ctype, src in (
                ("/test_websocket.html", "text/html; charset=utf-8", "scripts/web/test_websocket.html"),
                ("/wsnotify-client.js", "text/javascript; charset=utf-8", "scripts/web/wsnotify-client.js")):
            with open(os.path.join(SRCDIR, src), "rb") as f:
                want = f.read()
            r = self.d.http("GET", path)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("content-type"), ctype, r)
            self.assertEqual(len(r.body), len(want), "%s: %d bytes served, %s has %d (rebuild?)"
                             % (path, len(r.body), src, len(want)))
            self.assertTrue(r.body == want, "%s: not the bytes of %s" % (path, src))
            self.assertEqual(r.header("x-content-type-options"), "nosniff", r)
            for m in ("POST", "PUT"):
                r = self.d.http(m, path, body=b"x")
                self.assert_json(r, 405)
                self.assertEqual(r.header("allow"), "GET", r)
            r = self.d.http("GET", path + "x")
            self.assert_json(r, 404)

    def test_zz_log_never_has_passwords(self):
        """(Runs last.) After successes, failures, 429s and malformed bodies, the whole
        log holds no password and no hash; also one more malformed body with the
        password right in it."""
        mark = len(self.d.log_lines())
        r = post_raw_body(self.d, b'{"password":"' + MALFORMED_PASSWORD.encode() + b'"} trailing')
        self.assertEqual(r.status, 400)
        r = post_raw_body(self.d, MALFORMED_PASSWORD.encode())
        self.assertEqual(r.status, 400)
        self.assertIsNotNone(self.d.wait_log(lambda l: "malformed body" in l.msg, 3, mark))
        self.d.wait_log(lambda l: False, 0.2)
        self.assertIn("login failed:", self.d.log_text())
        self.assertIn("login: UserID=", self.d.log_text())
        self.assert_no_passwords_in_log()


class NoUsersFileTest(DaemonClass):
    """Without --users-file the endpoint does not exist; without --demo neither do
    the page and the module."""
    USERS = False
    WORKERS = 1

    def test_login_404(self):
        for m in ("POST", "GET"):
            r = self.d.http(m, LOGIN, headers={"Content-Type": "application/json"},
                            body=login_body("test@example.com", DEMO_PASSWORD) if m == "POST" else b"")
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.header("content-type"), "application/json", r)

    def test_demo_404(self):
        for path in ("/test_websocket.html", "/wsnotify-client.js"):
            for m in ("GET", "POST"):
                r = self.d.http(m, path, body=b"x" if m == "POST" else b"")
                self.assertEqual(r.status, 404, (path, m, r))
        self.assertNotIn(DEMO_PASSWORD, self.d.log_text())


# --------------------------------------------------------------------------- the users file

class UsersFileRulesTest(es.DaemonTestCase):
    """A users file others could write, or with a line that is not USER_ID:EMAIL:HASH,
    stops the daemon at start: exit 1, naming the file (and the line)."""
    TIMEOUT = TEST_TIMEOUT

    @classmethod
    def setUpClass(cls):
        if not WSNOTIFYD or not os.access(WSNOTIFYD, os.X_OK):
            raise unittest.SkipTest("WSNOTIFYD not set to an executable daemon")
        cls.users = UsersFile()
        cls.daemons = []

    @classmethod
    def tearDownClass(cls):
        for d in cls.daemons:
            d.cleanup()
        cls.users.remove()

    def _daemons(self):
        return self.daemons[-1:]

    def start_fails(self, path, *expect):
        d = wc.Daemon(WSNOTIFYD, workers=1, extra_args=["--users-file", path],
                      name="bad users file")
        self.daemons.append(d)
        d.start(wait=False)
        rc = d.wait_exit(10)
        text = d.log_text()
        self.assertEqual(rc, 1, "exit status %r; log:\n%s" % (rc, text))
        for e in expect:
            self.assertIn(e, text)
        self.assertNotIn("Sanitizer", text)
        return text

    def test_group_or_world_writable_refused(self):
        for mode in (0o620, 0o602, 0o666):
            with self.subTest(mode=oct(mode)):
                path = os.path.join(self.users.dir, "writable-%o" % mode)
                write_users(path, [self.users.demo_line], mode)
                text = self.start_fails(path, path)
                self.assertRegex(text, r"writable|permission|mode", text)

    def test_bad_line_refused(self):
        path = os.path.join(self.users.dir, "bad-line")
        pool = ctl_user(2, "two@example.com", POOL_PASSWORD)
        write_users(path, ["# accounts", self.users.demo_line, "", pool,
                           "3:three@example.com"])
        self.start_fails(path, path + ":5")
        for bad in ("x:a@example.com:" + pool.split(":", 2)[2],
                    "4:four@example.com:not-a-hash",
                    "0:zero@example.com:" + pool.split(":", 2)[2]):
            with self.subTest(line=bad):
                write_users(path, [self.users.demo_line, bad])
                self.start_fails(path, path + ":2")

    def test_duplicate_email_refused(self):
        path = os.path.join(self.users.dir, "duplicate")
        other = ctl_user(2, "TEST@example.com", POOL_PASSWORD)
        write_users(path, [self.users.demo_line, other])
        self.start_fails(path, path, "test@example.com")

    def test_missing_file_refused(self):
        path = os.path.join(self.users.dir, "no-such-file")
        self.start_fails(path, path)


class ReloadTest(DaemonClass):
    """SIGHUP re-reads the users file on every worker; a file that became
    group-writable is refused on reload, logged, and the accounts loaded before
    keep working."""
    WORKERS = 2
    POOL = 0

    def hup_and_wait(self, pred, what):
        mark = len(self.d.log_lines())
        self.d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = [l for l in self.d.log_lines()[mark:] if pred(l)]
            if len({l.slot for l in lines if l.slot is not None}) >= self.WORKERS:
                return lines
            time.sleep(0.05)
        self.fail("no %s from every worker after SIGHUP; log:\n%s" % (what, self.d.log_tail(20)))

    def test_sighup_rereads(self):
        newcomer = ctl_user(2, "newcomer@example.com", POOL_PASSWORD)
        self.assert_invalid_credentials(login(self.d, "newcomer@example.com", POOL_PASSWORD))
        write_users(self.users.path, [self.users.demo_line, newcomer])
        self.hup_and_wait(lambda l: re.search(r"reloaded: .*2 login accounts", l.msg), "reload")
        r = login(self.d, "newcomer@example.com", POOL_PASSWORD)
        self.assert_json(r, 200)
        self.assertEqual(r.json()["user_id"], 2)
        # Made group-writable: refused on reload, logged, the two accounts stay.
        os.chmod(self.users.path, 0o620)
        try:
            lines = self.hup_and_wait(
                lambda l: self.users.path in l.msg and "writable" in l.msg and l.level == "error",
                "error about the group-writable file")
            self.assertTrue(any("keeping the 2 accounts" in l.msg for l in lines), lines)
            self.assert_json(login(self.d, "test@example.com", DEMO_PASSWORD), 200)
            self.assert_json(login(self.d, "newcomer@example.com", POOL_PASSWORD), 200)
            self.assertTrue(self.d.alive())
        finally:
            os.chmod(self.users.path, 0o600)
        # A line gone bad: the same.
        write_users(self.users.path, [self.users.demo_line, "garbage"])
        self.hup_and_wait(lambda l: (self.users.path + ":2") in l.msg and l.level == "error",
                          "error about the bad line")
        self.assert_json(login(self.d, "newcomer@example.com", POOL_PASSWORD), 200)
        # Removing an account takes effect too.
        write_users(self.users.path, [self.users.demo_line])
        self.hup_and_wait(lambda l: re.search(r"reloaded: .*1 login accounts", l.msg), "reload")
        self.assert_invalid_credentials(login(self.d, "newcomer@example.com", POOL_PASSWORD))
        self.assert_no_passwords_in_log()


# --------------------------------------------------------------------------- the event loop

class EventLoopTest(DaemonClass):
    """--workers 1: one WebSocket client's ping→pong stays fast while 32 logins are
    hashed concurrently on the same worker (its 2 login threads)."""
    WORKERS = 1
    POOL = 8
    LOGINS = 32
    ARGS = ("--max-messages-per-second", "0", "--max-connects-per-minute", "0")

    def ping_rtt(self, ws, seq):
        """One round trip: a ping frame (even seq) or a {"type":"ping"} message (odd
        seq: the daemon closes a connection sending over 100 control frames a
        second; --max-messages-per-second 0 lifts the limit on messages)."""
        t = time.monotonic()
        deadline = t + 5
        if seq % 2 == 0:
            payload = b"rtt-%d" % seq
            ws.send_ping(payload)
            while True:
                f = ws.recv_frame(max(0.0, deadline - time.monotonic()))
                if f.opcode == OP_PONG and f.payload == payload:
                    return time.monotonic() - t
        ws.send_text('{"type":"ping"}')
        while True:
            m = ws.recv_json(max(0.0, deadline - time.monotonic()))
            if m.get("type") == "pong":
                return time.monotonic() - t

    def test_ping_pong_fast_during_logins(self):
        # One login alone: the time of one hash (plus the HTTP exchange).
        alone = []
        for _ in range(3):
            r, t = timed(login, self.d, unknown_email(), WRONG_PASSWORD)
            self.assert_invalid_credentials(r)
            alone.append(t)
        uid, email = self.users.take()
        r, t = timed(login, self.d, email, POOL_PASSWORD)
        self.assert_json(r, 200)
        alone.append(t)
        one_login = statistics.median(alone)
        self.assertGreater(one_login, 0.003, "one login took %.2f ms: no hash?" % (one_login * 1e3))

        ws = self.d.connect_user(424242)
        self.assertIsInstance(ws, wc.WSConnection, ws)
        self.clients.append(ws)
        self.assertEqual(ws.recv_json(3)["type"], "connected")
        idle = [self.ping_rtt(ws, i) for i in range(20)]

        results = [None] * self.LOGINS
        users = [self.users.take() for _ in range(4)]
        start = threading.Barrier(self.LOGINS + 1)

        def one(i):
            if i < len(users):
                em, pw = users[i][1], POOL_PASSWORD
            else:
                em, pw = unknown_email(), WRONG_PASSWORD
            try:
                start.wait(5)
                results[i] = timed(login, self.d, em, pw, timeout=20)
            except Exception as e:     # noqa: BLE001 — reported below
                results[i] = (e, 0)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(self.LOGINS)]
        for th in threads:
            th.start()
        start.wait(5)
        t0 = time.monotonic()
        busy = []
        seq = 1000
        while any(th.is_alive() for th in threads) and time.monotonic() - t0 < 20:
            busy.append(self.ping_rtt(ws, seq))
            seq += 1
            time.sleep(0.008)
        span = time.monotonic() - t0
        for th in threads:
            th.join(5)
        statuses = [r[0].status if isinstance(r[0], wc.HTTPResponse) else repr(r[0]) for r in results]
        self.assertEqual(sorted(statuses, key=str),
                         sorted([200] * len(users) + [401] * (self.LOGINS - len(users)), key=str),
                         statuses)
        login_times = [r[1] for r in results]
        NOTES.append("event loop (--workers 1, %d concurrent logins over %.0f ms; one login alone "
                     "%.1f ms): ping->pong idle %s; during the logins %s; the logins took %s"
                     % (self.LOGINS, span * 1e3, one_login * 1e3, fmt_ms(idle), fmt_ms(busy),
                        fmt_ms(login_times)))
        # The logins really queued up behind the hashing threads...
        self.assertGreater(max(login_times), 3 * one_login,
                           "the logins did not overlap: %s" % fmt_ms(login_times))
        # ...while the loop kept answering.
        self.assertLess(max(busy), one_login,
                        "a ping waited longer than one login (%.1f ms): %s" % (one_login * 1e3, fmt_ms(busy)))
        self.assertLess(statistics.median(busy), one_login / 4,
                        "median ping above a quarter login (%.1f ms): %s" % (one_login * 1e3, fmt_ms(busy)))
        self.assertGreaterEqual(len(busy), 10, "too few pings during the logins: %s" % fmt_ms(busy))
        self.assertTrue(ws.is_open())
        self.assert_no_passwords_in_log()


if __name__ == "__main__":
    if es.no_daemon(WSNOTIFYD):
        sys.exit(77)
    if not os.access(WSNOTIFYCTL, os.X_OK):
        print("WSNOTIFYCTL %r is not executable: skipping" % WSNOTIFYCTL)
        print("0 passed, 0 failed")
        sys.exit(77)
    es.raise_nofile_limit()
    with es.watchdog(GLOBAL_TIMEOUT, "e2e_login: global timeout"):
        status = es.run_unittest_file(sys.modules[__name__], sys.argv[1:], notes=NOTES)
    sys.exit(status)

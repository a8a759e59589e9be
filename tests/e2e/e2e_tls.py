#!/usr/bin/env python3
"""End-to-end test of TLS on wsnotifyd's HTTP/WebSocket port (--tls-cert/--tls-key).

A test CA and two server certificates for 127.0.0.1/localhost are generated at test
time with the `openssl` command (skipped, exit 77, without it). Clients use Python's
ssl module and verify the server against the test CA. Checked: wss:// handshake,
connected, ping/pong, large notifications over several TLS records, /health over
https, a plain-text client and a TLS 1.1 client refused, a client that never
finishes the TLS handshake dropped at the 10 s deadline, bad certificate/key files
(missing, not PEM, key not matching, one flag only) refused at start naming the file,
and SIGHUP: new connections get the new certificate, open connections keep working,
a broken file on reload keeps the current certificate.

Run: WSNOTIFYD=./wsnotifyd WSNOTIFYCTL=./wsnotifyctl python3 -B tests/e2e/e2e_tls.py
Exit 0 = all passed, 77 = skipped, 1 = failures. The last line is `N passed, M failed`.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
from e2e_support import Failure, Skip, check  # noqa: E402
import e2e_support as es  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL", "")
WORKERS = 2
GLOBAL_TIMEOUT = 55        # seconds, whole file
HANDSHAKE_DEADLINE = 10    # seconds (CONN_HANDSHAKE_TIMEOUT)


# --------------------------------------------------------------------------- certificates

EXT_SERVER = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.strip()))


def make_pki(d):
    """A CA and two server certificates (serials 1001 and 2002) signed by it, plus a
    stray key and a garbage file. -> dict of paths."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wsnotify e2e CA",
            cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write(EXT_SERVER)
    for name, serial, cn in (("one", "0x1001", "localhost"), ("two", "0x2002", "localhost-rotated")):
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", serial, "-days", "2", "-extfile", "server.ext",
                "-out", name + ".pem", cwd=d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "stray.key", cwd=d)
    with open(os.path.join(d, "garbage.pem"), "w") as f:
        f.write("this is not a certificate\n")
    p = {k: os.path.join(d, k) for k in ("ca.pem", "one.pem", "one.key", "two.pem", "two.key",
                                         "stray.key", "garbage.pem")}
    # The daemon's files: copies of "one", replaced in place for the reload test.
    p["cert"] = os.path.join(d, "server-cert.pem")
    p["key"] = os.path.join(d, "server-key.pem")
    shutil.copy(p["one.pem"], p["cert"])
    shutil.copy(p["one.key"], p["key"])
    return p


def replace_file(src, dst):
    tmp = dst + ".new"
    shutil.copy(src, tmp)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- helpers

def client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)      # verifies the chain and 127.0.0.1
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_serial(conn):
    return conn.sock.getpeercert().get("serialNumber", "").upper().lstrip("0")


def open_client(d, uid):
    c = d.connect_user(uid)
    check(isinstance(c, wc.WSConnection), "user %d was not upgraded over TLS: %r" % (uid, c))
    check(isinstance(c.sock, ssl.SSLSocket), "not a TLS socket")
    msg = c.recv_json(3)
    check(msg.get("type") == "connected" and msg["data"]["user_id"] == uid,
          "first message for user %d: %r" % (uid, msg))
    return c


def ping_pong(c, what):
    c.send_text('{"type":"ping"}')
    msg = c.recv_json(3)
    check(msg == {"type": "pong", "data": {"status": "ok"}}, "%s: %r" % (what, msg))


def count_reloaded(d):
    return sum(1 for ln in d.log_lines() if ln.slot is not None and ln.msg.startswith("reloaded:"))


def wait_reloaded(d, before, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_reloaded(d) >= before + WORKERS:
            return True
        time.sleep(0.05)
    return False


def daemon_args(cert, key, extra=()):
    return [WSNOTIFYD, "--workers", "1", "--bind", "127.0.0.1", "--port", str(wc.free_port()),
            "--grpc-port", str(wc.free_port())] + (["--tls-cert", cert] if cert else []) + \
        (["--tls-key", key] if key else []) + list(extra)


def run_daemon_expect_exit(args, timeout=8.0):
    """Start wsnotifyd expecting it to refuse to start. -> (rc, stderr, seconds)"""
    env = dict(os.environ, JWT_SECRET="e2e-tls-secret")
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(k, None)
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise Failure("%s kept running (expected a start-up error)" % " ".join(args))
    return p.returncode, err.decode("utf-8", "replace"), time.monotonic() - t0


# --------------------------------------------------------------------------- tests

class Ctx:
    """What the tests share: the PKI, the daemon, the idle raw socket."""

    def __init__(self, tmp):
        self.pki = make_pki(tmp)
        self.ctx = client_context(self.pki["ca.pem"])
        self.d = wc.Daemon(WSNOTIFYD, workers=WORKERS, name="tls", ssl_context=self.ctx,
                           extra_args=["--tls-cert", self.pki["cert"], "--tls-key", self.pki["key"]])
        self.d.start()
        # Opened now, checked at the end: it never starts the TLS handshake.
        self.idle = socket.create_connection((self.d.host, self.d.port), timeout=5)
        self.idle_opened = time.monotonic()
        self.uid = 7000 + (os.getpid() % 97) * 100

    def next_uid(self):
        self.uid += 1
        return self.uid


def test_wss_connect_ping_pong(t):
    c = open_client(t.d, t.next_uid())
    try:
        check(c.sock.version() in ("TLSv1.2", "TLSv1.3"), "protocol %s" % c.sock.version())
        check(peer_serial(c) == "1001", "certificate serial %r" % peer_serial(c))
        ping_pong(c, "ping over wss")
        # A client message spanning several TLS records (invalid JSON: error reply).
        c.send_text("x" * 60000)
        msg = c.recv_json(3)
        check(msg.get("type") == "error", "reply to a 60 KB message: %r" % msg)
        ping_pong(c, "ping after a large message")
        check(c.close(1000, "bye")[0] == 1000, "close handshake over TLS")
    finally:
        c.abort()


def test_tls12_client(t):
    ctx = client_context(t.pki["ca.pem"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    uid = t.next_uid()
    c = wc.connect(t.d.host, t.d.port, "/ws?token=" + t.d.token(uid), ssl_context=ctx)
    check(isinstance(c, wc.WSConnection), "TLS 1.2 client not upgraded: %r" % c)
    try:
        check(c.sock.version() == "TLSv1.2", "protocol %s" % c.sock.version())
        cipher = c.sock.cipher()[0]
        check("ECDHE" in cipher and ("GCM" in cipher or "CHACHA20" in cipher),
              "TLS 1.2 cipher %s is not ECDHE+AEAD" % cipher)
        check(c.recv_json(3).get("type") == "connected", "connected over TLS 1.2")
        ping_pong(c, "ping over TLS 1.2")
    finally:
        c.abort()


def test_health_over_https(t):
    h = t.d.health()
    check(h.get("status") == "healthy" and h.get("workers") == WORKERS, "/health: %r" % h)
    r = t.d.http("GET", "/nowhere")
    check(r.status == 404, "404 over https: %r" % r)
    bad = t.d.connect("/ws?token=nope")
    check(isinstance(bad, wc.HTTPResponse) and bad.status == 401, "401 over https: %r" % bad)


def test_large_notifications(t):
    if not WSNOTIFYCTL or not os.access(WSNOTIFYCTL, os.X_OK):
        raise Skip("WSNOTIFYCTL not set")
    uid = t.next_uid()
    c = open_client(t.d, uid)
    try:
        # '"' is escaped to \" in the JSON: a frame of ~32 KB, over two TLS records.
        sizes = [10, 5000, 16000, 16000, 300, 16000]
        for i, n in enumerate(sizes):
            r = subprocess.run([WSNOTIFYCTL, "send", "--user-id", str(uid), "--type", "t%d" % i,
                                "--title", "T%d" % i, "--message", '"' * n,
                                "--server", "127.0.0.1:%d" % t.d.grpc_port],
                               capture_output=True, text=True, timeout=10)
            check(r.returncode == 0, "wsnotifyctl send: %s %s" % (r.stdout, r.stderr))
            check(json.loads(r.stdout).get("delivered") is True, "not delivered: %s" % r.stdout)
        for i, n in enumerate(sizes):
            msg = c.recv_json(5)
            check(msg.get("type") == "notification", "message %d: %r" % (i, str(msg)[:200]))
            data = msg["data"]
            check(data["notification_type"] == "t%d" % i and data["message"] == '"' * n,
                  "notification %d arrived damaged (%d chars)" % (i, len(data["message"])))
        ping_pong(c, "ping after large notifications")
    finally:
        c.abort()


def send_notifications(t, uid, count, size, char='"'):
    """count notifications of `size` chars ('"': ~2*size bytes of JSON each, \x01: ~6*size)."""
    out = []
    for i in range(count):
        r = subprocess.run([WSNOTIFYCTL, "send", "--user-id", str(uid), "--type", "n%d" % i,
                            "--title", "T", "--message", char * size,
                            "--server", "127.0.0.1:%d" % t.d.grpc_port],
                           capture_output=True, text=True, timeout=10)
        check(r.returncode == 0, "wsnotifyctl send: %s %s" % (r.stdout, r.stderr))
        out.append(json.loads(r.stdout).get("delivered"))
    return out


def open_slow_client(t, uid):
    """A TLS client with a tiny receive buffer, so the server's writes would block."""
    deadline = time.monotonic() + 5
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(5)
    raw.connect((t.d.host, t.d.port))
    s = t.ctx.wrap_socket(raw, server_hostname=t.d.host)
    s.setblocking(False)
    key = wc._ws_key()
    req = ("GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (t.d.token(uid), key))
    wc._sendall(s, req.encode(), deadline)
    c = wc.finish_handshake(wc._Pending(s, key, deadline))
    check(isinstance(c, wc.WSConnection), "slow client not upgraded: %r" % c)
    check(c.recv_json(3).get("type") == "connected", "slow client: connected")
    return c


def test_slow_reader_over_tls(t):
    if not WSNOTIFYCTL or not os.access(WSNOTIFYCTL, os.X_OK):
        raise Skip("WSNOTIFYCTL not set")
    # ~640 KB while the client reads nothing: the server's TLS writes block and the
    # rest waits in its output buffer; then everything arrives intact and in order.
    uid = t.next_uid()
    c = open_slow_client(t, uid)
    try:
        delivered = send_notifications(t, uid, 20, 16000)
        check(all(delivered), "not all delivered: %r" % delivered)
        for i in range(20):
            msg = c.recv_json(10)
            check(msg.get("type") == "notification" and msg["data"]["notification_type"] == "n%d" % i
                  and msg["data"]["message"] == '"' * 16000,
                  "notification %d damaged or out of order: %r" % (i, str(msg)[:120]))
        ping_pong(c, "ping after a blocked TLS write")
    finally:
        c.abort()
    # Over 1 MiB unsent (beyond what the kernel's buffers take): dropped as a slow
    # client, like a plain one. ~96 KB of JSON per notification.
    uid = t.next_uid()
    start = len(t.d.log_lines())
    c = open_slow_client(t, uid)
    try:
        send_notifications(t, uid, 70, 16000, "\x01")
        ln = t.d.wait_log(lambda ln: "slow client" in ln.msg and "UserID=%d" % uid in ln.msg,
                          timeout=5, start=start)
        check(ln is not None, "a TLS client that does not read was never dropped:\n" + t.d.log_tail(10))
        check(t.d.wait_log(lambda ln: "Client disconnected: UserID=%d," % uid in ln.msg,
                           timeout=3, start=start) is not None, "no disconnect line")
    finally:
        c.abort()


def test_plain_client_refused(t):
    s = socket.create_connection((t.d.host, t.d.port), timeout=5)
    try:
        s.sendall(b"GET /ws?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        got = b""
        s.settimeout(5)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise Failure("a plain-text client was not disconnected within 5 s (got %r)" % got[:80])
        check(b"HTTP/" not in got, "a plain-text client got an HTTP answer: %r" % got[:200])
        check(got == b"" or got[0] == 0x15, "expected nothing or a TLS alert, got %r" % got[:40])
    finally:
        s.close()
    ln = t.d.wait_log(lambda ln: "TLS handshake failed" in ln.msg, timeout=3)
    check(ln is not None and ln.level == "info", "no info line for the failed handshake: %r" % ln)


def test_tls11_refused(t):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(t.pki["ca.pem"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # that is the point
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as e:
        raise Skip("this Python/OpenSSL cannot offer TLS 1.1: %s" % e)
    start = len(t.d.log_lines())
    s = socket.create_connection((t.d.host, t.d.port), timeout=5)
    try:
        try:
            ts = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        except ssl.SSLError as e:
            if "NO_PROTOCOLS_AVAILABLE" in str(e) or "no protocols available" in str(e):
                raise Skip("the client library refuses TLS 1.1 itself: %s" % e)
            ln = t.d.wait_log(lambda ln: "TLS handshake failed" in ln.msg, timeout=3, start=start)
            check(ln is not None, "TLS 1.1 refused by the client only? %s" % e)
            check("protocol" in ln.msg, "server's reason: %s" % ln.raw)
            return
        ts.close()
        raise Failure("a TLS 1.1 handshake succeeded (%s)" % ts.version())
    finally:
        s.close()


def test_bad_files_refused_at_start(t):
    p = t.pki
    missing = os.path.join(os.path.dirname(p["cert"]), "missing.pem")
    cases = [
        ("missing certificate", missing, p["one.key"], missing),
        ("missing key", p["one.pem"], missing, missing),
        ("non-PEM certificate", p["garbage.pem"], p["one.key"], p["garbage.pem"]),
        ("non-PEM key", p["one.pem"], p["garbage.pem"], p["garbage.pem"]),
        ("key of another certificate", p["one.pem"], p["two.key"], p["two.key"]),
        ("stray key", p["two.pem"], p["stray.key"], p["stray.key"]),
        ("directory as certificate", os.path.dirname(p["cert"]), p["one.key"],
         os.path.dirname(p["cert"])),
    ]
    for what, cert, key, names in cases:
        rc, err, took = run_daemon_expect_exit(daemon_args(cert, key))
        check(rc == 1, "%s: exit status %s, stderr %r" % (what, rc, err))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        check(len(lines) == 1, "%s: expected one line on stderr, got %r" % (what, err))
        check(names in lines[0], "%s: %r does not name %s" % (what, lines[0], names))
        check("started" not in err, "%s: a worker was started: %r" % (what, err))
        check(took < 5, "%s: took %.1f s to fail" % (what, took))
    for flags in ((p["one.pem"], None), (None, p["one.key"])):
        rc, err, _ = run_daemon_expect_exit(daemon_args(*flags))
        check(rc == 2, "one TLS flag only: exit %s, %r" % (rc, err))
        check("--tls-" in err and len(err.strip().splitlines()) == 1, "usage error: %r" % err)


def test_sighup_reloads_certificate(t):
    d = t.d
    old = open_client(d, t.next_uid())
    try:
        before = count_reloaded(d)
        replace_file(t.pki["two.key"], t.pki["key"])
        replace_file(t.pki["two.pem"], t.pki["cert"])
        d.send_signal(signal.SIGHUP)
        check(wait_reloaded(d, before), "not every worker logged `reloaded:`:\n" + d.log_tail(20))
        lines = [ln for ln in d.log_lines() if ln.msg.startswith("reloaded:")][-WORKERS:]
        for ln in lines:
            check(t.pki["cert"] in ln.msg and "2002" in ln.msg, "reload line: %s" % ln.raw)
        # New connections, whichever worker takes them, present the new certificate.
        for _ in range(3 * WORKERS):
            c = open_client(d, t.next_uid())
            try:
                check(peer_serial(c) == "2002", "new connection got serial %s" % peer_serial(c))
                check(c.sock.getpeercert()["subject"][0][0][1] == "localhost-rotated",
                      "subject %r" % (c.sock.getpeercert()["subject"],))
            finally:
                c.abort()
        # The connection opened before keeps its session and still answers.
        check(peer_serial(old) == "1001", "the open connection's certificate changed?")
        ping_pong(old, "ping on a TLS connection opened before SIGHUP")

        # A broken certificate on reload: logged, the current one stays in use.
        before = len(d.log_lines())
        shutil.copy(t.pki["garbage.pem"], t.pki["cert"])
        d.send_signal(signal.SIGHUP)
        ln = d.wait_log(lambda ln: ln.level == "error" and ln.slot is not None and
                        t.pki["cert"] in ln.msg, timeout=3, start=before)
        check(ln is not None, "no error naming the broken certificate:\n" + d.log_tail(20))
        time.sleep(0.2)
        check(d.alive(), "the daemon died on a broken certificate")
        c = open_client(d, t.next_uid())
        try:
            check(peer_serial(c) == "2002", "after a failed reload: serial %s" % peer_serial(c))
        finally:
            c.abort()
        ping_pong(old, "ping after a failed reload")
        replace_file(t.pki["two.pem"], t.pki["cert"])
    finally:
        old.abort()


def test_idle_tls_client_dropped_at_deadline(t):
    # Opened when the daemon started; it never sent a ClientHello.
    left = HANDSHAKE_DEADLINE + 3 - (time.monotonic() - t.idle_opened)
    t.idle.settimeout(max(0.5, left))
    try:
        got = t.idle.recv(100)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        raise Failure("a client that never started TLS was kept over %d s" % (HANDSHAKE_DEADLINE + 3))
    finally:
        t.idle.close()
    check(got == b"", "the silent client was sent %r" % got[:40])
    check(time.monotonic() - t.idle_opened >= HANDSHAKE_DEADLINE - 1.5,
          "dropped after %.1f s, before the deadline" % (time.monotonic() - t.idle_opened))


TESTS = [
    test_wss_connect_ping_pong,
    test_tls12_client,
    test_health_over_https,
    test_large_notifications,
    test_slow_reader_over_tls,
    test_plain_client_refused,
    test_tls11_refused,
    test_bad_files_refused_at_start,
    test_sighup_reloads_certificate,
    test_idle_tls_client_dropped_at_deadline,
]


def main(argv):
    if es.no_daemon(WSNOTIFYD):
        return 77
    if shutil.which("openssl") is None:
        print("the openssl command is not installed: skipping the TLS tests")
        print("0 passed, 0 failed")
        return 77
    selected = [f for f in TESTS if not argv or f.__name__ in argv]
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_tls: global time limit of %d s exceeded; killing the daemons"
                     % GLOBAL_TIMEOUT):
        return es.run_function_file(Ctx, selected, "wsn-e2e-tls-", check_exit_status=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

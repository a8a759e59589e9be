#!/usr/bin/env python3
"""End-to-end tests of wsnotifyd's security settings (README "Security").

The gRPC port, with python3-grpcio clients (stubs generated at test time as in
e2e_grpc.py) and wsnotifyctl:
  - plaintext with --grpc-token-file: no token, a wrong token, a non-Bearer value and
    an unknown method are UNAUTHENTICATED (counted in /metrics, logged); the file's
    tokens are accepted; Health/Check needs none; reflection needs one; the file is
    re-read on SIGHUP (and a broken one is not taken);
  - TLS only (--grpc-tls-cert/--grpc-tls-key): a plaintext client is refused, a TLS
    client trusting the test CA works, SIGHUP makes new connections see a new
    certificate;
  - mutual TLS (--grpc-client-ca): no client certificate or one from another CA is
    refused, the right one works;
  - bad files, a missing secret and key, a short RSA key: exit 1 naming the file;
  - wsnotifyctl send/status with --grpc-token-file, --tls and --ca.
WebSocket clients with RS256, ES256 and EdDSA tokens minted by `wsnotifyctl token
--key-file`, and each 401 reason of the claims (nbf, aud, iss, an algorithm with no
key, the RS256→HS256 confusion). Input rules: a NUL byte in any string and each
refused link scheme are INVALID_ARGUMENT for SendNotification, SendNotifications and
Broadcast. Last, no token (JWT in the query or the Authorization header, gRPC bearer
token; good or bad; whole or its signature) appears in any daemon's log, with the
first daemon at --log-level debug.

Keys and certificates are made with the openssl command in a temporary directory.
Run: WSNOTIFYD=./wsnotifyd WSNOTIFYCTL=./wsnotifyctl /usr/bin/python3 -B tests/e2e/e2e_security.py [TEST...]
Exit 0 = all passed, 77 = skipped (no grpcio, protoc, openssl or daemon), 1 = failures.
"""

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from e2e_support import Failure, check  # noqa: E402

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
try:
    import grpc
    import e2e_grpc as eg  # the stub generator and its paths
except ImportError as e:
    print("e2e_security: python3-grpcio / python3-protobuf not importable (%s): skipping" % e)
    sys.exit(77)

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL") or os.path.join(os.path.dirname(WSNOTIFYD), "wsnotifyctl")
WORKERS = 2
GLOBAL_TIMEOUT = 170       # seconds, whole file
RPC_TIMEOUT = 10
OPTIONS = [("grpc.enable_http_proxy", 0)]
AUD, ISS = "wsnotify-e2e", "https://idp.example.test/"
TOKEN_1 = "e2e-grpc-token-one-" + os.urandom(12).hex()
TOKEN_2 = "e2e-grpc-token-two-" + os.urandom(12).hex()
TOKEN_3 = "e2e-grpc-token-three-" + os.urandom(12).hex()
WRONG_TOKEN = "e2e-grpc-wrong-token-" + os.urandom(12).hex()
SEND = "/notification.NotificationService/SendNotification"

EXT_SERVER = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""
EXT_CLIENT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
"""


# --------------------------------------------------------------------------- files

def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.strip()))


def make_files(d):
    """JWT keys, two CAs with server and client certificates, token files. -> dict of paths."""
    for name, alg in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                      ("rsa1024", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
                      ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                      ("ed", ["-algorithm", "ed25519"])):
        openssl("genpkey", *alg, "-out", name + ".key", cwd=d)
        openssl("pkey", "-in", name + ".key", "-pubout", "-out", name + ".pub", cwd=d)
    with open(os.path.join(d, "keys.pem"), "w") as out:
        for name in ("rsa", "ec", "ed"):
            with open(os.path.join(d, name + ".pub")) as f:
                out.write(f.read())
    for name, text in (("server.ext", EXT_SERVER), ("client.ext", EXT_CLIENT)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    for ca in ("ca", "otherca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2", "-subj", "/CN=" + ca, cwd=d)
    for name, ca, ext, serial in (("server1", "ca", "server.ext", "0x1001"),
                                  ("server2", "ca", "server.ext", "0x2002"),
                                  ("client", "ca", "client.ext", "0x3003"),
                                  ("stranger", "otherca", "client.ext", "0x4004")):
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-set_serial", serial, "-days", "2", "-extfile", ext, "-out", name + ".pem", cwd=d)
    p = {n: os.path.join(d, n) for n in os.listdir(d)}
    p["cert"] = os.path.join(d, "grpc-cert.pem")
    p["certkey"] = os.path.join(d, "grpc-key.pem")
    shutil.copy(p["server1.pem"], p["cert"])
    shutil.copy(p["server1.key"], p["certkey"])
    p["tokens"] = os.path.join(d, "grpc-tokens")
    write(p["tokens"], "%s\n\n%s\n" % (TOKEN_1, TOKEN_2))
    p["ctl-token"] = os.path.join(d, "ctl-token")
    write(p["ctl-token"], TOKEN_1 + "\n")
    p["garbage"] = os.path.join(d, "garbage.pem")
    write(p["garbage"], "this is not PEM\n")
    return p


def write(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- context

class Ctx:
    """The daemons, the files, and every token the tests showed a daemon."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.f = make_files(tmp)
        eg.generate_stubs(tmp)
        self.pb, self.pbg, self.hpb, self.hpbg = eg.pb, eg.pbg, eg.hpb, eg.hpbg
        self.shown = []            # (what, token) pairs that must never be logged
        self.daemons = []
        # A: plaintext gRPC with tokens; JWT secret + the three keys, aud and iss required.
        self.d = self.daemon("plain", ["--grpc-token-file", self.f["tokens"],
                                       "--jwt-public-key-file", self.f["keys.pem"],
                                       "--jwt-audience", AUD, "--jwt-issuer", ISS],
                             log_level="debug")
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.d.grpc_port, options=OPTIONS)
        self.stub = self.pbg.NotificationServiceStub(self.ch)
        self.tls = None            # C and D, started by their tests
        self.mtls = None
        self._uid = 200000 + (os.getpid() % 1000) * 100

    def daemon(self, name, args, log_level=None, env=None):
        d = wc.Daemon(WSNOTIFYD, workers=WORKERS, name=name, extra_args=args, log_level=log_level,
                      env=env)
        self.shown.append(("HS256 secret of " + name, d.secret))
        d.start()
        self.daemons.append(d)
        return d

    def uid(self):
        self._uid += 1
        return self._uid

    def md(self, token):
        self.shown.append(("gRPC token", token))
        return [("authorization", "Bearer " + token)]

    def request(self, uid, **kw):
        kw.setdefault("type", "security_test")
        kw.setdefault("title", "Title")
        kw.setdefault("message", "Message")
        kw.setdefault("send_push", True)
        return self.pb.SendNotificationRequest(user_id=uid, **kw)

    def ctl(self, *args, timeout=30):
        return subprocess.run([WSNOTIFYCTL] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def mint(self, *args):
        r = self.ctl("token", *args)
        check(r.returncode == 0, "wsnotifyctl token %s: %s" % (" ".join(args), r.stderr))
        tok = r.stdout.strip()
        self.shown.append(("JWT", tok))
        return tok

    def ws(self, d, token, header=False):
        """Connect with token in the query (or the Authorization header) -> WSConnection or HTTPResponse."""
        self.shown.append(("JWT", token))
        if header:
            return d.connect("/ws", headers={"Authorization": "Bearer " + token})
        return d.connect("/ws?token=" + token)


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def expect_code(fn, want, what, says=None):
    code, details = code_of(fn)
    check(code == want, "%s: %s (%s), expected %s" % (what, code, details, want))
    if says is not None:
        check(says in details, "%s: details %r do not say %r" % (what, details, says))
    return details


def wait_log(d, pattern, start, timeout=5.0):
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = d.log_text()
        if rx.search(text, start):
            return
        time.sleep(0.05)
    raise Failure("no log line matching %r; log tail:\n%s" % (pattern, d.log_tail(15)))


def metric(d, name, **labels):
    body = d.http("GET", "/metrics").body.decode()
    want = name + ("{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}" if labels else "")
    for line in body.splitlines():
        if line.startswith(want + " "):
            return int(float(line.split()[-1]))
    raise Failure("no series %s in /metrics" % want)


# --------------------------------------------------------------------------- gRPC tokens

def test_grpc_no_token_unauthenticated(ctx):
    before = metric(ctx.d, "wsnotify_notifications_total", outcome="unauthenticated")
    start = len(ctx.d.log_text())
    uid = ctx.uid()
    p = ctx.pb
    calls = {
        "SendNotification": lambda: ctx.stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT),
        "SendNotifications": lambda: ctx.stub.SendNotifications(
            p.SendNotificationsRequest(notifications=[ctx.request(uid)]), timeout=RPC_TIMEOUT),
        "Broadcast": lambda: ctx.stub.Broadcast(p.BroadcastRequest(type="t", title="x"),
                                                timeout=RPC_TIMEOUT),
        "GetNotificationStatus": lambda: ctx.stub.GetNotificationStatus(
            p.GetNotificationStatusRequest(user_id=uid, notification_id=1), timeout=RPC_TIMEOUT),
    }
    for name, call in calls.items():
        expect_code(call, grpc.StatusCode.UNAUTHENTICATED, name + " without a token", "bearer token")
    after = metric(ctx.d, "wsnotify_notifications_total", outcome="unauthenticated")
    check(after - before == 2, "unauthenticated outcome went %d -> %d" % (before, after))
    wait_log(ctx.d, r"gRPC: refused /notification\.NotificationService/\w+ from ipv4:127\.0\.0\.1:\d+: "
             r"no bearer token", start)


def test_grpc_wrong_token_unauthenticated(ctx):
    uid = ctx.uid()
    for value in ("Bearer " + WRONG_TOKEN, "Bearer " + TOKEN_1 + "x", "Bearer " + TOKEN_1[:-1],
                  "Basic " + TOKEN_1, TOKEN_1, "Bearer"):
        ctx.shown.append(("gRPC token", value))
        expect_code(lambda: ctx.stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT,
                                                      metadata=[("authorization", value)]),
                    grpc.StatusCode.UNAUTHENTICATED, "authorization %r" % value[:12])


def test_grpc_right_token_ok(ctx):
    uid = ctx.uid()
    for tok in (TOKEN_1, TOKEN_2):
        r = ctx.stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT, metadata=ctx.md(tok))
        check(r.notification_id > 0 and not r.delivered, "answer %r" % r)
    # The scheme in any case; grpcio's own access-token credentials need TLS (see the TLS test).
    r = ctx.stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT,
                                  metadata=[("authorization", "bearer  " + TOKEN_2)])
    check(r.notification_id > 0, "lower-case scheme: %r" % r)
    # And the notification reaches the user like any other.
    c = ctx.ws(ctx.d, wc.make_token(ctx.d.secret, uid, extra={"aud": AUD, "iss": ISS}))
    check(isinstance(c, wc.WSConnection), "not upgraded: %r" % c)
    check(c.recv_json(5)["type"] == "connected", "no connected message")
    ctx.stub.SendNotification(ctx.request(uid, title="live"), timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_1))
    seen = [c.recv_json(5) for _ in range(4)]
    check(any(m["data"].get("title") == "live" for m in seen), "live notification not seen: %r" % seen)
    c.abort()


def test_health_check_needs_no_token(ctx):
    h = ctx.hpbg.HealthStub(ctx.ch)
    r = h.Check(ctx.hpb.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
    check(r.status == ctx.hpb.HealthCheckResponse.SERVING, "health %r" % r)
    r = h.Check(ctx.hpb.HealthCheckRequest(service="notification.NotificationService"),
                timeout=RPC_TIMEOUT, metadata=ctx.md(WRONG_TOKEN))
    check(r.status == ctx.hpb.HealthCheckResponse.SERVING, "health with a wrong token %r" % r)
    # Watch is not Check: it needs the token (then it is UNIMPLEMENTED).
    watch = ctx.ch.unary_stream("/grpc.health.v1.Health/Watch")
    expect_code(lambda: list(watch(b"", timeout=RPC_TIMEOUT)), grpc.StatusCode.UNAUTHENTICATED,
                "Health/Watch without a token")


def test_reflection_and_unknown_methods_need_the_token(ctx):
    rpb, Stub = eg.REFLECTION["v1"]
    req = rpb.ServerReflectionRequest(list_services="*")
    stub = Stub(ctx.ch)
    expect_code(lambda: list(stub.ServerReflectionInfo(iter([req]), timeout=RPC_TIMEOUT)),
                grpc.StatusCode.UNAUTHENTICATED, "reflection without a token")
    answers = list(stub.ServerReflectionInfo(iter([req]), timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_1)))
    names = {s.name for s in answers[0].list_services_response.service}
    check("notification.NotificationService" in names, "reflection with the token: %r" % names)
    nope = ctx.ch.unary_unary("/notification.NotificationService/Nope")
    expect_code(lambda: nope(b"", timeout=RPC_TIMEOUT), grpc.StatusCode.UNAUTHENTICATED,
                "unknown method without a token")
    expect_code(lambda: nope(b"", timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_2)),
                grpc.StatusCode.UNIMPLEMENTED, "unknown method with the token")


def test_wsnotifyctl_with_token_file(ctx):
    server = "127.0.0.1:%d" % ctx.d.grpc_port
    uid = str(ctx.uid())
    args = ["send", "--server", server, "--user-id", uid, "--type", "t", "--title", "x", "--message", "m"]
    r = ctx.ctl(*args)
    check(r.returncode == 1 and r.stderr.startswith("UNAUTHENTICATED:"), "no token: %r" % (r.stderr,))
    r = ctx.ctl(*args, "--grpc-token-file", ctx.f["ctl-token"])
    check(r.returncode == 0, "with the token file: %s" % r.stderr)
    nid = json.loads(r.stdout)["notification_id"]
    r = ctx.ctl("status", "--server", server, "--user-id", uid, "--id", str(nid),
                "--grpc-token-file", ctx.f["ctl-token"])
    check(r.returncode == 0 and json.loads(r.stdout)["state"] == "STORED", "status: %r" % (r,))
    r = ctx.ctl(*args, "--grpc-token-file", "/nonexistent/tokens")
    check(r.returncode == 1 and "/nonexistent/tokens" in r.stderr, "missing file: %r" % r.stderr)


def test_token_file_reread_on_sighup(ctx):
    uid = ctx.uid()
    send = lambda tok: code_of(lambda: ctx.stub.SendNotification(  # noqa: E731
        ctx.request(uid), timeout=RPC_TIMEOUT, metadata=ctx.md(tok)))[0]
    start = len(ctx.d.log_text())
    write(ctx.f["tokens"], TOKEN_3 + "\n")
    ctx.d.send_signal(1)  # SIGHUP
    wait_log(ctx.d, r"reload: gRPC bearer tokens: 1 from ", start)
    check(send(TOKEN_3) == grpc.StatusCode.OK, "the new token is refused")
    check(send(TOKEN_1) == grpc.StatusCode.UNAUTHENTICATED, "the retired token still works")
    # A broken file is not taken: TOKEN_3 stays.
    start = len(ctx.d.log_text())
    write(ctx.f["tokens"], TOKEN_1 + "\nshort\n")
    ctx.d.send_signal(1)
    wait_log(ctx.d, r"reload: --grpc-token-file: .*:2: a token must be .*keeps the tokens it had", start)
    check(send(TOKEN_3) == grpc.StatusCode.OK, "a broken file replaced the tokens")
    check(send(TOKEN_1) == grpc.StatusCode.UNAUTHENTICATED, "a broken file was half taken")
    write(ctx.f["tokens"], "%s\n%s\n" % (TOKEN_1, TOKEN_2))
    start = len(ctx.d.log_text())
    ctx.d.send_signal(1)
    wait_log(ctx.d, r"reload: gRPC bearer tokens: 2 from ", start)


# --------------------------------------------------------------------------- input rules

def test_nul_bytes_invalid(ctx):
    md = ctx.md(TOKEN_1)
    uid = ctx.uid()
    for field in ("type", "title", "message", "link"):
        kw = {field: "before\x00after"}
        details = expect_code(lambda: ctx.stub.SendNotification(ctx.request(uid, **kw), timeout=RPC_TIMEOUT,
                                                                metadata=md),
                              grpc.StatusCode.INVALID_ARGUMENT, "NUL in " + field)
        check(details == field + " holds a NUL byte", "details %r" % details)
    batch = ctx.pb.SendNotificationsRequest(notifications=[ctx.request(uid), ctx.request(uid, message="a\x00")])
    expect_code(lambda: ctx.stub.SendNotifications(batch, timeout=RPC_TIMEOUT, metadata=md),
                grpc.StatusCode.INVALID_ARGUMENT, "NUL in a batch", "notifications[1]: message holds a NUL byte")
    expect_code(lambda: ctx.stub.Broadcast(ctx.pb.BroadcastRequest(type="t", title="x\x00"),
                                           timeout=RPC_TIMEOUT, metadata=md),
                grpc.StatusCode.INVALID_ARGUMENT, "NUL in a broadcast", "title holds a NUL byte")


BAD_LINKS = ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "  javascript:x", "\x01\x1fjavascript:x",
             "java\tscript:alert(1)", "java\nscript:x", "jav\rascript:x", "data:text/html,<b>x</b>",
             "Data:x", "vbscript:msgbox(1)", " VBScript:x", "\u00a0javascript:x"]


def test_bad_link_schemes_invalid(ctx):
    md = ctx.md(TOKEN_1)
    uid = ctx.uid()
    for link in BAD_LINKS:
        what = "link %r" % link
        expect_code(lambda: ctx.stub.SendNotification(ctx.request(uid, link=link), timeout=RPC_TIMEOUT,
                                                       metadata=md),
                    grpc.StatusCode.INVALID_ARGUMENT, what, "link: the ")
        batch = ctx.pb.SendNotificationsRequest(notifications=[ctx.request(uid), ctx.request(uid, link=link)])
        expect_code(lambda: ctx.stub.SendNotifications(batch, timeout=RPC_TIMEOUT, metadata=md),
                    grpc.StatusCode.INVALID_ARGUMENT, what + " in a batch", "notifications[1]: link: the ")
        expect_code(lambda: ctx.stub.Broadcast(ctx.pb.BroadcastRequest(type="t", title="x", link=link),
                                               timeout=RPC_TIMEOUT, metadata=md),
                    grpc.StatusCode.INVALID_ARGUMENT, what + " in a broadcast", "link: the ")
    for link in ("/orders/1", "https://example.com/?next=javascript:x", "mailto:a@example.com", "#data:"):
        r = ctx.stub.SendNotification(ctx.request(uid, link=link), timeout=RPC_TIMEOUT, metadata=md)
        check(r.notification_id > 0, "link %r refused" % link)
    r = ctx.ctl("send", "--server", "127.0.0.1:%d" % ctx.d.grpc_port, "--user-id", str(uid), "--type", "t",
                "--title", "x", "--message", "m", "--link", "java\tscript:x", "--grpc-token-file", ctx.f["ctl-token"])
    check(r.returncode == 1 and "INVALID_ARGUMENT: link: the javascript: scheme" in r.stderr, "ctl: %r" % r.stderr)


# --------------------------------------------------------------------------- JWT

def expect_401(ctx, d, token, reason, header=False):
    r = ctx.ws(d, token, header)
    check(isinstance(r, wc.HTTPResponse) and r.status == 401, "%s: expected 401, got %r" % (reason, r))
    check(r.json().get("error") == reason, "expected %s, got %r" % (reason, r.body))


def expect_upgrade(ctx, d, token, uid, header=False):
    c = ctx.ws(d, token, header)
    check(isinstance(c, wc.WSConnection), "token not accepted: %r" % (c,))
    m = c.recv_json(5)
    check(m["type"] == "connected" and m["data"]["user_id"] == uid, "connected %r" % m)
    c.abort()


def test_ws_public_key_tokens(ctx):
    for alg, key in (("RS256", "rsa.key"), ("ES256", "ec.key"), ("EdDSA", "ed.key")):
        uid = ctx.uid()
        tok = ctx.mint("--user-id", str(uid), "--email", "k@example.com", "--key-file", ctx.f[key],
                       "--audience", AUD, "--issuer", ISS)
        header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
        check(header["alg"] == alg, "%s: header %r" % (key, header))
        expect_upgrade(ctx, ctx.d, tok, uid)
        expect_upgrade(ctx, ctx.d, tok, uid, header=True)
        # The signature tampered with: one character of it changed.
        sig = tok.rsplit(".", 1)[1]
        bad = tok[:-len(sig)] + ("A" if sig[0] != "A" else "B") + sig[1:]
        expect_401(ctx, ctx.d, bad, "bad_signature")


def test_ws_claim_reasons(ctx):
    uid = ctx.uid()
    base = ["--user-id", str(uid), "--email", "k@example.com", "--key-file", ctx.f["ec.key"]]
    before = {r: metric(ctx.d, "wsnotify_auth_failures_total", reason=r)
              for r in ("token_not_yet_valid", "bad_audience", "bad_issuer")}
    expect_401(ctx, ctx.d, ctx.mint(*base, "--audience", AUD, "--issuer", ISS, "--not-before", "600"),
               "token_not_yet_valid")
    expect_upgrade(ctx, ctx.d, ctx.mint(*base, "--audience", AUD, "--issuer", ISS, "--not-before", "-5"), uid)
    expect_401(ctx, ctx.d, ctx.mint(*base, "--audience", "another-service", "--issuer", ISS), "bad_audience")
    expect_401(ctx, ctx.d, ctx.mint(*base, "--issuer", ISS), "bad_audience", header=True)
    expect_401(ctx, ctx.d, ctx.mint(*base, "--audience", AUD, "--issuer", "https://evil/"), "bad_issuer")
    expect_401(ctx, ctx.d, ctx.mint(*base, "--audience", AUD), "bad_issuer")
    # HS256 with the daemon's secret, aud as an array.
    ok = wc.make_token(ctx.d.secret, uid, extra={"aud": ["x", AUD], "iss": ISS})
    expect_upgrade(ctx, ctx.d, ok, uid)
    expect_401(ctx, ctx.d, wc.make_token(ctx.d.secret, uid, extra={"aud": ["x"], "iss": ISS}), "bad_audience")
    after = {r: metric(ctx.d, "wsnotify_auth_failures_total", reason=r) for r in before}
    check(after["token_not_yet_valid"] - before["token_not_yet_valid"] == 1, "nbf count %r %r" % (before, after))
    check(after["bad_audience"] - before["bad_audience"] == 3, "aud count %r %r" % (before, after))
    check(after["bad_issuer"] - before["bad_issuer"] == 2, "iss count %r %r" % (before, after))


def test_alg_confusion_and_missing_keys(ctx):
    uid = ctx.uid()
    claims = {"aud": AUD, "iss": ISS}
    # HS256 keyed with the RSA public key (PEM, and its DER): the secret is something else.
    pem = read(ctx.f["rsa.pub"])
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", ctx.f["rsa.pub"], "-outform", "DER"],
                         capture_output=True, timeout=30).stdout
    check(len(der) > 200, "no DER")
    for key in (pem, pem.rstrip(b"\n"), der):
        expect_401(ctx, ctx.d, wc.make_token(key, uid, extra=claims), "bad_signature")
    # B: an RSA key only, no HS256 secret at all.
    b = ctx.daemon("rsa-only", ["--jwt-public-key-file", ctx.f["rsa.pub"]], env={"JWT_SECRET": ""})
    check("HS256 with 0 secrets" in b.log_text(), "start line: %s" % b.log_tail(5))
    expect_upgrade(ctx, b, ctx.mint("--user-id", str(uid), "--email", "e@x", "--key-file", ctx.f["rsa.key"]), uid)
    expect_401(ctx, b, wc.make_token(b.secret, uid), "bad_algorithm")
    expect_401(ctx, b, wc.make_token(pem, uid), "bad_algorithm")
    for key in ("ec.key", "ed.key"):
        expect_401(ctx, b, ctx.mint("--user-id", str(uid), "--email", "e@x", "--key-file", ctx.f[key]),
                   "bad_algorithm")
    check(metric(b, "wsnotify_auth_failures_total", reason="bad_algorithm") == 4, "bad_algorithm count")
    b.stop()


def test_start_refusals_name_the_file(ctx):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}

    def run(args, with_secret=True):
        e = dict(env, JWT_SECRET="s3cret") if with_secret else env
        r = subprocess.run([WSNOTIFYD, "--port", str(wc.free_port()), "--grpc-port", str(wc.free_port()),
                            "--workers", "1"] + args, capture_output=True, text=True, timeout=20, env=e)
        return r.returncode, r.stderr
    rc, err = run([], with_secret=False)
    check(rc == 1 and "no HS256 secret" in err and "--jwt-public-key-file" in err and "JWT_SECRET" in err,
          "neither secret nor key: %r %r" % (rc, err))
    for args, names, with_secret in (
            (["--jwt-public-key-file", ctx.f["rsa1024.pub"]], "1024 bits", False),
            (["--jwt-public-key-file", ctx.f["garbage"]], ctx.f["garbage"], True),
            (["--jwt-public-key-file", ctx.f["rsa.key"]], "private key", True),
            (["--jwt-public-key-file", "/nonexistent/keys.pem"], "/nonexistent/keys.pem", False),
            (["--jwt-public-key-file", ctx.f["rsa.pub"], "--users-file", ctx.f["garbage"]],
             "--users-file: the login endpoint signs HS256 tokens", False),
            (["--grpc-token-file", "/nonexistent/tokens"], "/nonexistent/tokens", True),
            (["--grpc-token-file", ctx.f["garbage"]], "--grpc-token-file", True),
            (["--grpc-tls-cert", ctx.f["garbage"], "--grpc-tls-key", ctx.f["server1.key"]], ctx.f["garbage"], True),
            (["--grpc-tls-cert", ctx.f["server1.pem"], "--grpc-tls-key", ctx.f["server2.key"]],
             ctx.f["server2.key"], True),
            (["--grpc-tls-cert", ctx.f["server1.pem"], "--grpc-tls-key", ctx.f["server1.key"],
              "--grpc-client-ca", ctx.f["garbage"]], ctx.f["garbage"], True)):
        rc, err = run(args, with_secret)
        check(rc == 1 and names in err and len(err.strip().splitlines()) == 1,
              "%s: exit %r, %r" % (" ".join(args), rc, err))
    rc, err = run(["--grpc-tls-cert", ctx.f["server1.pem"]])
    check(rc == 2 and "--grpc-tls-key" in err, "cert without key: %r %r" % (rc, err))
    rc, err = run(["--grpc-client-ca", ctx.f["ca.pem"]])
    check(rc == 2 and "--grpc-client-ca" in err, "CA without cert: %r %r" % (rc, err))


# --------------------------------------------------------------------------- TLS and mTLS

def peer_serial(port, ca, cert=None, key=None):
    """The serial of the certificate the gRPC port shows a TLS client (ALPN h2)."""
    c = ssl.create_default_context(cafile=ca)
    c.set_alpn_protocols(["h2"])
    if cert:
        c.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with c.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert()["serialNumber"].lstrip("0")


def tls_channel(ctx, port, ca="ca.pem", cert=None, key=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ctx.f[ca]),
        private_key=read(ctx.f[key]) if key else None,
        certificate_chain=read(ctx.f[cert]) if cert else None)
    return grpc.secure_channel("127.0.0.1:%d" % port, creds, options=OPTIONS)


def test_grpc_tls(ctx):
    ctx.tls = d = ctx.daemon("tls", ["--grpc-tls-cert", ctx.f["cert"], "--grpc-tls-key", ctx.f["certkey"],
                                     "--grpc-token-file", ctx.f["tokens"]])
    uid = ctx.uid()
    plain = grpc.insecure_channel("127.0.0.1:%d" % d.grpc_port, options=OPTIONS)
    code, _ = code_of(lambda: ctx.hpbg.HealthStub(plain).Check(ctx.hpb.HealthCheckRequest(), timeout=3))
    check(code == grpc.StatusCode.UNAVAILABLE, "a plaintext client got %s" % code)
    plain.close()
    # A TLS client that trusts another CA is refused too.
    other = tls_channel(ctx, d.grpc_port, ca="otherca.pem")
    code, _ = code_of(lambda: ctx.hpbg.HealthStub(other).Check(ctx.hpb.HealthCheckRequest(), timeout=3))
    check(code == grpc.StatusCode.UNAVAILABLE, "a client trusting another CA got %s" % code)
    other.close()
    ch = tls_channel(ctx, d.grpc_port)
    stub = ctx.pbg.NotificationServiceStub(ch)
    expect_code(lambda: stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT),
                grpc.StatusCode.UNAUTHENTICATED, "TLS without a token")
    r = stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_1))
    check(r.notification_id > 0, "TLS with the token: %r" % r)
    ch.close()
    # grpcio's own call credentials (they need a secure channel).
    ctx.shown.append(("gRPC token", TOKEN_2))
    creds = grpc.composite_channel_credentials(grpc.ssl_channel_credentials(read(ctx.f["ca.pem"])),
                                               grpc.access_token_call_credentials(TOKEN_2))
    ch = grpc.secure_channel("127.0.0.1:%d" % d.grpc_port, creds, options=OPTIONS)
    r = ctx.pbg.NotificationServiceStub(ch).SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT)
    check(r.notification_id > 0, "access_token_call_credentials: %r" % r)
    ch.close()
    # wsnotifyctl: --ca, --tls with the system's CAs (which do not know ours), plaintext.
    server = "127.0.0.1:%d" % d.grpc_port
    args = ["send", "--server", server, "--user-id", str(uid), "--type", "t", "--title", "x", "--message", "m",
            "--grpc-token-file", ctx.f["ctl-token"]]
    r = ctx.ctl(*args, "--ca", ctx.f["ca.pem"])
    check(r.returncode == 0 and json.loads(r.stdout)["notification_id"] > 0, "ctl --ca: %r" % (r.stderr,))
    r = ctx.ctl(*args, "--tls", "--ca", ctx.f["ca.pem"])
    check(r.returncode == 0, "ctl --tls --ca: %r" % (r.stderr,))
    r = ctx.ctl(*args, "--tls", timeout=40)
    check(r.returncode == 1, "ctl --tls trusting only the system's CAs: %r" % (r.stdout,))
    r = ctx.ctl(*args, timeout=40)
    check(r.returncode == 1, "ctl in plaintext to a TLS port: %r" % (r.stdout,))
    r = ctx.ctl("status", "--server", server, "--user-id", str(uid), "--id", "1", "--ca", ctx.f["ca.pem"],
                "--grpc-token-file", ctx.f["ctl-token"])
    check(r.returncode == 1 and r.stderr.startswith("NOT_FOUND"), "ctl status --ca: %r" % (r.stderr,))


def test_grpc_tls_certificate_reloaded_on_sighup(ctx):
    d = ctx.tls
    check(d is not None and d.alive(), "the TLS daemon is not running")
    check(peer_serial(d.grpc_port, ctx.f["ca.pem"]) == "1001", "first serial")
    ch = tls_channel(ctx, d.grpc_port)
    stub = ctx.pbg.NotificationServiceStub(ch)
    uid = ctx.uid()
    stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_1))
    start = len(d.log_text())
    shutil.copy(ctx.f["server2.pem"], ctx.f["cert"] + ".new")
    shutil.copy(ctx.f["server2.key"], ctx.f["certkey"] + ".new")
    os.replace(ctx.f["cert"] + ".new", ctx.f["cert"])
    os.replace(ctx.f["certkey"] + ".new", ctx.f["certkey"])
    d.send_signal(1)
    wait_log(d, r"reload: gRPC TLS certificate .* for new connections", start)
    check(peer_serial(d.grpc_port, ctx.f["ca.pem"]) == "2002", "the new certificate is not served")
    # The channel opened before keeps working.
    r = stub.SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT, metadata=ctx.md(TOKEN_1))
    check(r.notification_id > 0, "old channel after the reload")
    ch.close()
    # A key that does not match: logged, the current certificate stays.
    start = len(d.log_text())
    shutil.copy(ctx.f["server1.key"], ctx.f["certkey"])
    d.send_signal(1)
    wait_log(d, r"reload: --grpc-tls-cert/--grpc-tls-key: .*does not match.*keeps its certificate", start)
    check(peer_serial(d.grpc_port, ctx.f["ca.pem"]) == "2002", "a bad reload changed the certificate")
    ch = tls_channel(ctx, d.grpc_port)
    r = ctx.pbg.NotificationServiceStub(ch).SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT,
                                                             metadata=ctx.md(TOKEN_1))
    check(r.notification_id > 0, "a new channel after a failed reload")
    ch.close()
    d.stop()


def test_grpc_mutual_tls(ctx):
    shutil.copy(ctx.f["server1.pem"], ctx.f["cert"])
    shutil.copy(ctx.f["server1.key"], ctx.f["certkey"])
    ctx.mtls = d = ctx.daemon("mtls", ["--grpc-tls-cert", ctx.f["cert"], "--grpc-tls-key", ctx.f["certkey"],
                                       "--grpc-client-ca", ctx.f["ca.pem"]])
    uid = ctx.uid()
    for what, cert, key in (("no client certificate", None, None),
                            ("a certificate of another CA", "stranger.pem", "stranger.key")):
        ch = tls_channel(ctx, d.grpc_port, cert=cert, key=key)
        code, _ = code_of(lambda: ctx.pbg.NotificationServiceStub(ch).SendNotification(
            ctx.request(uid), timeout=5))
        check(code == grpc.StatusCode.UNAVAILABLE, "%s: %s" % (what, code))
        ch.close()
    ch = tls_channel(ctx, d.grpc_port, cert="client.pem", key="client.key")
    r = ctx.pbg.NotificationServiceStub(ch).SendNotification(ctx.request(uid), timeout=RPC_TIMEOUT)
    check(r.notification_id > 0, "the right client certificate: %r" % r)
    h = ctx.hpbg.HealthStub(ch).Check(ctx.hpb.HealthCheckRequest(), timeout=RPC_TIMEOUT)
    check(h.status == ctx.hpb.HealthCheckResponse.SERVING, "health over mTLS")
    ch.close()
    d.stop()


# --------------------------------------------------------------------------- logs

def test_no_token_in_any_log(ctx):
    """Every token shown to a daemon: never in a log line, whole or its signature."""
    for d in ctx.daemons:
        if d.alive():
            d.send_signal(1)             # one more reload: its lines are logged too
    time.sleep(0.5)
    check("debug" in ctx.d.log_text() and "refused" in ctx.d.log_text(),
          "the debug daemon logged no debug or refusal lines")
    needles = []
    for what, tok in ctx.shown:
        tok = tok if isinstance(tok, str) else tok.decode("latin-1")
        if what == "JWT":
            parts = tok.split(".")
            needles.append((what, tok))
            if len(parts) == 3 and len(parts[2]) >= 16:
                needles.append((what + " signature", parts[2]))
        elif what.startswith("HS256 secret"):
            needles.append((what, tok))
        else:
            value = tok.split(None, 1)[-1] if " " in tok else tok
            if len(value) >= 12:
                needles.append((what, value))
    for t in (TOKEN_1, TOKEN_2, TOKEN_3, WRONG_TOKEN):
        needles.append(("gRPC token", t))
    check(len(needles) > 40, "only %d tokens were exercised" % len(needles))
    for d in ctx.daemons:
        text = d.log_text()
        for what, needle in needles:
            check(needle not in text, "%s %s... is in the log of %s" % (what, needle[:10], d.name))


TESTS = [
    test_grpc_no_token_unauthenticated,
    test_grpc_wrong_token_unauthenticated,
    test_grpc_right_token_ok,
    test_health_check_needs_no_token,
    test_reflection_and_unknown_methods_need_the_token,
    test_wsnotifyctl_with_token_file,
    test_token_file_reread_on_sighup,
    test_nul_bytes_invalid,
    test_bad_link_schemes_invalid,
    test_ws_public_key_tokens,
    test_ws_claim_reasons,
    test_alg_confusion_and_missing_keys,
    test_start_refusals_name_the_file,
    test_grpc_tls,
    test_grpc_tls_certificate_reloaded_on_sighup,
    test_grpc_mutual_tls,
    test_no_token_in_any_log,     # last: it reads what the others showed
]


def main(argv):
    if es.no_daemon(WSNOTIFYD, "e2e_security: WSNOTIFYD (%r) is not an executable: skipping" % WSNOTIFYD):
        return 77
    for tool in (eg.PROTOC, eg.GRPC_PYTHON_PLUGIN, shutil.which("openssl") or "/nonexistent/openssl"):
        if not os.access(tool, os.X_OK):
            print("e2e_security: %s not found: skipping" % tool)
            return 77
    selected = [t for t in TESTS if not argv or t.__name__ in argv]
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_security: global time limit of %d s exceeded; killing the daemons"
                     % GLOBAL_TIMEOUT):
        return es.run_function_file(Ctx, selected, "wsn-e2e-security-",
                                    teardown=lambda ctx: ctx.ch.close())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""End-to-end tests of wsnotifyd's gRPC endpoint, with clients that are not the project's.

The clients are Debian's python3-grpcio and python3-protobuf, with stubs generated at
test time (protoc + grpc_python_plugin) from proto/notification.proto and from
grpc-proto's health and reflection protos; the reflection test then does what grpcurl
does without -proto: it fetches the FileDescriptorProto over reflection, builds the
message classes from it and calls SendNotification with them. WebSocket clients and the
daemon harness come from tests/e2e/wsnclient.py. wsnotifyctl (env WSNOTIFYCTL) is tested too.

Run: WSNOTIFYD=./wsnotifyd WSNOTIFYCTL=./wsnotifyctl /usr/bin/python3 -B tests/e2e/e2e_grpc.py [TEST...]
Exit 0 = all passed, 77 = skipped (no grpcio, protoc or daemon), 1 = failures. The last
line printed is `N passed, M failed`. The whole file is bounded by a watchdog.
"""

import concurrent.futures
import datetime
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from e2e_support import Failure, check  # noqa: E402

# grpcio's fork handlers are not wanted: the tests fork daemons and wsnotifyctl.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
except ImportError as e:
    print("e2e_grpc: python3-grpcio / python3-protobuf not importable (%s): skipping" % e)
    sys.exit(77)

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL") or os.path.join(os.path.dirname(WSNOTIFYD), "wsnotifyctl")
SRCDIR = os.environ.get("WSN_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
GRPC_PROTO_DIR = os.environ.get("GRPC_PROTO_DIR", "/usr/share/grpc-proto")
PROTOC = shutil.which("protoc") or "/usr/bin/protoc"
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"
WORKERS = 4
GLOBAL_TIMEOUT = 110       # seconds, whole file
RPC_TIMEOUT = 10           # seconds, per call
ID_LIMIT = 2 ** 53
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pb = pbg = hpb = hpbg = None          # stubs, imported by generate_stubs()
REFLECTION = {}                        # "v1"/"v1alpha" -> (messages module, stub class)


# --------------------------------------------------------------------------- stubs

def generate_stubs(tmp):
    """protoc --python_out --grpc_python_out into tmp/wsn_stubs (never a folder named grpc/)."""
    global pb, pbg, hpb, hpbg
    out = os.path.join(tmp, "wsn_stubs")
    os.makedirs(out)
    plugin = "--plugin=protoc-gen-grpc_python=" + GRPC_PYTHON_PLUGIN
    proto = os.path.join(SRCDIR, "proto", "notification.proto")
    gdir = os.path.join(GRPC_PROTO_DIR, "grpc")
    runs = [
        [PROTOC, "-I", os.path.dirname(proto), "--python_out", out, "--grpc_python_out", out,
         plugin, proto],
        # -I grpc-proto/grpc: modules health.v1 and reflection.v1 / reflection.v1alpha.
        [PROTOC, "-I", gdir, "--python_out", out, "--grpc_python_out", out, plugin,
         os.path.join(gdir, "health/v1/health.proto"),
         os.path.join(gdir, "reflection/v1/reflection.proto"),
         os.path.join(gdir, "reflection/v1alpha/reflection.proto")],
    ]
    for argv in runs:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(argv), r.stdout.decode(errors="replace")))
    # Regular packages, so nothing else named health/reflection on sys.path shadows them.
    for d in ("health", "health/v1", "reflection", "reflection/v1", "reflection/v1alpha"):
        open(os.path.join(out, d, "__init__.py"), "w").close()
    sys.path.insert(0, out)
    import notification_pb2
    import notification_pb2_grpc
    from health.v1 import health_pb2, health_pb2_grpc
    from reflection.v1 import reflection_pb2 as r1, reflection_pb2_grpc as r1g
    from reflection.v1alpha import reflection_pb2 as ra, reflection_pb2_grpc as rag
    pb, pbg, hpb, hpbg = notification_pb2, notification_pb2_grpc, health_pb2, health_pb2_grpc
    REFLECTION["v1"] = (r1, r1g.ServerReflectionStub)
    REFLECTION["v1alpha"] = (ra, rag.ServerReflectionStub)


# --------------------------------------------------------------------------- context

class Ctx:
    """The shared daemon, one channel to it, and the WebSocket clients of the current test."""

    def __init__(self, daemon):
        self.d = daemon
        self.target = "127.0.0.1:%d" % daemon.grpc_port
        self.ch = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        grpc.channel_ready_future(self.ch).result(timeout=10)
        self.stub = pbg.NotificationServiceStub(self.ch)
        self.clients = []
        self._uid = 100000 + (os.getpid() % 1000) * 1000

    def uids(self, n):
        """n user ids never used before in this run (rate limits are per user)."""
        first = self._uid
        self._uid += n
        return list(range(first, first + n))

    def send(self, user_id, **kw):
        kw.setdefault("type", "match_created")
        kw.setdefault("title", "Title for %d" % user_id)
        kw.setdefault("message", "Message for %d" % user_id)
        kw.setdefault("send_push", True)
        return self.stub.SendNotification(pb.SendNotificationRequest(user_id=user_id, **kw),
                                          timeout=RPC_TIMEOUT)

    def open_user(self, uid):
        c = self.d.connect_user(uid)
        check(isinstance(c, wc.WSConnection), "user %d was not upgraded: %r" % (uid, c))
        self.clients.append(c)
        msg = c.recv_json(5)
        check(msg.get("type") == "connected", "first message for user %d: %r" % (uid, msg))
        return c

    def close_clients(self):
        for c in self.clients:
            c.abort()
        self.clients = []


_CHANNELS = {}


def notification_stub(d):
    """The NotificationService stub for daemon d's current gRPC port (one channel per
    port, kept open for the file's other calls)."""
    key = d.grpc_port
    if key not in _CHANNELS:
        ch = grpc.insecure_channel("127.0.0.1:%d" % key, options=CHANNEL_OPTIONS)
        grpc.channel_ready_future(ch).result(timeout=10)
        _CHANNELS[key] = (ch, pbg.NotificationServiceStub(ch))
    return _CHANNELS[key][1]


def close_notification_channel(d):
    ch = _CHANNELS.pop(d.grpc_port, None)
    if ch:
        ch[0].close()


def notification_request(user, **kw):
    """A SendNotificationRequest for user with test defaults for the fields not given."""
    kw.setdefault("type", "match_created")
    kw.setdefault("title", "Title for %d" % user)
    kw.setdefault("message", "Message for %d" % user)
    kw.setdefault("send_push", True)
    return pb.SendNotificationRequest(user_id=user, **kw)


def rpc_error(fn, *a, **kw):
    """The grpc.RpcError fn raises, or None if it succeeds."""
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e
    return None


def expect_code(e, code, what, field=None):
    check(e is not None, "%s: succeeded, expected %s" % (what, code.name))
    check(e.code() == code, "%s: got %s %r, expected %s" % (what, e.code().name, e.details(), code.name))
    if field is not None:
        check(field in (e.details() or ""), "%s: details %r do not name %r" % (what, e.details(), field))


def expect_notification(c, uid, resp_id, sent, what):
    """The next message on c is exactly the notification sent (every field right)."""
    msg = c.recv_json(5)
    check(msg.get("type") == "notification", "%s: user %d got %r" % (what, uid, msg))
    data = msg.get("data", {})
    keys = {"id", "title", "message", "notification_type", "link", "timestamp"}
    check(set(data) == keys, "%s: data keys %r" % (what, sorted(data)))
    check(data["id"] == resp_id, "%s: id %r, response said %r" % (what, data["id"], resp_id))
    for k, field in (("title", "title"), ("message", "message"), ("type", "notification_type"),
                     ("link", "link")):
        check(data[field] == sent.get(k, ""), "%s: %s %r, sent %r" % (what, field, data[field], sent.get(k, "")))
    ts = data["timestamp"]
    check(isinstance(ts, str) and TS_RE.match(ts), "%s: timestamp %r is not RFC 3339 UTC with Z" % (what, ts))
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())
    check(skew < 30, "%s: timestamp %s is %.0f s off" % (what, ts, skew))
    return data


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def has_pending(c):
    """Bytes buffered or waiting on the socket (non-blocking)."""
    if c.buf:
        return True
    try:
        return len(c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)) > 0
    except (BlockingIOError, InterruptedError):
        return False


def expect_nothing(c, secs, what):
    try:
        m = c.recv_message(secs)
    except wc.WSTimeout:
        return
    raise Failure("%s: unexpected message %r" % (what, m))


def clean_env():
    """The environment for wsnotifyctl: no proxy may capture a loopback call."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def ctl(*args, timeout=20):
    r = subprocess.run([WSNOTIFYCTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=clean_env())
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# --------------------------------------------------------------------------- tests

def test_health_check(ctx):
    stub = hpbg.HealthStub(ctx.ch)
    SERVING = hpb.HealthCheckResponse.SERVING
    for name in ("", "notification.NotificationService"):
        r = stub.Check(hpb.HealthCheckRequest(service=name), timeout=RPC_TIMEOUT)
        check(r.status == SERVING, "Check(%r): %r" % (name, r))
    e = rpc_error(stub.Check, hpb.HealthCheckRequest(service="no.such.Service"), timeout=RPC_TIMEOUT)
    expect_code(e, grpc.StatusCode.NOT_FOUND, "Check(no.such.Service)")

    def watch():
        for _ in stub.Watch(hpb.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT):
            pass
    expect_code(rpc_error(watch), grpc.StatusCode.UNIMPLEMENTED, "Health/Watch")


def test_unknown_method(ctx):
    for path in ("/made.up.Service/Method", "/notification.NotificationService/NoSuchMethod"):
        e = rpc_error(ctx.ch.unary_unary(path), b"\x08\x01", timeout=RPC_TIMEOUT)
        expect_code(e, grpc.StatusCode.UNIMPLEMENTED, path)

    def stream():
        for _ in ctx.ch.stream_stream("/made.up.Service/Stream")(iter([b"", b""]), timeout=RPC_TIMEOUT):
            pass
    expect_code(rpc_error(stream), grpc.StatusCode.UNIMPLEMENTED, "bidi stream to a made-up method")


def test_invalid_arguments(ctx):
    IA = grpc.StatusCode.INVALID_ARGUMENT
    (uid,) = ctx.uids(1)
    expect_code(rpc_error(ctx.send, 0), IA, "user_id 0", "user_id")
    expect_code(rpc_error(ctx.send, -7), IA, "user_id -7", "user_id")
    expect_code(rpc_error(ctx.send, uid, type=""), IA, "empty type", "type")
    expect_code(rpc_error(ctx.send, uid, title=""), IA, "empty title", "title")
    big = dict(title="t" * 6000, message="m" * 6000, link="l" * 4385)     # 16385 bytes
    e = rpc_error(ctx.send, uid, **big)
    expect_code(e, IA, "title+message+link of 16385 bytes")
    for f in ("title", "message", "link"):
        check(f in e.details(), "16385 bytes: details %r do not name %s" % (e.details(), f))
    r = ctx.send(uid, title="t" * 6000, message="m" * 6000, link="l" * 4384)  # exactly 16 KiB
    check(r.notification_id > 0 and not r.delivered, "exactly 16 KiB (offline user): %r" % r)
    # Not a SendNotificationRequest at all, then one whose title is not UTF-8.
    raw = ctx.ch.unary_unary("/notification.NotificationService/SendNotification")
    expect_code(rpc_error(raw, b"\xff\xff\xff\xff", timeout=RPC_TIMEOUT), IA, "undecodable request")
    bad_utf8 = b"\x08" + varint(uid) + b"\x12\x01t" + b"\x1a\x02\xff\xfe" + b"\x28\x01"
    expect_code(rpc_error(raw, bad_utf8, timeout=RPC_TIMEOUT), IA, "title not UTF-8", "title")
    # Over the channel's 64 KiB receive limit: refused before decoding.
    e = rpc_error(ctx.send, uid, title="x" * 70000)
    expect_code(e, grpc.StatusCode.RESOURCE_EXHAUSTED, "70000-byte request")


def test_offline_user(ctx):
    (uid,) = ctx.uids(1)
    r = ctx.send(uid)
    check(not r.delivered, "offline user: delivered %r" % r.delivered)
    check(0 < r.notification_id < ID_LIMIT, "offline user: id %r" % r.notification_id)


def test_server_ids_increasing(ctx):
    (uid,) = ctx.uids(1)
    ids = [ctx.send(uid).notification_id for _ in range(30)]
    check(all(0 < i < ID_LIMIT for i in ids), "ids out of (0, 2^53): %r" % ids)
    check(all(a < b for a, b in zip(ids, ids[1:])), "ids not increasing: %r" % ids)


def test_200_users(ctx):
    uids = ctx.uids(200)
    paths = ["/ws?token=" + ctx.d.token(u) for u in uids]
    conns = wc.connect_many(ctx.d.host, ctx.d.port, paths, timeout=15)
    for u, c in zip(uids, conns):
        check(isinstance(c, wc.WSConnection), "user %d was not upgraded: %r" % (u, c))
        ctx.clients.append(c)
    for u, c in zip(uids, conns):
        msg = c.recv_json(5)
        check(msg.get("type") == "connected" and msg["data"]["user_id"] == u,
              "user %d first message %r" % (u, msg))
    sent = {}
    for u in uids:
        sent[u] = dict(type="match_created", title='Match "%d" \u2713' % u,
                       message="line1\nline2 <b>&</b> \\ \u00e9\u4e2d \U0001F600 %d\t\x01" % u,
                       link="/orders/%d?a=1&b=2" % u)
    # All 200 calls in flight at once.
    futures = {u: ctx.stub.SendNotification.future(
        pb.SendNotificationRequest(user_id=u, send_push=True, **sent[u]), timeout=RPC_TIMEOUT)
        for u in uids}
    resp = {u: f.result() for u, f in futures.items()}
    for u in uids:
        check(resp[u].delivered, "user %d: delivered false" % u)
    ids = [r.notification_id for r in resp.values()]
    check(len(set(ids)) == len(ids), "notification ids not unique")
    check(all(0 < i < ID_LIMIT for i in ids), "an id is out of (0, 2^53)")
    for u, c in zip(uids, conns):
        expect_notification(c, u, resp[u].notification_id, sent[u], "200 users")
    time.sleep(0.3)
    extra = [u for u, c in zip(uids, conns) if has_pending(c)]
    check(not extra, "users that received more than their one notification: %r" % extra[:10])


def test_caller_id_echoed(ctx):
    (uid,) = ctx.uids(1)
    c = ctx.open_user(uid)
    caller_id = 987654321012
    sent = dict(type="order_shipped", title="Shipped", message="Your order", link="/o/1")
    r = ctx.send(uid, id=caller_id, **sent)
    check(r.notification_id == caller_id, "caller id %d came back as %d" % (caller_id, r.notification_id))
    check(r.delivered, "connected user: delivered false")
    expect_notification(c, uid, caller_id, sent, "caller id")


def test_no_push(ctx):
    (uid,) = ctx.uids(1)
    c = ctx.open_user(uid)
    r = ctx.send(uid, send_push=False)
    check(not r.delivered, "send_push false: delivered true")
    check(0 < r.notification_id < ID_LIMIT, "send_push false: not numbered: %r" % r)
    expect_nothing(c, 0.5, "send_push false")
    c.send_text('{"type":"ping"}')
    msg = c.recv_json(3)
    check(msg.get("type") == "pong", "after send_push false the next message is %r, not the pong" % msg)


def test_slow_reader_dropped(ctx):
    """A client that never reads is dropped once its unsent output passes the bound
    (1 MiB on top of what the kernel buffers), instead of growing the worker's memory;
    it goes offline, and the worker keeps serving everyone else."""
    slow_uid, other_uid = ctx.uids(2)
    slow = ctx.open_user(slow_uid)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    other = ctx.open_user(other_uid)
    body = "x" * 16000
    dropped = False
    for i in range(3000):   # ~48 MB at most: far over kernel buffers + 1 MiB
        r = ctx.send(slow_uid, message=body)
        if not r.delivered:
            dropped = True
            break
    check(dropped, "a client that never reads was never dropped (%d notifications)" % i)
    line = ctx.d.wait_log(lambda ln: "slow client" in ln.raw and "UserID=%d)" % slow_uid in ln.raw, 5)
    check(line is not None, "no 'slow client' log line for user %d" % slow_uid)
    r = ctx.send(other_uid, message="still here")
    check(r.delivered, "the other user was not delivered to after the slow client was dropped")
    msg = other.recv_json(5)
    check(msg.get("type") == "notification" and msg["data"]["message"] == "still here",
          "the other user got %r" % msg)


def test_reconnect_other_worker(ctx):
    """A notification sent right after a reconnection reaches the new connection, also when
    the new connection is on another worker than the old one."""
    crossed = False
    for uid in ctx.uids(12):
        old = ctx.open_user(uid)
        new = ctx.open_user(uid)
        sent = dict(type="t", title="after reconnect %d" % uid, message="m", link="")
        r = ctx.send(uid, **sent)
        check(r.delivered, "user %d right after reconnecting: delivered false" % uid)
        expect_notification(new, uid, r.notification_id, sent, "reconnected user %d" % uid)
        code = old.wait_closed(5)[0]
        check(code == 4000, "user %d: the older connection closed with %r, not 4000" % (uid, code))
        check(not any(f.payload.find(b'"notification"') >= 0 for f in old.discarded),
              "user %d: the older connection also got the notification" % uid)
        s_old, s_new = ctx.d.worker_of(uid, 0), ctx.d.worker_of(uid, 1)
        check(s_old is not None and s_new is not None, "user %d: no `Client connected` lines" % uid)
        if s_old != s_new:
            crossed = True
            break
    check(crossed, "no reconnection landed on another worker in 12 tries")


def test_reflection(ctx):
    for version in ("v1", "v1alpha"):
        reflection_roundtrip(ctx, version)


def reflection_roundtrip(ctx, version):
    rpb, Stub = REFLECTION[version]
    R = rpb.ServerReflectionRequest
    reqs = [
        R(host="h", list_services="*" if version == "v1" else ""),
        R(file_containing_symbol="notification.NotificationService"),
        R(file_by_filename="notification.proto"),
        R(file_containing_symbol="notification.SendNotificationRequest"),
        R(file_containing_symbol="notification.NotificationService.SendNotification"),
        R(file_containing_symbol="no.such.Symbol"),
        R(file_containing_symbol="grpc.health.v1.Health"),
        R(file_by_filename="nope.proto"),
    ]
    what = "reflection " + version
    resps = list(Stub(ctx.ch).ServerReflectionInfo(iter(reqs), timeout=RPC_TIMEOUT))
    check(len(resps) == len(reqs), "%s: %d answers to %d requests" % (what, len(resps), len(reqs)))
    for q, a in zip(reqs, resps):
        check(a.original_request == q, "%s: original_request %r for %r" % (what, a.original_request, q))
    services = {s.name for s in resps[0].list_services_response.service}
    want = {"notification.NotificationService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
    check(want <= services, "%s: list_services %r" % (what, sorted(services)))

    def files(a, i):
        check(a.WhichOneof("message_response") == "file_descriptor_response",
              "%s: answer %d is %r" % (what, i, a))
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in a.file_descriptor_response.file_descriptor_proto]
    fd = files(resps[1], 1)[0]
    check(fd.name == "notification.proto" and fd.package == "notification", "%s: file %r" % (what, fd.name))
    svc = {s.name: s for s in fd.service}
    check("NotificationService" in svc, "%s: services in the file: %r" % (what, list(svc)))
    methods = {m.name: m for m in svc["NotificationService"].method}
    check("SendNotification" in methods, "%s: methods %r" % (what, list(methods)))
    m = methods["SendNotification"]
    check(m.input_type == ".notification.SendNotificationRequest" and
          m.output_type == ".notification.SendNotificationResponse", "%s: method %r" % (what, m))
    for i in (2, 3, 4):
        check(files(resps[i], i)[0] == fd, "%s: answer %d is not notification.proto" % (what, i))
    for i in (5, 7):
        check(resps[i].WhichOneof("message_response") == "error_response" and
              resps[i].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0],
              "%s: answer %d to an unknown name: %r" % (what, i, resps[i]))
    check(files(resps[6], 6)[0].name == "grpc/health/v1/health.proto", "%s: health file" % what)

    # As grpcurl does without -proto: message classes from the served descriptor, the
    # request from JSON, the method path from the service descriptor.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    sd = pool.FindServiceByName("notification.NotificationService")
    md = sd.FindMethodByName("SendNotification")
    if hasattr(message_factory, "GetMessageClass"):
        Req, Resp = (message_factory.GetMessageClass(md.input_type),
                     message_factory.GetMessageClass(md.output_type))
    else:
        factory = message_factory.MessageFactory(pool)
        Req, Resp = factory.GetPrototype(md.input_type), factory.GetPrototype(md.output_type)
    (uid,) = ctx.uids(1)
    c = ctx.open_user(uid)
    sent = dict(type="match_created", title="via reflection " + version, message="dynamic", link="/r")
    req = json_format.Parse(json.dumps(dict(user_id=uid, send_push=True, **sent)), Req())
    call = ctx.ch.unary_unary("/%s/%s" % (sd.full_name, md.name),
                              request_serializer=Req.SerializeToString,
                              response_deserializer=Resp.FromString)
    r = json_format.MessageToDict(call(req, timeout=RPC_TIMEOUT), preserving_proto_field_name=True)
    check(r.get("delivered") is True, "%s: dynamic call answered %r" % (what, r))
    expect_notification(c, uid, int(r["notification_id"]), sent, what + " dynamic call")


def test_wsnotifyctl(ctx):
    check(os.access(WSNOTIFYCTL, os.X_OK), "WSNOTIFYCTL %r is not executable" % WSNOTIFYCTL)
    (uid,) = ctx.uids(1)
    c = ctx.open_user(uid)
    server = ["--server", ctx.target]
    sent = dict(type="match_created", title="From ctl \u2713", message='say "hi"', link="/x")
    rc, out, err = ctl("send", "--user-id", str(uid), "--type", sent["type"], "--title", sent["title"],
                       "--message", sent["message"], "--link", sent["link"], *server)
    check(rc == 0, "wsnotifyctl send: exit %d, stderr %r" % (rc, err))
    r = json.loads(out)
    check(set(r) == {"notification_id", "delivered"} and r["delivered"] is True,
          "wsnotifyctl send printed %r" % out)
    expect_notification(c, uid, r["notification_id"], sent, "wsnotifyctl send")
    rc, out, err = ctl("send", "--user-id", str(uid), "--type", "t", "--title", "T", "--message", "M",
                       "--id", "4242", "--no-push", *server)
    check(rc == 0 and json.loads(out) == {"notification_id": 4242, "delivered": False},
          "wsnotifyctl send --id --no-push: exit %d, %r %r" % (rc, out, err))
    expect_nothing(c, 0.3, "wsnotifyctl --no-push")
    rc, out, err = ctl("send", "--user-id", str(uid), "--type", "t", "--title", "", "--message", "M", *server)
    check(rc == 1 and err.startswith("INVALID_ARGUMENT: ") and "title" in err and out == "",
          "wsnotifyctl send --title '': exit %d, stdout %r, stderr %r" % (rc, out, err))
    rc, out, err = ctl("send", "--user-id", "0", "--type", "t", "--title", "T", "--message", "M", *server)
    check(rc == 1 and err.startswith("INVALID_ARGUMENT: ") and "user_id" in err,
          "wsnotifyctl send --user-id 0: exit %d, stderr %r" % (rc, err))
    rc, out, err = ctl("send", "--user-id", str(uid), "--title", "T", "--message", "M", *server)
    check(rc == 2, "wsnotifyctl send without --type: exit %d, stderr %r" % (rc, err))
    rc, out, err = ctl("send", "--user-id", "abc", "--type", "t", "--title", "T", "--message", "M", *server)
    check(rc == 2, "wsnotifyctl send --user-id abc: exit %d, stderr %r" % (rc, err))
    closed = "127.0.0.1:%d" % wc.free_port()
    rc, out, err = ctl("send", "--user-id", "1", "--type", "t", "--title", "T", "--message", "M",
                       "--server", closed)
    check(rc == 1 and err.startswith("UNAVAILABLE: "), "wsnotifyctl send to a closed port: exit %d, %r" % (rc, err))
    rc, out, err = ctl("health", "--server", "%s:%d" % (ctx.d.host, ctx.d.port))
    h = json.loads(out) if rc == 0 else {}
    check(h.get("status") == "healthy" and h.get("workers") == WORKERS,
          "wsnotifyctl health: exit %d, %r %r" % (rc, out, err))
    rc, out, err = ctl("health", "--server", closed)
    check(rc == 1 and err, "wsnotifyctl health on a closed port: exit %d, %r" % (rc, err))
    rc, out, err = ctl("--help")
    check(rc == 0 and "send" in out and "health" in out and "token" in out, "wsnotifyctl --help: %r" % out)


def test_grpc_port_in_use(ctx):
    """A taken --grpc-port: exit 1 with a message naming the flag (no hang, no crash)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    try:
        env = dict(os.environ, JWT_SECRET="x")
        r = subprocess.run([WSNOTIFYD, "--workers", "1", "--bind", "127.0.0.1",
                            "--port", str(wc.free_port()), "--grpc-port", str(busy)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=15)
    finally:
        s.close()
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 1, "taken gRPC port: exit %d, stderr %r" % (r.returncode, err[-500:]))
    check("--grpc-port" in err, "taken gRPC port: stderr does not name --grpc-port: %r" % err[-500:])


def test_worker_killed(ctx):
    d = ctx.d
    uids = ctx.uids(40)
    conns = {u: ctx.open_user(u) for u in uids}
    slot = {u: d.worker_of(u) for u in uids}
    check(None not in slot.values(), "no `Client connected` line for some users")
    victim = max(range(WORKERS), key=lambda s: sum(1 for u in uids if slot[u] == s))
    victims = [u for u in uids if slot[u] == victim]
    others = [u for u in uids if slot[u] != victim]
    check(victims and others, "users not spread over workers: %r" % slot)
    os.kill(d.worker_pids()[victim], signal.SIGKILL)
    # Until the master reaps the worker a datagram may still be queued for it; then never.
    deadline = time.monotonic() + 5
    while ctx.send(victims[0]).delivered:
        check(time.monotonic() < deadline, "worker %d killed 5 s ago: its users still delivered" % victim)
        time.sleep(0.02)
    for u in victims:
        r = ctx.send(u)
        check(not r.delivered, "user %d of the killed worker: delivered true" % u)
    for u in others:
        sent = dict(type="t", title="survivor %d" % u, message="m", link="")
        r = ctx.send(u, **sent)
        check(r.delivered, "user %d on a live worker: delivered false" % u)
        expect_notification(conns[u], u, r.notification_id, sent, "survivor %d" % u)
    for u in victims:
        c = ctx.open_user(u)
        # First what was sent while its worker was dead (stored, never written:
        # README "History", offline users), then the new one.
        sent = dict(type="t", title="back %d" % u, message="m", link="")
        r = ctx.send(u, **sent)
        check(r.delivered, "user %d reconnected after the crash: delivered false" % u)
        for _ in range(100):
            msg = c.recv_json(5)
            check(msg.get("type") == "notification", "reconnected user %d got %r" % (u, msg))
            if msg["data"]["id"] == r.notification_id:
                check(msg["data"]["title"] == sent["title"], "reconnected user %d: %r" % (u, msg))
                break
            check(msg["data"]["title"] != sent["title"], "reconnected user %d: the new one came "
                  "before its backlog" % u)
        else:
            check(False, "reconnected user %d: never got its new notification" % u)


def test_sigterm_in_flight(ctx):
    """SIGTERM during many concurrent calls: each completes OK or fails UNAVAILABLE, none
    hangs, a streaming call open at SIGTERM still gets its answers, and the daemon exits 0.
    Runs last: it stops the shared daemon."""
    d = ctx.d
    rpb, Stub = REFLECTION["v1"]
    requests = queue.Queue()

    def request_stream():
        while True:
            r = requests.get(timeout=RPC_TIMEOUT)
            if r is None:
                return
            yield r
    stream = Stub(ctx.ch).ServerReflectionInfo(request_stream(), timeout=RPC_TIMEOUT)
    requests.put(rpb.ServerReflectionRequest(list_services=""))
    check(next(stream).HasField("list_services_response"), "reflection stream before SIGTERM")
    uids = ctx.uids(16)
    for u in uids:
        ctx.open_user(u)
    outcomes = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(u):
        ch = grpc.insecure_channel(ctx.target, options=CHANNEL_OPTIONS)
        stub = pbg.NotificationServiceStub(ch)
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    stub.SendNotification(pb.SendNotificationRequest(
                        user_id=u, type="t", title="T", message="M", send_push=True), timeout=RPC_TIMEOUT)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                with lock:
                    outcomes.append((code, time.monotonic() - t0))
                if code != grpc.StatusCode.OK:
                    break
        finally:
            ch.close()

    threads = [threading.Thread(target=worker, args=(u,), daemon=True) for u in uids]
    for t in threads:
        t.start()
    time.sleep(0.7)
    with lock:
        before = len(outcomes)
    check(before > 0, "no call completed before SIGTERM")
    d.send_signal(signal.SIGTERM)
    time.sleep(0.5)            # the endpoint is draining now
    requests.put(rpb.ServerReflectionRequest(file_containing_symbol="notification.NotificationService"))
    try:
        late = next(stream)
        requests.put(None)
        rest = list(stream)
    except grpc.RpcError as e:
        raise Failure("the reflection stream open at SIGTERM failed: %s %r" % (e.code(), e.details()))
    check(late.HasField("file_descriptor_response") and not rest,
          "reflection stream after SIGTERM: %r, then %r" % (late, rest))
    for t in threads:
        t.join(RPC_TIMEOUT + 5)
    stop.set()
    check(not any(t.is_alive() for t in threads), "a call hung after SIGTERM")
    ctx.close_clients()        # the workers need not wait for their close handshakes
    rc = d.wait_exit(15)
    check(rc == 0, "daemon exit status after SIGTERM: %r" % rc)
    bad = [(c.name, round(s, 2)) for c, s in outcomes
           if c not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)]
    check(not bad, "calls ended with other codes than OK/UNAVAILABLE: %r" % bad[:10])
    slow = [round(s, 2) for c, s in outcomes if s > 6]
    check(not slow, "calls took over 6 s: %r" % slow[:10])
    check(d.wait_log(lambda l: "gRPC endpoint stopped" in l.msg, 1) is not None,
          "no `gRPC endpoint stopped` log line")
    print("    %d calls: %d before SIGTERM, %d OK in all" % (
        len(outcomes), before, sum(1 for c, _ in outcomes if c == grpc.StatusCode.OK)))


TESTS = [
    test_health_check,
    test_unknown_method,
    test_invalid_arguments,
    test_offline_user,
    test_server_ids_increasing,
    test_200_users,
    test_caller_id_echoed,
    test_no_push,
    test_slow_reader_dropped,
    test_reconnect_other_worker,
    test_reflection,
    test_wsnotifyctl,
    test_grpc_port_in_use,
    test_worker_killed,
    test_sigterm_in_flight,      # last: stops the daemon
]


# --------------------------------------------------------------------------- main

def setup(tmp):
    generate_stubs(tmp)
    d = wc.Daemon(WSNOTIFYD, workers=WORKERS, name="grpc")
    d.start()
    return Ctx(d)


def main(argv):
    if es.no_daemon(WSNOTIFYD, "e2e_grpc: WSNOTIFYD (%r) is not an executable: skipping" % WSNOTIFYD):
        return 77
    for tool in (PROTOC, GRPC_PYTHON_PLUGIN):
        if not os.access(tool, os.X_OK):
            print("e2e_grpc: %s not found (protobuf-compiler, protobuf-compiler-grpc): skipping" % tool)
            return 77
    es.raise_nofile_limit()
    selected = [t for t in TESTS if not argv or t.__name__ in argv]
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_grpc: global time limit of %d s exceeded; killing the daemons"
                     % GLOBAL_TIMEOUT):
        return es.run_function_file(setup, selected, "wsn-e2e-grpc-",
                                    teardown=lambda ctx: ctx.ch.close(),
                                    after_each=Ctx.close_clients,
                                    may_stop_daemon=(test_sigterm_in_flight,))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

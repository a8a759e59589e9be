#!/usr/bin/env python3
"""End-to-end test of GET /metrics against the real wsnotifyd --workers 4.

One daemon, one scenario in steps, each step checking the exposition (parsed by the
small text-format parser below, strictly: HELP then TYPE then samples, once per
family) against what the step did: clients connected, one evicted, refused tokens by
reason, pings, notifications by outcome and the latency histogram (with python3-grpcio,
stubs generated as tests/e2e/e2e_grpc.py does; skipped with a message without it), then a
worker killed with SIGKILL and respawned, after which no counter went back.

Run: WSNOTIFYD=./wsnotifyd /usr/bin/python3 -B tests/e2e/e2e_metrics.py
Exit 0 = all passed, 77 = skipped (no daemon), 1 = failures. The last line printed is
`N passed, M failed`. The whole file is bounded by a watchdog.
"""

import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from e2e_support import Failure, check  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WORKERS = 4
GLOBAL_TIMEOUT = 50        # seconds, whole file
CONTENT_TYPE = "text/plain; version=0.0.4"

FAMILIES = {
    "wsnotify_connections": "gauge",
    "wsnotify_connections_accepted_total": "counter",
    "wsnotify_auth_failures_total": "counter",
    "wsnotify_evictions_total": "counter",
    "wsnotify_notifications_total": "counter",
    "wsnotify_queue_dropped_total": "counter",
    "wsnotify_frames_total": "counter",
    "wsnotify_worker_restarts_total": "counter",
    "wsnotify_delivery_latency_seconds": "histogram",
}
AUTH_REASONS = ["missing_token", "malformed_token", "bad_algorithm", "bad_signature",
                "missing_exp", "token_expired", "missing_user_id", "bad_email",
                "token_not_yet_valid", "bad_audience", "bad_issuer"]
OUTCOMES = ["delivered", "offline", "dropped", "invalid", "not_pushed", "unavailable", "internal",
            "duplicate", "exhausted", "unauthenticated"]
LATENCY = "wsnotify_delivery_latency_seconds"


# --------------------------------------------------------------------------- parser

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_labels(s, i, line):
    """s[i] == '{' -> (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME_RE.match(s, i)
        check(m, "bad label name in %r" % line)
        name = m.group(0)
        i = m.end()
        check(s[i:i + 2] == '="', "bad label in %r" % line)
        i += 2
        value = []
        while s[i] != '"':
            if s[i] == "\\":
                nxt = s[i + 1]
                check(nxt in '\\"n', "bad escape in %r" % line)
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            else:
                value.append(s[i])
                i += 1
        i += 1
        check(name not in labels, "label %s twice in %r" % (name, line))
        labels[name] = "".join(value)
        if s[i] == ",":
            i += 1
        else:
            check(s[i] == "}", "bad label list in %r" % line)


class Exposition:
    """The parsed text format: families {name: (type, help)} and samples
    {(sample name, frozenset(labels)): float}."""

    def __init__(self, text):
        self.families = {}
        self.samples = {}
        state = {}             # family -> "help" | "type" | "samples"
        current = None
        check(text.endswith("\n"), "the exposition does not end with a newline")
        for line in text.split("\n")[:-1]:
            check(line != "", "an empty line in the exposition")
            if line.startswith("# HELP "):
                name, _, help_ = line[7:].partition(" ")
                check(NAME_RE.fullmatch(name), "bad HELP line %r" % line)
                check(name not in state, "second HELP for %s (families must be one block)" % name)
                check(help_.strip(), "empty HELP for %s" % name)
                state[name] = "help"
                current = name
                self.families[name] = [None, help_]
            elif line.startswith("# TYPE "):
                parts = line[7:].split(" ")
                check(len(parts) == 2, "bad TYPE line %r" % line)
                name, type_ = parts
                check(name == current and state.get(name) == "help",
                      "TYPE %s not right after its HELP" % name)
                check(type_ in ("counter", "gauge", "histogram", "summary", "untyped"),
                      "bad type in %r" % line)
                state[name] = "type"
                self.families[name][0] = type_
            elif line.startswith("#"):
                continue       # a comment
            else:
                m = NAME_RE.match(line)
                check(m, "bad sample line %r" % line)
                sname = m.group(0)
                fam = self.family_of(sname)
                check(fam == current and state.get(fam) in ("type", "samples"),
                      "sample %r outside its family's block (current %r)" % (line, current))
                state[fam] = "samples"
                i = m.end()
                labels = {}
                if i < len(line) and line[i] == "{":
                    labels, i = _parse_labels(line, i, line)
                check(line[i:i + 1] == " ", "no value in %r" % line)
                fields = line[i + 1:].split(" ")
                check(1 <= len(fields) <= 2, "bad value in %r" % line)
                try:
                    value = float(fields[0])
                except ValueError:
                    raise Failure("bad value in %r" % line) from None
                key = (sname, frozenset(labels.items()))
                check(key not in self.samples, "sample %r twice" % line)
                self.samples[key] = value

    def family_of(self, sname):
        if sname in self.families:
            return sname
        for sfx in ("_bucket", "_sum", "_count"):
            base = sname[:-len(sfx)]
            if sname.endswith(sfx) and self.families.get(base, [None])[0] == "histogram":
                return base
        return sname

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        check(key in self.samples, "no sample %s%r" % (name, labels or ""))
        return self.samples[key]

    def series(self, name):
        """[(labels dict, value)] of one sample name."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def connections(self):
        """{worker slot: open connections}"""
        return {int(l["worker"]): v for l, v in self.series("wsnotify_connections")}

    def buckets(self):
        """[(le, cumulative count)] in file order."""
        out = []
        for (n, labels), v in self.samples.items():
            if n == LATENCY + "_bucket":
                out.append((dict(labels)["le"], v))
        return out


def scrape(d):
    r = d.http("GET", "/metrics", timeout=5)
    check(r.status == 200, "/metrics answered %d: %r" % (r.status, r.body[:200]))
    check(r.header("content-type") == CONTENT_TYPE,
          "/metrics Content-Type %r" % r.header("content-type"))
    check(len(r.body) == int(r.header("content-length", "-1")), "Content-Length mismatch")
    return Exposition(r.body.decode("utf-8"))


def check_shape(m, workers=WORKERS):
    """Every family with its type, every label value, histogram invariants."""
    for name, type_ in FAMILIES.items():
        check(name in m.families, "family %s missing" % name)
        check(m.families[name][0] == type_, "%s has type %r, expected %s" % (
            name, m.families[name][0], type_))
    check(sorted(m.connections()) == list(range(workers)),
          "wsnotify_connections workers %r" % sorted(m.connections()))
    check(all(v >= 0 for v in m.connections().values()), "negative connections gauge")
    check(sorted(l["reason"] for l, _ in m.series("wsnotify_auth_failures_total")) == sorted(AUTH_REASONS),
          "auth failure reasons %r" % m.series("wsnotify_auth_failures_total"))
    check(sorted(l["outcome"] for l, _ in m.series("wsnotify_notifications_total")) == sorted(OUTCOMES),
          "notification outcomes %r" % m.series("wsnotify_notifications_total"))
    check(sorted(l["direction"] for l, _ in m.series("wsnotify_frames_total")) == ["in", "out"],
          "frame directions")
    b = m.buckets()
    check(b and b[-1][0] == "+Inf", "the last bucket is not +Inf: %r" % b[-1:])
    les = [float(le) for le, _ in b[:-1]]
    check(les == sorted(les) and len(set(les)) == len(les), "le not increasing: %r" % les)
    counts = [v for _, v in b]
    check(counts == sorted(counts), "cumulative buckets decrease: %r" % counts)
    check(b[-1][1] == m.get(LATENCY + "_count"), "+Inf bucket %r != _count %r" % (
        b[-1][1], m.get(LATENCY + "_count")))
    check(m.get(LATENCY + "_sum") >= 0, "negative _sum")


def counters(m):
    """Every counter sample (histogram included): nothing here may ever go down."""
    return {k: v for k, v in m.samples.items()
            if m.families.get(m.family_of(k[0]), [None])[0] in ("counter", "histogram")}


# --------------------------------------------------------------------------- gRPC

def load_grpc(tmp):
    """The e2e_grpc stubs module, or None (with the reason printed) when grpcio,
    protoc or the plugin is missing: the notification part is then skipped."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        print("SKIP notifications: python3-grpcio / python3-protobuf not importable (%s)" % e)
        return None
    import e2e_grpc as eg
    for tool in (eg.PROTOC, eg.GRPC_PYTHON_PLUGIN):
        if not os.access(tool, os.X_OK):
            print("SKIP notifications: %s not found (protobuf-compiler-grpc)" % tool)
            return None
    eg.generate_stubs(tmp)
    return eg


# --------------------------------------------------------------------------- scenario

class Ctx:
    def __init__(self, d, eg):
        self.d = d
        self.eg = eg
        self.clients = {}          # user id -> open WSConnection
        self.base = None           # first scrape
        self.last = None           # the latest scrape, for "never goes down"
        self.delivered = 0
        self.pings = 0
        self.uid0 = 500000 + (os.getpid() % 1000) * 100

    def open_user(self, uid):
        c = self.d.connect_user(uid)
        check(isinstance(c, wc.WSConnection), "user %d was not upgraded: %r" % (uid, c))
        msg = c.recv_json(5)
        check(msg.get("type") == "connected", "first message for user %d: %r" % (uid, msg))
        self.clients[uid] = c
        return c

    def scrape(self):
        m = scrape(self.d)
        check_shape(m)
        if self.last is not None:
            now = counters(m)
            went_down = [(k, v, now.get(k)) for k, v in counters(self.last).items()
                         if now.get(k, -1) < v]
            check(not went_down, "counters went down: %r" % went_down[:5])
        self.last = m
        return m

    def wait_connections(self, want, timeout=5.0):
        """Wait until /health and the per-worker gauges both say want; -> the scrape."""
        ok, h = self.d.wait_health(lambda h: h.get("ws_connections") == want, timeout)
        check(ok, "/health ws_connections never became %d: %r" % (want, h))
        deadline = time.monotonic() + timeout
        while True:
            m = self.scrape()
            total = sum(m.connections().values())
            h = self.d.health()
            if total == want and h["ws_connections"] == want:
                return m
            check(time.monotonic() < deadline,
                  "sum of wsnotify_connections %r (%r) vs /health %r, expected %d" % (
                      total, m.connections(), h["ws_connections"], want))
            time.sleep(0.05)

    def close_all(self):
        for c in self.clients.values():
            c.abort()
        self.clients = {}


def step_baseline(ctx):
    m = ctx.scrape()
    ctx.base = m
    check(m.get("wsnotify_worker_restarts_total") == 0, "restarts at start")
    check(sum(m.connections().values()) == 0, "connections at start: %r" % m.connections())
    check(m.get("wsnotify_connections_accepted_total") == 0, "accepted at start")
    check(m.get(LATENCY + "_count") == 0, "latency count at start")
    r = ctx.d.http("POST", "/metrics")
    check(r.status == 405, "POST /metrics answered %d" % r.status)
    check(r.json().get("error"), "405 body %r" % r.body)
    check("GET" in (r.header("allow") or ""), "405 without Allow: GET")


def step_connect_and_evict(ctx):
    for uid in range(ctx.uid0, ctx.uid0 + 6):
        ctx.open_user(uid)
    old = ctx.clients.pop(ctx.uid0)
    ctx.open_user(ctx.uid0)                          # replaces the first connection
    code, reason = old.wait_closed(5)
    check(code == 4000, "evicted connection closed with %r %r" % (code, reason))
    old.abort()
    m = ctx.wait_connections(6)
    check(m.get("wsnotify_connections_accepted_total") == 7,
          "accepted %r, expected 7" % m.get("wsnotify_connections_accepted_total"))
    check(m.get("wsnotify_evictions_total") == 1, "evictions %r" % m.get("wsnotify_evictions_total"))
    busy = [w for w, n in m.connections().items() if n > 0]
    print("    connections per worker: %r" % m.connections())
    check(busy, "no worker has a connection")


def step_auth_failures(ctx):
    d = ctx.d
    refused = [
        ("bad_signature", "/ws?token=" + wc.make_token("not-the-secret", ctx.uid0 + 50)),
        ("token_expired", "/ws?token=" + d.token(ctx.uid0 + 51, exp=int(time.time()) - 60)),
        ("missing_token", "/ws"),
    ]
    for reason, path in refused:
        r = d.connect(path)
        check(isinstance(r, wc.HTTPResponse) and r.status == 401,
              "%s: expected 401, got %r" % (reason, r))
        check(r.json().get("error") == reason, "%s: body %r" % (reason, r.body))
    m = ctx.scrape()
    for reason in AUTH_REASONS:
        want = 1 if reason in ("bad_signature", "token_expired", "missing_token") else 0
        got = m.get("wsnotify_auth_failures_total", reason=reason)
        check(got == want, "auth failures %s: %r, expected %d" % (reason, got, want))
    check(m.get("wsnotify_connections_accepted_total") == 7, "a refused token was counted as accepted")


def step_pings(ctx):
    before = ctx.scrape()
    for c in list(ctx.clients.values())[:3]:
        c.send_text('{"type":"ping"}')
        msg = c.recv_json(5)
        check(msg == {"type": "pong", "data": {"status": "ok"}}, "pong: %r" % msg)
        ctx.pings += 1
    m = ctx.scrape()
    din = m.get("wsnotify_frames_total", direction="in") - before.get("wsnotify_frames_total", direction="in")
    dout = m.get("wsnotify_frames_total", direction="out") - before.get("wsnotify_frames_total", direction="out")
    check(din >= 3, "frames in grew by %r for 3 pings" % din)
    check(dout >= 3, "frames out grew by %r for 3 pongs" % dout)
    # Every upgrade sent at least `connected`; every client sent at least its ping.
    check(m.get("wsnotify_frames_total", direction="out") >= 7 + 3, "frames out %r" %
          m.get("wsnotify_frames_total", direction="out"))


def step_notifications(ctx):
    eg = ctx.eg
    if eg is None:
        return "no gRPC client (see above)"
    import grpc
    ch = grpc.insecure_channel("127.0.0.1:%d" % ctx.d.grpc_port, options=eg.CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = eg.pbg.NotificationServiceStub(ch)

        def send(uid, **kw):
            req = dict(type="match_created", title="T%d" % uid, message="M", send_push=True)
            req.update(kw)
            return stub.SendNotification(eg.pb.SendNotificationRequest(user_id=uid, **req),
                                         timeout=10)

        online = list(ctx.clients)[:3]
        for uid in online:
            resp = send(uid)
            check(resp.delivered, "user %d online but delivered=false" % uid)
            msg = ctx.clients[uid].recv_json(5)
            check(msg.get("type") == "notification" and msg["data"]["id"] == resp.notification_id,
                  "user %d got %r" % (uid, msg))
        ctx.delivered += len(online)
        for uid in (ctx.uid0 + 90, ctx.uid0 + 91):
            check(not send(uid).delivered, "offline user %d delivered" % uid)
        try:
            send(0)
            raise Failure("user_id 0 was accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "user_id 0: %s" % e.code())
        check(not send(online[0], send_push=False).delivered, "send_push=false delivered")
    finally:
        ch.close()
    m = ctx.scrape()
    want = {"delivered": 3, "offline": 2, "invalid": 1, "not_pushed": 1, "dropped": 0}
    for outcome, n in want.items():
        got = m.get("wsnotify_notifications_total", outcome=outcome)
        check(got == n, "notifications %s: %r, expected %d" % (outcome, got, n))
    check(m.get(LATENCY + "_count") == 3,
          "latency histogram count %r, expected 3 (the delivered ones)" % m.get(LATENCY + "_count"))
    s = m.get(LATENCY + "_sum")
    check(0 < s < 30, "latency _sum %r s for 3 local deliveries" % s)
    check(m.get("wsnotify_queue_dropped_total") == 0, "queue drops %r" % m.get("wsnotify_queue_dropped_total"))


def step_worker_restart(ctx):
    d = ctx.d
    before = ctx.scrape()
    conns = before.connections()
    slot = max(conns, key=lambda w: conns[w])          # the busiest: its gauge must reset
    pids = d.worker_pids()
    check(slot in pids, "no pid logged for worker %d: %r" % (slot, pids))
    old_pid = pids[slot]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while d.worker_pids().get(slot) == old_pid:
        check(time.monotonic() < deadline, "worker %d was not respawned" % slot)
        time.sleep(0.05)
    ok, h = d.wait_health(lambda h: h.get("workers") == WORKERS, 10)
    check(ok, "workers never back to %d: %r" % (WORKERS, h))
    want = sum(conns.values()) - conns[slot]
    m = ctx.wait_connections(want)
    check(m.connections()[slot] == 0, "killed worker's gauge %r" % m.connections()[slot])
    check(m.get("wsnotify_worker_restarts_total") == 1,
          "restarts %r, expected 1" % m.get("wsnotify_worker_restarts_total"))
    for name, labels in [("wsnotify_connections_accepted_total", {}),
                         ("wsnotify_evictions_total", {}),
                         ("wsnotify_auth_failures_total", {"reason": "bad_signature"}),
                         ("wsnotify_frames_total", {"direction": "in"}),
                         ("wsnotify_frames_total", {"direction": "out"}),
                         (LATENCY + "_count", {})]:
        check(m.get(name, **labels) >= before.get(name, **labels),
              "%s%r dropped across the restart" % (name, labels))
    check(m.get("wsnotify_connections_accepted_total") == 7, "accepted changed: %r" %
          m.get("wsnotify_connections_accepted_total"))


STEPS = [
    step_baseline,
    step_connect_and_evict,
    step_auth_failures,
    step_pings,
    step_notifications,
    step_worker_restart,
]


# --------------------------------------------------------------------------- main

def setup(tmp):
    eg = load_grpc(tmp)
    d = wc.Daemon(WSNOTIFYD, workers=WORKERS, name="metrics")
    d.start()
    return Ctx(d, eg)


def main(argv):
    if es.no_daemon(WSNOTIFYD, "e2e_metrics: WSNOTIFYD (%r) is not an executable: skipping" % WSNOTIFYD):
        return 77
    selected = [step for step in STEPS if not argv or step.__name__ in argv]
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_metrics: global time limit of %d s exceeded; killing the daemon"
                     % GLOBAL_TIMEOUT):
        return es.run_function_file(setup, selected, "wsn-e2e-metrics-", teardown=Ctx.close_all,
                                    log_tail=20)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""End-to-end test of SIGHUP reloads in wsnotifyd: secret rotation and log level.

One daemon (--workers 4) with --jwt-secret-file and --log-level-file. Checked:
- rotation with no window of 401s: clients keep connecting with tokens of the old
  secret while the file becomes "new\\nold\\n" and SIGHUP is sent; not one of them
  is refused, and a token of the new secret works on every worker within a second;
- retirement: the file becomes "new\\n" + SIGHUP, and old tokens get 401;
- a broken secret file on reload is logged and the current secrets stay;
- connections opened before any of this stay open and answer ping throughout;
- the log level follows --log-level-file on SIGHUP (debug lines appear, then stop),
  a bad level file is logged and ignored; a bad one at start is an exit 1.

Run: WSNOTIFYD=./wsnotifyd python3 -B tests/e2e/e2e_reload.py
Exit 0 = all passed, 77 = skipped, 1 = failures. The last line is `N passed, M failed`.
"""

import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402
from e2e_support import Failure, check  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WORKERS = 4
GLOBAL_TIMEOUT = 50        # seconds, whole file
OLD = "old-secret-" + wc.b64url(os.urandom(9))
NEW = "new-secret-" + wc.b64url(os.urandom(9))


def write_file(path, text):
    """Rewritten in place, as an operator's editor or `echo >` would."""
    with open(path, "w") as f:
        f.write(text)


class Ctx:
    def __init__(self, tmp):
        self.secret_file = os.path.join(tmp, "jwt-secret")
        self.level_file = os.path.join(tmp, "log-level")
        write_file(self.secret_file, OLD + "\n")
        write_file(self.level_file, "info\n")
        # JWT_SECRET (set by the harness) must be ignored: the file wins.
        self.d = wc.Daemon(WSNOTIFYD, workers=WORKERS, name="reload", secret="env-secret-unused",
                           extra_args=["--jwt-secret-file", self.secret_file,
                                       "--log-level-file", self.level_file])
        self.d.start()
        self.uid = 20000 + (os.getpid() % 97) * 1000
        self.lock = threading.Lock()
        self.keepers = []      # connections that must survive every reload

    def next_uid(self):
        with self.lock:
            self.uid += 1
            return self.uid

    def attempt(self, secret, timeout=5.0):
        """One connection with a token of `secret`. -> HTTP status (101 on upgrade)."""
        uid = self.next_uid()
        tok = wc.make_token(secret, uid, "u%d@example.com" % uid)
        c = wc.connect(self.d.host, self.d.port, "/ws?token=" + tok, timeout=timeout)
        if isinstance(c, wc.HTTPResponse):
            return c.status
        c.abort()
        return 101

    def reloaded_count(self):
        return sum(1 for ln in self.d.log_lines()
                   if ln.slot is not None and ln.msg.startswith("reloaded:"))

    def hup_and_wait(self, timeout=3.0):
        """SIGHUP; wait for every worker's `reloaded:` line. -> (seconds, the lines)"""
        before = self.reloaded_count()
        t0 = time.monotonic()
        self.d.send_signal(signal.SIGHUP)
        while time.monotonic() - t0 < timeout:
            if self.reloaded_count() >= before + WORKERS:
                took = time.monotonic() - t0
                lines = [ln for ln in self.d.log_lines() if ln.msg.startswith("reloaded:")]
                return took, lines[-WORKERS:]
            time.sleep(0.02)
        raise Failure("not every worker reloaded within %.0f s:\n%s" % (timeout, self.d.log_tail(20)))

    def check_keepers(self, what):
        for c in self.keepers:
            check(c.is_open(), "%s: a connection opened before was dropped" % what)
            c.send_text('{"type":"ping"}')
            msg = c.recv_json(3)
            check(msg.get("type") == "pong", "%s: ping on an old connection: %r" % (what, msg))


def test_keepers_connect(t):
    for _ in range(6):
        uid = t.next_uid()
        c = wc.connect(t.d.host, t.d.port, "/ws?token=" + wc.make_token(OLD, uid))
        check(isinstance(c, wc.WSConnection), "old secret at start: %r" % c)
        check(c.recv_json(3).get("type") == "connected", "connected")
        t.keepers.append(c)
    check(t.attempt("env-secret-unused") == 401, "JWT_SECRET must not be used with a secret file")


def test_rotation_without_401_window(t):
    stop = threading.Event()
    results = []           # (monotonic time, status) of old-secret attempts
    errors = []

    def hammer():
        while not stop.is_set():
            try:
                st = t.attempt(OLD)
            except Exception as e:      # noqa: BLE001 — recorded, reported below
                errors.append(repr(e))
                continue
            with t.lock:
                results.append((time.monotonic(), st))

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.5)
        write_file(t.secret_file, NEW + "\n" + OLD + "\n")
        hup_at = time.monotonic()
        took, lines = t.hup_and_wait()
        check(took < 1.0, "workers took %.2f s to reload" % took)
        for ln in lines:
            check("reloaded: 2 secrets" in ln.msg, "reload line: %s" % ln.raw)
        # The new secret works, whichever worker a client lands on, within a second.
        first_ok = None
        statuses = []
        while time.monotonic() - hup_at < 1.0 + 1.0:
            st = t.attempt(NEW)
            statuses.append(st)
            if st == 101 and first_ok is None:
                first_ok = time.monotonic() - hup_at
            if time.monotonic() - hup_at >= 1.0:
                check(st == 101, "a new-secret token was refused (%d) %.2f s after SIGHUP" % (
                    st, time.monotonic() - hup_at))
        check(first_ok is not None and first_ok < 1.0,
              "the new secret first worked after %r s (%r)" % (first_ok, statuses))
        time.sleep(0.5)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    check(not errors, "old-secret attempts failed: %r" % errors[:5])
    before = [st for (ts, st) in results if ts < hup_at]
    after = [st for (ts, st) in results if ts >= hup_at]
    check(len(before) >= 5 and len(after) >= 20,
          "too few attempts around the reload (%d before, %d after)" % (len(before), len(after)))
    refused = [st for (_, st) in results if st != 101]
    check(not refused, "old-secret tokens refused during the rotation: %r of %d" % (
        refused[:10], len(results)))
    print("      %d old-secret connections around the reload (%d after SIGHUP), none refused; "
          "new secret first accepted after %.3f s" % (len(results), len(after), first_ok))
    t.check_keepers("after rotation")


def test_old_secret_retired(t):
    write_file(t.secret_file, NEW + "\n")
    _, lines = t.hup_and_wait()
    for ln in lines:
        check("reloaded: 1 secrets" in ln.msg, "reload line: %s" % ln.raw)
    old = [t.attempt(OLD) for _ in range(2 * WORKERS)]
    check(all(st == 401 for st in old), "old tokens after retirement: %r" % old)
    new = [t.attempt(NEW) for _ in range(2 * WORKERS)]
    check(all(st == 101 for st in new), "new tokens after retirement: %r" % new)
    t.check_keepers("after retirement (they were opened with the old secret)")


def test_broken_secret_file_keeps_secrets(t):
    start = len(t.d.log_lines())
    os.unlink(t.secret_file)
    t.d.send_signal(signal.SIGHUP)
    ln = t.d.wait_log(lambda ln: ln.slot is not None and ln.level == "error" and
                      t.secret_file in ln.msg, timeout=3, start=start)
    check(ln is not None, "no error naming the missing secret file:\n" + t.d.log_tail(20))
    ln = t.d.wait_log(lambda ln: ln.slot is not None and "reload incomplete" in ln.msg,
                      timeout=3, start=start)
    check(ln is not None and "1 secrets" in ln.msg, "incomplete reload line: %r" % ln)
    time.sleep(0.2)
    check(t.d.alive(), "the daemon died on a missing secret file")
    new = [t.attempt(NEW) for _ in range(2 * WORKERS)]
    check(all(st == 101 for st in new), "current secret after a failed reload: %r" % new)
    write_file(t.secret_file, "\n\n")          # no secret at all: refused the same way
    t.d.send_signal(signal.SIGHUP)
    ln = t.d.wait_log(lambda ln: ln.level == "error" and "no secret" in ln.msg, timeout=3,
                      start=start)
    check(ln is not None, "no error for an empty secret file:\n" + t.d.log_tail(20))
    check(all(t.attempt(NEW) == 101 for _ in range(WORKERS)), "after an empty file")
    write_file(t.secret_file, NEW + "\n")
    t.hup_and_wait()
    t.check_keepers("after failed reloads")


def debug_lines(t, start):
    return [ln for ln in t.d.log_lines()[start:] if ln.level == "debug" and ln.slot is not None]


def make_debug_noise(t):
    """Requests that workers log at debug level (connection closed: ...)."""
    for _ in range(2 * WORKERS):
        t.d.health()


def test_log_level_file(t):
    start = len(t.d.log_lines())
    make_debug_noise(t)
    time.sleep(0.2)
    check(not debug_lines(t, start), "debug lines at level info: %r" % debug_lines(t, start)[:3])

    write_file(t.level_file, "debug\n")
    _, lines = t.hup_and_wait()
    for ln in lines:
        check("log level debug" in ln.msg, "reload line: %s" % ln.raw)
    start = len(t.d.log_lines())
    make_debug_noise(t)
    deadline = time.monotonic() + 3
    while not debug_lines(t, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(debug_lines(t, start), "no debug lines after switching to debug:\n" + t.d.log_tail(10))

    # A bad level file: logged, the level stays debug.
    write_file(t.level_file, "verbose\n")
    start = len(t.d.log_lines())
    t.d.send_signal(signal.SIGHUP)
    ln = t.d.wait_log(lambda ln: ln.level == "error" and t.level_file in ln.msg and
                      ln.slot is not None, timeout=3, start=start)
    check(ln is not None, "no error naming the bad level file:\n" + t.d.log_tail(10))

    write_file(t.level_file, "  warn  # quieter\n")
    t.d.send_signal(signal.SIGHUP)
    time.sleep(1.0)     # `reloaded:` is an info line: at warn nothing says it is done
    start = len(t.d.log_lines())
    make_debug_noise(t)
    t.attempt(NEW)                          # would log `Client connected` at info
    time.sleep(0.3)
    chatty = [ln for ln in t.d.log_lines()[start:] if ln.level in ("debug", "info") and ln.slot is not None]
    check(not chatty, "debug/info lines at level warn: %r" % chatty[:3])
    write_file(t.level_file, "info\n")
    t.d.send_signal(signal.SIGHUP)
    t.check_keepers("after log level changes")


def test_bad_level_file_at_start(t):
    bad = t.level_file + ".bad"
    write_file(bad, "loud\n")
    for path, says in ((bad, "loud"), (bad + ".missing", "No such file")):
        args = [WSNOTIFYD, "--workers", "1", "--bind", "127.0.0.1", "--port", str(wc.free_port()),
                "--grpc-port", str(wc.free_port()), "--log-level-file", path]
        env = dict(os.environ, JWT_SECRET="x")
        env.pop("NOTIFY_SOCKET", None)
        try:
            r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               env=env, timeout=8)
        except subprocess.TimeoutExpired:
            raise Failure("wsnotifyd kept running with --log-level-file %s" % path)
        check(r.returncode == 1, "bad level file %s: exit %d, %r" % (path, r.returncode, r.stderr))
        check(path in r.stderr and says in r.stderr and len(r.stderr.strip().splitlines()) == 1,
              "stderr: %r" % r.stderr)


TESTS = [
    test_keepers_connect,
    test_rotation_without_401_window,
    test_old_secret_retired,
    test_broken_secret_file_keeps_secrets,
    test_log_level_file,
    test_bad_level_file_at_start,
]


def close_keepers(t):
    for c in t.keepers:
        c.abort()


def main(argv):
    if es.no_daemon(WSNOTIFYD):
        return 77
    # The other tests need the connections test_keepers_connect opens.
    selected = [f for f in TESTS if not argv or f.__name__ in argv or f is test_keepers_connect]
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_reload: global time limit of %d s exceeded; killing the daemons"
                     % GLOBAL_TIMEOUT):
        return es.run_function_file(Ctx, selected, "wsn-e2e-reload-", teardown=close_keepers,
                                    check_exit_status=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

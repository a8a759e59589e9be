#!/usr/bin/env python3
"""e2e_cluster_demo.py — scripts/cluster-demo.sh, run as a user would: `--check`
(a private redis-server, two wsnotifyd nodes with --redis, nginx with ip_hash
in front; one WebSocket through nginx, a notification through node 2's gRPC
and node 1's must arrive) must exit 0; `start` then `stop`, and a foreground
run stopped by SIGTERM or by Ctrl-C (SIGINT to its process group), must stop
everything. After every run no process the script started may be left: this
process makes itself a child subreaper (prctl), so whatever the script
started and left behind is re-parented here and found; any leftover is
killed by its pid and reported.

Run: WSNOTIFYD=./wsnotifyd WSNOTIFYCTL=./wsnotifyctl WSN_SRCDIR=<source dir> \
     /usr/bin/python3 -B tests/e2e/e2e_cluster_demo.py [Class.test_name ...]
Exit 0 = passed, 1 = failed, 77 = skipped (no daemon, redis-server or nginx).
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wsnclient as wc  # noqa: E402
import e2e_support as es  # noqa: E402

WSNOTIFYD = os.environ.get("WSNOTIFYD", "")
WSNOTIFYCTL = os.environ.get("WSNOTIFYCTL") or os.path.join(os.path.dirname(WSNOTIFYD), "wsnotifyctl")
SRCDIR = os.environ.get("WSN_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(SRCDIR, "scripts", "cluster-demo.sh")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
RUN_TIMEOUT = 90           # seconds, one run of the script
GLOBAL_TIMEOUT = 240
PR_SET_CHILD_SUBREAPER = 36
PID_RE = re.compile(r"\bpid (\d+)")
PORT_RE = re.compile(r"\bport (\d+)")


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children():
    """{pid: command line} of the live (not zombie) processes whose parent is this one."""
    me = os.getpid()
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read().rsplit(")", 1)[1].split()
            if int(st[1]) != me or st[0] == "Z":
                continue
            with open("/proc/%s/cmdline" % name, "rb") as f:
                out[int(name)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
    return out


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def port_listened(port):
    """Something still listens on 127.0.0.1:port (a bind with SO_REUSEADDR fails only then)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def env(state=None):
    e = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    e["WSNOTIFYD"] = WSNOTIFYD
    e["WSNOTIFYCTL"] = WSNOTIFYCTL
    e["PYTHON3"] = sys.executable
    e["JWT_SECRET"] = "e2e-demo-secret-" + wc.b64url(os.urandom(9))
    e.pop("WSN_DEMO_STATE", None)
    if state is not None:
        e["WSN_DEMO_STATE"] = state
    return e


class DemoTest(es.DaemonTestCase):
    TIMEOUT = 150

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="wsn-e2e-demo-")
        self.pids, self.ports = set(), set()
        reap()
        self.before = children()

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_script(self, *args, state=None, timeout=RUN_TIMEOUT):
        try:
            r = subprocess.run(["sh", SCRIPT] + list(args), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env(state),
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            self.note(out)
            self.assert_nothing_left("after the timeout")
            self.fail("cluster-demo.sh %s did not finish within %d s; output:\n%s"
                      % (" ".join(args), timeout, out[-3000:]))
        out = r.stdout.decode(errors="replace")
        self.note(out)
        return r.returncode, out

    def note(self, out):
        self.pids.update(int(p) for p in PID_RE.findall(out))
        self.ports.update(int(p) for p in PORT_RE.findall(out))

    def assert_nothing_left(self, what, grace=5.0):
        """No process the script started still runs (killed by pid if one does)."""
        deadline = time.monotonic() + grace
        while True:
            reap()
            left = {p: c for p, c in children().items() if p not in self.before}
            recorded = [p for p in self.pids if wc._pid_alive(p) and p not in left and
                        p not in self.before]
            if (not left and not recorded) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for p in list(left) + recorded:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        reap()
        self.assertEqual((left, recorded), ({}, []), "%s: processes left running (now killed): %r, "
                         "recorded pids still alive: %r" % (what, left, recorded))
        busy = [p for p in sorted(self.ports) if port_listened(p)]
        self.assertEqual(busy, [], "%s: ports still listened on: %r" % (what, busy))

    def test_check(self):
        """`cluster-demo.sh --check` exits 0 (the notification sent through node 2
        reached the WebSocket opened through nginx) and leaves nothing behind."""
        rc, out = self.run_script("--check")
        self.assert_nothing_left("after --check")
        self.assertEqual(rc, 0, "cluster-demo.sh --check: exit status %d; output:\n%s" % (rc, out[-4000:]))
        self.assertIn("check passed", out, out[-3000:])
        self.assertGreaterEqual(len(self.pids), 4, "the script did not report its pids: %s" % out[-2000:])

    def test_start_then_stop(self):
        """`start` returns with everything running (nginx answers /health); `stop`
        stops every process it recorded."""
        state = os.path.join(self.tmp, "state")
        rc, out = self.run_script("start", state=state)
        try:
            self.assertEqual(rc, 0, "cluster-demo.sh start: exit status %d; output:\n%s" % (rc, out[-3000:]))
            alive = [p for p in self.pids if wc._pid_alive(p)]
            self.assertEqual(len(alive), 4, "after start: pids %r, alive %r" % (sorted(self.pids), alive))
            m = re.search(r"nginx: pid \d+, port (\d+)", out)
            self.assertIsNotNone(m, out[-2000:])
            h = wc.http_request("127.0.0.1", int(m.group(1)), "GET", "/health", timeout=5)
            self.assertEqual(h.status, 200, "/health through nginx: %r" % h)
            rc2, out2 = self.run_script("start", state=state)
            self.assertNotEqual(rc2, 0, "a second start on the same state directory succeeded:\n%s" % out2)
        finally:
            rc3, out3 = self.run_script("stop", state=state)
        self.assert_nothing_left("after stop")
        self.assertEqual(rc3, 0, "cluster-demo.sh stop: exit status %d; output:\n%s" % (rc3, out3))

    def foreground(self, sig, to_group):
        state = os.path.join(self.tmp, "state")
        log = open(os.path.join(self.tmp, "out.log"), "wb")
        p = subprocess.Popen(["sh", SCRIPT], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=env(state), start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            out = ""
            while "Stop with Ctrl-C" not in out:
                with open(log.name, errors="replace") as f:
                    out = f.read()
                if p.poll() is not None or time.monotonic() >= deadline:
                    self.note(out)
                    self.fail("the foreground run did not get ready (exit %r); output:\n%s"
                              % (p.poll(), out[-3000:]))
                time.sleep(0.1)
            self.note(out)
            if to_group:
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                self.fail("the script did not exit within 30 s of %s" % signal.Signals(sig).name)
        finally:
            if p.poll() is None:
                p.kill()
            log.close()
        self.assert_nothing_left("after %s%s" % (signal.Signals(sig).name, " to the group" if to_group else ""))
        return rc

    def test_foreground_sigterm(self):
        """A foreground run stops everything on SIGTERM."""
        rc = self.foreground(signal.SIGTERM, False)
        self.assertNotEqual(rc, None)

    def test_foreground_ctrl_c(self):
        """A foreground run stops everything on Ctrl-C (SIGINT to its process group)."""
        rc = self.foreground(signal.SIGINT, True)
        self.assertNotEqual(rc, None)


def main(argv):
    if es.no_daemon(WSNOTIFYD, "e2e_cluster_demo: WSNOTIFYD (%r) is not an executable: skipping" % WSNOTIFYD):
        return 77
    for tool, pkg in ((REDIS_SERVER, "redis-server"), (NGINX, "nginx")):
        if not os.access(tool, os.X_OK):
            print("e2e_cluster_demo: %s not found (Debian %s): skipping\n0 passed, 0 failed" % (tool, pkg))
            return 77
    if not become_subreaper():
        print("e2e_cluster_demo: prctl(PR_SET_CHILD_SUBREAPER) failed: leftovers are found by pid only")
    with es.watchdog(GLOBAL_TIMEOUT, "\ne2e_cluster_demo: global time limit of %d s exceeded" % GLOBAL_TIMEOUT):
        return es.run_unittest_file(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

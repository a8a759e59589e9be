"""e2e_support.py — the harness every tests/e2e/e2e_*.py shares: checks, the global
watchdog, the two ways of running a file's tests (unittest classes, or plain
functions sharing one context) and the final `N passed, M failed` line with the
exit status automake reads (0 passed, 1 failed, 77 skipped). The WebSocket/HTTP
client and the daemon wrapper live in wsnclient.py."""

import contextlib
import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsnclient as wc  # noqa: E402


class Failure(AssertionError):
    """A check that did not hold: reported by its message."""


class Skip(Exception):
    """Raised by a test function that cannot run here (a tool is missing)."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def no_daemon(binary, message="WSNOTIFYD is not set to an executable: skipping"):
    """True, after saying so, when binary is not an executable: the file then exits 77."""
    if binary and os.access(binary, os.X_OK):
        return False
    print(message)
    print("0 passed, 0 failed")
    return True


def raise_nofile_limit():
    """Tests that open hundreds of sockets need more than a soft limit of 1024."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < 2048:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    except (ImportError, ValueError, OSError):
        pass


@contextlib.contextmanager
def watchdog(seconds, message):
    """Bounds the whole file: a hung test must not hang `make check`. When seconds
    pass, print message, kill every daemon and exit 1 with the summary line."""
    def fire():
        print(message, flush=True)
        wc._kill_all_daemons()
        print("0 passed, 1 failed", flush=True)
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def summary(passed, failed, t0=None, notes=(), skipped=0):
    """Print the notes, the time taken and the final line. -> the exit status."""
    for n in notes:
        print("NOTE: " + n)
    if t0 is not None:
        print("(%.1f s)" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
    sys.stdout.flush()
    if failed:
        return 1
    return 0 if passed else 77


# --------------------------------------------------------------------------- unittest files

class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit")


def arm_alarm(seconds):
    """TestTimeout is raised in the main thread after seconds (signal.alarm(0) disarms)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)


def _with_log_dump(fn):
    """On any failure, print the tail of every daemon this test used."""
    @functools.wraps(fn)
    def wrapper(self, *a, **kw):
        try:
            return fn(self, *a, **kw)
        except unittest.SkipTest:
            raise
        except BaseException:
            for d in self._daemons():
                print("\n----- %s: last log lines of %s (%s)" % (self.id(), d.name or "daemon", d.log_path))
                print(d.log_tail(40))
                print("-----")
            raise
    return wrapper


class DaemonTestCase(unittest.TestCase):
    """Base of the unittest files' tests: the class's daemon in cls.d (started by a
    subclass's setUpClass, removed after the class), the test's clients in
    self.clients (aborted after it), TestTimeout after TIMEOUT seconds, and the
    log tails of _daemons() printed when a test method of a subclass fails."""
    d = None
    TIMEOUT = 30

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in list(vars(cls)):
            if name.startswith("test"):
                setattr(cls, name, _with_log_dump(getattr(cls, name)))

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            cls.d.cleanup()

    def setUp(self):
        self.clients = []
        arm_alarm(self.TIMEOUT)

    def tearDown(self):
        signal.alarm(0)
        for c in self.clients:
            c.abort()

    def _daemons(self):
        return [self.d] if self.d is not None else []


class SummaryResult(unittest.TextTestResult):
    """Counts successes: testsRun also counts skipped tests and failed subtests."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def run_unittest_file(module, argv, notes=()):
    """Run the module's tests (or the names in argv), then kill any daemon left. -> exit status"""
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(argv, module) if argv else loader.loadTestsFromModule(module)
    t0 = time.monotonic()
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=SummaryResult)
    result = runner.run(suite)
    wc._kill_all_daemons()
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    return summary(result.passed, failed, t0, notes)


def unittest_main():
    """unittest.main() for files without daemons of their own; exits."""
    result = unittest.main(exit=False, verbosity=2).result
    bad = {getattr(t, "test_case", t).id() for t, _ in result.failures + result.errors}
    print(f"{result.testsRun - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


# --------------------------------------------------------------------------- function files

def _report_failure(name, e, d, log_tail):
    print("FAIL %s: %s" % (name, e), flush=True)
    traceback.print_exc(file=sys.stdout)
    print("----- last daemon log lines\n%s\n-----" % d.log_tail(log_tail), flush=True)


def run_tests(tests, ctx, log_tail=30, after_each=None, may_stop_daemon=()):
    """Each test is a function of ctx (whose .d is the shared daemon); a failure is
    reported and the next test runs. A test skips by raising Skip or by returning
    the reason. If the daemon dies (but in a test of may_stop_daemon) that is one
    more failure and the end. -> (passed, failed, skipped)"""
    passed = failed = skipped = 0
    for test in tests:
        t1 = time.monotonic()
        try:
            try:
                why_skipped = test(ctx)
            except Skip as e:
                why_skipped = str(e) or "skipped"
            if why_skipped:
                skipped += 1
                print("SKIP %s: %s" % (test.__name__, why_skipped), flush=True)
            else:
                passed += 1
                print("PASS %s (%.1f s)" % (test.__name__, time.monotonic() - t1), flush=True)
        except Exception as e:      # noqa: BLE001 — every failure is reported, then the next test
            failed += 1
            _report_failure(test.__name__, e, ctx.d, log_tail)
        finally:
            if after_each is not None:
                after_each(ctx)
        if not ctx.d.alive() and test not in may_stop_daemon:
            print("the daemon died; log:\n%s" % ctx.d.log_tail(40))
            failed += 1
            break
    return passed, failed, skipped


def _stopped_cleanly(d):
    """SIGTERM the daemon if it still runs. -> False (said so) when it exits non-zero."""
    if not d.alive():
        return True
    rc = d.stop()
    if rc != 0:
        print("FAIL  daemon exit status %r on SIGTERM" % rc)
    return rc == 0


def run_function_file(setup, tests, tmp_prefix, teardown=None, check_exit_status=False,
                      notes=(), **run_kw):
    """The whole run of a file of test functions: ctx = setup(tmp) (a set-up failure
    is one failure), run_tests, teardown(ctx), optionally a clean SIGTERM exit of
    ctx.d as one more check; then every daemon and tmp are removed. -> exit status"""
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    passed = failed = skipped = 0
    try:
        try:
            ctx = setup(tmp)
        except Exception as e:      # noqa: BLE001 — reported as one failure
            print("FAIL set-up: %s" % e)
            traceback.print_exc(file=sys.stdout)
            for d in list(wc._ALL_DAEMONS):
                print(d.log_tail(40))
            return summary(0, 1, t0)
        try:
            passed, failed, skipped = run_tests(tests, ctx, **run_kw)
        finally:
            if teardown is not None:
                teardown(ctx)
        if check_exit_status and not _stopped_cleanly(ctx.d):
            failed += 1
    finally:
        for d in list(wc._ALL_DAEMONS):
            d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary(passed, failed, t0, notes, skipped)

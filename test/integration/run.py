#!/usr/bin/python3
"""Run the integration tests: test/integration/test_*.py, their test_* functions in
definition order.

    run.py                              every test
    run.py test_delivery                one module
    run.py test_delivery::test_retry    one test (several filters may be given)

Each test has a timeout: its function's TIMEOUT attribute (see halo_test.timeout), else
env HI_TEST_TIMEOUT, else 120 s.
Module-level setup_module()/teardown_module() run around a module's tests.
Prints `ok - module::name (1.2s)` or `FAIL - module::name` with the traceback, and ends
with `N passed, N failed`; exits 1 when a test failed or a filter matched nothing.
"""
import glob
import importlib
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import halo_test  # noqa: E402

DEFAULT_TIMEOUT = int(os.environ.get("HI_TEST_TIMEOUT", "120"))


class TestTimeout(BaseException):
    """Raised in a test that ran past its timeout (a BaseException, so that a test's
    `except Exception` does not swallow it)."""


def _on_alarm(signum, frame):
    raise TestTimeout()


def call_with_timeout(fn, seconds):
    """Call fn(); raise TestTimeout after seconds. A query stuck in the server is
    cancelled first, so that the alarm can be delivered."""
    canceller = threading.Timer(seconds, halo_test.cancel_connections)
    canceller.daemon = True
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    canceller.start()
    try:
        fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        canceller.cancel()


def wanted(filters, mod, name=None):
    """True when no filter is given or one selects module mod (and test name)."""
    if not filters:
        return True
    for f in filters:
        fmod, _, fname = f.partition("::")
        fmod = os.path.basename(fmod)
        if fmod.endswith(".py"):
            fmod = fmod[:-3]
        if fmod == mod and (name is None or not fname or fname == name):
            return True
    return False


def report(ok, label, elapsed, err=None):
    if ok:
        print("ok - %s (%.1fs)" % (label, elapsed), flush=True)
    else:
        print("FAIL - %s (%.1fs)" % (label, elapsed), flush=True)
        if err:
            print(err.rstrip("\n"), flush=True)


def run_module(modname, filters):
    """Run the selected tests of one module; returns (passed, failed)."""
    start = time.monotonic()
    try:
        mod = importlib.import_module(modname)
    except BaseException:
        report(False, modname + " (import)", time.monotonic() - start, traceback.format_exc())
        return 0, 1
    tests = [(n, f) for n, f in vars(mod).items()
             if n.startswith("test_") and callable(f)
             and getattr(f, "__module__", None) == modname and wanted(filters, modname, n)]
    if not tests:
        return 0, 0
    passed = failed = 0
    keep = halo_test.open_connections()
    setup = getattr(mod, "setup_module", None)
    if setup:
        start = time.monotonic()
        try:
            call_with_timeout(setup, DEFAULT_TIMEOUT)
        except BaseException:
            err = traceback.format_exc()
            for name, _ in tests:
                report(False, "%s::%s (setup_module failed)" % (modname, name),
                       time.monotonic() - start, err)
                err = ""
            halo_test.close_connections(keep)
            return 0, len(tests)
    module_conns = halo_test.open_connections()
    for name, fn in tests:
        seconds = getattr(fn, "TIMEOUT", DEFAULT_TIMEOUT)
        start = time.monotonic()
        try:
            call_with_timeout(fn, seconds)
            passed += 1
            report(True, "%s::%s" % (modname, name), time.monotonic() - start)
        except TestTimeout:
            failed += 1
            report(False, "%s::%s" % (modname, name), time.monotonic() - start,
                   "timed out after %ss, in:\n%s" % (seconds, traceback.format_exc()))
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
            report(False, "%s::%s" % (modname, name), time.monotonic() - start,
                   traceback.format_exc())
        finally:
            halo_test.close_connections(module_conns)
    teardown = getattr(mod, "teardown_module", None)
    if teardown:
        start = time.monotonic()
        try:
            call_with_timeout(teardown, DEFAULT_TIMEOUT)
        except BaseException:
            failed += 1
            report(False, modname + "::teardown_module", time.monotonic() - start,
                   traceback.format_exc())
    halo_test.close_connections(keep)
    return passed, failed


def main(filters):
    modules = [os.path.basename(p)[:-3]
               for p in sorted(glob.glob(os.path.join(HERE, "test_*.py")))]
    unknown = [f for f in filters if not any(wanted([f], m) for m in modules)]
    passed = failed = 0
    for modname in modules:
        if wanted(filters, modname):
            p, f = run_module(modname, filters)
            passed += p
            failed += f
    for f in unknown:
        print("FAIL - no test module matches %r" % f, flush=True)
        failed += 1
    if filters and not unknown and passed + failed == 0:
        print("FAIL - no test matches %s" % " ".join(filters), flush=True)
        failed += 1
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""Run the high-availability tests (test/ha/test_ha.py) against the Patroni cluster that
test/ha/cluster.sh started: their test_* functions in definition order, each with its
TIMEOUT; prints `ok - name (1.2s)` or `FAIL - name` with the traceback, the figures the
tests measured, and `N passed, N failed`. A test that fails leaves the cluster as it is,
so the tests after it are skipped (each needs the one before to have left a primary and a
streaming replica): they count as failed.

    run.py                  every test
    run.py NAME...          only these (and nothing is skipped)
"""
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import test_ha  # noqa: E402


class TestTimeout(BaseException):
    """A test ran past its timeout."""


def _on_alarm(signum, frame):
    raise TestTimeout()


def main(names):
    tests = [(n, f) for n, f in vars(test_ha).items() if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    if names:
        tests = [t for t in tests if t[0] in names]
    passed = failed = 0
    broken = False
    signal.signal(signal.SIGALRM, _on_alarm)
    test_ha.setup_module()
    for name, fn in tests:
        if broken:
            print("FAIL - %s (skipped: an earlier test failed)" % name, flush=True)
            failed += 1
            continue
        start = time.monotonic()
        signal.alarm(getattr(fn, "TIMEOUT", 300))
        try:
            fn()
            ok, err = True, None
        except (Exception, TestTimeout) as e:  # noqa: B902
            ok, err = False, e
        finally:
            signal.alarm(0)
            test_ha.close_connections()
        elapsed = time.monotonic() - start
        if ok:
            passed += 1
            print("ok - %s (%.1fs)" % (name, elapsed), flush=True)
        else:
            failed += 1
            broken = not names
            print("FAIL - %s (%.1fs)" % (name, elapsed), flush=True)
            traceback.print_exception(type(err), err, err.__traceback__)
    print("--- figures")
    for line in test_ha.FIGURES:
        print(line)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

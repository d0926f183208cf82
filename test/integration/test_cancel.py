"""Cancelling calls that wait on Halo (issue 9, item 11): check_connection() and deliver()
end with SQLSTATE 57014 soon after pg_cancel_backend(), although Halo's answer is still
10 s away (halo_itsm.request_timeout is raised to 30 s meanwhile, so that only the cancel
can end them early). Before, check_connection() ran until the answer came.
"""
import threading
import time

from halo_test import (Mock, db, ensure_extension, expect_error, fresh_integration, q, q1,
                       set_system, timeout)
from test_delivery import add_cases

MOCK = Mock()
DB = "halo_manual"      # no worker delivers there: only the calls under test send
DELAY_MS = 10000
CANCEL_AT = 1.0


def setup_module():
    ensure_extension(DB)


def _run_cancelled(sql, *args):
    """Run sql in a new session, pg_cancel_backend() it after CANCEL_AT seconds from another
    session; assert SQLSTATE 57014; return (seconds until the error, the error)."""
    conn = db(DB)
    canceller = db("postgres")
    pid = conn.get_backend_pid()
    results = []

    def cancel():
        with canceller.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
            results.append(cur.fetchone()[0])

    timer = threading.Timer(CANCEL_AT, cancel)
    start = time.monotonic()
    timer.start()
    with conn.cursor() as cur:
        err = expect_error("57014", cur.execute, sql, args or None)
    elapsed = time.monotonic() - start
    timer.join()
    assert results == [True]
    assert "canceling statement due to user request" in err.pgerror
    # the session goes on
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    print("cancelled after %.2f s (cancel sent at %.1f s, Halo's answer due at %.1f s)"
          % (elapsed, CANCEL_AT, DELAY_MS / 1000.0))
    return elapsed, err


def _with_long_request_timeout(fn):
    """Run fn with halo_itsm.request_timeout = 30s, restored afterwards."""
    before = set_system({"halo_itsm.request_timeout": "30s"})
    try:
        return fn()
    finally:
        MOCK.clear_faults()
        set_system({"halo_itsm.request_timeout": before["halo_itsm.request_timeout"]})


@timeout(60)
def test_check_connection_can_be_cancelled():
    iid = fresh_integration(DB)
    MOCK.faults({"method": "POST", "path": "/token", "count": 1,
                 "action": {"type": "delay", "ms": DELAY_MS, "before": True}})
    elapsed, _ = _with_long_request_timeout(
        lambda: _run_cancelled("SELECT halo_itsm.check_connection(%s)", iid))
    # generous: within ~1 s of the cancel in practice, and long before Halo's answer
    assert CANCEL_AT <= elapsed < CANCEL_AT + 3.0, elapsed
    assert [(r["method"], r["path"]) for r in MOCK.requests()] == \
        [("GET", "/api/authinfo"), ("POST", "/token")]


@timeout(60)
def test_deliver_can_be_cancelled():
    fresh_integration(DB)
    add_cases([("CANCEL-1", "Cancelled delivery", "high")], dbname=DB)
    MOCK.faults({"method": "POST", "path": "/token", "count": 1,
                 "action": {"type": "delay", "ms": DELAY_MS, "before": True}})
    elapsed, _ = _with_long_request_timeout(
        lambda: _run_cancelled("CALL halo_itsm.deliver()"))
    assert CANCEL_AT <= elapsed < CANCEL_AT + 3.0, elapsed
    assert [(r["method"], r["path"]) for r in MOCK.requests()] == \
        [("GET", "/api/authinfo"), ("POST", "/token")]
    # nothing was sent for the case; it is still to be delivered
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE state = 'done'", db=DB) == 0
    assert q("SELECT kind FROM halo_itsm.outbox", db=DB) == [("case",)]

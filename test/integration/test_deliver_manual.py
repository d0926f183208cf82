"""CALL halo_itsm.deliver(): the worker's job done in the calling session, in database
halo_manual where no worker runs: nothing is sent before the CALL, the exact ticket JSON,
max_items, a commit after every item, interruption and recovery of what was in flight.
"""
import threading
import time

import psycopg2

from halo_test import db, ensure_extension, expect_error, fresh_integration, q, q1, timeout
from test_delivery import (MOCK, add_cases, check_delivered, creates, expected_payload,
                           lookup_query, mock_tickets_by_sid, outbox, trace)

DB = "halo_manual"


def setup_module():
    """The extension in halo_manual."""
    ensure_extension(DB)


def states():
    """{state: count} of halo_manual's outbox."""
    return dict(q("SELECT state, count(*) FROM halo_itsm.outbox GROUP BY state", db=DB))


def deliver(*args, conn=None):
    """CALL halo_itsm.deliver(args...) in its own session (or conn); returns seconds taken."""
    conn = conn or db(DB)
    start = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("CALL halo_itsm.deliver(%s)" % ", ".join(["%s"] * len(args)), args or None)
    return time.monotonic() - start


@timeout(60)
def test_nothing_sent_until_deliver_then_exact_json():
    iid = fresh_integration(DB, team="Service Desk", client=1)
    cases = [("MAN-1", "Manual one", "critical", "First"), ("MAN-2", "Manual two", "info", None),
             ("MAN-3", "Manual three", "medium", "Third\nline")]
    add_cases(cases, dbname=DB)
    time.sleep(1.0)
    assert MOCK.requests() == []
    assert states() == {"pending": 3}
    assert q1("SELECT sum(attempts) FROM halo_itsm.outbox", db=DB) == 0
    deliver()
    assert states() == {"done": 3}
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200)] + \
        [("POST", "/api/Tickets", 200)] * 3
    for sid, title, severity, desc in cases:
        check_delivered(sid, expected_payload(sid, title, severity, desc, team="Service Desk",
                                              client=1), dbname=DB)
    assert q("SELECT DISTINCT integration_id FROM halo_itsm.tickets", db=DB) == [(iid,)]
    # nothing left: another CALL sends nothing
    deliver()
    assert len(MOCK.requests()) == 5


@timeout(60)
def test_deliver_max_items():
    fresh_integration(DB)
    sids = ["MAX-%d" % i for i in range(5)]
    add_cases([(sid, "Case " + sid, "low") for sid in sids], dbname=DB)
    deliver(2)
    assert states() == {"done": 2, "pending": 3}
    assert [r["json"][0]["third_party_id_string"] for r in creates()] == sids[:2]
    deliver(2)
    assert states() == {"done": 4, "pending": 1}
    deliver(2)
    assert states() == {"done": 5}
    assert [r["json"][0]["third_party_id_string"] for r in creates()] == sids
    for sid in sids:
        check_delivered(sid, expected_payload(sid, "Case " + sid, "low"), dbname=DB)


@timeout(60)
def test_deliver_goes_on_after_a_dead_item():
    iid = fresh_integration(DB)
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "status", "status": 400,
                            "body": {"ClassName": "HaloValidationException",
                                     "Message": "The field 'x' does not exist"}}})
    add_cases([("D400-1", "Rejected", "high"), ("D400-2", "Fine", "high"),
               ("D400-3", "Fine too", "high")], dbname=DB)
    deliver()
    assert states() == {"dead": 1, "done": 2}
    row = outbox("D400-1", DB)
    assert (row["state"], row["attempts"], row["last_http_status"]) == ("dead", 1, 400)
    assert row["last_error"] == ('halo_itsm: Halo answered 400 to POST /api/Tickets: '
                                 '{"ClassName": "HaloValidationException", '
                                 '"Message": "The field \'x\' does not exist"}')
    for sid, title in (("D400-2", "Fine"), ("D400-3", "Fine too")):
        check_delivered(sid, expected_payload(sid, title, "high"), dbname=DB)
    assert q1("SELECT halo_itsm.retry(%s)", iid, db=DB) == 1
    deliver()
    assert states() == {"done": 3}
    check_delivered("D400-1", expected_payload("D400-1", "Rejected", "high"), dbname=DB, posts=2)


@timeout(60)
def test_deliver_commits_after_every_item():
    fresh_integration(DB)
    MOCK.config(latency_ms=400)
    sids = ["COM-%d" % i for i in range(4)]
    add_cases([(sid, "Case " + sid, "medium") for sid in sids], dbname=DB)
    seen = []
    worker = threading.Thread(target=deliver)
    worker.start()
    while worker.is_alive():
        seen.append(states().get("done", 0))
        time.sleep(0.05)
    worker.join()
    assert states() == {"done": 4}
    # other sessions saw the items done one by one while the CALL still ran
    assert [n for n in (1, 2, 3) if n in seen] == [1, 2, 3], seen
    for sid in sids:
        check_delivered(sid, expected_payload(sid, "Case " + sid, "medium"), dbname=DB)


@timeout(60)
def test_deliver_is_interruptible_and_recovers_what_was_in_flight():
    fresh_integration(DB)
    # every create is handled at once but answered 5 s later
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": -1,
                 "action": {"type": "delay", "ms": 5000}})
    add_cases([("INT-1", "Interrupted", "high"), ("INT-2", "Waiting", "high")], dbname=DB)
    conn = db(DB)
    pid = conn.get_backend_pid()
    error = []

    def run():
        try:
            deliver(conn=conn)
        except psycopg2.Error as e:
            error.append(e)
    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while not creates() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(creates()) == 1 and "INT-1" in mock_tickets_by_sid()
    cancelled = time.monotonic()
    assert q1("SELECT pg_cancel_backend(%s)", pid, db=DB) is True
    worker.join(5)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled < 1.5, "deliver() took %.1f s to stop" % (
        time.monotonic() - cancelled)
    assert len(error) == 1 and error[0].pgcode == "57014", error
    # the item on the wire stays claimed by that session, the other was never claimed
    assert q("SELECT state, claimed_by FROM halo_itsm.outbox ORDER BY id", db=DB) == \
        [("in_flight", pid), ("pending", None)]
    # the next deliver() in that session takes the item back, looks it up and finds it
    MOCK.clear_faults()
    since = MOCK.requests()[-1]["seq"]
    deliver(conn=conn)
    assert states() == {"done": 2}
    reqs = MOCK.requests(since=since)
    int1 = mock_tickets_by_sid()["INT-1"][0]["id"]
    assert [(r["method"], r["path"]) for r in reqs] == \
        [("GET", "/api/authinfo"), ("POST", "/token"), ("GET", "/api/Tickets"),
         ("GET", "/api/Tickets/%d" % int1), ("POST", "/api/Tickets")]
    assert reqs[2]["query"] == lookup_query("INT-1")
    check_delivered("INT-1", expected_payload("INT-1", "Interrupted", "high"), dbname=DB,
                    attempts=2, linked_by="found", result="found", posts=1)
    check_delivered("INT-2", expected_payload("INT-2", "Waiting", "high"), dbname=DB)
    assert sorted((k, len(v)) for k, v in mock_tickets_by_sid().items()) == \
        [("INT-1", 1), ("INT-2", 1)]


@timeout(60)
def test_item_of_a_vanished_session_is_recovered_by_another():
    fresh_integration(DB)
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "delay", "ms": 5000}})
    add_cases([("GONE-S-1", "Session gone", "low")], dbname=DB)
    conn = db(DB)
    pid = conn.get_backend_pid()
    worker = threading.Thread(target=lambda: _swallow(deliver, conn=conn))
    worker.start()
    deadline = time.monotonic() + 10
    while not creates() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q1("SELECT pg_terminate_backend(%s)", pid, db=DB) is True
    worker.join(5)
    assert q("SELECT state, claimed_by FROM halo_itsm.outbox", db=DB) == [("in_flight", pid)]
    deliver()
    assert states() == {"done": 1}
    check_delivered("GONE-S-1", expected_payload("GONE-S-1", "Session gone", "low"), dbname=DB,
                    attempts=2, linked_by="found", result="found", posts=1)


def _swallow(fn, *args, **kwargs):
    """Call fn, ignoring a database error (the session is terminated on purpose)."""
    try:
        fn(*args, **kwargs)
    except psycopg2.Error:
        pass


@timeout(60)
def test_deliver_refuses_bad_calls():
    fresh_integration(DB)
    conn = db(DB, autocommit=False)
    with conn.cursor() as cur:
        e = expect_error("2D000", cur.execute, "CALL halo_itsm.deliver()")
    assert "cannot run inside a transaction block" in e.pgerror
    conn.rollback()
    expect_error("22023", "CALL halo_itsm.deliver(0)", db=DB)
    expect_error("22023", "CALL halo_itsm.deliver(-5)", db=DB)
    # with a worker running (database halo), only_without_worker makes it a no-op
    ensure_extension("halo")
    assert q1("SELECT halo_itsm._worker_running()", db="halo") is True
    start = time.monotonic()
    q("CALL halo_itsm.deliver(only_without_worker => true)", db="halo")
    assert time.monotonic() - start < 1.0
    # no worker serves halo_manual (the cluster's worker delivers for halo only):
    # only_without_worker delivers there
    assert q1("SELECT halo_itsm._worker_running()", db=DB) is False
    add_cases([("NOOP-1", "Delivered anyway", "low")], dbname=DB)
    q("CALL halo_itsm.deliver(only_without_worker => true)", db=DB)
    assert states() == {"done": 1}
    check_delivered("NOOP-1", expected_payload("NOOP-1", "Delivered anyway", "low"), dbname=DB)


@timeout(60)
def test_sid_renamed_while_pending_is_sent_under_the_new_sid_only():
    """A sid may change while its item is pending and never sent; the renaming transaction
    locks the item, so that no claim sends the old sid meanwhile. Once sent, it may not."""
    fresh_integration(DB)
    add_cases([("REN-1", "Renamed before delivery", "high")], dbname=DB)
    renamer = db(DB, autocommit=False)
    with renamer.cursor() as cur:
        cur.execute("UPDATE halo_itsm.cases SET sid = 'REN-1-final' WHERE sid = 'REN-1'")
    # not committed yet: deliver() skips the locked item instead of sending the old sid
    deliver()
    assert MOCK.requests() == [] and states() == {"pending": 1}
    renamer.commit()
    deliver()
    assert [r["json"][0]["third_party_id_string"] for r in creates()] == ["REN-1-final"]
    check_delivered("REN-1-final", expected_payload("REN-1-final", "Renamed before delivery", "high"),
                    dbname=DB)
    e = expect_error("55006", "UPDATE halo_itsm.cases SET sid = 'REN-1-again' WHERE sid = 'REN-1-final'",
                     db=DB)
    assert "halo_itsm: the sid of case \"REN-1-final\" cannot change: it is linked to Halo ticket" \
        in e.pgerror, e.pgerror

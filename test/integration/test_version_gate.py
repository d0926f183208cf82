"""The library and the extension's SQL at different versions (the window between installing
a new package and ALTER EXTENSION halo_itsm UPDATE): the delivery worker keeps running but
claims nothing, says so once in the log and in the status view, deliver() refuses with 55000
and what to run; inserts still queue (the C trigger works on the older SQL); once the
versions agree the same worker delivers what waited. The mismatch is made by setting
pg_extension.extversion, as ALTER EXTENSION would leave it before its script ran.
"""
import os
import time

from halo_test import (Mock, ensure_extension, expect_error, fresh_integration, log_mark, q,
                       q1, server_log, timeout, wait_until, worker_pid)

OLD = "0.9"
STATE = "SELECT state FROM halo_itsm.worker_status"
PROBLEM = "SELECT problem FROM halo_itsm.status WHERE pending IS NULL"


def _set_extversion(version, dbname):
    q("UPDATE pg_catalog.pg_extension SET extversion = %s WHERE extname = 'halo_itsm'",
      version, db=dbname)


def _library_version():
    return q1("SELECT halo_itsm.library_version()")


@timeout(120)
def test_worker_waits_for_the_update_and_then_delivers_what_waited():
    ensure_extension("halo")
    mock = Mock()
    iid = fresh_integration("halo", mock=mock)
    pid = worker_pid()
    new = _library_version()
    waits = ('WARNING:  halo_itsm: the extension in database "halo" is at version %s and the'
             ' loaded library at %s: the delivery worker waits for the update' % (OLD, new))
    resumes = ('LOG:  halo_itsm: the extension in database "halo" is at version %s now: the'
               ' delivery worker delivers' % new)
    mark = log_mark()
    try:
        _set_extversion(OLD, "halo")
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES ('GATE-1', 'waits for the update', 'high', %s)", iid)
        wait_until(lambda: q1(STATE) == "waiting for ALTER EXTENSION UPDATE", timeout=30,
                   msg="the worker waiting for the update")
        # a second insert wakes the worker again: it says nothing more and claims nothing
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES ('GATE-2', 'waits too', 'low', %s)", iid)
        wait_until(lambda: waits in server_log(mark), timeout=10, msg="the waiting line")
        assert q("SELECT c.sid, o.state::text, o.attempts FROM halo_itsm.outbox o"
                 " JOIN halo_itsm.cases c ON c.id = o.case_id WHERE o.integration_id = %s"
                 " ORDER BY c.sid", iid) == [("GATE-1", "pending", 0), ("GATE-2", "pending", 0)]
        assert [t for t in mock.tickets() if t["third_party_id_string"].startswith("GATE-")] == []
        assert q(PROBLEM) == [(
            "the background worker waits: the extension in this database is at version %s and"
            " the loaded library at %s; run ALTER EXTENSION halo_itsm UPDATE (queued items wait"
            " and are delivered after it)" % (OLD, new),)]
        assert worker_pid() == pid
    finally:
        _set_extversion(new, "halo")
    # the next wake-up (an insert) finds the versions agreeing: everything is delivered
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('GATE-3', 'after the update', 'medium', %s)", iid)
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
                          " ON c.id = t.case_id WHERE c.sid LIKE 'GATE-%%'") == 3,
               timeout=30, msg="three tickets")
    sids = sorted(t["third_party_id_string"] for t in mock.tickets()
                  if t["third_party_id_string"].startswith("GATE-"))
    assert sids == ["GATE-1", "GATE-2", "GATE-3"]
    assert q1(STATE) == "running"
    assert q(PROBLEM) == []
    assert worker_pid() == pid
    log = server_log(mark)
    assert log.count(waits) == 1, log[-3000:]
    assert log.count(resumes) == 1, log[-3000:]


@timeout(60)
def test_deliver_refuses_while_the_versions_differ():
    ensure_extension("halo_manual")
    new = q1("SELECT halo_itsm.library_version()", db="halo_manual")
    try:
        _set_extversion(OLD, "halo_manual")
        e = expect_error("55000", "CALL halo_itsm.deliver()", db="halo_manual")
        assert e.diag.message_primary == (
            "halo_itsm: deliver() cannot run: the extension in this database is at version %s"
            " and the loaded library at %s" % (OLD, new))
        assert e.diag.message_hint == (
            "Run ALTER EXTENSION halo_itsm UPDATE in this database (queued items wait and are"
            " delivered after it).")
    finally:
        _set_extversion(new, "halo_manual")
    q("CALL halo_itsm.deliver()", db="halo_manual")


def _cpu_seconds(pid):
    """User + system CPU time of a process, in seconds (/proc/<pid>/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@timeout(120)
def test_answers_that_come_in_while_the_versions_differ_wait_without_a_busy_loop():
    """Items in flight when the versions stop agreeing finish in memory; the worker cannot
    record them until the update, and waits for it asleep. Before, it went round its loop
    without sleeping (one transaction per turn, a whole core) as long as the versions
    differed. Nothing is lost: both are recorded, once each, after the update."""
    ensure_extension("halo")
    mock = Mock()
    iid = fresh_integration("halo", mock=mock)
    new = _library_version()
    mock.faults({"method": "POST", "path": "/api/Tickets", "body_contains": "SPIN-",
                 "count": 2, "action": {"type": "delay", "ms": 1500, "before": True}})
    try:
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES ('SPIN-1', 'in flight', 'high', %s), ('SPIN-2', 'in flight', 'low', %s)",
          iid, iid)
        wait_until(lambda: len(mock.requests(path="/api/Tickets", method="POST")) >= 1,
                   timeout=10, msg="a create under way")
        _set_extversion(OLD, "halo")
        # a round now finds the versions differing (the insert wakes it)
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES ('SPIN-3', 'queued meanwhile', 'medium', %s)", iid)
        wait_until(lambda: q1(STATE) == "waiting for ALTER EXTENSION UPDATE", timeout=30,
                   msg="the worker waiting for the update")
        # both answers come in (1.5 s each, one lane) and finish in memory
        wait_until(lambda: len([r for r in mock.requests(path="/api/Tickets", method="POST")
                                if r.get("status") == 200]) == 2, timeout=10,
                   msg="both creates answered")
        pid = worker_pid()
        before = _cpu_seconds(pid)
        time.sleep(2.0)
        used = _cpu_seconds(pid) - before
        assert used < 0.5, "the worker used %.2f s of CPU in 2 s while waiting" % used
    finally:
        _set_extversion(new, "halo")
        mock.clear_faults()
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('SPIN-4', 'after the update', 'medium', %s)", iid)
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
                          " ON c.id = t.case_id WHERE c.sid LIKE 'SPIN-%%'") == 4,
               timeout=30, msg="four tickets")
    assert sorted(t["third_party_id_string"] for t in mock.tickets()
                  if t["third_party_id_string"].startswith("SPIN-")) == [
        "SPIN-1", "SPIN-2", "SPIN-3", "SPIN-4"]

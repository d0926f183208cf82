"""The per-integration request budget: the worker never sends more than
halo_itsm.request_budget requests to one integration within
halo_itsm.request_budget_window, token requests included, and goes on by itself once
the window has moved; other integrations are not held up by a spent budget. The budget
is shared (issue 12): three CALL deliver() sessions, or the worker beside two of them,
send no more than it together; when every shared slot is in use (halo_itsm.budget_slots)
the next integration waits, said in the log.
"""
import threading
import time

from halo_test import (Mock, MOCK_PORT, clean_halo_tables, db, ensure_extension, log_mark, q1_retry,
                       restart_cluster, server_log, worker_pid, fresh_integration, q, q1, reset_system, set_system,
                       timeout, wait_until)
from test_delivery import enable_behind_the_workers_back

MOCK = Mock()
BUDGET = ["halo_itsm.request_budget", "halo_itsm.request_budget_window"]


def setup_module():
    """The extension in databases halo and halo_manual (no worker there)."""
    ensure_extension()
    ensure_extension("halo_manual")


def teardown_module():
    """Back to the cluster's own budget settings."""
    reset_system(BUDGET)


def _insert(sids, integration):
    """Insert one case per sid for the given integration, in one transaction."""
    for sid in sids:
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES (%s, 'budget test', 'low', %s)", sid, integration)


@timeout(60)
def test_budget_spreads_requests_over_the_window():
    iid = fresh_integration()
    set_system({"halo_itsm.request_budget": "3", "halo_itsm.request_budget_window": "4s"})
    _insert(["B-1", "B-2", "B-3", "B-4", "B-5"], iid)

    # the discovery of the authorisation server, the token and one create spend the
    # budget at once: every request counts
    wait_until(lambda: len(MOCK.requests(path="/api/Tickets", method="POST")) == 1,
               timeout=10, msg="one create within the first window")
    time.sleep(1.0)
    assert len(MOCK.requests()) == 3, MOCK.requests()
    assert q1("SELECT pending FROM halo_itsm.status WHERE integration_id = %s", iid) == 4

    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets") == 5, timeout=30,
               msg="the rest delivered once the window moved")
    reqs = MOCK.requests()
    assert [r["path"] for r in reqs] == ["/api/authinfo", "/token"] + ["/api/Tickets"] * 5, reqs
    times = [r["received_at"] for r in reqs]
    # no more than 3 requests in any 4-second window (a little slack for clock reading)
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 3.9, (i, times)
    # nothing was counted as a failed attempt
    assert q("SELECT attempts, state FROM halo_itsm.outbox ORDER BY id") == [(1, "done")] * 5


@timeout(60)
def test_spent_budget_does_not_hold_up_other_integrations():
    first = fresh_integration()
    second = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'second')",
                "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", second)
    # discovery, token and one create each
    set_system({"halo_itsm.request_budget": "3", "halo_itsm.request_budget_window": "30s"})
    _insert(["F-1", "F-2", "F-3"], first)
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets") == 1, timeout=10)
    _insert(["S-1", "S-2"], second)
    # the second integration has its own budget: discovery + token + one create
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s",
                          second) == 1, timeout=10, msg="second integration delivers")
    time.sleep(0.5)
    assert q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s", first) == 1
    assert q1("SELECT pending FROM halo_itsm.status WHERE integration_id = %s", first) == 2


@timeout(60)
def test_spent_budget_does_not_stop_the_wake_at_commit():
    """A spent budget is not a reason to skip the wake-up at commit: nothing the worker
    sees ends it (the window moves on by itself). Before, a claim that found nothing while
    the only enabled integration's budget was spent made the worker 'saturated', and the
    commits after it woke nobody until the next poll (60 s here)."""
    first = fresh_integration()
    second = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'second')",
                "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", second)
    q("SELECT halo_itsm.set_enabled(%s, false)", second)
    set_system({"halo_itsm.request_budget": "4", "halo_itsm.request_budget_window": "30s"})
    try:
        _insert(["WB-1", "WB-2", "WB-3"], first)
        # discovery, token and two creates spend the first integration's budget
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets") == 2, timeout=10)
        set_system({"halo_itsm.poll_interval": "1min"})
        time.sleep(1.0)     # the worker reloads and sleeps for up to 60 s
        # the commit wakes the worker, whose claim finds nothing it may send
        _insert(["WB-S1"], second)
        time.sleep(0.5)
        # enabled with triggers off, so that enabling wakes nobody
        enable_behind_the_workers_back(second)
        time.sleep(0.5)
        assert q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s", second) == 0
        # this commit wakes it again: both items of the second integration go out
        committed = time.time()
        _insert(["WB-S2"], second)
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s",
                              second) == 2, timeout=5, msg="the second integration delivers")
        assert time.time() - committed < 3.0
        assert q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s", first) == 2
    finally:
        reset_system(["halo_itsm.poll_interval"])


def _deliver(dbname):
    """CALL halo_itsm.deliver() in a session (a process) of its own."""
    conn = db(dbname)
    try:
        conn.cursor().execute("CALL halo_itsm.deliver()")
    finally:
        conn.close()


@timeout(60)
def test_budget_holds_across_deliver_calls():
    """Before, each CALL deliver() started with an empty budget: three calls sent three
    times the budget. The budget is in shared memory now, per integration."""
    clean_halo_tables("halo")       # the worker's leftovers of the tests above send nothing
    iid = fresh_integration("halo_manual")
    # the authorisation server configured: no discovery request, one token request
    q("SELECT halo_itsm.configure_auth(%s, auth_url => %s)", iid, MOCK.auth_url(), db="halo_manual")
    set_system({"halo_itsm.request_budget": "3", "halo_itsm.request_budget_window": "30s"})
    for sid in ("D-1", "D-2", "D-3", "D-4", "D-5"):
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES (%s, 'budget test', 'low', %s)", sid, iid, db="halo_manual")
    for _ in range(3):
        _deliver("halo_manual")
    reqs = MOCK.requests()
    assert [r["path"] for r in reqs] == ["/token", "/api/Tickets", "/api/Tickets"], reqs
    assert q("SELECT pending, budget_used FROM halo_itsm.status WHERE integration_id = %s", iid,
             db="halo_manual") == [(3, 3)]
    assert q1("SELECT count(*) FROM halo_itsm.tickets", db="halo_manual") == 2
    # the items that waited for the budget were not counted as failed attempts
    assert q("SELECT attempts FROM halo_itsm.outbox WHERE state = 'pending'",
             db="halo_manual") == [(0,)] * 3


@timeout(60)
def test_budget_holds_beside_the_worker_and_deliver_calls():
    """The worker and two CALL deliver() sessions deliver for the same integration at
    once: together they send no more than the budget within the window."""
    iid = fresh_integration()
    set_system({"halo_itsm.request_budget": "4", "halo_itsm.request_budget_window": "30s"})
    MOCK.config(latency_ms=200)
    try:
        callers = [threading.Thread(target=_deliver, args=("halo",)) for _ in range(2)]
        conn = db("halo", autocommit=False)
        with conn.cursor() as cur:
            for n in range(8):
                cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
                            " VALUES (%s, 'budget test', 'low', %s)", ("W-%d" % n, iid))
        conn.commit()
        conn.close()
        for t in callers:
            t.start()
        for t in callers:
            t.join(30)
        time.sleep(2.0)
        reqs = MOCK.requests()
        assert len(reqs) == 4, reqs
        time.sleep(1.0)
        assert len(MOCK.requests()) == 4
        assert q1("SELECT budget_used FROM halo_itsm.status WHERE integration_id = %s", iid) == 4
    finally:
        MOCK.config(latency_ms=0)


@timeout(120)
def test_budget_slots_exceeded_makes_the_next_integration_wait_and_says_so():
    """halo_itsm.budget_slots = 1 (postmaster: a restart): the first integration takes the
    only slot; the second waits, said once in the log with the setting to raise, and sends
    once the first one's window has passed."""
    first = fresh_integration()
    second = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'second')",
                "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", second)
    q("ALTER SYSTEM SET halo_itsm.budget_slots = 1", db="postgres")
    q("ALTER SYSTEM SET halo_itsm.request_budget_window = '4s'", db="postgres")
    try:
        restart_cluster()
        q1_retry("SELECT 1")
        wait_until(lambda: worker_pid() is not None, timeout=20, msg="the worker")
        mark = log_mark()
        _insert(["SL-1"], first)
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets") == 1, timeout=10)
        _insert(["SL-2"], second)
        said = ("WARNING:  halo_itsm: every request budget slot is in use (halo_itsm.budget_slots"
                " = 1): integration %d waits for one" % second)
        wait_until(lambda: said in server_log(mark), timeout=10, msg=said)
        assert ("HINT:  Raise halo_itsm.budget_slots above the number of integrations that send"
                " within one request budget window, and restart the server.") in server_log(mark)
        assert q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s", second) == 0
        # the first integration's window passes: its slot is free, the second one sends
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s",
                              second) == 1, timeout=20, msg="the second integration delivers")
        assert server_log(mark).count(said) == 1
    finally:
        q("ALTER SYSTEM RESET halo_itsm.budget_slots", db="postgres")
        q("ALTER SYSTEM RESET halo_itsm.request_budget_window", db="postgres")
        restart_cluster()
        q1_retry("SELECT 1")

"""The per-integration request budget: the worker never sends more than
halo_itsm.request_budget requests to one integration within
halo_itsm.request_budget_window, token requests included, and goes on by itself once
the window has moved; other integrations are not held up by a spent budget.
"""
import time

from halo_test import (Mock, MOCK_PORT, ensure_extension, fresh_integration, q, q1, reset_system, set_system,
                       timeout, wait_until)

MOCK = Mock()
BUDGET = ["halo_itsm.request_budget", "halo_itsm.request_budget_window"]


def setup_module():
    """The extension in database halo."""
    ensure_extension()


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

#!/usr/bin/env python3
"""test/release/upgrade_data.py: the data side of the upgrade check (test/release/upgrade.sh).

    upgrade_data.py fill SNAPSHOT     with the previous release installed and its worker
                                      running: items done (tickets), dead and pending, a
                                      webhook delivery on the timeline; the rows saved
    upgrade_data.py waiting           after the new library is loaded, before ALTER
                                      EXTENSION UPDATE: the worker runs and waits for the
                                      update (worker_status); a case inserted now queues
    upgrade_data.py verify SNAPSHOT   after ALTER EXTENSION UPDATE: every saved row is
                                      still there, unchanged, and delivery and ingest work
                                      (the pending item and a new case reach the mock; a
                                      replayed delivery is a duplicate, a new one applies)

Uses only the API of every release since 1.0 (connect, configure, set_enabled, the cases
table, ingest_webhook), and the integration tests' helpers. Prints "ok - ..." lines and
exits 1 at the first failed check.
"""
import email.utils
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from halo_test import MOCK_PORT, Mock, fresh_integration, q, q1, wait_until, worker_pid  # noqa: E402
from webhook_helpers import mock_sign  # noqa: E402

MOCK = Mock()
# The rows that must survive the update, each as sorted text (ids and all).
SNAPSHOT_SQL = {
    "cases": "SELECT id, sid, title, severity, status, integration_id, closed_at FROM halo_itsm.cases",
    "tickets": "SELECT id, integration_id, halo_ticket_id, case_id, linked_by FROM halo_itsm.tickets",
    "outbox": "SELECT id, kind, case_id, integration_id, halo_ticket_id, state, attempts, last_error"
              " FROM halo_itsm.outbox",
    "timeline": "SELECT id, case_id, source, kind, author, body, halo_ticket_id, halo_action_id"
                " FROM halo_itsm.timeline",
    "deliveries": "SELECT integration_id, delivery_id, halo_ticket_id, outcome"
                  " FROM halo_itsm.webhook_deliveries",
    "integrations": "SELECT id, name, instance_url, enabled, webhook_key, category"
                    " FROM halo_itsm.integrations",
    "secrets": "SELECT integration_id, client_secret, webhook_secret FROM halo_itsm.integration_secrets",
}


def check(ok, what):
    """One "ok" line, or a failure that ends the script."""
    if not ok:
        print("FAIL - %s" % what)
        sys.exit(1)
    print("ok - %s" % what)


def snapshot():
    """Every saved table as a sorted list of row texts."""
    return {name: sorted(json.dumps(list(r), default=str) for r in q(sql))
            for name, sql in SNAPSHOT_SQL.items()}


def ticket_of(sid):
    """The Halo ticket id linked to the case sid, or None."""
    return q1("SELECT t.halo_ticket_id FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
              " ON c.id = t.case_id WHERE c.sid = %s", sid)


def ingest(iid, delivery_id, ticket, action_id, note):
    """A signed webhook delivery handed to ingest_webhook(), as a receiver would."""
    key, secret = q("SELECT i.webhook_key, s.webhook_secret FROM halo_itsm.integrations i"
                    " JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id"
                    " WHERE i.id = %s", iid)[0]
    body = json.dumps({"id": delivery_id, "object_id": ticket,
                       "ticket": {"id": ticket, "status_id": 2},
                       "action": {"id": action_id, "who": "Alice", "note": note}}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
               "Host": "soc.example.com", "X-Halo-Date": email.utils.formatdate(usegmt=True)}
    headers["X-Signature"] = mock_sign(secret, headers, body)
    return q1("SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)::text", key,
              json.dumps(headers), body)


def fill(path):
    """Done, dead and pending items, tickets, a timeline entry and a delivery; saved."""
    iid = fresh_integration(name="upgrade")
    for n in (1, 2, 3):
        q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES (%s, 'before the update', 'high')",
          "UPG-%d" % n)
    wait_until(lambda: all(ticket_of("UPG-%d" % n) for n in (1, 2, 3)), timeout=30,
               msg="tickets of UPG-1..3")
    check(True, "three cases delivered by the previous release's worker")
    MOCK.faults([{"method": "POST", "path": "/api/Tickets", "body_contains": "UPG-DEAD",
                  "action": {"type": "status", "status": 400,
                             "body": {"message": "Mandatory field missing"}}, "count": 1}])
    q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('UPG-DEAD', 'refused', 'low')")
    wait_until(lambda: q1("SELECT state::text FROM halo_itsm.outbox o JOIN halo_itsm.cases c"
                          " ON c.id = o.case_id WHERE c.sid = 'UPG-DEAD'") == "dead",
               timeout=30, msg="UPG-DEAD dead")
    check(True, "a case Halo refused is dead")
    other = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'paused')",
               "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", other)
    q("SELECT halo_itsm.set_enabled(%s, false)", other)
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('UPG-PENDING', 'waits for its integration', 'medium', %s)", other)
    check(q1("SELECT state::text FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id"
             " WHERE c.sid = 'UPG-PENDING'") == "pending", "a case of a disabled integration is pending")
    answer = ingest(iid, "upg-delivery-1", ticket_of("UPG-1"), 7001, "Noted before the update.")
    check(q1("SELECT count(*) FROM halo_itsm.timeline WHERE body = 'Noted before the update.'") == 1,
          "a webhook delivery put a note on the timeline (%s)" % answer)
    with open(path, "w") as f:
        json.dump({"integration": iid, "paused": other, "rows": snapshot(),
                   "worker_pid": worker_pid()}, f)


def waiting():
    """The new library is loaded on the old SQL: the worker runs and waits for the update;
    the C trigger of the new library still queues a case on the old SQL."""
    check(wait_until(lambda: worker_pid(), timeout=30, msg="worker") is not None,
          "the new library's worker runs before ALTER EXTENSION UPDATE")
    integration = q1("SELECT id FROM halo_itsm.integrations WHERE enabled ORDER BY id LIMIT 1")
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('UPG-WAIT', 'inserted between the new library and the update', 'high', %s)",
      integration)
    state = wait_until(lambda: q1("SELECT state FROM halo_itsm.worker_status")
                       == "waiting for ALTER EXTENSION UPDATE", timeout=30,
                       msg="the worker waiting for ALTER EXTENSION UPDATE")
    check(state, "the worker waits for ALTER EXTENSION UPDATE (worker_status)")
    check(q1("SELECT o.state::text FROM halo_itsm.outbox o JOIN halo_itsm.cases c"
             " ON c.id = o.case_id WHERE c.sid = 'UPG-WAIT'") == "pending",
          "a case inserted before the update is queued and waits")


def verify(path):
    """After the update: the saved rows unchanged; delivery and ingest work."""
    with open(path) as f:
        saved = json.load(f)
    now = snapshot()
    for name, rows in saved["rows"].items():
        # UPG-WAIT, inserted before the update, adds rows; every saved one is unchanged
        check(set(rows) <= set(now[name]), "%s: all %d rows unchanged by the update" % (name, len(rows)))
    pid = wait_until(lambda: worker_pid(), timeout=30, msg="worker")
    q("SELECT halo_itsm.set_enabled(%s, true)", saved["paused"])
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('UPG-AFTER', 'after the update', 'critical', %s)", saved["integration"])
    wait_until(lambda: ticket_of("UPG-PENDING") and ticket_of("UPG-AFTER") and ticket_of("UPG-WAIT"),
               timeout=30, msg="tickets of UPG-PENDING, UPG-WAIT and UPG-AFTER")
    sids = sorted(t["third_party_id_string"] for t in MOCK.tickets())
    check(sids == ["UPG-1", "UPG-2", "UPG-3", "UPG-AFTER", "UPG-PENDING", "UPG-WAIT"],
          "the pending case, the one that waited for the update and a new case reach Halo,"
          " once each: %s" % sids)
    check(worker_pid() == pid, "the same worker (pid %s) delivered them" % pid)
    replay = ingest(saved["integration"], "upg-delivery-1", ticket_of("UPG-1"), 7001,
                    "Noted before the update.")
    check(q1("SELECT count(*) FROM halo_itsm.timeline WHERE body = 'Noted before the update.'") == 1,
          "a delivery applied before the update is a duplicate after it (%s)" % replay)
    ingest(saved["integration"], "upg-delivery-2", ticket_of("UPG-2"), 7002, "Noted after the update.")
    check(q1("SELECT count(*) FROM halo_itsm.timeline WHERE body = 'Noted after the update.'") == 1,
          "a new delivery is applied after the update")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "fill" and len(sys.argv) == 3:
        fill(sys.argv[2])
    elif mode == "waiting":
        waiting()
    elif mode == "verify" and len(sys.argv) == 3:
        verify(sys.argv[2])
    else:
        sys.exit(__doc__)

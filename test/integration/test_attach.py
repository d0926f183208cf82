"""A table of the platform's attached (database halo, the real worker, libcurl to the mock).

platform.incidents has uuid keys, 'Sev1'..'Sev4' severities, a state column ('new' /
'resolved'), a closed_at column, row-level security, and is written by an application
role with no rights on halo_itsm. Shown with the exact JSON the mock received: tickets
with the mapped priority; a close from Halo written back to the platform's row; a local
note and a local close reaching Halo once, never echoed back to the timeline when Halo's
webhook for them arrives; a burst of changes sent as one ticket update; no duplicate note
or close after an ambiguous failure (dropped connection after Halo stored it, 500, 429,
the worker killed with SIGKILL while the close was in flight).
"""
import os
import signal

import psycopg2

from halo_test import close_connections, ensure_extension, fresh_integration, q, q1, timeout, wait_until
from test_delivery_faults import WORKER_PID_SQL, _reconnect
from webhook_helpers import MOCK, Receiver, point_mock_at_receiver

STATE = {}
APP = "hi_attach_app"


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    STATE["receiver"] = Receiver("halo")
    point_mock_at_receiver(STATE["integration"])
    q("DROP SCHEMA IF EXISTS platform CASCADE")
    q("DROP ROLE IF EXISTS %s" % APP)
    q("CREATE ROLE %s NOLOGIN" % APP)
    q("CREATE SCHEMA platform")
    q("""CREATE TABLE platform.incidents (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(), ref text NOT NULL UNIQUE,
             name text NOT NULL, sev text, state text NOT NULL DEFAULT 'new',
             closed_at timestamptz, tenant text NOT NULL DEFAULT 'a')""")
    q("ALTER TABLE platform.incidents ENABLE ROW LEVEL SECURITY")
    q("ALTER TABLE platform.incidents FORCE ROW LEVEL SECURITY")
    q("CREATE POLICY tenant_a ON platform.incidents TO %s USING (tenant = 'a') WITH CHECK (tenant = 'a')" % APP)
    q("GRANT USAGE ON SCHEMA platform TO %s" % APP)
    q("GRANT SELECT, INSERT, UPDATE ON platform.incidents TO %s" % APP)
    q("GRANT EXECUTE ON FUNCTION halo_itsm.add_note(regclass, text, text, boolean) TO %s" % APP)
    q("""SELECT halo_itsm.attach('platform.incidents', 'case', 'ref', 'name', 'sev',
             severity_map => '{"Sev1": "critical", "Sev2": "high", "Sev3": "medium", "Sev4": "low"}',
             status_column => 'state', closed_values => '{resolved}', closed_value => 'resolved',
             closed_at_column => 'closed_at', sync_title => true)""")


def teardown_module():
    MOCK.webhook(enabled=False)
    STATE.pop("receiver").stop()
    MOCK.clear_faults()
    close_connections()
    q("SELECT halo_itsm.detach('platform.incidents')")
    q("DROP SCHEMA platform CASCADE")
    q("REVOKE ALL ON FUNCTION halo_itsm.add_note(regclass, text, text, boolean) FROM %s" % APP)
    q("DROP ROLE %s" % APP)


def as_app(sql, *args):
    """Run sql as the application role (SET ROLE), in one transaction."""
    conn = psycopg2.connect(dbname="halo")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET ROLE %s" % APP)
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def insert(ref, name, sev):
    as_app("INSERT INTO platform.incidents (ref, name, sev) VALUES (%s, %s, %s)", ref, name, sev)


def ticket_of(ref, timeout=20):
    return wait_until(lambda: q1("""SELECT t.halo_ticket_id FROM halo_itsm.tickets t
                                      JOIN halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = %s""", ref),
                      timeout=timeout, msg="ticket of %s" % ref)


def drained():
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox WHERE state IN ('pending', 'in_flight')"),
               timeout=30, msg="outbox drained")
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE state = 'dead'") == 0, \
        q("SELECT kind, last_error FROM halo_itsm.outbox WHERE state = 'dead'")


def posted(path, since=0):
    """The JSON bodies the mock received for POST path (answered, not faulted)."""
    return [r["json"] for r in MOCK.requests(path=path, method="POST", since=since)]


def mark():
    reqs = MOCK.requests()
    return reqs[-1]["seq"] if reqs else 0


def timeline(ref):
    return q("""SELECT t.source, t.kind, t.body, t.internal, t.halo_action_id IS NOT NULL
                  FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                 WHERE c.sid = %s ORDER BY t.id""", ref)


def test_insert_by_app_role_creates_ticket_with_mapped_priority():
    since = mark()
    insert("INC-1", "Ransomware on host 7", "Sev1")
    insert("INC-2", "Unknown severity", "Sev9")
    ticket_of("INC-1")
    ticket_of("INC-2")
    bodies = sorted(posted("/api/Tickets", since), key=lambda b: b[0]["third_party_id_string"])
    assert [b[0]["priority_id"] for b in bodies] == [1, 3], bodies
    assert bodies[0] == [{"summary": "INC-1: Ransomware on host 7",
                          "details": "Severity: Critical\nCase: INC-1",
                          "tickettype_id": 1, "priority_id": 1, "category_1": "Security>Incident",
                          "third_party_id_string": "INC-1"}], bodies[0]
    assert q1("""SELECT o.warning FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
                  WHERE c.sid = 'INC-2' AND o.kind = 'case'""") == \
        "halo_itsm: severity 'Sev9' is not in the severity map of platform.incidents; sent as medium"


def test_close_in_halo_is_written_back():
    insert("INC-3", "Phishing wave", "Sev3")
    tid = ticket_of("INC-3")
    r = MOCK.close_ticket(tid, "Alice Agent")
    assert r["webhook"]["status"] == 200, r["webhook"]
    row = q("SELECT state, closed_at IS NOT NULL FROM platform.incidents WHERE ref = 'INC-3'")
    assert row == [("resolved", True)]
    assert q1("""SELECT i.closed_at = c.closed_at FROM platform.incidents i
                   JOIN halo_itsm.cases c ON c.sid = i.ref WHERE i.ref = 'INC-3'""")
    assert timeline("INC-3") == [("halo", "note", "Ticket closed by Alice Agent", False, True),
                                 ("halo", "closed", "Closed in Halo by Alice Agent (ticket %d, status 9)." % tid,
                                  False, False)]
    drained()
    # nothing sent back to Halo: a close from Halo is not closed again
    assert [b for b in posted("/api/Actions") if b[0]["ticket_id"] == tid] == []


def test_local_note_reaches_halo_once_and_is_not_echoed():
    insert("INC-4", "Lateral movement", "Sev2")
    tid = ticket_of("INC-4")
    since = mark()
    assert as_app("SELECT halo_itsm.add_note('platform.incidents', 'INC-4', 'Isolated the host')")[0][0] > 0
    as_app("SELECT halo_itsm.add_note('platform.incidents', 'INC-4', 'Customer told', internal => false)")
    drained()
    assert posted("/api/Actions", since) == [
        [{"ticket_id": tid, "note": "Isolated the host", "outcome": "Note", "hiddenfromuser": True}],
        [{"ticket_id": tid, "note": "Customer told", "outcome": "Note", "hiddenfromuser": False}]]
    notes = [a for a in MOCK.actions() if a["ticket_id"] == tid and a["outcome"] == "Note"]
    assert [a["note"] for a in notes] == ["Isolated the host", "Customer told"]
    # Halo's webhooks for both arrived (the mock sends one per API action) and changed nothing
    sent = [w for w in MOCK.webhooks() if '"object_id":%d' % tid in w["body"] and '"outcome":"Note"' in w["body"]]
    assert len(sent) == 2 and all(w["status"] == 200 for w in sent), sent
    assert timeline("INC-4") == [("local", "note", "Isolated the host", True, True),
                                 ("local", "note", "Customer told", False, True)]
    assert q("""SELECT t.halo_action_id FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                 WHERE c.sid = 'INC-4' ORDER BY t.id""") == [(notes[0]["id"],), (notes[1]["id"],)]
    # a later sync of the ticket (all its actions) adds nothing either
    q("SELECT halo_itsm._queue_sync(%s, %s)", STATE["integration"], tid)
    drained()
    assert len(timeline("INC-4")) == 2


def test_note_from_halo_reaches_the_timeline_of_the_platform_row():
    insert("INC-13", "Noted in Halo", "Sev3")
    tid = ticket_of("INC-13")
    r = MOCK.add_note(tid, "Agent: user called back", "Bob Agent", hidden=True)
    assert r["webhook"]["status"] == 200, r["webhook"]
    assert q("""SELECT i.ref, t.source, t.kind, t.author, t.body, t.internal, t.halo_action_id
                  FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                  JOIN halo_itsm.attachments a ON a.id = c.attachment_id
                  JOIN platform.incidents i ON i.id::text = c.source_key
                 WHERE a.source = 'platform.incidents'::regclass AND c.sid = 'INC-13'""") == [
        ("INC-13", "halo", "note", "Bob Agent", "Agent: user called back", True, r["action"]["id"])]


def test_note_before_the_ticket_goes_after_the_create():
    MOCK.config(latency_ms=300)
    try:
        since = mark()
        insert("INC-5", "Noted at once", "Sev4")
        q("SELECT halo_itsm.add_note('platform.incidents', 'INC-5', 'First note')")
        tid = ticket_of("INC-5")
        drained()
    finally:
        MOCK.config(latency_ms=0)
    paths = [(r["method"], r["path"]) for r in MOCK.requests(since=since) if r["method"] == "POST"
             and r["path"] in ("/api/Tickets", "/api/Actions")]
    assert paths == [("POST", "/api/Tickets"), ("POST", "/api/Actions")], paths
    assert posted("/api/Actions", since) == [
        [{"ticket_id": tid, "note": "First note", "outcome": "Note", "hiddenfromuser": True}]]


def test_local_close_closes_the_halo_ticket_once():
    insert("INC-6", "Closed here", "Sev2")
    tid = ticket_of("INC-6")
    drained()
    since = mark()
    as_app("UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-6'")
    drained()
    assert posted("/api/Actions", since) == [
        [{"ticket_id": tid, "note": "Closed locally.", "outcome": "Closed", "hiddenfromuser": False,
          "new_status": 9}]]
    ticket = [t for t in MOCK.tickets() if t["id"] == tid][0]
    assert ticket["status_id"] == 9 and ticket["hasbeenclosed"] is True
    # Halo's webhook for the close came back: no second close, no Halo entry on the timeline
    assert timeline("INC-6") == [("local", "closed", "Closed locally.", False, True)]
    assert q1("SELECT state FROM platform.incidents WHERE ref = 'INC-6'") == "resolved"
    # closing again (after a local reopening) sends nothing: the ticket is closed
    as_app("UPDATE platform.incidents SET state = 'new' WHERE ref = 'INC-6'")
    as_app("UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-6'")
    drained()
    assert posted("/api/Actions", since) == [
        [{"ticket_id": tid, "note": "Closed locally.", "outcome": "Closed", "hiddenfromuser": False,
          "new_status": 9}]]


def test_burst_of_changes_is_one_update():
    insert("INC-7", "Before", "Sev4")
    tid = ticket_of("INC-7")
    drained()
    q("SELECT halo_itsm.set_enabled(%s, false)", STATE["integration"])
    since = mark()
    as_app("UPDATE platform.incidents SET sev = 'Sev3' WHERE ref = 'INC-7'")
    as_app("UPDATE platform.incidents SET sev = 'Sev2' WHERE ref = 'INC-7'")
    as_app("UPDATE platform.incidents SET name = 'After' WHERE ref = 'INC-7'")
    as_app("UPDATE platform.incidents SET sev = 'Sev1' WHERE ref = 'INC-7'")
    assert q1("""SELECT count(*) FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
                  WHERE c.sid = 'INC-7' AND o.kind = 'update'""") == 1
    q("SELECT halo_itsm.set_enabled(%s, true)", STATE["integration"])
    drained()
    assert posted("/api/Tickets", since) == [[{"id": tid, "summary": "INC-7: After", "priority_id": 1}]]
    ticket = [t for t in MOCK.tickets() if t["id"] == tid][0]
    assert (ticket["summary"], ticket["priority_id"]) == ("INC-7: After", 1)


def _note_after_fault(ref, fault, expect_posts):
    insert(ref, "Fault " + ref, "Sev3")
    tid = ticket_of(ref)
    drained()
    since = mark()
    MOCK.faults(dict(fault, method="POST", path="/api/Actions", count=1))
    try:
        q("SELECT halo_itsm.add_note('platform.incidents', %s, 'Note through a fault')", ref)
        drained()
    finally:
        MOCK.clear_faults()
    notes = [a for a in MOCK.actions() if a["ticket_id"] == tid and a["note"] == "Note through a fault"]
    assert len(notes) == 1, notes
    assert len(MOCK.requests(path="/api/Actions", method="POST", since=since)) == expect_posts
    assert timeline(ref) == [("local", "note", "Note through a fault", True, True)]
    assert q1("""SELECT t.halo_action_id FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                  WHERE c.sid = %s""", ref) == notes[0]["id"]
    return since


def test_note_after_dropped_answer_is_found_not_sent_again():
    since = _note_after_fault("INC-8", {"action": {"type": "drop_after_create"}}, expect_posts=1)
    # the second attempt looked the ticket's actions up instead of posting again
    assert MOCK.requests(path="/api/Actions", method="GET", since=since)
    assert q1("""SELECT o.result FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
                  WHERE c.sid = 'INC-8' AND o.kind = 'note'""").startswith("found: action ")


def test_note_after_500_and_429_sent_once():
    _note_after_fault("INC-9", {"action": {"type": "status", "status": 500}}, expect_posts=2)
    _note_after_fault("INC-10", {"action": {"type": "status", "status": 429}}, expect_posts=2)


def test_close_after_dropped_answer_is_found_not_sent_again():
    insert("INC-11", "Closed through a fault", "Sev2")
    tid = ticket_of("INC-11")
    drained()
    since = mark()
    MOCK.faults({"method": "POST", "path": "/api/Actions", "count": 1, "action": {"type": "drop_after_create"}})
    try:
        as_app("UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-11'")
        drained()
    finally:
        MOCK.clear_faults()
    closes = [a for a in MOCK.actions() if a["ticket_id"] == tid and a.get("new_status") == 9]
    assert len(closes) == 1, closes
    assert len(MOCK.requests(path="/api/Actions", method="POST", since=since)) == 1
    assert timeline("INC-11") == [("local", "closed", "Closed locally.", False, True)]


@timeout(90)
def test_worker_killed_while_closing_sends_one_close():
    """Last of the module: SIGKILL restarts every backend (the receiver's too)."""
    insert("INC-12", "Killed mid-close", "Sev2")
    tid = ticket_of("INC-12")
    drained()
    since = mark()
    MOCK.config(latency_ms=700)
    try:
        as_app("UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-12'")
        wait_until(lambda: [r for r in MOCK.requests(path="/api/Actions", method="POST", since=since)
                            if r["status"] is None], timeout=20, interval=0.02, msg="the close in flight")
        # the mock stores the action first and waits its latency before answering
        wait_until(lambda: [a for a in MOCK.actions() if a["ticket_id"] == tid and a.get("new_status") == 9],
                   timeout=2, interval=0.01)
        old_pid = q1(WORKER_PID_SQL)
        os.kill(old_pid, signal.SIGKILL)
        _reconnect(old_pid)
    finally:
        MOCK.config(latency_ms=0)
    drained()
    closes = [a for a in MOCK.actions() if a["ticket_id"] == tid and a.get("new_status") == 9]
    assert len(closes) == 1, closes
    assert len(MOCK.requests(path="/api/Actions", method="POST", since=since)) == 1
    assert q1("""SELECT o.result FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
                  WHERE c.sid = 'INC-12' AND o.kind = 'close'""") == "found: action %d" % closes[0]["id"]

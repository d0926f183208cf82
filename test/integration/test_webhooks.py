"""Halo closes cases and adds notes, over HTTP (database halo, with the background worker).

The mock Halo sends real webhooks, signed by its own code (test/mock/webhooks.py), to the
receiver (test/receiver/receiver.py), which calls halo_itsm.ingest_webhook(). An agent
closing a ticket closes the case; a note appears on the timeline; a replay is a duplicate;
an "event information only" payload and a dropped webhook are caught up by the worker's
sync and by reconcile(); each rejection gets its HTTP status; an unknown ticket is
ignored; pg_cron gets the reconcile job.
"""
import email.utils
import json
import time
import urllib.parse
import urllib.request

from halo_test import (MOCK_PORT, RECEIVER_PORT, ensure_extension, fresh_integration, q, q1,
                       wait_until)
from webhook_helpers import (MOCK, Receiver, add_case, answer, case_status,
                             point_mock_at_receiver, post, signed_headers, timeline, wait_ticket,
                             webhook_settings)

STATE = {}


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    STATE["receiver"] = Receiver("halo")
    point_mock_at_receiver(STATE["integration"])


def teardown_module():
    MOCK.webhook(enabled=False)
    STATE.pop("receiver").stop()


def _reset_webhook(**overrides):
    return point_mock_at_receiver(STATE["integration"], **overrides)


def test_webhook_settings_give_url_and_secret():
    key = q1("SELECT webhook_key FROM halo_itsm.integrations WHERE id = %s", STATE["integration"])
    url, secret = webhook_settings(STATE["integration"])
    assert url == "http://127.0.0.1:%d/halo/%s" % (RECEIVER_PORT, key), url
    assert len(secret) == 64 and all(c in "0123456789abcdef" for c in secret), "secret format"
    assert secret == q1("SELECT webhook_secret FROM halo_itsm.integration_secrets WHERE integration_id = %s",
                        STATE["integration"])


def test_agent_closes_ticket_closes_case():
    _reset_webhook()
    add_case("WH-CLOSE")
    tid = wait_ticket("WH-CLOSE")
    assert case_status("WH-CLOSE") == ("open", False)
    r = MOCK.close_ticket(tid, "Alice Agent")
    delivery = r["webhook"]
    assert delivery["status"] == 200, delivery
    assert answer(delivery) == {"outcome": "case_closed", "case_sid": "WH-CLOSE", "closed": True,
                                "notes_added": 1, "sync_queued": False, "halo_ticket_id": tid,
                                "delivery_id": delivery["event_id"]}
    assert case_status("WH-CLOSE") == ("closed", True)
    action_id = r["action"]["id"]
    assert timeline("WH-CLOSE") == [
        ("note", "halo", "Alice Agent", "Ticket closed by Alice Agent", False, tid, action_id),
        ("closed", "halo", "Alice Agent", "Closed in Halo by Alice Agent (ticket %d, status 9)." % tid,
         False, tid, None)]
    # the closed entry carries Halo's time of the closing action
    assert q1("""SELECT t.occurred_at = %s::timestamptz AND c.closed_at = t.occurred_at
                   FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                  WHERE c.sid = 'WH-CLOSE' AND t.kind = 'closed'""", r["action"]["datetime"])
    assert q("SELECT delivery_id, halo_ticket_id, outcome FROM halo_itsm.webhook_deliveries"
             " WHERE delivery_id = %s", delivery["event_id"]) == [(delivery["event_id"], tid, "case_closed")]

    # the replayed delivery is acknowledged and changes nothing
    again = MOCK.call("POST", "/_mock/webhooks/%d/resend" % delivery["id"])
    assert again["status"] == 200 and answer(again) == {
        "outcome": "duplicate", "delivery_id": delivery["event_id"], "halo_ticket_id": tid}
    assert len(timeline("WH-CLOSE")) == 2


def test_note_added_in_halo_appears_on_timeline():
    _reset_webhook()
    add_case("WH-NOTE")
    tid = wait_ticket("WH-NOTE")
    r = MOCK.add_note(tid, "Isolated FS01 from the network.", "Bob Analyst", hidden=True)
    assert r["webhook"]["status"] == 200, r["webhook"]
    got = answer(r["webhook"])
    assert (got["outcome"], got["notes_added"], got["closed"], got["sync_queued"]) == \
        ("notes_added", 1, False, False), got
    r2 = MOCK.add_note(tid, "Customer informed.", "Carol", hidden=False)
    assert answer(r2["webhook"])["notes_added"] == 1
    assert timeline("WH-NOTE") == [
        ("note", "halo", "Bob Analyst", "Isolated FS01 from the network.", True, tid, r["action"]["id"]),
        ("note", "halo", "Carol", "Customer informed.", False, tid, r2["action"]["id"])]
    assert case_status("WH-NOTE") == ("open", False)
    # a note that starts with "[halo_itsm]" is an agent's note like any other
    r3 = MOCK.add_note(tid, "[halo_itsm] Case escalated in the SOC.", "Mallory")
    assert answer(r3["webhook"])["notes_added"] == 1
    # an action posted through the integration's own API application is not echoed back,
    # whatever its text: Halo marks it with the application (actionby_application_id)
    own = _post_action_as("test-client", "test-secret", tid, "Ticket raised by the SOC.")
    assert own["actionby_application_id"] == "test-client", own
    # (the mock sends no webhook for API actions: a sync fetches every action of the ticket)
    seq = max([r["seq"] for r in MOCK.requests()] or [0])
    q("CALL halo_itsm.reconcile()")
    wait_until(lambda: [r for r in MOCK.requests(path="/api/Actions", method="GET", since=seq)
                        if r["query"].get("ticket_id") == [str(tid)] and r["status"] == 200],
               msg="the ticket's actions fetched by a sync")
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox WHERE kind = 'sync'"
                          " AND state IN ('pending', 'in_flight')"), msg="syncs applied")
    assert timeline("WH-NOTE") == [
        ("note", "halo", "Bob Analyst", "Isolated FS01 from the network.", True, tid, r["action"]["id"]),
        ("note", "halo", "Carol", "Customer informed.", False, tid, r2["action"]["id"]),
        ("note", "halo", "Mallory", "[halo_itsm] Case escalated in the SOC.", False, tid,
         r3["action"]["id"])]


def _post_action_as(client_id, client_secret, tid, note):
    """POST /api/Actions to the mock with a token of this API application; the action."""
    base = "http://127.0.0.1:%d" % MOCK_PORT
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": client_secret,
                                   "scope": "read:tickets edit:tickets"}).encode()
    with urllib.request.urlopen(MOCK.auth_url() + "/token", data=form, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    req = urllib.request.Request(base + "/api/Actions",
                                 data=json.dumps([{"ticket_id": tid, "note": note,
                                                   "outcome": "Note"}]).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_event_only_payload_is_caught_up_by_sync():
    _reset_webhook(mode="event_only")
    add_case("WH-EVENT")
    tid = wait_ticket("WH-EVENT")
    seq = max([r["seq"] for r in MOCK.requests()] or [0])
    r = MOCK.add_note(tid, "Only the event was sent.", "Dora")
    body = json.loads(r["webhook"]["body"])
    assert "ticket" not in body and "action" not in body, body
    got = answer(r["webhook"])
    assert (got["outcome"], got["sync_queued"]) == ("sync_queued", True), got
    # the worker fetches the ticket and its actions and applies them
    wait_until(lambda: timeline("WH-EVENT"), msg="note synced from Halo")
    assert timeline("WH-EVENT") == [("note", "halo", "Dora", "Only the event was sent.", False, tid,
                                     r["action"]["id"])]
    gets = [(x["method"], x["path"], x["query"]) for x in MOCK.requests(since=seq) if x["method"] == "GET"]
    assert ("GET", "/api/Tickets/%d" % tid) in [g[:2] for g in gets], gets
    actions = [g for g in gets if g[1] == "/api/Actions"]
    assert actions and actions[0][2].get("ticket_id") == [str(tid)], actions
    # Halo sends note_html only when asked
    assert actions[0][2].get("includehtmlnote") == ["true"], actions
    wait_until(lambda: q1("SELECT state = 'done' AND result = 'synced' FROM halo_itsm.outbox"
                          " WHERE kind = 'sync' AND halo_ticket_id = %s ORDER BY id DESC LIMIT 1", tid))
    assert q1("SELECT last_synced_at IS NOT NULL FROM halo_itsm.tickets WHERE halo_ticket_id = %s", tid)

    # closing with event information only: the sync closes the case
    r = MOCK.close_ticket(tid, "Dora")
    assert answer(r["webhook"])["outcome"] == "sync_queued"
    wait_until(lambda: case_status("WH-EVENT") == ("closed", True), msg="case closed by the sync")
    rows = timeline("WH-EVENT")
    assert rows[-2:] == [("note", "halo", "Dora", "Ticket closed by Dora", False, tid, r["action"]["id"]),
                         ("closed", "halo", "Dora", "Closed in Halo by Dora (ticket %d, status 9)." % tid,
                          False, tid, None)], rows


def test_dropped_webhook_is_caught_up_by_reconcile():
    _reset_webhook()
    add_case("WH-DROP")
    tid = wait_ticket("WH-DROP")
    _reset_webhook(drop_next=1)
    r = MOCK.close_ticket(tid, "Erin")
    assert r["webhook"]["dropped"] and not r["webhook"]["sent"], r["webhook"]
    time.sleep(0.5)
    assert case_status("WH-DROP") == ("open", False)
    queued = q1("CALL halo_itsm.reconcile()")
    assert queued >= 1, queued
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync' AND halo_ticket_id = %s"
              " AND state IN ('pending', 'in_flight', 'done')", tid) >= 1
    wait_until(lambda: case_status("WH-DROP") == ("closed", True), msg="case closed after reconcile()")
    assert timeline("WH-DROP") == [
        ("note", "halo", "Erin", "Ticket closed by Erin", False, tid, r["action"]["id"]),
        ("closed", "halo", "Erin", "Closed in Halo by Erin (ticket %d, status 9)." % tid, False, tid, None)]
    # the closed case is no longer reconciled
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox WHERE kind = 'sync'"
                          " AND state IN ('pending', 'in_flight')"), msg="syncs finished")
    q("CALL halo_itsm.reconcile()")
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync' AND halo_ticket_id = %s"
              " AND state = 'pending'", tid) == 0


def test_rejections_answer_their_http_status():
    _reset_webhook()
    add_case("WH-REJECT")
    tid = wait_ticket("WH-REJECT")
    url, secret = webhook_settings(STATE["integration"])
    path = url[len("http://127.0.0.1:%d" % RECEIVER_PORT):]
    before = q1("SELECT count(*) FROM halo_itsm.timeline")
    deliveries = q1("SELECT count(*) FROM halo_itsm.webhook_deliveries")

    def body(n):
        return json.dumps({"id": "reject-%d" % n, "object_id": tid,
                           "ticket": {"id": tid, "status_id": 9, "hasbeenclosed": True},
                           "action": {"id": 990000 + n, "who": "X", "note": "nope", "new_status": 9}}).encode()

    # unknown key: 404
    status, got = post("/halo/nosuchkey", signed_headers(secret, body(1)), body(1))
    assert (status, got["sqlstate"]) == (404, "WH001"), got
    # signed with another secret: 401
    status, got = post(path, signed_headers("some-other-secret", body(2)), body(2))
    assert (status, got["sqlstate"]) == (401, "WH007"), got
    assert secret not in json.dumps(got)
    # stale date: 401
    stale = email.utils.formatdate(time.time() - 600, usegmt=True)
    status, got = post(path, signed_headers(secret, body(3), date=stale), body(3))
    assert (status, got["sqlstate"]) == (401, "WH005"), got
    # no signature: 401
    h = signed_headers(secret, body(4))
    del h["X-Signature"]
    status, got = post(path, h, body(4))
    assert (status, got["sqlstate"]) == (401, "WH006"), got
    # a signed header twice: 400
    h = signed_headers(secret, body(5))
    h["content-type"] = "application/json"
    status, got = post(path, h, body(5))
    assert (status, got["sqlstate"]) == (400, "WH003"), got
    # too large: 413
    big = b'{"id": "big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    status, got = post(path, signed_headers(secret, big), big)
    assert (status, got["sqlstate"]) == (413, "WH002"), got
    # correctly signed but not JSON / duplicate keys: 400 (no ticket: accepted, test_webhook_signing)
    for raw, code in ((b'{"id": "x", ', "WH008"), (b'{"id": "x", "id": "y", "object_id": 1}', "WH009")):
        status, got = post(path, signed_headers(secret, raw), raw)
        assert (status, got["sqlstate"]) == (400, code), (raw, got)
    assert q1("SELECT count(*) FROM halo_itsm.timeline") == before
    assert q1("SELECT count(*) FROM halo_itsm.webhook_deliveries") == deliveries
    assert case_status("WH-REJECT") == ("open", False)

    # the mock's own deliveries: stale, unsigned, wrong secret are refused; a proxy that
    # rewrites Host is fine (webhook_base_url's host is signed)
    _reset_webhook(date_offset_s=-600)
    assert MOCK.add_note(tid, "stale", "X")["webhook"]["status"] == 401
    _reset_webhook(secret=None)
    assert MOCK.add_note(tid, "unsigned", "X")["webhook"]["status"] == 401
    _reset_webhook(secret="not-the-secret")
    assert MOCK.add_note(tid, "forged", "X")["webhook"]["status"] == 401
    assert timeline("WH-REJECT") == []
    _reset_webhook(send_host="proxy.internal:8443", date_format="rfc3339")
    r = MOCK.add_note(tid, "Through the proxy.", "Pat")
    assert r["webhook"]["headers"]["Host"] == "proxy.internal:8443"
    assert r["webhook"]["status"] == 200 and answer(r["webhook"])["notes_added"] == 1, r["webhook"]
    assert timeline("WH-REJECT") == [("note", "halo", "Pat", "Through the proxy.", False, tid, r["action"]["id"])]


def _mock_token():
    data = b"grant_type=client_credentials&client_id=test-client&client_secret=test-secret&scope=read:tickets"
    req = urllib.request.Request(MOCK.auth_url() + "/token", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


def test_ticket_linked_to_nothing_is_ignored():
    _reset_webhook()
    # a ticket someone created in Halo by hand
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/Tickets" % MOCK_PORT, method="POST",
        data=json.dumps([{"summary": "Printer jam", "category_1": "Security", "tickettype_id": 1}]).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + _mock_token()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        tid = json.loads(resp.read())["id"]
    r = MOCK.add_note(tid, "Paper removed.", "Gus")
    assert r["webhook"]["status"] == 200
    got = answer(r["webhook"])
    assert (got["outcome"], got["halo_ticket_id"], got["sync_queued"]) == ("ignored", tid, False), got
    assert q("SELECT outcome FROM halo_itsm.webhook_deliveries WHERE delivery_id = %s",
             r["webhook"]["event_id"]) == [("ignored",)]
    assert q1("SELECT count(*) FROM halo_itsm.timeline WHERE halo_ticket_id = %s", tid) == 0
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync' AND halo_ticket_id = %s", tid) == 0


def test_schedule_jobs_registers_reconcile():
    had_cron = q1("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'") == 1
    if not had_cron:
        q("CREATE EXTENSION pg_cron")
    try:
        jobs = q("SELECT job_name, schedule, command FROM halo_itsm.schedule_jobs() ORDER BY job_name")
        assert ("halo_itsm_reconcile", "*/5 * * * *", "CALL halo_itsm.reconcile()") in jobs, jobs
        assert q("SELECT schedule, command FROM cron.job WHERE jobname = 'halo_itsm_reconcile'") == \
            [("*/5 * * * *", "CALL halo_itsm.reconcile()")]
        jobs = q("SELECT job_name, schedule FROM halo_itsm.schedule_jobs(reconcile_schedule => '*/2 * * * *')"
                 " WHERE job_name = 'halo_itsm_reconcile'")
        assert jobs == [("halo_itsm_reconcile", "*/2 * * * *")], jobs
    finally:
        q("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'halo_itsm%%'")
        if not had_cron:
            q("DROP EXTENSION pg_cron")

"""Delivery faults with the real background worker and the mock Halo: answers lost after
Halo created the ticket (dropped connection, timeout), requests dropped before Halo saw
them, the lookup by third_party_id_string (also through pages of look-alikes, and on a
Halo that ignores the filter), and the worker killed with SIGKILL mid-delivery.
Exactly one ticket per case in Halo, always.
"""
import json
import os
import signal
import time
import urllib.parse
import urllib.request

import psycopg2

from halo_test import (MOCK_PORT, close_connections, ensure_extension, fresh_integration,
                       log_mark, q, q1, server_log, timeout, wait_until)
from test_delivery import (MOCK, add_cases, check_delivered, creates, expected_payload,
                           lookup_query, mock_tickets_by_sid, outbox, ticket_link, trace,
                           wait_states)

WORKER_PID_SQL = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'halo_itsm delivery worker'"


def setup_module():
    """The extension in halo."""
    ensure_extension("halo")


def halo_create(tickets):
    """Create tickets in the mock through its Halo API, as another Halo user would;
    returns the stored tickets. (These requests appear in the mock's request log.)"""
    base = "http://127.0.0.1:%d" % MOCK_PORT
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "test-client",
                                   "client_secret": "test-secret", "scope": "all"}).encode()
    with urllib.request.urlopen(base + "/auth/token", data=form, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    req = urllib.request.Request(base + "/api/Tickets", data=json.dumps(tickets).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.load(resp)
    return out if isinstance(out, list) else [out]


def mark():
    """The sequence number of the mock's last logged request."""
    reqs = MOCK.requests()
    return reqs[-1]["seq"] if reqs else 0


def _lost_answer_found(honour_filter):
    """drop_after_create: Halo created the ticket but the worker got no answer; the next
    attempt looks the ticket up (on a list with look-alikes) and links it."""
    fresh_integration()
    MOCK.config(honour_third_party_filter=honour_filter)
    decoys = halo_create([
        {"summary": "LOST-1 mentioned in a summary", "third_party_id_string": "OTHER-7",
         "category_1": "Security"},
        {"summary": "A longer sid", "third_party_id_string": "LOST-10",
         "category_1": "Security"},
        {"summary": "Unrelated", "third_party_id_string": "ZZZ-1", "category_1": "Security"}])
    since = mark()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "drop_after_create"}})
    add_cases([("LOST-1", "Answer lost", "high")])
    wait_states({"done": 1})
    reqs = MOCK.requests(since=since)
    assert trace(since=since) == [("POST", "/auth/token", 200), ("POST", "/api/Tickets", "dropped"),
                                  ("GET", "/api/Tickets", 200)], trace(since=since)
    assert reqs[1]["fault"] == {"type": "drop_after_create"}
    assert reqs[2]["query"] == lookup_query("LOST-1")
    # the dropped create did create the ticket; the worker linked that one, no second one
    mine = mock_tickets_by_sid()["LOST-1"]
    assert len(mine) == 1 and mine[0]["id"] > max(d["id"] for d in decoys), mine
    hid = check_delivered("LOST-1", expected_payload("LOST-1", "Answer lost", "high"),
                          attempts=2, linked_by="found", result="found", posts=1)
    assert hid == mine[0]["id"]
    assert len(MOCK.tickets()) == 4
    row = outbox("LOST-1")
    assert row["last_error"].startswith("halo_itsm: POST /api/Tickets failed: "), row


@timeout(60)
def test_lost_answer_found_when_halo_ignores_the_filter():
    _lost_answer_found(honour_filter=False)


@timeout(60)
def test_lost_answer_found_when_halo_honours_the_filter():
    _lost_answer_found(honour_filter=True)


@timeout(60)
def test_dropped_request_lookup_finds_nothing_and_creates_once():
    fresh_integration()
    halo_create([{"summary": "GONE-1 look-alike", "third_party_id_string": "GONE-1x",
                  "category_1": "Security"}])
    since = mark()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1, "action": {"type": "drop"}})
    add_cases([("GONE-1", "Request lost", "medium", "Nobody saw it")])
    wait_states({"done": 1})
    reqs = MOCK.requests(since=since)
    assert trace(since=since) == [("POST", "/auth/token", 200), ("POST", "/api/Tickets", "dropped"),
                                  ("GET", "/api/Tickets", 200), ("POST", "/api/Tickets", 200)]
    assert reqs[2]["query"] == lookup_query("GONE-1")
    assert reqs[1]["json"] == reqs[3]["json"]
    check_delivered("GONE-1", expected_payload("GONE-1", "Request lost", "medium", "Nobody saw it"),
                    attempts=2)
    assert len(MOCK.tickets()) == 2


@timeout(60)
def test_lookup_pages_through_look_alikes():
    fresh_integration()
    # 150 tickets whose third_party_id_string contains our sid: the search matches them all
    halo_create([{"summary": "decoy %d" % i, "third_party_id_string": "PAGE-1-%03d" % i,
                  "category_1": "Security"} for i in range(150)])
    since = mark()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "drop_after_create"}})
    add_cases([("PAGE-1", "On page two", "low")])
    wait_states({"done": 1})
    reqs = MOCK.requests(since=since)
    assert trace(since=since) == [("POST", "/auth/token", 200), ("POST", "/api/Tickets", "dropped"),
                                  ("GET", "/api/Tickets", 200), ("GET", "/api/Tickets", 200)]
    assert reqs[2]["query"] == lookup_query("PAGE-1", page=1)
    assert reqs[3]["query"] == lookup_query("PAGE-1", page=2)
    hid = check_delivered("PAGE-1", expected_payload("PAGE-1", "On page two", "low"),
                          attempts=2, linked_by="found", result="found", posts=1)
    assert hid == 1151
    assert len(MOCK.tickets()) == 151


# Long and non-ASCII sids: the lookup URL is built without a length limit (Halo documents
# none for third_party_id_string, so halo_itsm imposes none). A 310-character sid with
# characters that URL escaping triples, and a non-ASCII one (each character 6 bytes once
# escaped), go through a lost answer and the lookup that finds the ticket.
LONG_SID = "SOC:2026:" + ":".join("%04d" % i for i in range(60))  # 9 + 60*5 - 1 = 308
LONG_SID += ":x"
NON_ASCII_SID = "CASE-\u00e9\u00fc\u00df-" + "\u6f22\u5b57" * 90 + "-\U0001f600"


def _long_sid_found_after_lost_answer(sid, honour_filter):
    """drop_after_create for sid: the lookup (whole query, paging included) links the ticket."""
    fresh_integration()
    MOCK.config(honour_third_party_filter=honour_filter)
    # look-alikes sharing the first 150 characters: only the whole sid tells them apart
    decoys = halo_create([{"summary": "decoy %d" % i, "third_party_id_string": sid[:150] + "-%d" % i,
                           "category_1": "Security"} for i in range(3)])
    since = mark()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "drop_after_create"}})
    add_cases([(sid, "Long sid", "high")])
    wait_states({"done": 1})
    reqs = MOCK.requests(since=since)
    assert trace(since=since) == [("POST", "/auth/token", 200), ("POST", "/api/Tickets", "dropped"),
                                  ("GET", "/api/Tickets", 200)], trace(since=since)
    assert reqs[2]["query"] == lookup_query(sid)
    mine = mock_tickets_by_sid()[sid]
    assert len(mine) == 1 and mine[0]["id"] > max(d["id"] for d in decoys), mine
    hid = check_delivered(sid, expected_payload(sid, "Long sid", "high"),
                          attempts=2, linked_by="found", result="found", posts=1)
    assert hid == mine[0]["id"]
    assert len(MOCK.tickets()) == 4


@timeout(60)
def test_310_character_sid_found_after_lost_answer():
    assert len(LONG_SID) == 310
    _long_sid_found_after_lost_answer(LONG_SID, honour_filter=True)


@timeout(60)
def test_310_character_sid_found_when_halo_ignores_the_filter():
    _long_sid_found_after_lost_answer(LONG_SID, honour_filter=False)


@timeout(60)
def test_non_ascii_sid_found_after_lost_answer():
    assert len(NON_ASCII_SID.encode("utf-8")) > 500
    _long_sid_found_after_lost_answer(NON_ASCII_SID, honour_filter=True)


@timeout(60)
def test_timeout_after_create_is_found():
    # Halo creates the ticket but answers after halo_itsm.request_timeout (3 s in the tests)
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "delay", "ms": 4000}})
    add_cases([("SLOW-1", "Slow Halo", "critical")])
    wait_states({"done": 1}, timeout=20)
    reqs = MOCK.requests()
    assert [(r["method"], r["path"]) for r in reqs] == \
        [("POST", "/auth/token"), ("POST", "/api/Tickets"), ("GET", "/api/Tickets")]
    assert reqs[2]["received_at"] - reqs[1]["received_at"] >= 2.9
    check_delivered("SLOW-1", expected_payload("SLOW-1", "Slow Halo", "critical"),
                    attempts=2, linked_by="found", result="found", posts=1)
    row = outbox("SLOW-1")
    assert row["last_error"].startswith("halo_itsm: POST /api/Tickets failed: Operation timed out"), row


@timeout(60)
def test_answer_after_truncate_restart_identity_links_nothing():
    """TRUNCATE outbox RESTART IDENTITY while a create is in flight: the next case takes
    the same outbox id and is claimed by the same worker (waiting for the lane) before the
    old answer arrives. The old answer is not recorded on it (its claim token differs);
    the new case gets its own ticket."""
    fresh_integration()
    q("TRUNCATE halo_itsm.outbox RESTART IDENTITY")
    mark_log = log_mark()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "delay", "ms": 2000}})
    add_cases([("TRUNC-OLD", "Created before the truncate", "high")])
    wait_until(lambda: creates(), timeout=10, interval=0.02, msg="the first create sent")
    old_id = q1("SELECT o.id FROM halo_itsm.outbox o WHERE o.state = 'in_flight'")
    assert old_id == 1
    q("TRUNCATE halo_itsm.outbox RESTART IDENTITY")
    add_cases([("TRUNC-NEW", "Queued after the truncate", "low")])
    # claimed while the first create is still unanswered: same id, same worker, in flight
    assert outbox("TRUNC-NEW")["id"] == old_id
    wait_until(lambda: outbox("TRUNC-NEW")["state"] == "in_flight", timeout=1.5, interval=0.02,
               msg="the new case claimed while the old answer is outstanding")
    assert creates()[0]["status"] is None, "the first create was answered too early"
    wait_states({"done": 1}, timeout=20)
    by_sid = mock_tickets_by_sid()
    assert sorted(by_sid) == ["TRUNC-NEW", "TRUNC-OLD"]
    assert len(by_sid["TRUNC-NEW"]) == 1 and len(by_sid["TRUNC-OLD"]) == 1, by_sid
    # the new case is linked to its own ticket, the old one (its row truncated) to none
    assert ticket_link("TRUNC-NEW")[:2] == (by_sid["TRUNC-NEW"][0]["id"], "created")
    assert ticket_link("TRUNC-OLD") is None
    row = outbox("TRUNC-NEW")
    assert (row["state"], row["result"], row["attempts"], row["halo_ticket_id"]) == \
        ("done", "created", 1, by_sid["TRUNC-NEW"][0]["id"]), row
    assert [r["json"][0]["third_party_id_string"] for r in creates()] == ["TRUNC-OLD", "TRUNC-NEW"]
    assert "halo_itsm: outbox item 1 was no longer claimed by this session; outcome created not recorded" \
        in server_log(mark_log)


@timeout(60)
def test_integration_deleted_mid_delivery_keeps_a_case_that_named_none():
    """A case that names no integration goes to the single enabled one; that integration
    is deleted while the create is in flight. The item goes back to the queue, unbound
    (the status view says so), and the next integration delivers it: the lookup finds the
    ticket the lost create made, so there is exactly one."""
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "delay", "ms": 2000}})
    add_cases([("UNBOUND-1", "Named no integration", "high")])
    wait_until(lambda: creates(), timeout=10, interval=0.02, msg="the create sent")
    q("DELETE FROM halo_itsm.integrations")
    row = outbox("UNBOUND-1")
    assert (row["state"], row["maybe_sent"], row["attempts"]) == ("pending", True, 0), row
    assert q1("SELECT integration_id FROM halo_itsm.outbox") is None
    assert q("SELECT integration_id, pending, in_flight, dead, problem FROM halo_itsm.status") == [
        (None, 1, 0, 0, "no enabled integration: call halo_itsm.connect() and halo_itsm.configure()")]
    # the late answer (Halo did create the ticket) is not recorded
    wait_until(lambda: creates()[0]["status"] == 200, timeout=10, msg="the create answered")
    time.sleep(0.3)
    assert ticket_link("UNBOUND-1") is None and outbox("UNBOUND-1")["state"] == "pending"
    iid = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'second')",
             "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", iid)
    wait_states({"done": 1}, timeout=20)
    mine = mock_tickets_by_sid()["UNBOUND-1"]
    assert len(mine) == 1, mine
    assert ticket_link("UNBOUND-1") == (mine[0]["id"], "found", iid)
    row = outbox("UNBOUND-1")
    assert (row["state"], row["result"], row["attempts"]) == ("done", "found", 1), row
    assert len(creates()) == 1
    assert q("SELECT integration_id, pending, in_flight, dead, problem FROM halo_itsm.status") == [
        (iid, 0, 0, 0, "ok")]


def _set_setting(name, value):
    """ALTER SYSTEM SET (or RESET, value None) a setting and reload the configuration."""
    if value is None:
        q("ALTER SYSTEM RESET %s" % name)
    else:
        q("ALTER SYSTEM SET %s = %%s" % name, value)
    q("SELECT pg_reload_conf()")


@timeout(60)
def test_random_faults_still_one_ticket_per_case():
    fresh_integration()
    # no item may die of bad luck here (the default gives up after 12 attempts)
    _set_setting("halo_itsm.max_attempts", "100")
    try:
        time.sleep(0.3)
        # creates and lookups fail at random: 500s, 429s, and answers lost after the work
        MOCK.faults({"path": "/api/Tickets", "random": {
            "seed": 7, "status_500": 0.15, "status_429": 0.05, "retry_after": "0",
            "drop_after_create": 0.15}})
        sids = ["RND-%02d" % i for i in range(25)]
        add_cases([(sid, "Case " + sid, "medium") for sid in sids])
        wait_states({"done": 25}, timeout=50)
    finally:
        _set_setting("halo_itsm.max_attempts", None)
    by_sid = mock_tickets_by_sid()
    assert sorted(by_sid) == sids
    assert [sid for sid in sids if len(by_sid[sid]) != 1] == []
    fired = [r for r in MOCK.requests(path="/api/Tickets") if r.get("fault")]
    assert len(fired) >= 5, "too few faults fired to mean anything: %d" % len(fired)
    for sid in sids:
        row = outbox(sid)
        link = ticket_link(sid)
        assert link[0] == by_sid[sid][0]["id"] == row["halo_ticket_id"], (sid, link, row)
        assert link[1] == row["result"] and row["result"] in ("created", "found"), (sid, row)
    # every ticket the mock created for a lost answer was found, not created again
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE result = 'found'") == \
        len([r for r in creates() if r["status"] == "dropped"])


# --- the worker killed mid-delivery -----------------------------------------------------

def _reconnect(old_pid, timeout=30):
    """After a crash restart: drop the dead connections, wait for a new worker."""
    def worker():
        close_connections()
        try:
            pid = q1(WORKER_PID_SQL)
        except psycopg2.Error:
            return None
        return pid if pid and pid != old_pid else None
    return wait_until(worker, timeout=timeout, interval=0.2, msg="a new delivery worker")


@timeout(60)
def test_worker_killed_mid_delivery():
    n = 15
    fresh_integration()
    MOCK.config(latency_ms=300)
    sids = ["KILL-%02d" % i for i in range(n)]
    add_cases([(sid, "Case " + sid, "high") for sid in sids])
    old_pid = q1(WORKER_PID_SQL)
    assert old_pid

    def create_in_flight():
        reqs = creates()
        busy = [r for r in reqs if r["status"] is None]
        if len([r for r in reqs if r["status"] == 200]) >= 2 and busy:
            return busy[0]
        return None
    busy = wait_until(create_in_flight, timeout=20, interval=0.02,
                      msg="a POST /api/Tickets in flight")
    killed_sid = busy["json"][0]["third_party_id_string"]
    # the mock creates first and waits its latency before answering
    wait_until(lambda: killed_sid in mock_tickets_by_sid(), timeout=0.2, interval=0.01)
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.time()
    new_pid = _reconnect(old_pid)
    assert new_pid != old_pid
    # the answer never reached the killed worker
    assert MOCK.requests(since=busy["seq"] - 1)[0]["answered_at"] >= killed_at - 0.05
    wait_states({"done": n}, timeout=40)

    by_sid = mock_tickets_by_sid()
    assert sorted(by_sid) == sids
    assert all(len(by_sid[sid]) == 1 for sid in sids), \
        {sid: [t["id"] for t in ts] for sid, ts in by_sid.items() if len(ts) > 1}
    # The worker claims one lane's worth ahead: the next case may have been claimed, waiting
    # for the lane, when the worker died. It was never sent, but nothing can tell: it is
    # looked up before it is sent, like the killed one.
    ahead_sid = sids[sids.index(killed_sid) + 1] if killed_sid != sids[-1] else None
    claimed_ahead = []
    for sid in sids:
        link = ticket_link(sid)
        assert link is not None and link[0] == by_sid[sid][0]["id"], (sid, link)
        row = outbox(sid)
        if sid == killed_sid:
            assert (row["state"], row["result"], row["attempts"], link[1]) == \
                ("done", "found", 2, "found"), row
            assert row["last_error"].startswith("halo_itsm: the session delivering this item ended"), row
        elif sid == ahead_sid and row["attempts"] == 2:
            assert (row["state"], row["result"], link[1]) == ("done", "created", "created"), row
            assert row["last_error"].startswith("halo_itsm: the session delivering this item ended"), row
            claimed_ahead.append(sid)
        else:
            assert (row["state"], row["result"], row["attempts"], link[1]) == \
                ("done", "created", 1, "created"), (sid, row)
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE state <> 'done'") == 0
    assert q1("SELECT count(*) FROM halo_itsm.tickets") == n
    # one create per case, except the killed one: its lookup found the ticket
    assert len(creates()) == n
    assert [r["query"] for r in MOCK.requests(path="/api/Tickets", method="GET")] == \
        [lookup_query(sid) for sid in [killed_sid] + claimed_ahead]

"""A hostile or broken Halo: a table of bad answers (NUL in notes, not JSON, truncated JSON,
numbers too big for anything, nesting too deep, bytes that are not UTF-8, wrong types for
every field the extension reads, HTML bombs) injected at every step of a delivery (token,
lookup, create) and of a sync (ticket, actions), one item each, beside items that get good
answers.

The rule these tests hold the extension to: nothing Halo answers ends the worker (same
pid throughout). An answer that cannot be used (not JSON, not the shape asked for, a field
the extension needs of the wrong type) fails its own item like a server error: retried
with backoff, and dead after halo_itsm.max_attempts (2 here) with the reason - what is
wrong and the start of the answer - in last_error and in the status view. A token answer
fails the items waiting for that token the same way. Answers whose odd fields the
extension can do without (a record_count that is no number, a status_id that is a word,
junk elements in a list of actions) are used; text PostgreSQL cannot store (NUL, lone
surrogates) becomes U+FFFD. An answer that fails while it is applied in the database is
recorded dead with the error, and the other items of the same round keep their outcomes.
"""
import base64
import json
import time

from halo_test import (connect_integrations, db, ensure_extension, fresh_integration, q, q1,
                       reset_system, set_system, timeout, wait_until, worker_pid)
from test_delivery import MOCK, add_cases

SETTINGS = {"halo_itsm.max_attempts": "2", "halo_itsm.backoff_base": "50ms",
            "halo_itsm.backoff_max": "200ms", "halo_itsm.poll_interval": "100ms",
            "halo_itsm.request_budget": "0", "halo_itsm.max_requests_per_instance": "4",
            # the mock's listen backlog is small: more connections at once time out
            "halo_itsm.max_concurrent_requests": "8"}
GAVE_UP = " (gave up after 2 attempts; SELECT halo_itsm.retry() tries again)"
PID = {}

# --- the table of bad answers -----------------------------------------------------------

HTML_BOMB = "<html><body>" + "<div>" * 20000 + "</body></html>"
NOT_USABLE_ANYWHERE = [
    # (name, raw body (str or bytes), why the extension says it cannot use it)
    ("Infinity", "Infinity", 'invalid input syntax for type json: Token "Infinity" is invalid.'),
    ("invalid JSON", '{"id": 1,,}', 'invalid input syntax for type json: Expected string, but found ",".'),
    ("truncated JSON", '{"record_count": 1, "tickets": [{"id": 10',
     "invalid input syntax for type json: The input string ended unexpectedly."),
    ("HTML bomb", HTML_BOMB, 'invalid input syntax for type json: Token "<" is invalid.'),
    ("empty body", "", "the answer is empty"),
    ("number too big", "1e1000000", "value overflows numeric format"),
    ("nesting too deep", "[" * 1000000, "stack depth limit exceeded"),
    ("not UTF-8", b'{"id": "\xff\xfe"}', "the answer is not valid UTF-8"),
    ("NUL byte", b'{"id": 5}\x00{"id": 6}', "the answer holds a NUL byte"),
]
WRONG_TYPES = {
    "token": ("it has no access_token string",
              [{"access_token": 5}, {"access_token": None}, {"access_token": ["tok"]},
               {"token": "tok"}, [{"access_token": "tok"}], "tok"]),
    "token-value": ("its access_token is empty, too long or holds characters a header cannot carry",
                    [{"access_token": ""}, {"access_token": "a\r\nX-Evil: 1"},
                     {"access_token": "t" * 20000}, {"access_token": "caf\u00e9"}]),
    "lookup": ("it is not a ticket list with usable ids",
               [{"record_count": 1, "tickets": {}}, {"tickets": "none"}, [], 5,
                {"tickets": [{"third_party_id_string": "{sid}", "id": "abc"}]},
                {"tickets": [{"third_party_id_string": "{sid}", "id": 0}]},
                {"tickets": [{"third_party_id_string": "{sid}", "id": -4}]},
                {"tickets": [{"third_party_id_string": "{sid}", "id": 1e30}]},
                {"tickets": [{"third_party_id_string": "{sid}", "id": True}]},
                {"record_count": 1e30, "tickets": [5, "x", None]},
                {"record_count": 2, "tickets": [{"id": "x"}, {"id": 1}]}]),
    "create": ("it has no ticket id",
               [{"id": "abc"}, {"id": 0}, {"id": -1}, {"id": 1.5}, {"id": 1e30}, {"id": True},
                {"id": None}, [], [{"id": None}], {"summary": "no id"}, "1001", [[1001]]]),
    "ticket": ("it is not a ticket object", [[], "ticket", 5, None, True, [{"id": 1}]]),
    "actions": ("it is not a list of actions",
                [{"actions": "none"}, {"actions": {}}, {"actions": 5}, {"record_count": 0},
                 5, "actions", None]),
}


def bad_answers(step):
    """[(name, raw bytes, why)] of the answers the extension cannot use at step."""
    out = [(name, body if isinstance(body, bytes) else body.encode(), why)
           for name, body, why in NOT_USABLE_ANYWHERE]
    for key in (step, step + "-value"):
        if key in WRONG_TYPES:
            why, bodies = WRONG_TYPES[key]
            out += [("wrong type %d" % i, json.dumps(b).encode(), why)
                    for i, b in enumerate(bodies)]
    return out


def excerpt(data, limit=200):
    """The start of an answer as the extension quotes it (http.c, hi_answer_excerpt)."""
    out, i = b"", 0
    while i < len(data) and len(out) < limit:
        b = data[i]
        if b < 0x80:
            out += b" " if b < 0x20 or b == 0x7f else bytes([b])
            i += 1
            continue
        n = 2 if b >> 5 == 6 else 3 if b >> 4 == 14 else 4 if b >> 3 == 30 else 0
        try:
            out += data[i:i + n].decode("utf-8").encode() if n else b"?"
            i += n or 1
        except UnicodeDecodeError:
            out += b"?"
            i += 1
    return out.decode() + ("..." if i < len(data) else "")


def reason(path, data, why):
    """The last_error of an item whose answers at path could not be used twice (a token
    answer is not quoted: it may hold a secret)."""
    quoted = "(not shown: it may hold a token)" if path.endswith("/token") else excerpt(data)
    return ("halo_itsm: Halo's answer 200 to %s cannot be used: %s; it reads: %s"
            % (path, why, quoted)) + GAVE_UP


def answer(data, **match):
    """A fault rule: the matched requests get 200 with data, always."""
    rule = {"count": -1, "action": {"type": "status", "status": 200,
                                    "raw_base64": base64.b64encode(data).decode(),
                                    "content_type": "application/json"}}
    rule.update(match)
    return rule


# --- checks -----------------------------------------------------------------------------

def setup_module():
    """The extension in halo; two attempts, quick retries; the worker's pid."""
    ensure_extension("halo")
    set_system(SETTINGS)
    PID["worker"] = wait_until(worker_pid, msg="the delivery worker runs")


def teardown_module():
    reset_system(list(SETTINGS))


def settle(stall=60):
    """Wait until no item is pending or in flight (the worker's pid must not change)."""
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox"
                          " WHERE state IN ('pending', 'in_flight')"),
               timeout=stall, msg="every item done or dead (%r)" % (
                   q("SELECT id, kind, state, attempts, last_error FROM halo_itsm.outbox"
                     " WHERE state IN ('pending', 'in_flight') ORDER BY id LIMIT 3"),))
    assert worker_pid() == PID["worker"], "the delivery worker restarted"


def outcomes(where="TRUE"):
    """{outbox id: (state, result, last_error)}."""
    return {r[0]: tuple(r[1:]) for r in q(
        "SELECT o.id, o.state, o.result, o.last_error FROM halo_itsm.outbox o WHERE " + where)}


def by_sid():
    """{sid: (outbox id, state, result, last_error, attempts)} of the cases' items."""
    return {r[0]: tuple(r[1:]) for r in q(
        "SELECT c.sid, o.id, o.state, o.result, o.last_error, o.attempts"
        "  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id")}


def check_status(iid, dead_ids, errors):
    """The status view counts the dead items and names the newest with its reason."""
    problem, dead = q("SELECT problem, dead FROM halo_itsm.status WHERE integration_id = %s",
                      iid)[0]
    newest = max(dead_ids)
    assert dead == len(dead_ids), (dead, len(dead_ids))
    assert problem == ("dead items: fix the cause, then SELECT halo_itsm.retry(%d); "
                       "newest: outbox item %d: %s" % (iid, newest, errors[newest])), problem


def check_round(expect_dead, expect_done, iid):
    """expect_dead {sid: last_error}, expect_done {sid: result}: exactly these outcomes."""
    got = by_sid()
    problems = []
    for sid, error in expect_dead.items():
        if got[sid][1:3] != ("dead", None) or got[sid][3] != error:
            problems.append("%s: %r, want dead with %r" % (sid, got[sid], error))
    for sid, result in expect_done.items():
        if got[sid][1:3] != ("done", result):
            problems.append("%s: %r, want done/%s" % (sid, got[sid], result))
    assert not problems, "%d of %d wrong:\n%s" % (len(problems), len(got), "\n".join(problems[:8]))
    assert len(got) == len(expect_dead) + len(expect_done)
    check_status(iid, [got[s][0] for s in expect_dead], {got[s][0]: e for s, e in expect_dead.items()})


# --- token ------------------------------------------------------------------------------

@timeout(120)
def test_bad_token_answers_fail_their_integrations_items_only():
    rows = bad_answers("token")
    ids = connect_integrations(len(rows) + 1, prefix="hostile")
    rules = [answer(data, method="POST", path="/token",
                    body_contains="client_id=hostile-client-%d&" % k)
             for k, (_, data, _) in enumerate(rows, start=1)]
    MOCK.faults(rules)
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " SELECT 'TOK-' || k, 'token row ' || k, 'high', (%s::int[])[k]"
      "   FROM generate_series(1, %s) k", ids, len(ids))
    settle()
    got = by_sid()
    for k, (name, data, why) in enumerate(rows, start=1):
        error = reason("POST %s/token" % MOCK.auth_url(), data, why)
        assert got["TOK-%d" % k][1:] == ("dead", None, error, 2), (name, got["TOK-%d" % k], error)
        check_status(ids[k - 1], [got["TOK-%d" % k][0]], {got["TOK-%d" % k][0]: error})
    # the integration whose token answer was good delivered its case
    last = len(ids)
    assert got["TOK-%d" % last][1:] == ("done", "created", None, 1), got["TOK-%d" % last]
    # once Halo answers properly, retry() delivers them all
    MOCK.clear_faults()
    assert q1("SELECT halo_itsm.retry()") == len(rows)
    settle()
    assert set(s for s, _, _ in outcomes().values()) == {"done"}
    assert worker_pid() == PID["worker"]


# --- lookup and create ------------------------------------------------------------------

@timeout(120)
def test_bad_lookup_and_create_answers_make_their_item_dead():
    iid = fresh_integration()
    rules, expect_dead, expect_done, cases = [], {}, {}, []
    # a lookup happens after a create whose answer was lost: drop that sid's first create
    for k, (name, data, why) in enumerate(bad_answers("lookup"), start=1):
        sid = "LKP-%03d" % k
        data = data.replace(b"{sid}", sid.encode())
        rules += [{"method": "POST", "path": "/api/Tickets", "body_contains": '"%s"' % sid,
                   "count": 1, "action": {"type": "drop"}},
                  answer(data, method="GET", path="/api/Tickets",
                         query={"third_party_id_string": sid})]
        expect_dead[sid] = reason("GET /api/Tickets", data, why)
        cases.append(sid)
    for k, (name, data, why) in enumerate(bad_answers("create"), start=1):
        sid = "CRT-%03d" % k
        rules.append(answer(data, method="POST", path="/api/Tickets", body_contains='"%s"' % sid))
        expect_dead[sid] = reason("POST /api/Tickets", data, why)
        cases.append(sid)
    # lookups whose odd fields the extension can do without: nothing found, so it creates
    for k, body in enumerate([{"record_count": "many", "tickets": []},
                              {"record_count": 1e30, "tickets": [{"third_party_id_string": 5, "id": 1}]}],
                             start=1):
        sid = "LOK-%03d" % k
        rules += [{"method": "POST", "path": "/api/Tickets", "body_contains": '"%s"' % sid,
                   "count": 1, "action": {"type": "drop"}},
                  answer(json.dumps(body).encode(), method="GET", path="/api/Tickets",
                         query={"third_party_id_string": sid})]
        expect_done[sid] = "created"
        cases.append(sid)
    for k in range(1, 4):
        expect_done["GOOD-%d" % k] = "created"
        cases.append("GOOD-%d" % k)
    MOCK.faults(rules)
    add_cases([(sid, "hostile " + sid, "medium") for sid in cases])
    settle()
    check_round(expect_dead, expect_done, iid)
    # every delivered case has exactly one ticket, and no dead one has any
    tickets = {}
    for t in MOCK.tickets():
        tickets.setdefault(t["third_party_id_string"], []).append(t["id"])
    assert sorted(tickets) == sorted(expect_done) and all(len(v) == 1 for v in tickets.values()), tickets


# --- ticket and actions (syncs) ---------------------------------------------------------

def linked_tickets(sids):
    """Deliver cases sids; {sid: Halo ticket id}."""
    add_cases([(sid, "sync " + sid, "low") for sid in sids])
    settle()
    return dict(q("SELECT c.sid, t.halo_ticket_id FROM halo_itsm.tickets t"
                  "  JOIN halo_itsm.cases c ON c.id = t.case_id"))


def queue_syncs(iid, ticket_ids):
    """Queue a sync of each ticket, all in one transaction (one wake-up)."""
    q("SELECT halo_itsm._queue_sync(%s, t) FROM unnest(%s::bigint[]) t", iid, list(ticket_ids))


def syncs():
    """{Halo ticket id: (outbox id, state, result, last_error)} of the sync items."""
    return {r[0]: tuple(r[1:]) for r in q(
        "SELECT o.halo_ticket_id, o.id, o.state, o.result, o.last_error"
        "  FROM halo_itsm.outbox o WHERE o.kind = 'sync'")}


def notes(sid):
    """The bodies of the Halo notes on sid's timeline, by action id."""
    return dict(q("SELECT t.halo_action_id, t.body FROM halo_itsm.timeline t"
                  "  JOIN halo_itsm.cases c ON c.id = t.case_id"
                  " WHERE c.sid = %s AND t.kind = 'note'", sid))


@timeout(180)
def test_bad_ticket_and_actions_answers_make_their_sync_dead():
    iid = fresh_integration()
    ticket_rows = bad_answers("ticket")
    action_rows = bad_answers("actions")
    odd_tickets = [{"status_id": "closed", "hasbeenclosed": "yes", "agent_name": {},
                    "closure_note": [], "dateclosed": 5},
                   {"status_id": 1e30, "hasbeenclosed": None}, {"status_id": -9, "id": "x"}]
    sids = (["TKT-%03d" % k for k in range(len(ticket_rows))]
            + ["ACT-%03d" % k for k in range(len(action_rows))]
            + ["ODD-%03d" % k for k in range(len(odd_tickets))] + ["NUL-1", "JUNK-1", "GOOD-1"])
    tid = linked_tickets(sids)
    # real notes in Halo: one with NUL (the crash of issue 9), one plain
    MOCK.add_note(tid["NUL-1"], "before\u0000after end", "Eve")
    MOCK.add_note(tid["GOOD-1"], "a plain note", "Bob")
    rules, expect = [], {}
    for k, (name, data, why) in enumerate(ticket_rows):
        t = tid["TKT-%03d" % k]
        rules.append(answer(data, method="GET", path="/api/Tickets/%d" % t))
        expect[t] = ("dead", None, reason("GET /api/Tickets/%d" % t, data, why))
    for k, (name, data, why) in enumerate(action_rows):
        t = tid["ACT-%03d" % k]
        rules.append(answer(data, method="GET", path="/api/Actions", query={"ticket_id": str(t)}))
        expect[t] = ("dead", None, reason("GET /api/Actions", data, why))
    for k, body in enumerate(odd_tickets):
        t = tid["ODD-%03d" % k]
        rules.append(answer(json.dumps(dict(body, id=body.get("id", t))).encode(),
                            method="GET", path="/api/Tickets/%d" % t))
        expect[t] = ("done", "synced", None)
    # actions with junk around one good note, an HTML bomb in note_html, and NUL escapes
    junk = {"ticket_id": tid["JUNK-1"], "record_count": 9, "actions": [
        5, "x", None, [], {"id": "x", "note": "no id"}, {"id": 6001, "note": 7},
        {"id": 6002, "note": "kept", "datetime": 12, "who": [], "hiddenfromuser": "x",
         "ticket_id": tid["JUNK-1"]},
        {"id": 6003, "note_html": "<b>" * 100000 + "bold &#233;&#x263A;" + "</b>" * 100000},
        {"id": 6004, "note": "nul \u0000 and \udc00 here"},
        {"id": 6005, "note": "other ticket", "ticket_id": "elsewhere"},
        {"id": 6006, "note": "system", "action_systemid": 21, "who_type": 0}]}
    rules.append(answer(json.dumps(junk).encode(), method="GET", path="/api/Actions",
                        query={"ticket_id": str(tid["JUNK-1"])}))
    for sid in ("NUL-1", "JUNK-1", "GOOD-1"):
        expect[tid[sid]] = ("done", "synced", None)
    MOCK.faults(rules)
    queue_syncs(iid, tid.values())
    settle()
    got = {t: v[1:] for t, v in syncs().items()}
    wrong = ["%d: %r, want %r" % (t, got[t], want) for t, want in expect.items() if got[t] != want]
    assert not wrong, "%d wrong:\n%s" % (len(wrong), "\n".join(wrong[:8]))
    dead = {v[0]: v[3] for v in syncs().values() if v[1] == "dead"}
    check_status(iid, list(dead), dead)
    # what the answers carried is applied, NUL and lone surrogates as U+FFFD
    assert notes("NUL-1") == {
        a["id"]: "before\ufffdafter end" for a in MOCK.actions()
        if a["ticket_id"] == tid["NUL-1"] and not a["action_systemid"]}, notes("NUL-1")
    assert notes("JUNK-1") == {6002: "kept", 6003: "bold \u00e9\u263a",
                               6004: "nul \ufffd and \ufffd here"}, notes("JUNK-1")
    assert list(notes("GOOD-1").values()) == ["a plain note"]
    assert q1("SELECT count(*) FROM halo_itsm.cases WHERE status <> 'open'") == 0


@timeout(120)
def test_apply_failing_in_the_database_is_dead_and_the_round_keeps_its_outcomes():
    # A failure while the answers are applied (here a trigger standing for anything the
    # database refuses) fails that item alone: the others recorded in the same
    # transaction keep their outcomes, and cases created meanwhile are delivered.
    iid = fresh_integration()
    tid = linked_tickets(["APPLY-%d" % k for k in range(1, 6)])
    for k in range(1, 6):
        MOCK.add_note(tid["APPLY-%d" % k], "boom" if k == 3 else "note %d" % k, "Eve")
    q("CREATE FUNCTION halo_itsm.test_refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$"
      " BEGIN IF NEW.body = 'boom' THEN"
      "   RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = 'check_violation';"
      " END IF; RETURN NEW; END $$")
    q("CREATE TRIGGER test_refuse_boom BEFORE INSERT ON halo_itsm.timeline"
      " FOR EACH ROW EXECUTE FUNCTION halo_itsm.test_refuse_boom()")
    try:
        queue_syncs(iid, tid.values())
        add_cases([("APPLY-NEW", "created beside the syncs", "low")])
        settle()
    finally:
        q("DROP TRIGGER test_refuse_boom ON halo_itsm.timeline")
        q("DROP FUNCTION halo_itsm.test_refuse_boom()")
    got = syncs()
    bad = tid["APPLY-3"]
    error = ("halo_itsm: Halo's answers for ticket %d could not be applied: refused by a test trigger"
             % bad)
    assert got[bad][1:] == ("dead", None, error), got[bad]
    assert all(v[1:] == ("done", "synced", None) for t, v in got.items() if t != bad), got
    for k in (1, 2, 4, 5):
        assert list(notes("APPLY-%d" % k).values()) == ["note %d" % k]
    assert notes("APPLY-3") == {}
    assert by_sid()["APPLY-NEW"][1:3] == ("done", "created")
    check_status(iid, [got[bad][0]], {got[bad][0]: error})
    # fixed: retry() applies it
    assert q1("SELECT halo_itsm.retry()") == 1
    settle()
    assert list(notes("APPLY-3").values()) == ["boom"]


@timeout(120)
def test_deliver_in_a_session_survives_the_same_answers():
    # CALL halo_itsm.deliver() (database halo_manual, no worker) records through the same
    # code: an answer it cannot use or apply fails that item, not the CALL.
    dbname = "halo_manual"
    ensure_extension(dbname)
    iid = fresh_integration(dbname)
    conn = db(dbname)
    pid = q1("SELECT pg_backend_pid()", db=dbname)

    def deliver_until_settled():
        """CALL deliver() until nothing is pending (retries wait their backoff)."""
        for _ in range(40):
            with conn.cursor() as cur:
                cur.execute("CALL halo_itsm.deliver()")
            if not q1("SELECT count(*) FROM halo_itsm.outbox WHERE state IN ('pending', 'in_flight')",
                      db=dbname):
                return
            time.sleep(0.2)
        raise AssertionError("deliver() left items pending")

    sids = ["MAN-NUL", "MAN-INF", "MAN-BOOM", "MAN-GOOD"]
    add_cases([(sid, "manual " + sid, "low") for sid in sids], dbname=dbname)
    deliver_until_settled()
    tid = dict(q("SELECT c.sid, t.halo_ticket_id FROM halo_itsm.tickets t"
                 "  JOIN halo_itsm.cases c ON c.id = t.case_id", db=dbname))
    MOCK.add_note(tid["MAN-NUL"], "nul\u0000here", "Eve")
    MOCK.add_note(tid["MAN-BOOM"], "boom", "Eve")
    MOCK.add_note(tid["MAN-GOOD"], "fine", "Bob")
    MOCK.faults(answer(b"Infinity", method="GET", path="/api/Tickets/%d" % tid["MAN-INF"]))
    q("CREATE FUNCTION halo_itsm.test_refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$"
      " BEGIN IF NEW.body = 'boom' THEN"
      "   RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = 'check_violation';"
      " END IF; RETURN NEW; END $$", db=dbname)
    q("CREATE TRIGGER test_refuse_boom BEFORE INSERT ON halo_itsm.timeline"
      " FOR EACH ROW EXECUTE FUNCTION halo_itsm.test_refuse_boom()", db=dbname)
    try:
        q("SELECT halo_itsm._queue_sync(%s, t) FROM unnest(%s::bigint[]) t",
          iid, list(tid.values()), db=dbname)
        deliver_until_settled()
    finally:
        q("DROP TRIGGER test_refuse_boom ON halo_itsm.timeline", db=dbname)
        q("DROP FUNCTION halo_itsm.test_refuse_boom()", db=dbname)
    got = dict((r[0], r[1:]) for r in q(
        "SELECT o.halo_ticket_id, o.state, o.last_error FROM halo_itsm.outbox o"
        " WHERE o.kind = 'sync'", db=dbname))
    assert got == {
        tid["MAN-NUL"]: ("done", None),
        tid["MAN-INF"]: ("dead", reason("GET /api/Tickets/%d" % tid["MAN-INF"], b"Infinity",
                                        NOT_USABLE_ANYWHERE[0][2])),
        tid["MAN-BOOM"]: ("dead", "halo_itsm: Halo's answers for ticket %d could not be applied:"
                                  " refused by a test trigger" % tid["MAN-BOOM"]),
        tid["MAN-GOOD"]: ("done", None)}, got
    assert q1("SELECT pg_backend_pid()", db=dbname) == pid
    assert q("SELECT c.sid, t.body FROM halo_itsm.timeline t JOIN halo_itsm.cases c"
             " ON c.id = t.case_id WHERE t.kind = 'note' ORDER BY 1", db=dbname) == [
        ("MAN-GOOD", "fine"), ("MAN-NUL", "nul\ufffdhere")]


@timeout(60)
def test_check_connection_refuses_a_token_a_header_cannot_carry():
    # check_connection() reads the token answer by the same rule: a token with CR LF
    # (which would add a header line of Halo's choosing) is not sent anywhere
    iid = fresh_integration(team="SOC")
    MOCK.faults(answer(json.dumps({"access_token": "abc\r\nX-Evil: 1", "expires_in": 3600}).encode(),
                       method="POST", path="/token"))
    got = q1("SELECT halo_itsm.check_connection(%s)", iid)
    assert got["token"] == "failed", got
    assert [(r["method"], r["path"]) for r in MOCK.requests()] == \
        [("GET", "/api/authinfo"), ("POST", "/token")]

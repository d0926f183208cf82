"""Outbound delivery by the real background worker (database halo) to the mock Halo over
HTTP: the exact ticket JSON, token caching and renewal, retries, dead items and retry(),
the status view, and the wake-up at commit. Helpers shared with test_delivery_faults and
test_deliver_manual live here too (run.py runs a module's own test_* functions only).
"""
import json
import socket
import time
import urllib.parse
from email.utils import formatdate


from halo_test import (Mock, MOCK_PORT, db, ensure_extension, fresh_integration, q, q1,
                       reset_system, set_system, timeout, wait_until)

MOCK = Mock()
SCOPE = "read:tickets edit:tickets read:customers"
PRIORITY = {"critical": 1, "high": 2, "medium": 3, "low": 4, "info": 4}


# --- helpers (also imported by the other delivery modules) ------------------------------

def expected_payload(sid, title, severity, description=None, kind="case",
                     template="{{sid}}: {{title}}", category="Security>Incident",
                     team=None, client=None, tickettype_id=1, priority_id=None):
    """The ticket object halo_itsm must POST, built independently of the extension."""
    lines = []
    if description:
        lines += [description, ""]
    lines += ["Severity: " + severity.capitalize(),
              ("Case: " if kind == "case" else "Detection: ") + sid]
    summary = (template.replace("{{sid}}", sid).replace("{{title}}", title)
               .replace("{{severity}}", severity))
    obj = {"summary": summary, "details": "\n".join(lines), "tickettype_id": tickettype_id,
           "priority_id": PRIORITY[severity] if priority_id is None else priority_id,
           "category_1": category, "third_party_id_string": sid}
    if team is not None:
        obj["team"] = team
    if client is not None:
        obj["client_id"] = client
    return obj


def add_cases(rows, dbname="halo"):
    """Insert cases (sid, title, severity[, description]) in one statement (one commit)."""
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    args = []
    for r in rows:
        args += [r[0], r[1], r[2], r[3] if len(r) > 3 else None]
    q("INSERT INTO halo_itsm.cases (sid, title, severity, description) VALUES " + values,
      *args, db=dbname)


def outbox(sid, dbname="halo"):
    """The outbox row of a case or detection by sid, as a dict."""
    rows = q("""SELECT o.kind, o.state, o.attempts, o.result, o.last_http_status, o.last_error,
                       o.maybe_sent, o.halo_ticket_id, o.id
                  FROM halo_itsm.outbox o
                  LEFT JOIN halo_itsm.cases c ON c.id = o.case_id
                  LEFT JOIN halo_itsm.detections d ON d.id = o.detection_id
                 WHERE coalesce(c.sid, d.sid) = %s""", sid, db=dbname)
    assert len(rows) == 1, "outbox rows for %s: %r" % (sid, rows)
    keys = ("kind", "state", "attempts", "result", "last_http_status", "last_error",
            "maybe_sent", "halo_ticket_id", "id")
    return dict(zip(keys, rows[0]))


def ticket_link(sid, dbname="halo"):
    """(halo_ticket_id, linked_by, integration_id) of the tickets row of a sid, or None."""
    rows = q("""SELECT t.halo_ticket_id, t.linked_by, t.integration_id
                  FROM halo_itsm.tickets t
                  LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
                  LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id
                 WHERE coalesce(c.sid, d.sid) = %s""", sid, db=dbname)
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def wait_states(expected, dbname="halo", timeout=20):
    """Wait until the outbox holds exactly these states, e.g. {'done': 3}; returns them."""
    def states():
        got = dict(q("SELECT state, count(*) FROM halo_itsm.outbox GROUP BY state", db=dbname))
        return got if got == expected else None
    return wait_until(states, timeout=timeout, msg="outbox states %r (have %r)" % (
        expected, dict(q("SELECT state, count(*) FROM halo_itsm.outbox GROUP BY state",
                         db=dbname))))


def mock_tickets_by_sid(mock=MOCK):
    """{third_party_id_string: [ticket, ...]} of every ticket stored in the mock."""
    out = {}
    for t in mock.tickets():
        out.setdefault(t.get("third_party_id_string"), []).append(t)
    return out


def creates(mock=MOCK, since=0):
    """The POST /api/Tickets requests the mock received."""
    return mock.requests(path="/api/Tickets", method="POST", since=since)


def creates_for(sid, mock=MOCK, since=0):
    """The POST /api/Tickets requests whose ticket is sid's, oldest first."""
    return [r for r in creates(mock, since)
            if isinstance(r["json"], list) and r["json"]
            and r["json"][0].get("third_party_id_string") == sid]


def trace(mock=MOCK, since=0):
    """[(method, path, status)] of the requests the mock received, oldest first."""
    return [(r["method"], r["path"], r["status"]) for r in mock.requests(since=since)]


def last_seq(mock=MOCK):
    """The sequence number of the last request the mock logged (0 when none)."""
    reqs = mock.requests()
    return reqs[-1]["seq"] if reqs else 0


def token_form(req):
    """The form fields of a POST /auth/token request, as a plain dict."""
    form = urllib.parse.parse_qs(req["body"], keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in form.values()), form
    return {k: v[0] for k, v in form.items()}


def lookup_query(sid):
    """The query of the worker's first lookup of sid's ticket (by third_party_id_string,
    newest first, five at most), as the mock logs it."""
    return {"third_party_id_string": [sid], "order": ["id"], "orderdesc": ["true"],
            "pageinate": ["true"], "page_size": ["5"], "page_no": ["1"]}


def search_query(term, page=1):
    """The query of the worker's lookup by search (after the filter by
    third_party_id_string found nothing it could confirm), as the mock logs it."""
    return {"search": [term], "order": ["id"], "orderdesc": ["true"], "pageinate": ["true"],
            "page_size": ["25"], "page_no": [str(page)]}


def check_delivered(sid, payload, kind="case", dbname="halo", attempts=1, mock=MOCK,
                    linked_by="created", result="created", posts=None):
    """The mock got exactly payload for sid (an array of one object) in each of its posts
    (as many as attempts unless given) and accepted the last; it equals ticket_payload();
    the ticket stored in the mock has those fields, and the tickets and outbox rows record
    it. Returns the Halo ticket id."""
    reqs = creates_for(sid, mock)
    assert len(reqs) == (attempts if posts is None else posts), \
        "POST /api/Tickets for %s: %r" % (sid, reqs)
    for req in reqs:
        assert req["json"] == [payload], "posted %r\nexpected %r" % (req["json"], [payload])
        assert req["headers"]["content-type"] == "application/json", req["headers"]
        assert req["headers"]["authorization"].startswith("Bearer "), req["headers"]
    if result == "created":
        assert [r["status"] for r in reqs][-1] == 200, reqs
    assert q1("SELECT halo_itsm.ticket_payload(%s, %s)", kind, sid, db=dbname) == payload
    stored = mock_tickets_by_sid(mock)[sid]
    assert len(stored) == 1, stored
    hid = stored[0]["id"]
    assert {k: stored[0][k] for k in payload} == payload, stored[0]
    link = ticket_link(sid, dbname)
    assert link is not None and link[:2] == (hid, linked_by), (sid, link, hid)
    row = outbox(sid, dbname)
    assert (row["kind"], row["state"], row["attempts"], row["result"], row["last_http_status"],
            row["halo_ticket_id"], row["maybe_sent"]) == \
        (kind, "done", attempts, result, 200, hid, False), row
    return hid


STATUS_COLUMNS = ("integration_id", "name", "enabled", "pending", "in_flight", "dead",
                  "oldest_pending_age", "last_success_at", "last_error", "last_error_at",
                  "problem")


def status_row(iid, dbname="halo"):
    """The status view's row of an integration, as a dict."""
    rows = q("SELECT %s FROM halo_itsm.status WHERE integration_id = %%s"
             % ", ".join(STATUS_COLUMNS), iid, db=dbname)
    assert len(rows) == 1, "status rows for integration %s: %r" % (iid, rows)
    return dict(zip(STATUS_COLUMNS, rows[0]))


def setup_module():
    """The extension in both databases."""
    ensure_extension("halo")
    ensure_extension("halo_manual")


# --- the ticket JSON --------------------------------------------------------------------

@timeout(60)
def test_ticket_json_for_every_severity():
    template = "[{{severity}}] {{sid}}: {{title}}"
    iid = fresh_integration(team="SOC", client=12, case_title_template=template)
    cases = [("SEV-crit", "Ransomware on FS01", "critical", "Encrypted files on \\\\fs01\\share"),
             ("SEV-high", 'Login "über" VPN', "high", "Line one\nLine two\twith tab"),
             ("SEV-med", "Port scan", "medium", None),
             ("SEV-low", "Phishing mail", "low", ""),
             ("SEV-info", "Policy notice", "info", "FYI")]
    add_cases(cases)
    wait_states({"done": 5})
    for sid, title, severity, desc in cases:
        payload = expected_payload(sid, title, severity, desc, template=template,
                                   team="SOC", client=12)
        check_delivered(sid, payload)
    assert len(creates()) == 5
    assert q("SELECT DISTINCT integration_id FROM halo_itsm.tickets") == [(iid,)]
    # the mock numbers tickets from 1001 in the order the worker sent them (by outbox id)
    assert [t["third_party_id_string"] for t in sorted(MOCK.tickets(), key=lambda t: t["id"])] \
        == [c[0] for c in cases]


@timeout(60)
def test_ticket_json_with_custom_ids_and_no_team_or_client():
    iid = fresh_integration(category="Security")
    q("SELECT halo_itsm.configure_ids(%s, tickettype_id => 7, priority_critical => 11,"
      " priority_high => 12, priority_medium => 13, priority_low => 14, priority_info => 15)", iid)
    cases = [("IDS-%s" % s, "Title " + s, s) for s in PRIORITY]
    add_cases(cases)
    wait_states({"done": 5})
    for n, (sid, title, severity) in enumerate(cases):
        payload = expected_payload(sid, title, severity, category="Security",
                                   tickettype_id=7, priority_id=11 + n)
        assert "team" not in payload and "client_id" not in payload
        check_delivered(sid, payload)


@timeout(60)
def test_extra_ticket_fields():
    """configure_ticket_fields(): the fields are in the exact JSON Halo receives (the mock
    checks each ticket field against Halo's Faults schema), next to the owned ones."""
    iid = fresh_integration(team="SOC")
    extra = {"impact": 2, "urgency": 3, "site_id": 18, "user_id": 41,
             "customfields": [{"id": 7, "value": "SOC"}], "dont_do_rules": True}
    q("SELECT halo_itsm.configure_ticket_fields(%s, %s::jsonb)", iid, json.dumps(extra))
    add_cases([("XF-1", "Mandatory fields", "high", "Impact and urgency set")])
    wait_states({"done": 1})
    payload = dict(extra, **expected_payload("XF-1", "Mandatory fields", "high",
                                             "Impact and urgency set", team="SOC"))
    assert len(payload) == 13, payload  # 6 extra + 7 owned (no client_id)
    check_delivered("XF-1", payload)


@timeout(60)
def test_standalone_detection_ticket():
    template = "Detection {{sid}} ({{severity}}): {{title}}"
    fresh_integration(team="SOC", standalone_detection_tickets=True,
                      detection_title_template=template)
    add_cases([("DC-1", "Case with a detection", "high")])
    case_id = q1("SELECT id FROM halo_itsm.cases WHERE sid = 'DC-1'")
    q("""INSERT INTO halo_itsm.detections (sid, title, severity, description, status, case_id)
         VALUES ('DET-open', 'Still open', 'medium', NULL, 'open', NULL),
                ('DET-in-case', 'Closed in a case', 'high', NULL, 'closed', %s),
                ('DET-alone', 'Closed alone', 'low', 'Beacon to 203.0.113.9', 'closed', NULL)""",
      case_id)
    wait_states({"done": 2})
    # an open detection gets its ticket when it is closed without a case
    q("UPDATE halo_itsm.detections SET status = 'closed', closed_at = now() WHERE sid = 'DET-open'")
    wait_states({"done": 3})
    time.sleep(0.3)
    assert sorted(q("""SELECT o.kind, coalesce(c.sid, d.sid) FROM halo_itsm.outbox o
                        LEFT JOIN halo_itsm.cases c ON c.id = o.case_id
                        LEFT JOIN halo_itsm.detections d ON d.id = o.detection_id""")) == \
        [("case", "DC-1"), ("detection", "DET-alone"), ("detection", "DET-open")]
    check_delivered("DET-alone", expected_payload(
        "DET-alone", "Closed alone", "low", "Beacon to 203.0.113.9", kind="detection",
        template=template, team="SOC"), kind="detection")
    check_delivered("DET-open", expected_payload(
        "DET-open", "Still open", "medium", kind="detection", template=template, team="SOC"),
        kind="detection")
    check_delivered("DC-1", expected_payload("DC-1", "Case with a detection", "high", team="SOC"))
    assert "DET-in-case" not in mock_tickets_by_sid()
    assert len(creates()) == 3
    # closing again (or re-opening and closing) never queues a second ticket
    q("UPDATE halo_itsm.detections SET status = 'open' WHERE sid = 'DET-alone'")
    q("UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'DET-alone'")
    time.sleep(0.5)
    assert q1("SELECT count(*) FROM halo_itsm.outbox") == 3
    assert len(creates()) == 3


# --- tokens -----------------------------------------------------------------------------

@timeout(60)
def test_one_token_for_many_cases():
    fresh_integration()
    add_cases([("TOK-%d" % i, "Case %d" % i, "medium") for i in range(6)])
    wait_states({"done": 6})
    reqs = MOCK.requests()
    # the authorisation server is discovered once (GET /api/authinfo on the instance)
    assert [(r["server"], r["method"], r["path"], r["status"]) for r in reqs] == \
        [("instance", "GET", "/api/authinfo", 200), ("auth", "POST", "/token", 200)] + \
        [("instance", "POST", "/api/Tickets", 200)] * 6
    assert "authorization" not in reqs[0]["headers"]
    tok = reqs[1]
    assert tok["query"] == {}
    assert tok["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in tok["headers"]
    assert token_form(tok) == {"grant_type": "client_credentials", "client_id": "test-client",
                               "client_secret": "test-secret", "scope": SCOPE}
    bearers = {r["headers"]["authorization"] for r in reqs[2:]}
    assert len(bearers) == 1, bearers
    assert sorted(mock_tickets_by_sid()) == ["TOK-%d" % i for i in range(6)]


@timeout(60)
def test_token_request_with_tenant():
    fresh_integration(tenant="acme", client_id="acme-app", client_secret="acme s3cret&=+")
    MOCK.config(clients=[{"client_id": "acme-app", "client_secret": "acme s3cret&=+",
                          "tenant": "acme"}])
    add_cases([("TEN-1", "Tenant case", "high")])
    wait_states({"done": 1})
    reqs = MOCK.requests()
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                       ("POST", "/api/Tickets", 200)]
    assert reqs[1]["query"] == {"tenant": ["acme"]}
    assert token_form(reqs[1]) == {"grant_type": "client_credentials", "client_id": "acme-app",
                                   "client_secret": "acme s3cret&=+", "scope": SCOPE}
    check_delivered("TEN-1", expected_payload("TEN-1", "Tenant case", "high"))


@timeout(60)
def test_token_renewed_once_after_401():
    fresh_integration()
    add_cases([("REN-1", "First", "low")])
    wait_states({"done": 1})
    mark = last_seq()
    # Halo revokes every token just before handling the next create: it answers 401
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "expire_tokens"}})
    add_cases([("REN-2", "Second", "high")])
    wait_states({"done": 2})
    reqs = MOCK.requests(since=mark)
    # a renewal asks the same authorisation server: no second discovery
    assert trace(since=mark) == [("POST", "/api/Tickets", 401), ("POST", "/token", 200),
                                 ("POST", "/api/Tickets", 200)]
    assert reqs[0]["json"] == reqs[2]["json"] == [expected_payload("REN-2", "Second", "high")]
    assert reqs[0]["headers"]["authorization"] != reqs[2]["headers"]["authorization"]
    # the renewal is not an attempt, and there is no duplicate
    check_delivered("REN-2", expected_payload("REN-2", "Second", "high"), attempts=1, posts=2)
    assert len(mock_tickets_by_sid()["REN-2"]) == 1


@timeout(60)
def test_second_401_after_renewal_is_dead():
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 2,
                 "action": {"type": "status", "status": 401, "body": {"error": "invalid_token"}}})
    add_cases([("R401-1", "Refused", "medium")])
    wait_states({"dead": 1})
    time.sleep(0.5)
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                       ("POST", "/api/Tickets", 401),
                       ("POST", "/token", 200), ("POST", "/api/Tickets", 401)]
    row = outbox("R401-1")
    assert (row["state"], row["attempts"], row["last_http_status"]) == ("dead", 1, 401), row
    assert row["last_error"] == (
        'halo_itsm: Halo answered 401 to POST /api/Tickets (check the client ID and secret with'
        ' halo_itsm.set_credentials()): {"error": "invalid_token"}'), row["last_error"]
    assert MOCK.tickets() == []


@timeout(60)
def test_token_renewed_before_it_expires():
    # the worker renews a token a tenth of its lifetime (at most a minute) before it
    # expires: 10 s leave it 9 s of use
    fresh_integration()
    MOCK.config(token_expires_in=10)
    add_cases([("EXP-1", "One", "low")])
    wait_states({"done": 1})
    issued = MOCK.requests(path="/token")[0]["answered_at"]
    add_cases([("EXP-2", "Two", "low")])
    wait_states({"done": 2})
    assert time.time() - issued < 8, "too slow for this test's 9 s window"
    assert [r["path"] for r in MOCK.requests()] == \
        ["/api/authinfo", "/token", "/api/Tickets", "/api/Tickets"]
    time.sleep(max(0, issued + 9.3 - time.time()))
    mark = last_seq()
    add_cases([("EXP-3", "Three", "low")])
    wait_states({"done": 3})
    # a fresh token first (from the server discovered before), no 401 on the way
    assert trace(since=mark) == [("POST", "/token", 200), ("POST", "/api/Tickets", 200)]
    assert len(creates()) == 3 and len(MOCK.tickets()) == 3


# --- retries ----------------------------------------------------------------------------

@timeout(60)
def test_two_500s_then_success():
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 2,
                 "action": {"type": "status", "status": 500}})
    add_cases([("RET-1", "Flaky Halo", "critical")])
    wait_states({"done": 1})
    reqs = MOCK.requests()
    # a 500 may have created the ticket: every retry looks it up before creating again
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                       ("POST", "/api/Tickets", 500), ("GET", "/api/Tickets", 200),
                       ("POST", "/api/Tickets", 500), ("GET", "/api/Tickets", 200),
                       ("POST", "/api/Tickets", 200)]
    assert reqs[3]["query"] == reqs[5]["query"] == lookup_query("RET-1")
    payload = expected_payload("RET-1", "Flaky Halo", "critical")
    assert reqs[2]["json"] == reqs[4]["json"] == reqs[6]["json"] == [payload]
    assert len(mock_tickets_by_sid()["RET-1"]) == 1
    row = outbox("RET-1")
    assert (row["state"], row["attempts"], row["result"], row["last_http_status"]) == \
        ("done", 3, "created", 200), row
    # the error of the last failed attempt stays on the row for the record
    assert row["last_error"] == \
        "halo_itsm: Halo answered 500 to POST /api/Tickets: " + '{"error": "injected fault", "status": 500}'
    assert ticket_link("RET-1")[:2] == (mock_tickets_by_sid()["RET-1"][0]["id"], "created")


@timeout(60)
def test_429_waits_for_retry_after_seconds():
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "status", "status": 429, "retry_after": "1",
                            "body": {"error": "too many requests"}}})
    add_cases([("RL-1", "Rate limited", "high")])
    wait_states({"done": 1})
    reqs = MOCK.requests()
    # a 429 did not create anything: no lookup
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                       ("POST", "/api/Tickets", 429), ("POST", "/api/Tickets", 200)]
    waited = reqs[3]["received_at"] - reqs[2]["answered_at"]
    assert 0.95 <= waited < 2.5, "retried after %.3f s, Retry-After said 1 s" % waited
    check_delivered("RL-1", expected_payload("RL-1", "Rate limited", "high"), attempts=2)


@timeout(60)
def test_429_without_retry_after_backs_off_exponentially():
    # hosted Halo's 429 carries its "Rate Limit Reached" body and no Retry-After: the
    # retries wait backoff_base x 2^(attempt-1) with equal jitter (test.conf: 100 ms base,
    # 2 s cap), so half to all of 100, 200 and 400 ms
    fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 3,
                 "action": {"type": "status", "status": 429,
                            "body": {"ClassName": "HaloRateLimitException",
                                     "Message": "Rate Limit Reached - 300 Requests per rolling 5 minute window"}}})
    add_cases([("RLN-1", "Rate limited, no Retry-After", "high")])
    wait_states({"done": 1})
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200)] + \
        [("POST", "/api/Tickets", 429)] * 3 + [("POST", "/api/Tickets", 200)]
    reqs = creates()
    assert all("retry_after" not in r["fault"] for r in reqs[:3])
    for k, (lo, hi) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.2, 0.4)]):
        waited = reqs[k + 1]["received_at"] - reqs[k]["answered_at"]
        assert lo - 0.005 <= waited < hi + 0.35, "retry %d after %.3f s, want %.2f..%.2f s" % (
            k + 1, waited, lo, hi)
    row = outbox("RLN-1")
    assert (row["state"], row["attempts"], row["result"]) == ("done", 4, "created"), row
    check_delivered("RLN-1", expected_payload("RLN-1", "Rate limited, no Retry-After", "high"), attempts=4)


@timeout(60)
def test_429_with_http_date_retry_after():
    fresh_integration()
    not_before = int(time.time()) + 3
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "status", "status": 429,
                            "retry_after": formatdate(not_before, usegmt=True)}})
    add_cases([("RLD-1", "Rate limited by date", "low")])
    wait_states({"done": 1}, timeout=10)
    reqs = creates()
    assert [r["status"] for r in reqs] == [429, 200]
    assert reqs[1]["received_at"] >= not_before - 0.05, \
        "retried %.3f s before the Retry-After date" % (not_before - reqs[1]["received_at"])
    assert reqs[1]["received_at"] < not_before + 1.5


# --- dead items, retry() and the status view --------------------------------------------

@timeout(60)
def test_400_is_dead_and_retry_delivers():
    iid = fresh_integration()
    halo_error = {"ClassName": "HaloValidationException",
                  "Message": "Category 1 is mandatory for this Ticket Type"}
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "status", "status": 400, "body": halo_error}})
    add_cases([("BAD-1", "Rejected", "high")])
    wait_states({"dead": 1})
    error = ('halo_itsm: Halo answered 400 to POST /api/Tickets: '
             '{"ClassName": "HaloValidationException", '
             '"Message": "Category 1 is mandatory for this Ticket Type"}')
    row = outbox("BAD-1")
    assert (row["state"], row["attempts"], row["last_http_status"], row["last_error"],
            row["result"], row["maybe_sent"]) == ("dead", 1, 400, error, None, False), row
    assert ticket_link("BAD-1") is None
    st = status_row(iid)
    assert (st["pending"], st["in_flight"], st["dead"], st["last_error"],
            st["last_success_at"]) == (0, 0, 1, error, None), st
    assert st["problem"] == ("dead items: fix the cause, then SELECT halo_itsm.retry(%d); "
                             "newest: outbox item %d: %s" % (iid, row["id"], error)), st["problem"]
    assert st["last_error_at"] is not None
    # a dead item does not hold up the next one
    add_cases([("BAD-2", "Accepted", "low")])
    wait_states({"dead": 1, "done": 1})
    check_delivered("BAD-2", expected_payload("BAD-2", "Accepted", "low"))
    assert status_row(iid)["dead"] == 1
    # the cause is gone (the fault fired once): retry() revives the item
    assert q1("SELECT halo_itsm.retry(%s)", iid) == 1
    wait_states({"done": 2})
    check_delivered("BAD-1", expected_payload("BAD-1", "Rejected", "high"), attempts=1, posts=2)
    assert q1("SELECT halo_itsm.retry(%s)", iid) == 0
    st = status_row(iid)
    assert (st["pending"], st["in_flight"], st["dead"], st["problem"]) == (0, 0, 0, "ok"), st
    assert st["last_success_at"] > st["last_error_at"]
    assert len(MOCK.tickets()) == 2


@timeout(60)
def test_item_whose_case_is_gone_is_dead_and_not_sent():
    """The outbox has no foreign keys (they cost every insert): an item whose case vanished
    behind the delete triggers' back (here: written by hand) is dead, with the reason, and
    nothing is sent for it."""
    iid = fresh_integration()
    orphan = q1("INSERT INTO halo_itsm.outbox (kind, case_id, integration_id)"
                " VALUES ('case', 987654321, %s) RETURNING id", iid)
    add_cases([("GONE-1", "Still here", "high")])
    wait_states({"dead": 1, "done": 1})
    row = q("SELECT state, attempts, last_error, result FROM halo_itsm.outbox WHERE id = %s", orphan)
    assert row == [("dead", 1, "halo_itsm: the case or detection of this outbox item no longer "
                               "exists; nothing was sent", None)], row
    assert [t["third_party_id_string"] for t in MOCK.tickets()] == ["GONE-1"]
    assert q1("SELECT count(*) FROM halo_itsm.tickets") == 1


@timeout(60)
def test_retry_one_item_by_outbox_id():
    iid = fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 2,
                 "action": {"type": "status", "status": 422, "body": {"Message": "nope"}}})
    add_cases([("ONE-1", "First", "low"), ("ONE-2", "Second", "low")])
    wait_states({"dead": 2})
    first = outbox("ONE-1")["id"]
    assert q1("SELECT halo_itsm.retry(outbox_id => %s)", first) == 1
    wait_states({"dead": 1, "done": 1})
    check_delivered("ONE-1", expected_payload("ONE-1", "First", "low"), posts=2)
    assert outbox("ONE-2")["state"] == "dead"
    assert q1("SELECT halo_itsm.retry(%s, %s)", iid, first) == 0
    assert q1("SELECT halo_itsm.retry()") == 1
    wait_states({"done": 2})
    check_delivered("ONE-2", expected_payload("ONE-2", "Second", "low"), posts=2)


@timeout(60)
def test_status_while_halo_answers_500_then_recovers():
    iid = fresh_integration()
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": -1,
                 "action": {"type": "status", "status": 500}})
    add_cases([("ST-1", "One", "high"), ("ST-2", "Two", "low")])
    error = ('halo_itsm: Halo answered 500 to POST /api/Tickets: '
             '{"error": "injected fault", "status": 500}')

    def failing():
        st = status_row(iid)
        return st if (st["pending"], st["in_flight"], st["last_error"]) == (2, 0, error) \
            and outbox("ST-1")["attempts"] >= 2 else None
    st = wait_until(failing, timeout=10, msg="status shows 2 pending with the 500")
    assert (st["dead"], st["last_success_at"], st["problem"]) == (0, None, "retrying: " + error), st
    assert st["oldest_pending_age"].total_seconds() > 0
    assert st["last_error_at"] is not None
    assert outbox("ST-1")["last_error"] == error and outbox("ST-1")["maybe_sent"] is True
    # Halo recovers
    MOCK.clear_faults()
    wait_states({"done": 2})
    st = status_row(iid)
    assert (st["pending"], st["in_flight"], st["dead"], st["problem"],
            st["oldest_pending_age"]) == (0, 0, 0, "ok", None), st
    assert st["last_success_at"] is not None and st["last_success_at"] > st["last_error_at"]
    assert st["last_error"] == error
    for sid in ("ST-1", "ST-2"):
        assert len(mock_tickets_by_sid()[sid]) == 1


@timeout(60)
def test_status_while_halo_is_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    iid = fresh_integration()
    q("UPDATE halo_itsm.integrations SET instance_url = %s WHERE id = %s",
      "http://127.0.0.1:%d" % closed_port, iid)
    add_cases([("DOWN-1", "Halo is down", "critical")])

    def failing():
        st = status_row(iid)
        return st if st["pending"] == 1 and st["last_error"] else None
    st = wait_until(failing, timeout=10, msg="status shows the connection failure")
    # the first request, the discovery of the authorisation server, fails
    assert st["last_error"].startswith("halo_itsm: GET /api/authinfo failed: "), st["last_error"]
    assert "127.0.0.1 port %d" % closed_port in st["last_error"], st["last_error"]
    assert st["problem"] == "retrying: " + outbox("DOWN-1")["last_error"], st
    assert st["last_success_at"] is None and st["dead"] == 0
    # nothing reached Halo, so the item is not suspected of having been sent
    assert outbox("DOWN-1")["maybe_sent"] is False
    assert MOCK.requests() == []
    # Halo is back (here: the URL is fixed)
    q("UPDATE halo_itsm.integrations SET instance_url = %s WHERE id = %s",
      "http://127.0.0.1:%d" % MOCK_PORT, iid)
    wait_states({"done": 1})
    assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                       ("POST", "/api/Tickets", 200)]
    st = status_row(iid)
    assert (st["pending"], st["dead"], st["problem"]) == (0, 0, "ok"), st
    assert st["last_success_at"] > st["last_error_at"]
    assert outbox("DOWN-1")["attempts"] >= 2


# --- the wake-up at commit --------------------------------------------------------------

def _set_poll_interval(value):
    """ALTER SYSTEM SET (or RESET, value None) halo_itsm.poll_interval and reload."""
    if value is None:
        q("ALTER SYSTEM RESET halo_itsm.poll_interval")
    else:
        q("ALTER SYSTEM SET halo_itsm.poll_interval = %s", value)
    q("SELECT pg_reload_conf()")


@timeout(60)
def test_commit_wakes_the_worker_and_rollback_does_not():
    iid = fresh_integration()
    _set_poll_interval("60s")
    try:
        time.sleep(1.0)     # the worker reloads and goes to sleep for up to 60 s
        # an item that is due but announced to nobody: queued while the integration was
        # disabled (the commit wakes the worker, which finds nothing), then enabled with
        # triggers off (session_replication_role = replica), so that enabling wakes nobody
        q("SELECT halo_itsm.set_enabled(%s, false)", iid)
        add_cases([("WAKE-1", "Waiting", "medium")])
        time.sleep(0.3)
        enable_behind_the_workers_back(iid)
        # a rolled-back insert wakes nobody, and sends nothing
        conn = db()
        conn.autocommit = False
        cur = conn.cursor()
        cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity)"
                    " VALUES ('WAKE-RB', 'Rolled back', 'high')")
        conn.rollback()
        time.sleep(2.0)
        assert MOCK.requests() == [], "the worker was woken: %r" % trace()
        assert outbox("WAKE-1")["state"] == "pending"
        # a committed insert wakes it at once: both items go out
        cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity)"
                    " VALUES ('WAKE-2', 'Committed', 'high')")
        committed = time.time()
        conn.commit()
        wait_states({"done": 2}, timeout=5)
        reqs = MOCK.requests()
        assert trace() == [("GET", "/api/authinfo", 200), ("POST", "/token", 200),
                           ("POST", "/api/Tickets", 200), ("POST", "/api/Tickets", 200)]
        assert reqs[0]["received_at"] - committed < 1.0, \
            "first request %.3f s after the commit" % (reqs[0]["received_at"] - committed)
        assert reqs[3]["received_at"] - committed < 1.5
        assert sorted(mock_tickets_by_sid()) == ["WAKE-1", "WAKE-2"]
        assert q1("SELECT count(*) FROM halo_itsm.cases WHERE sid = 'WAKE-RB'") == 0
    finally:
        _set_poll_interval(None)
    time.sleep(0.3)
    assert q1("SHOW halo_itsm.poll_interval") == "100ms"
    # the shorter interval applies at once (not after the 60 s sleep timed with the old
    # one): a retry, which only a poll finds, goes out within a second or so
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "status", "status": 503}})
    add_cases([("WAKE-3", "Retried", "low")])
    wait_states({"done": 3}, timeout=3)
    assert [r["status"] for r in creates_for("WAKE-3")] == [503, 200]


def enable_behind_the_workers_back(integration):
    """set_enabled(integration, true) with triggers off (session_replication_role =
    replica): the trigger wake_worker does not wake the worker."""
    conn = db()
    try:
        conn.cursor().execute("SET session_replication_role = replica;"
                              " SELECT halo_itsm.set_enabled(%s, true)", (integration,))
    finally:
        conn.close()


def _cases_for(integration, *sids):
    """Insert one low case per sid for the given integration, in one statement."""
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " SELECT s, 'wake test', 'low', %s FROM unnest(%s::text[]) s", integration, list(sids))


def _first_busy_second_disabled(tag):
    """A fresh integration whose lane and one waiting slot are held for 8 s (two cases
    tag1, tag2, whose creates the mock delays; max_requests_per_instance = 1), and a
    second one, configured and disabled; returns their ids. The caller resets
    max_requests_per_instance and the mock's faults."""
    busy = fresh_integration()
    second = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'second')",
                "http://127.0.0.1:%d" % MOCK_PORT)
    q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", second)
    q("SELECT halo_itsm.set_enabled(%s, false)", second)
    set_system({"halo_itsm.max_requests_per_instance": "1"})
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "body_contains": tag,
                 "count": 2, "action": {"type": "delay", "ms": 8000, "before": True}})
    _cases_for(busy, tag + "1", tag + "2")
    wait_until(lambda: len(MOCK.requests(path="/api/Tickets", method="POST")) >= 1,
               timeout=5, msg="the first create is under way")
    return busy, second


@timeout(60)
def test_enabling_an_integration_wakes_a_worker_whose_other_integrations_are_busy():
    """While every enabled integration has its lanes full, commits do not wake the worker;
    enabling another integration does (the trigger wake_worker on halo_itsm.integrations),
    and its waiting items go out at once. Before, they waited for the busy integration's
    next answer (8 s here) or the poll timer (60 s)."""
    busy, second = _first_busy_second_disabled("EN-A")
    try:
        set_system({"halo_itsm.poll_interval": "1min"})
        time.sleep(1.0)     # the worker reloads and sleeps for up to 60 s
        _cases_for(second, "EN-S1")     # committed while the worker is saturated: no wake
        time.sleep(0.5)
        assert creates_for("EN-S1") == []
        enabled = time.time()
        q("SELECT halo_itsm.set_enabled(%s, true)", second)
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s",
                              second) == 1, timeout=5, msg="the second integration delivers")
        first = min(r["received_at"] for r in MOCK.requests() if r["received_at"] > enabled)
        assert first - enabled < 0.5, "first request %.3f s after enabling" % (first - enabled)
        assert q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s", busy) == 0
    finally:
        reset_system(["halo_itsm.poll_interval", "halo_itsm.max_requests_per_instance"])
        MOCK.clear_faults()


@timeout(60)
def test_no_enabled_integration_does_not_stop_the_wake_at_commit():
    """With no integration enabled, a claim that finds nothing does not make the worker
    'saturated' (every integration busy is vacuously true then): the integration enabled
    next must still be woken for. Before, a disabled integration's busy lanes were enough
    for it, and the commits after it woke nobody until one of those items finished."""
    busy, second = _first_busy_second_disabled("VB-A")
    try:
        q("SELECT halo_itsm.set_enabled(%s, false)", busy)
        set_system({"halo_itsm.poll_interval": "1min"})
        time.sleep(1.0)     # the worker reloads and sleeps for up to 60 s
        _cases_for(second, "VB-S1")     # wakes the worker: nothing it may send
        time.sleep(0.3)
        enable_behind_the_workers_back(second)
        time.sleep(0.3)
        committed = time.time()
        _cases_for(second, "VB-S2")     # wakes it again
        wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets WHERE integration_id = %s",
                              second) == 2, timeout=5, msg="the second integration delivers")
        # at once, not at the worker's next timer (a second later, before)
        first = min(r["received_at"] for r in MOCK.requests() if r["received_at"] > committed - 0.2)
        assert first - committed < 0.5, "first request %.3f s after the commit" % (first - committed)
    finally:
        reset_system(["halo_itsm.poll_interval", "halo_itsm.max_requests_per_instance"])
        MOCK.clear_faults()


@timeout(60)
def test_answer_read_during_a_round_is_recorded_at_once():
    """An answer the worker reads in the middle of a round (while it records another item)
    is recorded right after that round, not at the next poll. Before, the item sat among
    the finished ones, in memory, while the worker slept until its poll timer (60 s here).
    The test holds the first item's outbox row, so that recording it waits, while the
    second item's answer comes in."""
    fresh_integration()
    set_system({"halo_itsm.poll_interval": "1min"})
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "body_contains": "RD-1",
                 "count": 1, "action": {"type": "delay", "ms": 1500, "before": True}})
    holder = db()
    holder.autocommit = False
    try:
        time.sleep(1.0)     # the worker reloads and sleeps for up to 60 s
        add_cases([("RD-1", "Recorded late", "low"), ("RD-2", "Answered meanwhile", "low")])
        wait_until(lambda: len(creates_for("RD-1")) == 1, timeout=5, msg="RD-1 is sent")
        # RD-1's row is held: recording its answer (in 1.5 s) waits for this transaction
        holder.cursor().execute("SELECT o.id FROM halo_itsm.outbox o JOIN halo_itsm.cases c"
                                " ON c.id = o.case_id WHERE c.sid = 'RD-1' FOR UPDATE OF o")
        # RD-2 goes out when RD-1's lane is free, and its answer comes in during the round
        wait_until(lambda: len(creates_for("RD-2")) == 1, timeout=5, msg="RD-2 is sent")
        time.sleep(1.0)
        released = time.time()
        holder.commit()
        wait_states({"done": 2}, timeout=5)
        assert time.time() - released < 2.0, time.time() - released
    finally:
        holder.close()
        reset_system(["halo_itsm.poll_interval"])
        MOCK.clear_faults()

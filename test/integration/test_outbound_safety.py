"""Outbound safety and hostile content (issue 5), on the delivery side: what
CALL halo_itsm.deliver() (database halo_manual, no worker) and the worker send to Halo.

- redirects (301, 302, 307) are answered but never followed;
- http:// is refused when halo_itsm.allow_http is off, and credentials stored in an
  instance URL (behind connect()'s back) are never sent;
- hosts that resolve to private, loopback or link-local addresses are refused before any
  connection unless halo_itsm.allow_private_addresses is on (deliver() and the worker);
- TLS: the mock over HTTPS with its own CA (test/lib/make_test_certs.sh): refused without
  halo_itsm.ca_file, delivered with it, refused for a host name the certificate lacks;
- sids, titles and descriptions with quotes, backslashes, control characters, {{...}} and
  non-ASCII text reach Halo byte for byte (also through the lookup after a lost answer),
  and a note with such text comes back on the timeline byte for byte.
"""
import os
import subprocess
import time

from halo_test import (MOCK_PORT, ROOT, RUN_DIR, ExtraMock, Mock, assert_one_ticket_per_case,
                       clean_halo_tables, db, ensure_extension, expect_error, fresh_integration,
                       q, q1, remember_secret, reset_system, set_system, timeout, wait_until)

DB = "halo_manual"
MOCK = Mock()
MOCK_URL = "http://127.0.0.1:%d" % MOCK_PORT


def setup_module():
    ensure_extension(DB)
    ensure_extension("halo")


def deliver(conn=None):
    """CALL halo_itsm.deliver() in halo_manual (in conn when given)."""
    if conn is None:
        q("CALL halo_itsm.deliver()", db=DB)
    else:
        with conn.cursor() as cur:
            cur.execute("CALL halo_itsm.deliver()")


def add_case(sid, integration=None, title="A case", description=None, dbname=DB):
    q("INSERT INTO halo_itsm.cases (sid, title, description, severity, integration_id)"
      " VALUES (%s, %s, %s, 'high', %s)", sid, title, description, integration, db=dbname)


def item(sid, dbname=DB):
    """The outbox row of a case: state, attempts, last_http_status, last_error."""
    rows = q("SELECT o.state, o.attempts, o.last_http_status, o.last_error FROM halo_itsm.outbox o"
             " JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = %s", sid, db=dbname)
    assert len(rows) == 1, rows
    return dict(zip(("state", "attempts", "status", "error"), rows[0]))


def due_now(dbname=DB):
    """Make every pending item due at once (skip the backoff)."""
    q("UPDATE halo_itsm.outbox SET next_attempt_at = now() WHERE state = 'pending'", db=dbname)


def requests_seen(mock=MOCK):
    return [(r["method"], r["path"]) for r in mock.requests()]


# --- redirects ----------------------------------------------------------------------------

def test_redirects_not_followed():
    fresh_integration(DB)
    elsewhere = MOCK_URL + "/elsewhere"
    MOCK.faults([
        {"method": "POST", "path": "/api/Tickets", "count": 1,
         "action": {"type": "status", "status": 302, "body": {},
                    "headers": {"Location": elsewhere + "/api/Tickets"}}}])
    add_case("REDIR-1")
    deliver()
    it = item("REDIR-1")
    # a 3xx is not a success, not retryable, and never followed
    assert (it["state"], it["status"]) == ("dead", 302), it
    assert "Halo answered 302 to POST /api/Tickets" in it["error"], it
    assert requests_seen() == [("GET", "/api/authinfo"), ("POST", "/token"), ("POST", "/api/Tickets")]
    assert MOCK.tickets() == []

    # 307/308 would resend the body (with the client secret) to the new place
    token_url = MOCK.auth_url() + "/token"
    for status in (307, 301):
        fresh_integration(DB)
        MOCK.faults({"method": "POST", "path": "/token", "count": 1,
                     "action": {"type": "status", "status": status, "body": {},
                                "headers": {"Location": elsewhere + "/auth/token"}}})
        add_case("REDIR-%d" % status)
        deliver()
        it = item("REDIR-%d" % status)
        assert "Halo answered %d to POST %s" % (status, token_url) in it["error"], it
        assert it["state"] in ("pending", "dead"), it
        assert requests_seen() == [("GET", "/api/authinfo"), ("POST", "/token")], requests_seen()
    # nor is a redirect of the discovery followed: the secret goes nowhere
    fresh_integration(DB)
    MOCK.faults({"method": "GET", "path": "/api/authinfo", "count": 1,
                 "action": {"type": "status", "status": 307, "body": {},
                            "headers": {"Location": elsewhere + "/api/authinfo"}}})
    add_case("REDIR-AUTHINFO")
    deliver()
    it = item("REDIR-AUTHINFO")
    assert "Halo answered 307 to GET /api/authinfo" in it["error"], it
    assert requests_seen() == [("GET", "/api/authinfo")], requests_seen()


# --- schemes and credentials --------------------------------------------------------------

def test_http_refused_unless_allowed():
    iid = fresh_integration(DB)
    conn = db(DB)
    with conn.cursor() as cur:
        cur.execute("SET halo_itsm.allow_http = off")
    # connect() refuses http:// and credentials in the URL
    e = expect_error("22023", lambda: conn.cursor().execute(
        "SELECT halo_itsm.connect(%s, 'c', 'not-a-real-secret-1', name => 'h')", (MOCK_URL,)))
    assert "allow_http" in e.pgerror, e.pgerror
    e = expect_error("22023", lambda: conn.cursor().execute(
        "SELECT halo_itsm.connect('https://user:pw@halo.example.com', 'c', 'not-a-real-secret-2',"
        " name => 'u')"))
    assert "credentials" in e.pgerror, e.pgerror

    # an http:// integration stored while it was allowed is not contacted once it is not
    add_case("HTTP-1", iid)
    deliver(conn)
    it = item("HTTP-1")
    assert it["state"] == "pending" and it["status"] is None, it
    assert "GET /api/authinfo failed" in it["error"] and "http" in it["error"].lower(), it
    assert requests_seen() == []

    with conn.cursor() as cur:
        cur.execute("SET halo_itsm.allow_http = on")
    due_now()
    deliver(conn)
    assert item("HTTP-1")["state"] == "done"


def test_credentials_in_stored_url_never_sent():
    iid = fresh_integration(DB)
    password = remember_secret("url-password-5d1c93ae")
    # stored behind connect()'s back (connect() refuses it)
    q("UPDATE halo_itsm.integrations SET instance_url = %s WHERE id = %s",
      "http://halo-user:%s@127.0.0.1:%d" % (password, MOCK_PORT), iid, db=DB)
    add_case("CRED-1", iid)
    deliver()
    it = item("CRED-1")
    assert it["state"] == "pending", it
    assert "holds credentials" in it["error"], it
    assert password not in it["error"]
    assert requests_seen() == []


# --- private addresses ----------------------------------------------------------------------

PRIVATE_URLS = ["http://127.0.0.1:%d" % MOCK_PORT, "http://localhost:%d" % MOCK_PORT,
                "http://[::1]:%d" % MOCK_PORT, "http://10.1.2.3", "http://172.16.0.1",
                "http://192.168.1.1", "http://169.254.169.254", "http://100.64.0.1",
                "http://0.0.0.0:%d" % MOCK_PORT, "http://[fe80::1]", "http://[fd00::1]",
                "http://[::ffff:127.0.0.1]:%d" % MOCK_PORT]


def test_private_addresses_refused_by_deliver():
    fresh_integration(DB)
    clean_halo_tables(DB)
    sids = {}
    for k, url in enumerate(PRIVATE_URLS):
        iid = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => %s)",
                 url, "private-%d" % k, db=DB)
        q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", iid, db=DB)
        sids["PRIV-%02d" % k] = url
        add_case("PRIV-%02d" % k, iid)
    conn = db(DB)
    with conn.cursor() as cur:
        cur.execute("SET halo_itsm.allow_private_addresses = off")
    start = time.monotonic()
    deliver(conn)
    # refused before connecting: no connect timeout was waited for
    assert time.monotonic() - start < 3
    for sid, url in sids.items():
        it = item(sid)
        assert it["state"] == "pending", (url, it)
        assert "GET /api/authinfo refused: the instance host resolves to a private, loopback" \
            in it["error"], (url, it)
    assert requests_seen() == []


@timeout(60)
def test_private_addresses_refused_by_worker():
    fresh_integration("halo")
    set_system({"halo_itsm.allow_private_addresses": "off"})
    try:
        add_case("PRIVW-1", dbname="halo")
        wait_until(lambda: "private" in (item("PRIVW-1", "halo")["error"] or ""), timeout=15,
                   msg="the worker refuses 127.0.0.1")
        problem = q1("SELECT problem FROM halo_itsm.status WHERE integration_id IS NOT NULL",
                     db="halo")
        assert "private, loopback or link-local" in problem, problem
        assert requests_seen() == [], MOCK.requests()
    finally:
        reset_system(["halo_itsm.allow_private_addresses"])
    due_now("halo")
    wait_until(lambda: item("PRIVW-1", "halo")["state"] == "done", timeout=15,
               msg="delivered once loopback is allowed again")
    assert_one_ticket_per_case("halo")


# --- TLS ------------------------------------------------------------------------------------

@timeout(90)
def test_tls_verified_with_own_ca():
    certs = os.path.join(RUN_DIR, "tls")
    subprocess.run(["bash", os.path.join(ROOT, "test", "lib", "make_test_certs.sh"), certs],
                   check=True)
    ca = os.path.join(certs, "ca.pem")
    tls = ExtraMock("--tls-cert", os.path.join(certs, "server.pem"),
                    "--tls-key", os.path.join(certs, "server.key"))
    try:
        assert tls.scheme == "https"
        clean_halo_tables(DB)
        tls.mock.reset()
        iid = q1("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'tls')",
                 "https://127.0.0.1:%d" % tls.port, db=DB)
        q("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", iid, db=DB)
        add_case("TLS-1", iid)

        # the system's CAs do not know the test CA
        deliver()
        it = item("TLS-1")
        assert it["state"] == "pending", it
        assert "certificate" in it["error"] and "halo_itsm.ca_file" in it["error"], it
        assert tls.mock.requests() == []

        set_system({"halo_itsm.ca_file": ca})
        conn = db(DB)      # a new session has the reloaded setting for sure
        with conn.cursor() as cur:
            cur.execute("SHOW halo_itsm.ca_file")
            assert cur.fetchone()[0] == ca
        due_now()
        deliver(conn)
        assert item("TLS-1")["state"] == "done", item("TLS-1")
        assert [(r["method"], r["path"]) for r in tls.mock.requests()] == \
            [("GET", "/api/authinfo"), ("POST", "/token"), ("POST", "/api/Tickets")]
        assert [t["third_party_id_string"] for t in tls.mock.tickets()] == ["TLS-1"]

        # the certificate names 127.0.0.1 only: "localhost" fails even with the CA
        q("UPDATE halo_itsm.integrations SET instance_url = %s WHERE id = %s",
          "https://localhost:%d" % tls.port, iid, db=DB)
        add_case("TLS-2", iid)
        deliver(conn)
        it = item("TLS-2")
        assert it["state"] == "pending", it
        assert "localhost" in it["error"] and "certificate" in it["error"].lower(), it
        assert len(tls.mock.requests()) == 3
    finally:
        reset_system(["halo_itsm.ca_file"])
        tls.stop()


# --- hostile content ------------------------------------------------------------------------

HOSTILE = [
    # the first one loses its answer: its ticket is then found by a lookup on that sid
    ("LOST-&?#=%20+/;-\u00fc-\u65e5\u672c-\U0001F6A8-\"'\\",
     "Lookup with \"quotes\" & ampersands #hash %41 +plus ?q=1",
     "Found again after a lost answer: \u00e9\u00e8 \U0001F50D"),
    ("Q-\"dq\"-'sq'-\\bs\\-\\\"",
     "Quotes \"double\" 'single' and back\\slash \\\" and \\\\ and \\u0041 literally",
     "{\"json\": \"inside\", \"n\": [1, 2]} and a lone \\ at the end\\"),
    ("CTL-\t-\x01-\x1f-\x7f-end",
     "Tab\there, newline\nthere, CR\rthere, bell\x07, escape\x1b[31mred\x1b[0m",
     "line1\r\nline2\n\ttabbed\x01\x02\x03 and DEL\x7f"),
    ("TPL-{{sid}}-{{title}}-{{severity}}",
     "{{title}} {{sid}} {{severity}} {{ title }} {{ and }} {{{{title}}}}",
     "{{description}} {{sid}} {%raw%} ${HOME} $(id) `id` %s %n"),
    ("UNI-\u00fcn\u00efc\u00f8d\u00e9-\u65e5\u672c\u8a9e-\u0639\u0631\u0628\u064a-\U0001F6A8",
     "\u00dcn\u00efc\u00f8d\u00e9 \u2014 \u201csmart\u201d \u2014 \u65e5\u672c\u8a9e \u2014 "
     "\U0001F6A8\U0001F525 \u2014 zero\u200bwidth \u2014 RTL\u202eoverride \u2014 \U0001D518",
     "\u00e9moji \U0001F469\u200d\U0001F4BB, combining e\u0301, NBSP\u00a0, BOM\ufeff, "
     "<script>alert(1)</script> &amp; &lt;"),
]


def expected_ticket(sid, title, description):
    """What Halo must receive: the template "{{sid}}: {{title}}" with the raw values
    inserted once, the description and the severity lines, the sid as third party id."""
    return {"summary": "%s: %s" % (sid, title),
            "details": "%s\n\nSeverity: High\nCase: %s" % (description, sid),
            "third_party_id_string": sid}


@timeout(60)
def test_hostile_content_byte_for_byte():
    iid = fresh_integration(DB)
    MOCK.faults({"method": "POST", "path": "/api/Tickets", "count": 1,
                 "action": {"type": "drop_after_create"}})
    for sid, title, description in HOSTILE:
        add_case(sid, iid, title, description)
    deliver()       # the first answer is lost: that item waits for its lookup
    due_now()
    deliver()
    assert dict(q("SELECT state, count(*) FROM halo_itsm.outbox GROUP BY 1", db=DB)) == \
        {"done": len(HOSTILE)}
    assert_one_ticket_per_case(DB, sids=[h[0] for h in HOSTILE])
    lost = HOSTILE[0][0]
    assert q1("SELECT t.linked_by FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
              " ON c.id = t.case_id WHERE c.sid = %s", lost, db=DB) == "found"

    # the JSON Halo received decodes to exactly these strings
    posted = {}
    for r in MOCK.requests(path="/api/Tickets", method="POST"):
        assert len(r["json"]) == 1
        posted.setdefault(r["json"][0]["third_party_id_string"], []).append(r["json"][0])
    assert sorted(posted) == sorted(h[0] for h in HOSTILE)
    for sid, title, description in HOSTILE:
        assert len(posted[sid]) == 1, (sid, posted[sid])
        got = posted[sid][0]
        want = expected_ticket(sid, title, description)
        assert {k: got.get(k) for k in want} == want, (sid, got)
        # and exactly what ticket_payload() says it sends
        assert got == q1("SELECT halo_itsm.ticket_payload('case', %s)", sid, db=DB)
    tickets = {t["third_party_id_string"]: t for t in MOCK.tickets()}
    for sid, title, description in HOSTILE:
        want = expected_ticket(sid, title, description)
        assert {k: tickets[sid].get(k) for k in want} == want
    # the lookup asked for that very sid
    lookups = MOCK.requests(path="/api/Tickets", method="GET")
    assert lookups and all(r["query"]["third_party_id_string"] == [lost] for r in lookups), \
        [r["query"] for r in lookups]

    # a note with hostile text comes back on the timeline byte for byte (through a sync)
    if q1("SELECT to_regproc('halo_itsm._queue_sync') IS NOT NULL", db=DB):
        sid, tid = HOSTILE[2][0], tickets[HOSTILE[2][0]]["id"]
        note = ("Note: \"quoted\" 'single' back\\slash \\n not-a-newline\nreal newline\ttab"
                "\x01ctl {{title}} \u00fcn\u00efc\u00f8d\u00e9 \u65e5\u672c \U0001F6A8 <b>not html</b>")
        who = "Agent \"O'Brien\" \\ \u00c5sa \U0001F9D1"
        action = MOCK.add_note(tid, note, who)["action"]
        q("SELECT halo_itsm._queue_sync(%s, %s)", iid, tid, db=DB)
        deliver()
        rows = q("SELECT author, body FROM halo_itsm.timeline WHERE halo_action_id = %s",
                 action["id"], db=DB)
        assert rows == [(who, note)], rows
        assert (who, note) in [(r[4], r[5]) for r in
                               q("SELECT * FROM halo_itsm.timeline_of(%s)", sid, db=DB)]
    else:
        print("# SKIP timeline part: halo_itsm._queue_sync() does not exist yet (issue 3)")

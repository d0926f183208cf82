"""The authorisation server and the OAuth scope (configure_auth): where the token comes
from and what it asks for, against the mock's separate authorisation server (another
port of the mock, as Halo's "API Details" name it).

- check_connection() reports the token URL it used and how it found it: configured,
  discovered with GET {instance}/api/authinfo, or the default {instance}/auth/token when
  the instance does not offer authinfo (404).
- The worker discovers the server once per integration, caches it with the token, and
  finds it anew when configure_auth() changes it; the scope and the tenant reach the
  token endpoint exactly.
- A hostile or broken authinfo answer (not JSON, wrong types, an unusable URL, 500, a
  timeout, a huge body) is a clear error, the client secret is sent nowhere, and the
  worker survives (same pid).
"""
import json
import os
import subprocess
import urllib.parse

from halo_test import (MOCK_PORT, ROOT, RUN_DIR, ExtraMock, clean_halo_tables, db,
                       ensure_extension, expect_error, fresh_integration, q, q1, reset_system,
                       set_system, timeout, wait_until, worker_pid)
from test_delivery import (MOCK, SCOPE, add_cases, check_delivered, expected_payload, outbox,
                           wait_states)

INSTANCE = "http://127.0.0.1:%d" % MOCK_PORT
GAVE_UP = " (gave up after 2 attempts; SELECT halo_itsm.retry() tries again)"


def setup_module():
    """The extension in halo."""
    ensure_extension("halo")


def seen(since=0):
    """[(server, method, path, status)] of the requests the mock's two servers received."""
    return [(r["server"], r["method"], r["path"], r["status"]) for r in MOCK.requests(since=since)]


def form(req):
    """The form fields of a token request, as a plain dict."""
    got = urllib.parse.parse_qs(req["body"], keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in got.values()), got
    return {k: v[0] for k, v in got.items()}


def check(iid):
    """check_connection(iid) without the integration's id and name."""
    got = q1("SELECT halo_itsm.check_connection(%s)", iid)
    for key in ("integration", "name", "instance_url"):
        got.pop(key)
    return got


CHECKED = [("instance", "GET", "/api/Team", 200), ("instance", "GET", "/api/Category", 200),
           ("instance", "GET", "/api/TicketType", 200)]
ALL_FOUND = {"token": "ok", "team": "found", "category": "found", "client": "not configured",
             "tickettype": "found", "ok": True, "problems": []}


# --- check_connection() ---------------------------------------------------------------

@timeout(60)
def test_check_connection_discovers_the_authorisation_server():
    iid = fresh_integration(team="SOC")
    assert check(iid) == dict(ALL_FOUND, scope=SCOPE, token_url=MOCK.auth_url() + "/token",
                              token_url_source="discovered")
    reqs = MOCK.requests()
    assert seen() == [("instance", "GET", "/api/authinfo", 200), ("auth", "POST", "/token", 200)] + CHECKED
    # discovery carries no credentials; the token request carries them and the scope
    assert "authorization" not in reqs[0]["headers"] and reqs[0]["body"] == ""
    assert form(reqs[1]) == {"grant_type": "client_credentials", "client_id": "test-client",
                             "client_secret": "test-secret", "scope": SCOPE}


@timeout(60)
def test_check_connection_with_a_configured_authorisation_server():
    # the server as Halo's API Details show it, with a path (its token at {auth_url}/token)
    iid = fresh_integration(team="SOC")
    MOCK.config(auth_path="/auth")
    q("SELECT halo_itsm.configure_auth(%s, auth_url => %s)", iid, MOCK.auth_url() + "/auth/")
    assert q1("SELECT auth_url FROM halo_itsm.integrations WHERE id = %s", iid) == \
        MOCK.auth_url() + "/auth"
    assert check(iid) == dict(ALL_FOUND, scope=SCOPE, token_url=MOCK.auth_url() + "/auth/token",
                              token_url_source="configured")
    # no discovery when the server is configured
    assert seen() == [("auth", "POST", "/auth/token", 200)] + CHECKED


@timeout(60)
def test_check_connection_falls_back_to_the_instance_without_authinfo():
    # an older Halo: no /api/authinfo (404), the token endpoint at {instance}/auth/token
    iid = fresh_integration(team="SOC")
    MOCK.config(auth_server="instance")
    assert check(iid) == dict(ALL_FOUND, scope=SCOPE, token_url=INSTANCE + "/auth/token",
                              token_url_source="default")
    assert seen() == [("instance", "GET", "/api/authinfo", 404),
                      ("instance", "POST", "/auth/token", 200)] + CHECKED


@timeout(60)
def test_check_connection_names_a_refused_scope():
    # an API application granted only "all" refuses the narrower default scope (the
    # stricter reading): check_connection() says so and what to call
    iid = fresh_integration()
    MOCK.config(clients=[{"client_id": "test-client", "client_secret": "test-secret",
                          "scopes": ["all"]}])
    got = check(iid)
    assert got == {"scope": SCOPE, "token_url": MOCK.auth_url() + "/token",
                   "token_url_source": "discovered", "token": "failed", "ok": False,
                   "problems": [
                       'halo_itsm: the authorisation server refused the scope "%s" (HTTP 400'
                       ' invalid_scope): give the API application these permissions in Halo'
                       ' (Configuration > Integrations > Halo API), or call'
                       " halo_itsm.configure_auth(integration, scope => '...') with the scopes"
                       " it grants, e.g. 'all'" % SCOPE]}, got
    q("SELECT halo_itsm.configure_auth(%s, scope => 'all')", iid)
    got = check(iid)
    assert (got["scope"], got["token"], got["ok"]) == ("all", "ok", True), got
    assert form(MOCK.requests(path="/token")[-1])["scope"] == "all"


@timeout(60)
def test_check_connection_sends_the_tenant_discovery_names():
    # a hosted Halo's authinfo names its tenant; the integration's own tenant wins
    iid = fresh_integration(team="SOC")
    MOCK.config(authinfo_tenant="acme", clients=[
        {"client_id": "test-client", "client_secret": "test-secret", "tenant": "acme"}])
    got = check(iid)
    assert (got["token_url"], got["token"]) == (MOCK.auth_url() + "/token?tenant=acme", "ok"), got
    assert MOCK.requests(path="/token")[-1]["query"] == {"tenant": ["acme"]}
    q("UPDATE halo_itsm.integrations SET tenant = 'other co' WHERE id = %s", iid)
    got = check(iid)
    assert (got["token_url"], got["token"]) == (MOCK.auth_url() + "/token?tenant=other%20co",
                                                "failed"), got
    assert MOCK.requests(path="/token")[-1]["query"] == {"tenant": ["other co"]}


# --- hostile authinfo answers -------------------------------------------------------------

def _status(body, status=200, **extra):
    """A fault action answering GET /api/authinfo with this body (JSON, or raw text)."""
    action = {"type": "status", "status": status}
    if isinstance(body, str):
        action.update(raw=body, content_type="application/json")
    else:
        action["body"] = body
    action.update(extra)
    return action


def _unusable(why, body):
    """check_connection()'s problem for a 2xx authinfo answer that cannot be used."""
    text = body if isinstance(body, str) else json.dumps(body)
    return ("halo_itsm: Halo's answer 200 to GET /api/authinfo cannot be used: %s; it reads: %s"
            % (why, text[:200] + ("..." if len(text) > 200 else "")))


HINT = " (halo_itsm.configure_auth(integration, auth_url => '...') sets the authorisation server)"
LONG_URL = "https://127.0.0.1:%d/" % (MOCK_PORT + 10) + "a" * 2100
HOSTILE = [
    # (name, fault action, expected problem)
    ("not JSON", _status("<html>Sign in</html>"), None),
    ("empty", _status(""), _unusable("the answer is empty", "")),
    ("an array", _status([{"auth_url": "https://x"}]), _unusable("it is not a JSON object", [{"auth_url": "https://x"}])),
    ("a string", _status("\"https://x\""), _unusable("it is not a JSON object", "\"https://x\"")),
    ("no auth_url", _status({"tenant_id": "acme"}), _unusable("it has no auth_url", {"tenant_id": "acme"})),
    ("auth_url null", _status({"auth_url": None}), _unusable("its auth_url is not a string", {"auth_url": None})),
    ("auth_url a number", _status({"auth_url": 443}), _unusable("its auth_url is not a string", {"auth_url": 443})),
    ("auth_url an object", _status({"auth_url": {"url": "https://x"}}),
     _unusable("its auth_url is not a string", {"auth_url": {"url": "https://x"}})),
    ("auth_url ftp", _status({"auth_url": "ftp://127.0.0.1/auth"}),
     _unusable("its auth_url is unusable: the scheme must be https" + HINT, {"auth_url": "ftp://127.0.0.1/auth"})),
    ("auth_url javascript", _status({"auth_url": "javascript:alert(1)"}), None),
    ("auth_url with credentials", _status({"auth_url": "https://u:p@127.0.0.1/auth"}),
     _unusable("its auth_url is unusable: credentials must not be part of the URL" + HINT,
               {"auth_url": "https://u:p@127.0.0.1/auth"})),
    ("auth_url with a query", _status({"auth_url": "https://127.0.0.1/auth?x=1"}),
     _unusable("its auth_url is unusable: the URL must not have a query or fragment" + HINT,
               {"auth_url": "https://127.0.0.1/auth?x=1"})),
    ("auth_url ending in /token", _status({"auth_url": "https://127.0.0.1/auth/token"}),
     _unusable("its auth_url is unusable: it ends in /token, which halo_itsm appends itself" + HINT,
               {"auth_url": "https://127.0.0.1/auth/token"})),
    ("auth_url empty", _status({"auth_url": ""}), None),
    ("auth_url huge", _status({"auth_url": LONG_URL}),
     _unusable("its auth_url is unusable: the URL is longer than 2048 bytes" + HINT, {"auth_url": LONG_URL})),
    ("tenant_id an object", _status({"auth_url": "https://127.0.0.1/auth", "tenant_id": {}}),
     _unusable("its tenant_id is not a name of at most 255 printable ASCII characters",
               {"auth_url": "https://127.0.0.1/auth", "tenant_id": {}})),
    ("tenant_id with a newline", _status({"auth_url": "https://127.0.0.1/auth", "tenant_id": "a\nb"}),
     _unusable("its tenant_id is not a name of at most 255 printable ASCII characters",
               {"auth_url": "https://127.0.0.1/auth", "tenant_id": "a\nb"})),
    ("500", _status({"error": "boom"}, status=500),
     'halo_itsm: Halo answered 500 to GET /api/authinfo: {"error": "boom"}'),
    ("401", _status({"error": "no"}, status=401), None),
    ("huge body", _status("x" * (9 * 1024 * 1024)), None),
    ("timeout", {"type": "delay", "ms": 4000, "before": True}, None),
]


ACTIONS = {name: action for name, action, _ in HOSTILE}


@timeout(120)
def test_hostile_authinfo_answers_are_clear_errors_and_send_no_secret():
    iid = fresh_integration(team="SOC")
    problems = []
    for name, action, expected in HOSTILE:
        MOCK.reset()
        MOCK.faults({"method": "GET", "path": "/api/authinfo", "count": 1, "action": action})
        got = check(iid)
        problem = got["problems"][0] if got.get("problems") else None
        want = {"scope": SCOPE, "token_url_source": "discovery failed", "token": "failed",
                "ok": False, "problems": [problem]}
        if got != want:
            problems.append("%s: %r" % (name, got))
        elif expected is not None and problem != expected:
            problems.append("%s: problem %r, expected %r" % (name, problem, expected))
        elif expected is None and not problem.startswith("halo_itsm: "):
            problems.append("%s: problem %r" % (name, problem))
        # nothing else was asked: the client secret went nowhere
        if [(r["method"], r["path"]) for r in MOCK.requests()] != [("GET", "/api/authinfo")]:
            problems.append("%s: requests %r" % (name, seen()))
    assert not problems, "\n".join(problems)
    # the kinds of failure the others name
    for name, needle in (("not JSON", "invalid input syntax for type json"),
                         ("auth_url javascript", "its auth_url is unusable: "),
                         ("auth_url empty", "its auth_url is unusable: "),
                         ("401", "Halo answered 401 to GET /api/authinfo"),
                         ("huge body", "GET /api/authinfo failed: "),
                         ("timeout", "GET /api/authinfo failed: ")):
        MOCK.reset()
        MOCK.faults({"method": "GET", "path": "/api/authinfo", "count": 1,
                     "action": ACTIONS[name]})
        got = check(iid)
        assert needle in got["problems"][0], (name, got)


@timeout(90)
def test_worker_fails_items_on_a_hostile_authinfo_and_survives():
    before = set_system({"halo_itsm.max_attempts": "2", "halo_itsm.backoff_base": "50ms",
                         "halo_itsm.backoff_max": "200ms"})
    try:
        pid = worker_pid()
        fresh_integration()
        body = {"auth_url": "ftp://127.0.0.1/auth"}
        MOCK.faults({"method": "GET", "path": "/api/authinfo", "count": 2,
                     "action": _status(body)})
        add_cases([("HOST-1", "Hostile authinfo", "high")])
        wait_states({"dead": 1})
        row = outbox("HOST-1")
        assert (row["state"], row["attempts"], row["maybe_sent"]) == ("dead", 2, False), row
        assert row["last_error"] == _unusable(
            "its auth_url is unusable: the scheme must be https" + HINT, body) + GAVE_UP, row
        assert seen() == [("instance", "GET", "/api/authinfo", 200)] * 2
        assert worker_pid() == pid, "the delivery worker restarted"
        # once Halo answers properly, retry() delivers it
        assert q1("SELECT halo_itsm.retry()") == 1
        wait_states({"done": 1})
        assert seen()[2:] == [("instance", "GET", "/api/authinfo", 200),
                              ("auth", "POST", "/token", 200), ("instance", "POST", "/api/Tickets", 200)]
    finally:
        set_system(before)


@timeout(90)
def test_discovery_over_https_refuses_an_http_authorisation_server():
    # a Halo over https whose authinfo names an http:// server: with halo_itsm.allow_http
    # off, the secret must not go there (and a configured http:// URL is refused too)
    certs = os.path.join(RUN_DIR, "tls")
    subprocess.run(["bash", os.path.join(ROOT, "test", "lib", "make_test_certs.sh"), certs],
                   check=True)
    tls = ExtraMock("--tls-cert", os.path.join(certs, "server.pem"),
                    "--tls-key", os.path.join(certs, "server.key"))
    try:
        set_system({"halo_itsm.ca_file": os.path.join(certs, "ca.pem")})
        clean_halo_tables("halo", tls.mock)
        conn = db()
        cur = conn.cursor()
        cur.execute("SET halo_itsm.allow_http = off")
        cur.execute("SELECT halo_itsm.connect(%s, 'test-client', 'test-secret', name => 'tls')",
                    ("https://127.0.0.1:%d" % tls.port,))
        iid = cur.fetchone()[0]
        cur.execute("SELECT halo_itsm.configure(%s, category => 'Security>Incident')", (iid,))

        def check_tls():
            cur.execute("SELECT halo_itsm.check_connection(%s)", (iid,))
            return cur.fetchone()[0]
        # the discovered server is https: fine
        got = check_tls()
        auth = tls.mock.auth_url()
        assert auth.startswith("https://"), auth
        assert (got["token_url"], got["token_url_source"], got["token"], got["ok"]) == \
            (auth + "/token", "discovered", "ok", True), got
        # authinfo names an http:// server: refused, nothing else asked
        tls.mock.reset()
        http_url = "http://127.0.0.1:%d" % int(auth.rsplit(":", 1)[1])
        tls.mock.faults({"method": "GET", "path": "/api/authinfo", "count": 1,
                         "action": _status({"auth_url": http_url})})
        got = check_tls()
        assert got["problems"] == [_unusable(
            "its auth_url is unusable: http:// is not allowed (halo_itsm.allow_http is off);"
            " Halo must be reached over https" + HINT, {"auth_url": http_url})], got
        assert [(r["method"], r["path"]) for r in tls.mock.requests()] == [("GET", "/api/authinfo")]
        # nor may it be configured
        e = expect_error("22023", cur.execute,
                         "SELECT halo_itsm.configure_auth(%s, auth_url => %s)", (iid, http_url))
        assert "halo_itsm: unusable authorisation server URL: http:// is not allowed" in e.pgerror, e.pgerror
        clean_halo_tables("halo", tls.mock)
    finally:
        reset_system(["halo_itsm.ca_file"])
        tls.stop()


# --- the worker ---------------------------------------------------------------------------

@timeout(60)
def test_worker_with_a_configured_server_and_scope_caches_its_token():
    iid = fresh_integration()
    MOCK.config(auth_path="/auth", clients=[
        {"client_id": "test-client", "client_secret": "test-secret", "scopes": ["all"]}])
    q("SELECT halo_itsm.configure_auth(%s, auth_url => %s, scope => ' all ')", iid,
      MOCK.auth_url() + "/auth")
    add_cases([("CFG-%d" % i, "Case %d" % i, "low") for i in range(4)])
    wait_states({"done": 4})
    reqs = MOCK.requests()
    # no discovery, one token for every item, the scope exactly as configured
    assert seen() == [("auth", "POST", "/auth/token", 200)] + [("instance", "POST", "/api/Tickets", 200)] * 4
    assert form(reqs[0]) == {"grant_type": "client_credentials", "client_id": "test-client",
                             "client_secret": "test-secret", "scope": "all"}
    assert len({r["headers"]["authorization"] for r in reqs[1:]}) == 1
    for i in range(4):
        check_delivered("CFG-%d" % i, expected_payload("CFG-%d" % i, "Case %d" % i, "low"))


@timeout(60)
def test_worker_sends_the_discovered_tenant():
    fresh_integration()
    MOCK.config(authinfo_tenant="acme", clients=[
        {"client_id": "test-client", "client_secret": "test-secret", "tenant": "acme"}])
    add_cases([("TENA-1", "Tenant from authinfo", "low")])
    wait_states({"done": 1})
    reqs = MOCK.requests()
    assert seen() == [("instance", "GET", "/api/authinfo", 200), ("auth", "POST", "/token", 200),
                      ("instance", "POST", "/api/Tickets", 200)]
    assert reqs[1]["query"] == {"tenant": ["acme"]}


@timeout(60)
def test_worker_refused_scope_is_a_clear_error():
    iid = fresh_integration()
    MOCK.config(clients=[{"client_id": "test-client", "client_secret": "test-secret",
                          "scopes": ["all"]}])
    add_cases([("SCOPE-1", "Refused scope", "low")])
    wait_until(lambda: outbox("SCOPE-1")["last_error"], timeout=15, msg="the token is refused")
    row = outbox("SCOPE-1")
    assert row["last_error"].startswith(
        'halo_itsm: the authorisation server refused the scope "%s" (HTTP 400 invalid_scope)' % SCOPE), row
    assert MOCK.tickets() == []
    q("SELECT halo_itsm.configure_auth(%s, scope => 'all')", iid)
    q("UPDATE halo_itsm.outbox SET next_attempt_at = now() WHERE state = 'pending'")
    wait_states({"done": 1})
    assert form(MOCK.requests(path="/token")[-1])["scope"] == "all"


@timeout(60)
def test_running_worker_picks_up_a_changed_auth_url():
    iid = fresh_integration()
    add_cases([("CHG-1", "Discovered", "low")])
    wait_states({"done": 1})
    assert seen() == [("instance", "GET", "/api/authinfo", 200), ("auth", "POST", "/token", 200),
                      ("instance", "POST", "/api/Tickets", 200)]
    # the authorisation server moves (same mock, another path): configure_auth() says so
    MOCK.config(auth_path="/v2")
    mark = MOCK.requests()[-1]["seq"]
    q("SELECT halo_itsm.configure_auth(%s, auth_url => %s)", iid, MOCK.auth_url() + "/v2")
    add_cases([("CHG-2", "Configured", "low")])
    wait_states({"done": 2})
    # a new token from the new server at once, no discovery
    assert seen(since=mark) == [("auth", "POST", "/v2/token", 200), ("instance", "POST", "/api/Tickets", 200)]
    # back to discovery: authinfo again (it now names /v2)
    mark = MOCK.requests()[-1]["seq"]
    q("SELECT halo_itsm.configure_auth(%s, auth_url => '')", iid)
    add_cases([("CHG-3", "Discovered again", "low")])
    wait_states({"done": 3})
    assert seen(since=mark) == [("instance", "GET", "/api/authinfo", 200), ("auth", "POST", "/v2/token", 200),
                                ("instance", "POST", "/api/Tickets", 200)]


@timeout(60)
def test_worker_discovers_anew_when_the_token_url_fails():
    # the discovered server stops answering at its path (404): the item is retried, and
    # the next attempt discovers the server again instead of trying the dead URL forever
    fresh_integration()
    add_cases([("MOVE-1", "First", "low")])
    wait_states({"done": 1})
    MOCK.faults({"action": {"type": "expire_tokens"}, "method": "POST", "path": "/api/Tickets"})
    MOCK.config(auth_path="/moved")
    mark = MOCK.requests()[-1]["seq"]
    add_cases([("MOVE-2", "Second", "low")])
    wait_states({"done": 2})
    assert seen(since=mark) == [("instance", "POST", "/api/Tickets", 401), ("auth", "POST", "/token", 404),
                                ("instance", "GET", "/api/authinfo", 200),
                                ("auth", "POST", "/moved/token", 200), ("instance", "POST", "/api/Tickets", 200)]
    assert outbox("MOVE-2")["attempts"] == 2


@timeout(60)
def test_worker_falls_back_to_the_instance_without_authinfo():
    fresh_integration()
    MOCK.config(auth_server="instance")
    add_cases([("OLD-1", "Older Halo", "low")])
    wait_states({"done": 1})
    assert seen() == [("instance", "GET", "/api/authinfo", 404), ("instance", "POST", "/auth/token", 200),
                      ("instance", "POST", "/api/Tickets", 200)]

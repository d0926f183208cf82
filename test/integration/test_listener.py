"""The webhook listener inside the extension (src/inbound/listener*.c), over real HTTP.

The test cluster runs the listener on 127.0.0.1:HI_LISTEN_PORT (test/lib/test.conf,
run_tests.sh). Deliveries are signed by the mock's own code (its control API `sign`) or sent
by the mock itself when an agent closes a ticket. Checked: an accepted delivery and its exact
rows; each rejection with its HTTP status and SQLSTATE, changing nothing; /healthz; 404/405;
malformed requests (bad Content-Length, chunked, no body, huge or too many headers) get
4xx; the rate limit; the role deliveries run as; a slow client dropped at the request
timeout while another delivery is served; 1,000 connections refused beyond the limit with
the listener's memory bounded; a fuzzed request stream never ends the listener (same pid);
HTTPS with a test certificate (a server restart with the TLS settings).
"""
import email.utils
import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import time

from halo_test import (ROOT, RUN_DIR, db, ensure_extension, fresh_integration, q, q1, reset_system,
                       restart_cluster, set_system, timeout, wait_until)
from webhook_helpers import (MOCK, add_case, answer, case_status, mock_sign, timeline,
                             wait_ticket)

LISTEN_PORT = int(os.environ.get("HI_LISTEN_PORT", "18082"))
LISTEN_HOST = "127.0.0.1:%d" % LISTEN_PORT
LISTENER_TYPE = "halo_itsm webhook listener"
STATE = {}
# Requests of the fuzzed stream (test_fuzzed_request_stream_never_ends_the_listener).
FUZZ_REQUESTS = 150


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    STATE["key"], STATE["secret"] = q(
        """SELECT i.webhook_key, s.webhook_secret FROM halo_itsm.integrations i
             JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id WHERE i.id = %s""",
        STATE["integration"])[0]
    # Halo posts to the listener: the signed host is the listener's
    set_system({"halo_itsm.webhook_base_url": "http://%s/halo/" % LISTEN_HOST})
    STATE["pid"] = listener_pid()


def teardown_module():
    MOCK.webhook(enabled=False)
    reset_system(["halo_itsm.webhook_base_url", "halo_itsm.listen_rate_limit",
                  "halo_itsm.listen_request_timeout", "halo_itsm.listen_role"])


# --- helpers -----------------------------------------------------------------------------

def listener_pid():
    """The listener's pid (waits for it)."""
    return wait_until(lambda: q1("SELECT pid FROM pg_stat_activity WHERE backend_type = %s",
                                 LISTENER_TYPE), timeout=20, msg="the webhook listener")


def signed(body, date=None, secret=None, host=LISTEN_HOST):
    """Halo's headers for body (bytes), signed by the mock's code."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
               "Host": host, "X-Halo-Date": date or email.utils.formatdate(usegmt=True)}
    headers["X-Signature"] = mock_sign(secret or STATE["secret"], headers, body)
    return headers


def request(method, path, headers=None, body=None, scheme="http", context=None):
    """One HTTP request to the listener with exactly these headers: (status, headers, JSON or None)."""
    if scheme == "https":
        conn = http.client.HTTPSConnection("127.0.0.1", LISTEN_PORT, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", LISTEN_PORT, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None
    finally:
        conn.close()


def post(body, headers, key=None):
    """POST a delivery to /halo/<key>: (status, JSON answer)."""
    status, _, doc = request("POST", "/halo/%s" % (key or STATE["key"]), headers, body)
    return status, doc


def raw(data, read_timeout=10):
    """Send raw bytes on a new connection; the status code of the answer (0: closed without one)."""
    with socket.create_connection(("127.0.0.1", LISTEN_PORT), timeout=read_timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        got = b""
        try:
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    line = got.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") else 0


def rss_kb(pid):
    """VmRSS of a process, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def deliveries():
    return q1("SELECT count(*) FROM halo_itsm.webhook_deliveries")


def note_event(tid, action_id, note="Checked by the SOC", event_id=None):
    """An event-with-ticket payload (full object) with one note action."""
    return {"id": event_id or "evt-%d-%d" % (tid, action_id), "event": "Ticket Updated by Agent",
            "ticket_id": tid,
            "ticket": {"id": tid, "status_id": 2, "hasbeenclosed": False},
            "actions": [{"id": action_id, "ticket_id": tid, "note": note, "who": "Bob Agent",
                         "datetime": "2026-11-28T15:56:01Z", "action_systemid": 0}]}


def body_of(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def linked_ticket(sid):
    add_case(sid)
    return wait_ticket(sid)


# --- tests -------------------------------------------------------------------------------

def test_listener_runs_and_answers_health():
    assert STATE["pid"] > 0
    status, headers, doc = request("GET", "/healthz", {"Host": LISTEN_HOST})
    assert (status, doc) == (200, {"status": "ok"}), (status, doc)
    assert headers.get("Content-Type") == "application/json"
    assert request("HEAD", "/healthz", {"Host": LISTEN_HOST})[0] == 200


def test_nothing_else_is_served():
    cases = [("GET", "/", 404), ("GET", "/halo/", 404), ("GET", "/halo/a/b", 404),
             ("POST", "/other", 404), ("GET", "/halo/%s" % STATE["key"], 405),
             ("PUT", "/halo/%s" % STATE["key"], 405), ("POST", "/healthz", 405),
             ("DELETE", "/healthz", 405)]
    got = [(m, p, request(m, p, {"Host": LISTEN_HOST, "Content-Length": "0"})[0]) for m, p, _ in cases]
    assert got == cases, got
    status, headers, _ = request("GET", "/halo/%s" % STATE["key"], {"Host": LISTEN_HOST})
    assert headers.get("Allow") == "POST"


def test_webhook_settings_show_the_listener_url():
    key = STATE["key"]
    assert q1("SELECT url FROM halo_itsm.webhook_settings(%s)", STATE["integration"]) == \
        "http://%s/halo/%s" % (LISTEN_HOST, key)
    # without webhook_base_url: the listener's own address
    with db("halo").cursor() as cur:
        cur.execute("SET halo_itsm.webhook_base_url = ''")
        cur.execute("SELECT url FROM halo_itsm.webhook_settings(%s)", (STATE["integration"],))
        url = cur.fetchone()[0]
    assert url == "http://%s/halo/%s" % (LISTEN_HOST, key), url


def test_accepted_delivery_applies_exact_rows():
    tid = linked_ticket("LS-NOTE")
    before = deliveries()
    body = body_of(note_event(tid, 9001))
    status, doc = post(body, signed(body))
    assert status == 200, (status, doc)
    assert doc == {"outcome": "notes_added", "case_sid": "LS-NOTE", "closed": False, "notes_added": 1,
                   "sync_queued": False, "halo_ticket_id": tid,
                   "delivery_id": "evt-%d-9001" % tid}, doc
    assert timeline("LS-NOTE") == [
        ("note", "halo", "Bob Agent", "Checked by the SOC", False, tid, 9001)]
    assert deliveries() == before + 1
    # the same delivery again: a duplicate, 200, nothing changes
    status, doc = post(body, signed(body))
    assert status == 200 and doc["outcome"] == "duplicate", (status, doc)
    assert len(timeline("LS-NOTE")) == 1 and deliveries() == before + 1


@timeout(90)
def test_mock_closing_a_ticket_reaches_the_case_through_the_listener():
    tid = linked_ticket("LS-CLOSE")
    MOCK.webhook(url="http://%s/halo/%s" % (LISTEN_HOST, STATE["key"]), secret=STATE["secret"],
                 mode="full", enabled=True, drop_next=0, date_offset_s=0, date_format="imf",
                 send_host=None)
    r = MOCK.close_ticket(tid, "Alice Agent")
    delivery = r["webhook"]
    assert delivery["status"] == 200, delivery
    assert answer(delivery)["outcome"] == "case_closed" and answer(delivery)["closed"] is True
    assert case_status("LS-CLOSE") == ("closed", True)
    assert [row[0] for row in timeline("LS-CLOSE")] == ["note", "closed"]
    MOCK.webhook(enabled=False)


def test_each_rejection_has_its_status_and_changes_nothing():
    tid = linked_ticket("LS-REJECT")
    good = body_of(note_event(tid, 9100))
    stale = email.utils.formatdate(time.time() - 3600, usegmt=True)
    bad_json = b'{"id": "evt-x", "ticket_id": '
    dup_key = b'{"id": "evt-dup", "id": "evt-dup2", "ticket_id": %d}' % tid
    no_id = body_of({"event": "Ticket Updated", "ticket_id": tid})
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    tampered = dict(signed(good))
    tampered["X-Signature"] = mock_sign("not-the-secret", {k: v for k, v in tampered.items()
                                                           if k != "X-Signature"}, good)
    no_sig = {k: v for k, v in signed(good).items() if k != "X-Signature"}
    no_date = {k: v for k, v in signed(good).items() if k != "X-Halo-Date"}
    rows = [
        # (name, key, headers, body, HTTP status, SQLSTATE)
        ("unknown key", "no-such-key", signed(good), good, 404, "WH001"),
        ("bad signature", None, tampered, good, 401, "WH007"),
        ("no signature", None, no_sig, good, 401, "WH006"),
        ("stale date", None, signed(good, date=stale), good, 401, "WH005"),
        ("no date header", None, no_date, good, 400, "WH003"),
        ("malformed JSON", None, signed(bad_json), bad_json, 400, "WH008"),
        ("duplicate key", None, signed(dup_key), dup_key, 400, "WH009"),
        ("no delivery id", None, signed(no_id), no_id, 400, "WH011"),
        ("oversized", None, {"Content-Type": "application/json", "Content-Length": str(len(big)),
                             "Host": LISTEN_HOST}, big, 413, "WH002"),
    ]
    before = (deliveries(), len(timeline("LS-REJECT")))
    got = []
    for name, key, headers, body, _, _ in rows:
        last_rejected = q1("SELECT coalesce(max(id), 0) FROM halo_itsm.rejected_webhooks")
        try:
            status, doc = post(body, headers, key)
        except (ConnectionResetError, BrokenPipeError):
            status, doc = 0, None
        sqlstate = (doc or {}).get("sqlstate")
        kept = q1("SELECT sqlstate FROM halo_itsm.rejected_webhooks WHERE id > %s ORDER BY id DESC LIMIT 1",
                  last_rejected)
        got.append((name, status, sqlstate, kept))
    expected = [(name, st, code, None if key else code) for name, key, _, _, st, code in rows]
    assert got == expected, "\n".join("%s\n  %s" % (g, e) for g, e in zip(got, expected) if g != e)
    assert (deliveries(), len(timeline("LS-REJECT"))) == before
    assert listener_pid() == STATE["pid"]


def test_malformed_requests_get_4xx():
    key = STATE["key"]
    host = "Host: %s\r\n" % LISTEN_HOST
    cases = [
        ("bad content-length", "POST /halo/%s HTTP/1.1\r\n%sContent-Length: abc\r\n\r\n{}" % (key, host)),
        ("negative content-length", "POST /halo/%s HTTP/1.1\r\n%sContent-Length: -5\r\n\r\n{}" % (key, host)),
        ("chunked, unsigned", "POST /halo/%s HTTP/1.1\r\n%sTransfer-Encoding: chunked\r\n\r\n"
         "2\r\n{}\r\n0\r\n\r\n" % (key, host)),
        ("bad chunk", "POST /halo/%s HTTP/1.1\r\n%sTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
         % (key, host)),
        ("no body", "POST /halo/%s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (key, host)),
        ("huge header", "POST /halo/%s HTTP/1.1\r\n%sX-Big: %s\r\nContent-Length: 0\r\n\r\n"
         % (key, host, "a" * 100000)),
        ("too many headers", "POST /halo/%s HTTP/1.1\r\n%s%sContent-Length: 0\r\n\r\n"
         % (key, host, "".join("X-H%d: v\r\n" % i for i in range(60)))),
        ("broken request line", "POST\r\n\r\n"),
        ("no Host (HTTP/1.1)", "POST /halo/%s HTTP/1.1\r\nContent-Length: 0\r\n\r\n" % key),
    ]
    got = [(name, raw(data.encode())) for name, data in cases]
    # a request line that is not HTTP at all gets the connection closed without an answer
    bad = [(n, s) for n, s in got if not 400 <= s < 500 and not (n == "broken request line" and s == 0)]
    assert not bad, got
    # chunked: the body is read (and refused: a chunked delivery carries no signed content-length)
    assert dict(got)["chunked, unsigned"] == 400
    assert dict(got)["huge header"] in (413, 431) and dict(got)["too many headers"] == 431
    assert listener_pid() == STATE["pid"]


def test_a_chunked_signed_delivery_is_read_whole():
    tid = linked_ticket("LS-CHUNK")
    body = body_of(note_event(tid, 9200))
    headers = signed(body)
    # sent chunked (Content-Length stays as Halo signed it, as a header only)
    lines = ["POST /halo/%s HTTP/1.1" % STATE["key"], "Transfer-Encoding: chunked"]
    lines += ["%s: %s" % (k, v) for k, v in headers.items() if k != "Content-Length"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50]) for i in range(0, len(body), 50))
    # no content-length header reaches ingest_webhook: refused as unsigned (WH003), not read as empty
    status = raw(head + chunks + b"0\r\n\r\n")
    assert status == 400, status
    assert q1("SELECT reason FROM halo_itsm.rejected_webhooks ORDER BY id DESC LIMIT 1").find("content-length") >= 0


def test_rate_limit_per_source():
    set_system({"halo_itsm.listen_rate_limit": "5"})
    try:
        got = [request("GET", "/healthz", {"Host": LISTEN_HOST})[:2] for _ in range(7)]
        assert [s for s, _ in got] == [200] * 5 + [429, 429], got
        assert 1 <= int(got[5][1]["Retry-After"]) <= 60
    finally:
        set_system({"halo_itsm.listen_rate_limit": "0"})
    assert request("GET", "/healthz", {"Host": LISTEN_HOST})[0] == 200


def test_deliveries_run_as_the_listen_role():
    assert q1("SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = 'halo_itsm_listener'") is False
    assert q1("SELECT has_function_privilege('halo_itsm_listener', "
              "'halo_itsm.ingest_webhook(text, jsonb, bytea)', 'EXECUTE')") is True
    assert q1("SELECT has_table_privilege('halo_itsm_listener', 'halo_itsm.integration_secrets', 'SELECT')") is False
    tid = linked_ticket("LS-ROLE")
    # a role without EXECUTE: the delivery fails (500: Halo retries), the listener lives on
    q("DROP ROLE IF EXISTS ls_norights")
    q("CREATE ROLE ls_norights NOLOGIN")
    try:
        set_system({"halo_itsm.listen_role": "ls_norights"})
        body = body_of(note_event(tid, 9300))
        status, doc = post(body, signed(body))
        assert (status, doc["sqlstate"]) == (500, "42501"), (status, doc)
        set_system({"halo_itsm.listen_role": "postgres"})    # a superuser is refused
        status, doc = post(body, signed(body))
        assert (status, doc["sqlstate"]) == (500, "42501"), (status, doc)
        assert request("GET", "/healthz", {"Host": LISTEN_HOST})[0] == 503
        set_system({"halo_itsm.listen_role": "no_such_role"})
        status, doc = post(body, signed(body))
        assert (status, doc["sqlstate"]) == (500, "42704"), (status, doc)
    finally:
        reset_system(["halo_itsm.listen_role"])
        q("DROP ROLE IF EXISTS ls_norights")
    status, doc = post(body, signed(body))
    assert status == 200 and doc["notes_added"] == 1, (status, doc)
    assert listener_pid() == STATE["pid"]


@timeout(60)
def test_slow_client_is_dropped_while_others_are_served():
    set_system({"halo_itsm.listen_request_timeout": "2s"})
    try:
        tid = linked_ticket("LS-SLOW")
        slow = socket.create_connection(("127.0.0.1", LISTEN_PORT), timeout=1)
        data = ("POST /halo/%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n" % (
            STATE["key"], LISTEN_HOST)).encode() + b"x" * 100
        start = time.monotonic()
        dropped_at = None
        served = None
        i = 0
        while time.monotonic() - start < 10 and dropped_at is None:
            try:
                slow.send(data[i:i + 1])
                i += 1
                try:
                    if slow.recv(1024) == b"":
                        dropped_at = time.monotonic() - start
                except socket.timeout:
                    pass
            except OSError:
                dropped_at = time.monotonic() - start
            if served is None:
                body = body_of(note_event(tid, 9400))
                served = post(body, signed(body))[0]
        slow.close()
        assert served == 200, served
        assert dropped_at is not None and 1.5 <= dropped_at <= 5, dropped_at
    finally:
        set_system({"halo_itsm.listen_request_timeout": None})


def socket_fds(pid):
    """How many sockets a process has open."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


@timeout(120)
def test_a_thousand_connections_are_refused_beyond_the_limit_with_memory_bounded():
    pid = listener_pid()
    limit = int(q1("SELECT current_setting('halo_itsm.listen_max_connections')"))
    rss_before = rss_kb(pid)
    fds_before = socket_fds(pid)
    socks = []
    try:
        for _ in range(1000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", LISTEN_PORT))    # beyond the backlog: SYNs wait
            socks.append(s)
        time.sleep(1)
        for s in socks:
            try:
                s.send(b"POST /halo/x HTTP/1.1\r\nHost: a\r\n")    # an unfinished request
            except OSError:
                pass
        time.sleep(2)
        held = socket_fds(pid) - fds_before
        rss_during = rss_kb(pid)
        assert limit // 2 <= held <= limit, "the listener holds %d connections (limit %d)" % (held, limit)
        assert rss_during - rss_before < 32 * 1024, (rss_before, rss_during)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    assert request("GET", "/healthz", {"Host": LISTEN_HOST})[0] == 200
    assert listener_pid() == pid


@timeout(90)
def test_fuzzed_request_stream_never_ends_the_listener():
    rnd = random.Random(1234)
    tid = linked_ticket("LS-FUZZ")
    body = body_of(note_event(tid, 9500))
    base = b"POST /halo/%s HTTP/1.1\r\n" % STATE["key"].encode() + b"".join(
        b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in signed(body).items()) + b"\r\n" + body
    # a number of requests, not a time: under load each request that leaves the listener
    # waiting for more bytes costs up to the 0.2 s read timeout below
    for _ in range(FUZZ_REQUESTS):
        if rnd.random() < 0.3:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
        else:
            data = bytearray(base)
            for _ in range(rnd.randrange(1, 8)):
                op = rnd.randrange(3)
                pos = rnd.randrange(len(data))
                if op == 0:
                    data[pos] = rnd.randrange(256)
                elif op == 1:
                    del data[pos:pos + rnd.randrange(1, 20)]
                else:
                    data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20)))
            data = bytes(data)
        try:
            with socket.create_connection(("127.0.0.1", LISTEN_PORT), timeout=1) as conn:
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(0.2)
                conn.recv(4096)
        except OSError:
            pass
    assert listener_pid() == STATE["pid"]
    assert request("GET", "/healthz", {"Host": LISTEN_HOST})[0] == 200
    # a good delivery after the storm is applied
    body = body_of(note_event(tid, 9501))
    status, doc = post(body, signed(body))
    assert status == 200, (status, doc)


@timeout(120)
def test_https_with_a_test_certificate():
    certs = os.path.join(RUN_DIR, "listener-certs")
    subprocess.run(["bash", os.path.join(ROOT, "test", "lib", "make_test_certs.sh"), certs],
                   check=True, stdout=subprocess.DEVNULL)
    # PGC_POSTMASTER settings: ALTER SYSTEM, then a restart
    q("ALTER SYSTEM SET halo_itsm.listen_tls_cert_file = %s", os.path.join(certs, "server.pem"), db="postgres")
    q("ALTER SYSTEM SET halo_itsm.listen_tls_key_file = %s", os.path.join(certs, "server.key"), db="postgres")
    try:
        restart_cluster()
        wait_until(lambda: q1("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", LISTENER_TYPE),
                   timeout=30, msg="the listener after the restart")
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        status, _, doc = request("GET", "/healthz", {"Host": LISTEN_HOST}, scheme="https", context=ctx)
        assert (status, doc) == (200, {"status": "ok"}), (status, doc)
        tid = linked_ticket("LS-TLS")
        body = body_of(note_event(tid, 9600))
        status, _, doc = request("POST", "/halo/%s" % STATE["key"], signed(body), body,
                                 scheme="https", context=ctx)
        assert status == 200 and doc["notes_added"] == 1, (status, doc)
        # plain HTTP to the TLS port gets no answer that could be mistaken for one
        assert raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3) in (0, 400)
    finally:
        q("ALTER SYSTEM RESET halo_itsm.listen_tls_cert_file", db="postgres")
        q("ALTER SYSTEM RESET halo_itsm.listen_tls_key_file", db="postgres")
        restart_cluster()
        STATE["pid"] = listener_pid()
    assert request("GET", "/healthz", {"Host": LISTEN_HOST})[0] == 200

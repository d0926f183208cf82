"""halo_test: helpers for the integration tests (stdlib + psycopg2).

Connections come from PGHOST/PGPORT/PGUSER (set by test/lib/common.sh; defaults /tmp,
54329, postgres). Connections opened with db() or q() are closed by the runner after each
test, and cancelled when a test times out.
"""
import http.client
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg2

PGHOST = os.environ.get("PGHOST", "/tmp")
PGPORT = int(os.environ.get("PGPORT", "54329"))
PGUSER = os.environ.get("PGUSER", "postgres")
MOCK_PORT = int(os.environ.get("HI_MOCK_PORT", "18080"))
# the mock's authorisation server (Halo's token endpoint), another port of the same process
MOCK_AUTH_PORT = MOCK_PORT + 10
RECEIVER_PORT = int(os.environ.get("HI_RECEIVER_PORT", "18081"))
PGBIN = os.environ.get("HI_PGBIN", "/usr/lib/postgresql/15/bin")

_open = []      # every connection opened here, in order (the runner closes them)
_cached = {}    # dbname -> the connection q() uses


def timeout(seconds):
    """Decorator: give one test its own timeout (the same as setting fn.TIMEOUT)."""
    def set_timeout(fn):
        fn.TIMEOUT = seconds
        return fn
    return set_timeout


# --- PostgreSQL -------------------------------------------------------------------------

def db(dbname="halo", autocommit=True):
    """A new psycopg2 connection to dbname."""
    conn = psycopg2.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname=dbname,
                            application_name="halo_test")
    conn.autocommit = autocommit
    _open.append(conn)
    return conn


def _conn(dbname):
    conn = _cached.get(dbname)
    if conn is None or conn.closed:
        conn = _cached[dbname] = db(dbname)
    return conn


def q(sql, *args, db="halo"):
    """Run sql (with %s parameters args) in an autocommit session; a list of tuples."""
    with _conn(db).cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def q1(sql, *args, db="halo"):
    """The first column of the first row of q(...), or None when there is no row."""
    rows = q(sql, *args, db=db)
    return rows[0][0] if rows else None


def expect_error(sqlstate, fn, *args, **kwargs):
    """Call fn(*args, **kwargs) (or q(fn) when fn is SQL text); assert it fails with
    SQLSTATE sqlstate; return the psycopg2 error."""
    try:
        if isinstance(fn, str):
            q(fn, *args, **kwargs)
        else:
            fn(*args, **kwargs)
    except psycopg2.Error as e:
        assert e.pgcode == sqlstate, \
            "expected SQLSTATE %s, got %s: %s" % (sqlstate, e.pgcode, (e.pgerror or str(e)).strip())
        return e
    raise AssertionError("expected SQLSTATE %s, but there was no error" % sqlstate)


def open_connections():
    """The connections open now (pass to close_connections as keep)."""
    return set(_open)


def cancel_connections():
    """Cancel whatever query each open connection runs (safe from another thread)."""
    for conn in list(_open):
        if not conn.closed:
            try:
                conn.cancel()
            except psycopg2.Error:
                pass


def close_connections(keep=()):
    """Close every connection opened here except those in keep."""
    for conn in [c for c in _open if c not in keep]:
        try:
            conn.close()
        except psycopg2.Error:
            pass
        _open.remove(conn)
    for name in [n for n, c in _cached.items() if c.closed]:
        del _cached[name]


# --- waiting and logs -------------------------------------------------------------------

def raw_post(port, path, headers, body):
    """POSTs body to 127.0.0.1:port with exactly these headers (no Host or length added):
    (status, answer headers, decoded JSON answer or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body.encode("utf-8") if isinstance(body, str) else body)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None
    finally:
        conn.close()


def wait_until(fn, timeout=20, interval=0.05, msg=None):
    """Call fn until it returns something truthy and return that; after timeout seconds
    raise AssertionError with msg and fn's last value. Exceptions from fn propagate."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not true after %ss (last value: %r)"
                                 % (msg or "wait_until", timeout, last))
        time.sleep(interval)


def log_mark():
    """The server log's current size: pass it to server_log(since=...)."""
    try:
        return os.path.getsize(os.environ["HI_PG_LOG"])
    except (KeyError, OSError):
        return 0


def server_log(since=0):
    """The server log's text (from byte offset since); path from env HI_PG_LOG."""
    path = os.environ.get("HI_PG_LOG")
    assert path, "HI_PG_LOG is not set (run through test/run_tests.sh)"
    with open(path, "rb") as f:
        f.seek(since)
        return f.read().decode("utf-8", "replace")


# --- the cluster ------------------------------------------------------------------------

def _pg_ctl(*args):
    pgdata = os.environ.get("HI_PGDATA")
    assert pgdata, "HI_PGDATA is not set (run through test/run_tests.sh)"
    cmd = [os.path.join(PGBIN, "pg_ctl"), "-D", pgdata, "-w", "-t", "60"] + list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    close_connections()
    res = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert res.returncode == 0, "pg_ctl %s failed:\n%s" % (" ".join(args), res.stdout)


def stop_cluster(mode="fast"):
    """Stop the test cluster (mode: smart, fast or immediate)."""
    _pg_ctl("-m", mode, "stop")


def start_cluster():
    """Start the test cluster again (log appended to HI_PG_LOG)."""
    _pg_ctl("-l", os.environ["HI_PG_LOG"], "start")


def restart_cluster(mode="fast"):
    stop_cluster(mode)
    start_cluster()


# --- the mock Halo server ---------------------------------------------------------------

class Mock:
    """The mock Halo server's control API (test/mock/mock_halo.py, under /_mock/)."""

    def __init__(self, port=MOCK_PORT, scheme="http"):
        self.base = "%s://127.0.0.1:%d" % (scheme, port)
        self.ssl = ssl._create_unverified_context() if scheme == "https" else None

    def call(self, method, path, body=None):
        """One request; the decoded JSON answer (or text, or None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise AssertionError("mock %s %s: HTTP %d: %s"
                                 % (method, path, e.code, e.read().decode("utf-8", "replace")))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def reset(self):
        """Forget tickets, actions, requests, faults and configuration."""
        return self.call("POST", "/_mock/reset")

    def auth_url(self):
        """The base URL of the mock's authorisation server (what GET /api/authinfo names
        by default); its token endpoint is auth_url() + "/token"."""
        return self.call("GET", "/_mock/servers")["auth"]

    def config(self, **kw):
        """Change the mock's behaviour (e.g. latency_ms=...)."""
        return self.call("POST", "/_mock/config", kw)

    def faults(self, rules):
        """Add fault rules (a list of dicts, or one dict); returns the rules in force."""
        if isinstance(rules, dict):
            rules = [rules]
        return self.call("POST", "/_mock/faults", {"rules": rules})

    def clear_faults(self):
        return self.call("DELETE", "/_mock/faults")

    def requests(self, path=None, method=None, since=0):
        """The requests the mock received (after sequence number since), oldest first,
        filtered by exact path and by method when given."""
        query = {k: v for k, v in (("path", path), ("method", method), ("since", since)) if v}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self.call("GET", "/_mock/requests" + suffix)

    def tickets(self):
        return self.call("GET", "/_mock/tickets")

    def actions(self):
        return self.call("GET", "/_mock/actions")

    def close_ticket(self, id, agent):
        """An agent closes ticket id in Halo (the mock then sends its webhook)."""
        return self.call("POST", "/_mock/tickets/%d/close" % id, {"agent_name": agent})

    def add_note(self, id, note, who, hidden=False):
        """Someone adds a note to ticket id in Halo (the mock then sends its webhook)."""
        return self.call("POST", "/_mock/tickets/%d/note" % id,
                         {"note": note, "who": who, "hiddenfromuser": hidden})

    def webhook(self, **cfg):
        """Configure the webhook the mock sends (url, secret, ...)."""
        return self.call("POST", "/_mock/webhook", cfg)

    def webhooks(self):
        """The webhook deliveries the mock sent, with their answers."""
        return self.call("GET", "/_mock/webhooks")


# --- a clean halo_itsm state ------------------------------------------------------------

HALO_TABLES = ("outbox", "webhook_deliveries", "timeline", "tickets", "detections", "cases",
               "integration_secrets", "integrations")


def ensure_extension(dbname="halo"):
    """CREATE EXTENSION IF NOT EXISTS halo_itsm in dbname."""
    q("CREATE EXTENSION IF NOT EXISTS halo_itsm", db=dbname)


def clean_halo_tables(dbname="halo", mock=None):
    """Empty every halo_itsm table of dbname, after the worker has finished what it has in
    flight (mock: reset first, so that no fault or latency holds those requests up)."""
    (mock or Mock()).reset()
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox o JOIN pg_stat_activity a"
                          " ON a.pid = o.claimed_by WHERE o.state = 'in_flight'", db=dbname),
               timeout=15, msg="items of an earlier test still in flight")
    for table in HALO_TABLES:
        q("DELETE FROM halo_itsm.%s" % table, db=dbname)


def fresh_integration(dbname="halo", mock=None, tenant=None, client_id="test-client",
                      client_secret="test-secret", name="default", **configure):
    """Clean state: reset the mock, empty the halo_itsm tables of dbname, then connect() an
    integration to the mock and configure() it (category defaults to 'Security>Incident';
    other keyword arguments go to configure()). Returns the integration id."""
    mock = mock or Mock()
    clean_halo_tables(dbname, mock)
    mock.reset()
    iid = q1("SELECT halo_itsm.connect(%s, %s, %s, tenant => %s, name => %s)",
             "http://127.0.0.1:%d" % MOCK_PORT, client_id, client_secret, tenant, name, db=dbname)
    configure.setdefault("category", "Security>Incident")
    args = ", ".join("%s => %%s" % k for k in configure)
    q("SELECT halo_itsm.configure(%%s, %s)" % args, iid, *configure.values(), db=dbname)
    return iid


# --- faults and operations: settings, the mock process, secrets ---------------------------
# (used by test_faults, test_outbound_safety, test_dump_restore, test_roles and
# test_zz_log_hygiene)

RUN_DIR = (os.path.dirname(os.environ.get("HI_PG_LOG", ""))
           or os.environ.get("HI_RUN_DIR", "/tmp/halo_itsm-run"))
ROOT = os.environ.get("HI_ROOT") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
# HI_LONG=1: the long variants (e.g. 5,000 cases instead of 500 in test_faults)
LONG = os.environ.get("HI_LONG", "0") == "1"
WORKER_TYPE = "halo_itsm delivery worker"

# Client secrets the tests hand to connect(), set_credentials() and the mock. The log
# hygiene test (test_zz_log_hygiene) greps the server log for each of them, for every
# secret still stored in integration_secrets and for every token, webhook secret and
# signature the mock saw: choose distinctive secrets (nothing a log line could hold by
# chance), and register any secret not stored in a table with remember_secret().
KNOWN_SECRETS = ["test-secret",
                 # client and webhook secrets of the regress tests (same cluster, same log)
                 "secret-1", "top-secret-value", "client-secret", "some-other-secret",
                 "not-the-secret", "hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2"]
_SECRETS_FILE = os.path.join(RUN_DIR, "test-secrets.txt")


def remember_secret(value):
    """Register a secret a test used, for the log hygiene test; returns value."""
    with open(_SECRETS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(value) + "\n")
    return value


def known_secrets():
    """KNOWN_SECRETS and every secret registered with remember_secret()."""
    out = list(KNOWN_SECRETS)
    try:
        with open(_SECRETS_FILE, encoding="utf-8") as f:
            out += [json.loads(line) for line in f if line.strip()]
    except OSError:
        pass
    return out


def _show_fresh(name):
    """current_setting(name) in a new session (which sees the last reload)."""
    conn = psycopg2.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname="postgres",
                            application_name="halo_test")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting(%s)", (name,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def set_system(settings):
    """ALTER SYSTEM SET each name = value of the dict (value None: RESET), reload, and wait
    until new sessions see the values (give them as SHOW prints them: '1s', '50', 'off');
    returns the values in force before, for set_system(before)-style restores."""
    before = {}
    for name, value in settings.items():
        assert all(c.isalnum() or c in "._" for c in name), name
        before[name] = _show_fresh(name)
        if value is None:
            q("ALTER SYSTEM RESET %s" % name, db="postgres")
        else:
            q("ALTER SYSTEM SET %s = %%s" % name, str(value), db="postgres")
    q("SELECT pg_reload_conf()", db="postgres")
    for name, value in settings.items():
        if value is not None:
            wait_until(lambda: _show_fresh(name) == str(value), timeout=10,
                       msg="%s = %s after pg_reload_conf()" % (name, value))
    time.sleep(0.3)     # the worker handles its SIGHUP at its next round
    return before


def reset_system(names):
    """ALTER SYSTEM RESET each name and reload (back to postgresql.conf)."""
    set_system({name: None for name in names})
    time.sleep(0.2)


def worker_pid(dbname="halo"):
    """The pid of the delivery worker, or None while there is none."""
    return q1("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", WORKER_TYPE,
              db=dbname)


def q1_retry(sql, *args, db="halo", timeout=60):
    """q1(), retried while the server restarts (after a crash or pg_ctl stop/start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return q1(sql, *args, db=db)
        except psycopg2.DatabaseError as e:
            # a lost connection ("server closed the connection unexpectedly" comes without
            # a SQLSTATE), a refused one (in recovery), or a session ended by the restart
            if not (isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError))
                    or e.pgcode is None or e.pgcode.startswith(("57P", "08"))):
                raise
            close_connections()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


MOCK_SCRIPT = os.path.join(ROOT, "test", "mock", "mock_halo.py")
MOCK_PID_FILE = os.path.join(RUN_DIR, "mock.pid")


def _save_mock_ledger(mock):
    """Keep the tokens, webhook secrets and signatures a mock saw, before it stops."""
    try:
        ledger = mock.call("GET", "/_mock/secrets")
    except (AssertionError, OSError):
        return
    path = os.path.join(RUN_DIR, "mock-secrets-%d-%d.json" % (os.getpid(), time.time() * 1e6))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(ledger, f)


def mock_secrets():
    """{tokens, webhook_secrets, signatures} the mock saw since it started, and every
    mock stopped by stop_mock() or ExtraMock.stop() before."""
    out = {"tokens": [], "webhook_secrets": [], "signatures": []}
    ledgers = []
    try:
        ledgers.append(Mock().call("GET", "/_mock/secrets"))
    except (AssertionError, OSError):
        pass
    for name in sorted(os.listdir(RUN_DIR)):
        if name.startswith("mock-secrets-") and name.endswith(".json"):
            with open(os.path.join(RUN_DIR, name), encoding="utf-8") as f:
                ledgers.append(json.load(f))
    for ledger in ledgers:
        for key in out:
            out[key] += ledger.get(key, [])
    return out


def _port_answers(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def stop_mock():
    """Stop the harness's mock Halo server (pid in RUN_DIR/mock.pid): Halo is down."""
    _save_mock_ledger(Mock())
    with open(MOCK_PID_FILE) as f:
        pid = int(f.read().strip())
    try:
        os.kill(pid, 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    wait_until(lambda: not _port_answers(MOCK_PORT), timeout=10, msg="mock port closed")


def start_mock(*args):
    """Start the harness's mock Halo again on MOCK_PORT (fresh state), as
    test/lib/common.sh hi_mock_start does; records its pid for the harness's cleanup."""
    with open(os.path.join(RUN_DIR, "mock.log"), "ab") as log:
        proc = subprocess.Popen(["/usr/bin/python3", MOCK_SCRIPT, "--port", str(MOCK_PORT),
                                 "--quiet"] + list(args), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with open(MOCK_PID_FILE, "w") as f:
        f.write("%d\n" % proc.pid)
    wait_until(lambda: proc.poll() is not None or _port_answers(MOCK_PORT), timeout=10,
               msg="mock listening")
    assert proc.poll() is None, "the mock exited at once (see %s/mock.log)" % RUN_DIR
    return proc


def mock_running():
    """True when the harness's mock answers its control API."""
    try:
        return Mock().call("GET", "/_mock/health") == {"ok": True}
    except (AssertionError, OSError):
        return False


class ExtraMock:
    """A second mock Halo server on a free port (e.g. over HTTPS with
    args=('--tls-cert', C, '--tls-key', K)); .port, .url, .mock (its control API); stop()."""

    def __init__(self, *args):
        import select
        self.proc = subprocess.Popen(["/usr/bin/python3", MOCK_SCRIPT, "--port", "0",
                                      "--quiet"] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        line = b""
        deadline = time.monotonic() + 10
        while b"\n" not in line and time.monotonic() < deadline and self.proc.poll() is None:
            if select.select([self.proc.stdout], [], [], 0.1)[0]:
                line += os.read(self.proc.stdout.fileno(), 4096)
        text = line.decode("utf-8", "replace")
        if "mock_halo listening on " not in text:
            self.proc.kill()
            raise AssertionError("extra mock did not start: %r %r"
                                 % (text, self.proc.stderr.read1(4096)))
        self.url = text.split("mock_halo listening on ", 1)[1].split()[0]
        self.scheme = self.url.split(":", 1)[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.mock = Mock(port=self.port, scheme=self.scheme)

    def stop(self):
        """Stop it (keeping the secrets it saw for the log hygiene test)."""
        if self.proc.poll() is None:
            _save_mock_ledger(self.mock)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def connect_integrations(n, dbname="halo", mock=None, prefix="int", **configure):
    """Clean state (fresh_integration), then n integrations to the mock, each with its own
    distinctive client id and secret (registered with the mock and remember_secret());
    configure() keyword arguments apply to all. Returns their ids."""
    import secrets as _secrets
    mock = mock or Mock()
    creds = [("%s-client-%d" % (prefix, k),
              remember_secret("%s-secret-%d-%s" % (prefix, k, _secrets.token_hex(8))))
             for k in range(1, n + 1)]
    ids = [fresh_integration(dbname, mock, client_id=creds[0][0], client_secret=creds[0][1],
                             name="%s-1" % prefix, **configure)]
    mock.config(clients=[{"client_id": c, "client_secret": s} for c, s in creds])
    configure.setdefault("category", "Security>Incident")
    args = ", ".join("%s => %%s" % k for k in configure)
    for k, (client_id, secret) in enumerate(creds[1:], start=2):
        iid = q1("SELECT halo_itsm.connect(%s, %s, %s, name => %s)",
                 "http://127.0.0.1:%d" % MOCK_PORT, client_id, secret, "%s-%d" % (prefix, k),
                 db=dbname)
        q("SELECT halo_itsm.configure(%%s, %s)" % args, iid, *configure.values(), db=dbname)
        ids.append(iid)
    return ids


def insert_cases(prefix, n, integration_ids, dbname="halo", batch=50, pause=0.0, first=1):
    """Insert n cases with sids prefix + 6 digits (first, first+1, ...), spread round-robin
    over integration_ids, batch rows per transaction, pause seconds between batches;
    returns their sids."""
    for lo in range(first, first + n, batch):
        hi = min(lo + batch, first + n) - 1
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " SELECT %s || lpad(g::text, 6, '0'), 'Case ' || g || ' of ' || %s,"
          "        (enum_range(NULL::halo_itsm.severity))[1 + g %% 5],"
          "        (%s::int[])[1 + g %% %s]"
          "   FROM generate_series(%s, %s) g",
          prefix, prefix, list(integration_ids), len(integration_ids), lo, hi, db=dbname)
        if pause:
            time.sleep(pause)
    return ["%s%06d" % (prefix, g) for g in range(first, first + n)]


def outbox_counts(dbname="halo"):
    """{state: count} of the outbox."""
    return dict(q("SELECT state, count(*) FROM halo_itsm.outbox GROUP BY 1", db=dbname))


def wait_drained(dbname="halo", stall=60, allow_dead=False, retry_connect=False):
    """Wait until no outbox item is pending or in flight; fail when the queue did not
    shrink for stall seconds, or (unless allow_dead) as soon as an item is dead.
    Returns the seconds waited."""
    start = last_change = time.monotonic()
    last = None
    get = (lambda sql: q1_retry(sql, db=dbname)) if retry_connect else (lambda sql: q1(sql, db=dbname))
    while True:
        left = get("SELECT count(*) FROM halo_itsm.outbox WHERE state IN ('pending', 'in_flight')")
        if not allow_dead:
            dead = q("SELECT id, last_error FROM halo_itsm.outbox WHERE state = 'dead' LIMIT 3",
                     db=dbname)
            assert not dead, "dead outbox items: %r" % (dead,)
        if left == 0:
            return time.monotonic() - start
        if last is None or left < last:
            last, last_change = left, time.monotonic()
        assert time.monotonic() - last_change < stall, \
            "the outbox did not shrink for %ss: %d items left (%r)" % (
                stall, left, q("SELECT state, attempts, last_error FROM halo_itsm.outbox"
                               " WHERE state IN ('pending', 'in_flight') ORDER BY id LIMIT 3",
                               db=dbname))
        time.sleep(0.2)


def mock_tickets_by_sid(mock=None):
    """{third_party_id_string: [ticket, ...]} of every ticket in the mock."""
    out = {}
    for t in (mock or Mock()).tickets():
        out.setdefault(t.get("third_party_id_string"), []).append(t)
    return out


def assert_one_ticket_per_case(dbname="halo", mock=None, sids=None):
    """Exactly one Halo ticket per case (by third_party_id_string), none for anything
    else, and every case linked to that very ticket (tickets row, same integration).
    sids: the cases expected (default: every row of cases). Returns the number checked."""
    by_sid = mock_tickets_by_sid(mock)
    rows = q("SELECT c.sid, coalesce(c.integration_id, t.integration_id), t.halo_ticket_id,"
             "       t.integration_id"
             "  FROM halo_itsm.cases c LEFT JOIN halo_itsm.tickets t ON t.case_id = c.id",
             db=dbname)
    if sids is not None:
        assert sorted(r[0] for r in rows) == sorted(sids), "the cases are not the expected ones"
    problems = []
    for sid, case_iid, halo_id, ticket_iid in rows:
        got = by_sid.get(sid, [])
        if len(got) != 1:
            problems.append("%s: %d tickets in Halo %r" % (sid, len(got), [t["id"] for t in got]))
        elif halo_id != got[0]["id"] or ticket_iid != case_iid:
            problems.append("%s: linked to %r (integration %r), Halo has %r (integration %r)"
                            % (sid, halo_id, ticket_iid, got[0]["id"], case_iid))
    extra = set(by_sid) - {r[0] for r in rows}
    if extra:
        problems.append("tickets in Halo for no case: %r" % sorted(extra)[:10])
    assert not problems, "%d problems, e.g.:\n%s" % (len(problems), "\n".join(problems[:10]))
    return len(rows)

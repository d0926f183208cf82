"""halo_test: helpers for the integration tests (stdlib + psycopg2).

Connections come from PGHOST/PGPORT/PGUSER (set by test/lib/common.sh; defaults /tmp,
54329, postgres). Connections opened with db() or q() are closed by the runner after each
test, and cancelled when a test times out.
"""
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

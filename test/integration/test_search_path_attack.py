"""A database owner cannot become superuser through halo_itsm (issue 9, item 2).

A non-superuser owner of the worker's database (halo) or of a database where pg_cron runs
CALL halo_itsm.deliver() (halo_manual) sets a search_path that puts their own schema
first, with an operator <> (int4, int4) and a type named jsonb (with casts from text and
to pg_catalog.jsonb) whose functions make the owner superuser and record the call. The
worker, restarted so that it picks the per-database setting up, delivers a case and a
ticket sync; deliver() does the same in a session with that search_path. Afterwards the
owner is still not superuser, the evil functions never ran, and both items are done.
"""
import psycopg2

from halo_test import (PGHOST, PGPORT, Mock, db, ensure_extension, fresh_integration, q,
                       q1, timeout, wait_until, worker_pid)

OWNER = "hi_test_db_owner"
# What a database owner may set for every session of their database that would stop or
# fail the worker's writes (review of item 2): the worker pins them back.
READ_ONLY_SETTINGS = {"default_transaction_read_only": "on",
                      "default_transaction_isolation": "'serializable'",
                      "lock_timeout": "'1ms'"}
MOCK = Mock()

# Run by the owner: everything an attacker needs, in a schema of their own.
EVIL = r"""
CREATE SCHEMA evil;
CREATE TABLE evil.calls (fn text, by_user name, at timestamptz DEFAULT pg_catalog.now());
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.escalate(fn text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls (fn, by_user) VALUES (fn, pg_catalog.current_user());
    BEGIN
        EXECUTE 'ALTER ROLE hi_test_db_owner SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
END $$;
CREATE FUNCTION evil.ne(a int4, b int4) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evil.escalate('operator <>');
    RETURN a OPERATOR(pg_catalog.<>) b;
END $$;
CREATE OPERATOR evil.<> (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.ne);
CREATE TYPE evil.jsonb AS (j text);
CREATE FUNCTION evil.from_text(t text) RETURNS evil.jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evil.escalate('cast text to jsonb');
    RETURN ROW(t)::evil.jsonb;
END $$;
CREATE FUNCTION evil.to_jsonb(v evil.jsonb) RETURNS pg_catalog.jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evil.escalate('cast jsonb to pg_catalog.jsonb');
    RETURN (v).j::pg_catalog.jsonb;
END $$;
CREATE CAST (text AS evil.jsonb) WITH FUNCTION evil.from_text(text);
CREATE CAST (evil.jsonb AS pg_catalog.jsonb) WITH FUNCTION evil.to_jsonb(evil.jsonb) AS IMPLICIT;
"""


def _as_owner(dbname):
    conn = psycopg2.connect(host=PGHOST, port=PGPORT, user=OWNER, dbname=dbname,
                            application_name="halo_test")
    conn.autocommit = True
    return conn


def _undo(dbname):
    q("ALTER DATABASE %s RESET search_path" % dbname, db="postgres")
    for name in READ_ONLY_SETTINGS:
        q("ALTER DATABASE %s RESET %s" % (dbname, name), db="postgres")
    q("ALTER DATABASE %s OWNER TO postgres" % dbname, db="postgres")
    q("DROP SCHEMA IF EXISTS evil CASCADE", db=dbname)


def _owner_attacks(dbname):
    """The owner (not superuser) sets the trap in dbname."""
    q("ALTER ROLE %s NOSUPERUSER" % OWNER, db="postgres")
    q("ALTER DATABASE %s OWNER TO %s" % (dbname, OWNER), db="postgres")
    conn = _as_owner(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(EVIL)
            cur.execute("ALTER DATABASE %s SET search_path = evil, pg_catalog" % dbname)
    finally:
        conn.close()


def _not_escalated(dbname):
    calls = q("SELECT fn, by_user FROM evil.calls", db=dbname)
    assert q1("SELECT rolsuper FROM pg_roles WHERE rolname = %s", OWNER, db="postgres") is False, \
        "the owner became superuser; the evil functions ran: %r" % calls
    assert calls == []


def setup_module():
    for dbname in ("halo", "halo_manual"):
        ensure_extension(dbname)
        _undo(dbname)
    if q1("SELECT count(*) FROM pg_roles WHERE rolname = %s", OWNER, db="postgres"):
        q("DROP ROLE %s" % OWNER, db="postgres")
    q("CREATE ROLE %s LOGIN" % OWNER, db="postgres")


def teardown_module():
    for dbname in ("halo", "halo_manual"):
        _undo(dbname)
    q("DROP ROLE IF EXISTS %s" % OWNER, db="postgres")
    # a new worker, with the database's settings back to normal
    pid = worker_pid()
    if pid:
        q("SELECT pg_terminate_backend(%s)", pid, db="postgres")
        wait_until(lambda: worker_pid() not in (None, pid), timeout=30, msg="worker restarted")


def _ticket_of(sid, dbname):
    return q1("SELECT t.halo_ticket_id FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
              " ON c.id = t.case_id WHERE c.sid = %s", sid, db=dbname)


@timeout(90)
def test_worker_ignores_the_database_owners_search_path():
    iid = fresh_integration("halo")
    _owner_attacks("halo")
    old = worker_pid()
    q("SELECT pg_terminate_backend(%s)", old, db="postgres")
    new = wait_until(lambda: worker_pid() not in (None, old) and worker_pid(), timeout=30,
                     msg="the worker restarted")
    # the worker's session, like every new session of the database, got the owner's setting
    with db("halo").cursor() as cur:
        cur.execute("SHOW search_path")
        assert cur.fetchone()[0] == "evil, pg_catalog"
    # slow answers and three cases: the worker holds two items of the integration (one in
    # flight, one waiting), claims again, gets nothing and asks whether any integration
    # has room (the statement with <>)
    MOCK.config(latency_ms=400)
    q("INSERT INTO halo_itsm.cases (sid, title, severity)"
      " SELECT 'EVIL-' || n, 'Trap', 'high' FROM generate_series(1, 3) n", db="halo")
    wait_until(lambda: all(_ticket_of("EVIL-%d" % n, "halo") for n in (1, 2, 3)), timeout=30,
               msg="tickets of EVIL-1..3")
    tid = _ticket_of("EVIL-1", "halo")
    # a ticket sync: the worker applies Halo's ticket and actions (jsonb arguments)
    assert q1("SELECT halo_itsm._queue_sync(%s, %s)", iid, tid, db="halo") is True
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync'"
                          " AND state = 'done'", db="halo") == 1, timeout=30, msg="sync done")
    MOCK.config(latency_ms=0)
    assert worker_pid() == new
    assert q("SELECT kind::text, state::text, count(*) FROM halo_itsm.outbox GROUP BY 1, 2"
             " ORDER BY 1", db="halo") == [("case", "done", 3), ("sync", "done", 1)]
    _not_escalated("halo")


@timeout(90)
def test_deliver_ignores_the_sessions_search_path():
    iid = fresh_integration("halo_manual")
    _owner_attacks("halo_manual")
    q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('EVIL-2', 'Trap', 'high')",
      db="halo_manual")
    # a superuser session (as pg_cron's) that picks the database's search_path up
    conn = psycopg2.connect(host=PGHOST, port=PGPORT, user="postgres", dbname="halo_manual",
                            application_name="halo_test")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "evil, pg_catalog"
            cur.execute("CALL halo_itsm.deliver()")
            tid = _ticket_of("EVIL-2", "halo_manual")
            assert tid is not None
            cur.execute("SELECT halo_itsm._queue_sync(%s, %s)", (iid, tid))
            cur.execute("CALL halo_itsm.deliver()")
    finally:
        conn.close()
    assert dict(q("SELECT kind::text, state::text FROM halo_itsm.outbox", db="halo_manual")) \
        == {"case": "done", "sync": "done"}
    _not_escalated("halo_manual")


@timeout(90)
def test_worker_ignores_the_database_owners_read_only_and_timeouts():
    fresh_integration("halo")
    q("ALTER ROLE %s NOSUPERUSER" % OWNER, db="postgres")
    q("ALTER DATABASE halo OWNER TO %s" % OWNER, db="postgres")
    conn = _as_owner("halo")
    try:
        with conn.cursor() as cur:
            for name, value in READ_ONLY_SETTINGS.items():
                cur.execute("ALTER DATABASE halo SET %s = %s" % (name, value))
    finally:
        conn.close()
    try:
        old = worker_pid()
        q("SELECT pg_terminate_backend(%s)", old, db="postgres")
        new = wait_until(lambda: worker_pid() not in (None, old) and worker_pid(), timeout=30,
                         msg="the worker restarted")
        ins = psycopg2.connect(host=PGHOST, port=PGPORT, user="postgres", dbname="halo")
        try:
            ins.autocommit = True
            with ins.cursor() as cur:
                cur.execute("SHOW default_transaction_read_only")
                assert cur.fetchone()[0] == "on"     # every new session gets the owner's settings
                cur.execute("SET default_transaction_read_only = off;"
                            " SET lock_timeout = 0")
                cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity)"
                            " SELECT 'RO-' || n, 'Read only?', 'high' FROM generate_series(1, 3) n")
        finally:
            ins.close()
        wait_until(lambda: all(_ticket_of("RO-%d" % n, "halo") for n in (1, 2, 3)), timeout=30,
                   msg="tickets of RO-1..3")
        assert worker_pid() == new
    finally:
        _undo("halo")

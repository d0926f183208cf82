"""A hot standby (issue 12): a streaming replica of the test cluster, made with
pg_basebackup -R and started on another port, as the postgres OS user. There no launcher
and no delivery worker run until promotion; every SQL entry point that writes fails at
once with SQLSTATE 25006, a message naming it and a hint to run it on the primary (one
helper, halo_itsm._refuse_on_standby / hi_refuse_on_standby); the status view says why no
worker runs. After promotion the worker starts. The replica is removed at the end.
"""
import os
import shutil
import subprocess

import psycopg2

from halo_test import (PGBIN, PGHOST, RUN_DIR, WORKER_TYPE, ensure_extension, fresh_integration,
                       q, q1, timeout, wait_until)

PORT = 54339
DATA = os.path.join(RUN_DIR, "standby-data")
LOG = os.path.join(RUN_DIR, "standby.log")
HINT = ("Run it on the primary server. A standby serves reads only (SELECT * FROM halo_itsm.status);"
        " its delivery worker starts when it is promoted.")

# (entry point as named in the message, the statement): every SQL entry point that writes
WRITERS = [
    ("connect()", "SELECT halo_itsm.connect('https://halo.example.com', 'c', 's')"),
    ("set_credentials()", "SELECT halo_itsm.set_credentials(1, 'c', 's')"),
    ("set_credentials_from_file()", "SELECT halo_itsm.set_credentials_from_file(1, 'c', '/nonexistent')"),
    ("configure()", "SELECT halo_itsm.configure(1, category => 'Security>Incident')"),
    ("configure_ids()", "SELECT halo_itsm.configure_ids(1, tickettype_id => 1)"),
    ("set_enabled()", "SELECT halo_itsm.set_enabled(1, false)"),
    ("configure_ticket_fields()", "SELECT halo_itsm.configure_ticket_fields(1, '{}')"),
    ("configure_webhook_signature()", "SELECT halo_itsm.configure_webhook_signature(1)"),
    ("rotate_webhook_secret()", "SELECT halo_itsm.rotate_webhook_secret(1)"),
    ("reconcile()", "CALL halo_itsm.reconcile()"),
    ("retry()", "SELECT halo_itsm.retry()"),
    ("purge()", "SELECT halo_itsm.purge()"),
    ("deliver()", "CALL halo_itsm.deliver()"),
    ("schedule_jobs()", "SELECT halo_itsm.schedule_jobs()"),
    ("ingest_webhook()", "SELECT halo_itsm.ingest_webhook('k', '{}', '\\x7b7d')"),
]


def _as_postgres(*cmd):
    """Run a command as the postgres OS user; asserts it succeeded; returns its output."""
    cmd = list(cmd)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    res = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert res.returncode == 0, "%s failed:\n%s" % (" ".join(cmd), res.stdout)
    return res.stdout


def _standby(sql, dbname="halo"):
    """Rows of sql run on the standby (autocommit)."""
    conn = psycopg2.connect(host=PGHOST, port=PORT, user="postgres", dbname=dbname)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _stop_and_remove():
    if os.path.exists(os.path.join(DATA, "postmaster.pid")):
        _as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", DATA, "-m", "immediate", "-w", "stop")
    shutil.rmtree(DATA, ignore_errors=True)


def setup_module():
    """The extension and one integration on the primary (no pending work), then the replica."""
    ensure_extension("halo")
    fresh_integration()
    _stop_and_remove()
    _as_postgres(os.path.join(PGBIN, "pg_basebackup"), "-h", PGHOST, "-p",
                 os.environ.get("PGPORT", "54329"), "-U", "postgres", "-D", DATA, "-R",
                 "-X", "stream", "-c", "fast")
    with open(os.path.join(DATA, "postgresql.auto.conf"), "a") as f:
        f.write("port = %d\nhot_standby = on\n" % PORT)
    _as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", DATA, "-l", LOG, "-w", "-t", "60", "start")
    wait_until(lambda: _standby("SELECT pg_is_in_recovery()")[0][0] is True, timeout=30)


def teardown_module():
    _stop_and_remove()


def _error(sql):
    try:
        _standby(sql)
    except psycopg2.Error as e:
        return e
    raise AssertionError("no error on the standby: %s" % sql)


@timeout(60)
def test_every_writing_entry_point_fails_with_25006_and_a_hint():
    for name, sql in WRITERS:
        e = _error(sql)
        assert e.pgcode == "25006", (name, e.pgcode, e.pgerror)
        assert e.diag.message_primary == \
            "halo_itsm: %s writes and cannot run on a hot standby" % name, (name, e.pgerror)
        assert e.diag.message_hint == HINT, (name, e.pgerror)


@timeout(60)
def test_no_worker_on_the_standby_and_the_status_view_says_why():
    types = [r[0] for r in _standby("SELECT backend_type FROM pg_stat_activity", "postgres")]
    assert WORKER_TYPE not in types and "halo_itsm launcher" not in types, types
    assert _standby("SELECT problem FROM halo_itsm.status WHERE pending IS NULL") == [
        ("no background worker runs: the halo_itsm launcher is not running (on a hot standby"
         " it starts at promotion)",)]
    # reading works on the standby
    assert _standby("SELECT count(*) FROM halo_itsm.status WHERE integration_id IS NOT NULL") == [(1,)]
    # restart_worker() has no launcher to ask there
    e = _error("SELECT halo_itsm.restart_worker()")
    assert e.pgcode == "55000", e.pgerror
    assert e.diag.message_hint == ("This server is a hot standby: the launcher starts the worker"
                                   " at promotion."), e.pgerror


@timeout(90)
def test_worker_starts_at_promotion():
    # the primary's outbox has nothing pending: the promoted copy sends nothing
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE state <> 'done'") == 0
    _as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", DATA, "-w", "promote")
    wait_until(lambda: _standby("SELECT count(*) FROM pg_stat_activity WHERE backend_type = '%s'"
                                " AND datname = 'halo'" % WORKER_TYPE, "postgres") == [(1,)],
               timeout=30, msg="the delivery worker on the promoted standby")
    assert _standby("SELECT problem FROM halo_itsm.status WHERE pending IS NULL") == []
    # and the entry points write there now
    assert _standby("SELECT halo_itsm.purge()") == [(0,)]
    # the primary is untouched
    assert q("SELECT count(*) FROM halo_itsm.integrations") == [(1,)]

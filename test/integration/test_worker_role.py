"""halo_itsm.worker_role: the worker connects as the role named there (issue 9, item 2).

With the role docs/operations.md (Privileges) describes (LOGIN, not superuser, the
grants on the extension's schema), the worker runs as that role and delivers a case and
a ticket sync. The setting is read at server start: the test restarts the cluster with
it, and again without it at the end.
"""
import time

from halo_test import (WORKER_TYPE, ensure_extension, fresh_integration, log_mark, q, q1,
                       q1_retry, restart_cluster, server_log, timeout, wait_until)

ROLE = "hi_test_worker"
# the grants of the recipe in docs/operations.md
GRANTS = [
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA halo_itsm TO %s",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA halo_itsm TO %s",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA halo_itsm TO %s",
]


def _worker_user():
    return q1("SELECT usename FROM pg_stat_activity WHERE backend_type = %s", WORKER_TYPE)


def setup_module():
    ensure_extension("halo")
    if q1("SELECT count(*) FROM pg_roles WHERE rolname = %s", ROLE, db="postgres"):
        q("DROP OWNED BY %s" % ROLE)
        q("DROP ROLE %s" % ROLE, db="postgres")
    q("CREATE ROLE %s LOGIN" % ROLE, db="postgres")
    for grant in GRANTS:
        q(grant % ROLE)


def teardown_module():
    q("ALTER SYSTEM RESET halo_itsm.worker_role", db="postgres")
    restart_cluster()
    q1_retry("SELECT 1")
    wait_until(lambda: _worker_user() == "postgres", timeout=30, msg="the worker as postgres")
    q("DROP OWNED BY %s" % ROLE)
    q("DROP ROLE %s" % ROLE, db="postgres")


@timeout(120)
def test_worker_runs_as_the_configured_role():
    assert _worker_user() == "postgres"      # the default: the bootstrap superuser
    q("ALTER SYSTEM SET halo_itsm.worker_role = %s", ROLE, db="postgres")
    restart_cluster()
    q1_retry("SELECT 1")
    assert q1("SHOW halo_itsm.worker_role") == ROLE
    wait_until(lambda: _worker_user() == ROLE, timeout=30, msg="the worker as %s" % ROLE)
    assert q1("SELECT rolsuper FROM pg_roles WHERE rolname = %s", ROLE) is False
    iid = fresh_integration("halo")
    q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('ROLE-W1', 'By the role', 'high')")
    tid = wait_until(lambda: q1("SELECT t.halo_ticket_id FROM halo_itsm.tickets t JOIN"
                                " halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = 'ROLE-W1'"),
                     timeout=30, msg="ticket of ROLE-W1")
    assert q1("SELECT halo_itsm._queue_sync(%s, %s)", iid, tid) is True
    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync'"
                          " AND state = 'done'") == 1, timeout=30, msg="sync done")
    assert q("SELECT kind::text, state::text, attempts FROM halo_itsm.outbox ORDER BY id") \
        == [("case", "done", 1), ("sync", "done", 1)]
    assert _worker_user() == ROLE


@timeout(120)
def test_role_that_cannot_log_in_is_said_once_and_shown_in_status():
    """A worker_role that does not exist (or has NOLOGIN) made the worker die with FATAL
    every 5 s; the launcher now checks pg_authid first, warns once, shows it in the status
    view, and starts the worker once the role can log in."""
    missing = "hi_test_no_such_role"
    said = ('WARNING:  halo_itsm: role "%s" named by halo_itsm.worker_role does not exist'
            ' or cannot log in: no delivery worker runs' % missing)
    mark = log_mark()
    q("ALTER SYSTEM SET halo_itsm.worker_role = %s", missing, db="postgres")
    restart_cluster()
    q1_retry("SELECT 1")
    time.sleep(12)          # the launcher looks every 5 s: two looks and more
    log = server_log(mark)
    assert log.count(said) == 1, log[-3000:]
    assert 'FATAL:  role "%s" does not exist' % missing not in log
    assert _worker_user() is None
    assert q("SELECT problem FROM halo_itsm.status WHERE pending IS NULL") == [
        ("no background worker runs: halo_itsm.worker_role = '%s' names a role that does not"
         " exist or cannot log in; create it with LOGIN and the grants of docs/operations.md, or reset"
         " halo_itsm.worker_role, then SELECT halo_itsm.restart_worker()" % missing,)]
    # the role appears: the worker starts as it, without a restart
    q("CREATE ROLE %s LOGIN" % missing, db="postgres")
    for grant in GRANTS:
        q(grant % missing)
    try:
        wait_until(lambda: _worker_user() == missing, timeout=30, msg="the worker as %s" % missing)
        assert server_log(mark).count(said) == 1
    finally:
        q("ALTER SYSTEM RESET halo_itsm.worker_role", db="postgres")
        restart_cluster()
        q1_retry("SELECT 1")
        q("DROP OWNED BY %s" % missing)
        q("DROP ROLE %s" % missing, db="postgres")

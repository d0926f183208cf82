"""Running the worker the way operators expect (issue 12, second half):

- halo_itsm.database_name (named like cron.database_name) beside its old name
  halo_itsm.database (the test cluster sets the old one): the new name wins, a conflict is
  said once in the log;
- a reload (SIGHUP) or halo_itsm.restart_worker() moves the worker to a changed database
  without restarting PostgreSQL: a new pid serves the new database; restart_worker() reads
  ALTER SYSTEM's file itself; only the owner or a superuser may call it (42501 + hint);
- the status view says per integration who delivers (served_by) and since when; in a
  database no worker serves it says what to set, and names a pg_cron job calling deliver();
- a worker that keeps exiting is started again after a pause that doubles up to
  halo_itsm.worker_restart_delay_max, shown in worker_status and the status view.
"""
from halo_test import (WORKER_TYPE, db, ensure_extension, expect_error,
                       fresh_integration, log_mark, q, q1, server_log, set_system, timeout,
                       wait_until)

NAMES = ["halo_itsm.database_name", "halo_itsm.worker_role", "halo_itsm.worker_restart_delay",
         "halo_itsm.worker_restart_delay_max"]
NOBODY = "hi_test_not_owner"
FLAKY = "hi_test_flaky_worker"


def _worker():
    """(pid, database) of the delivery worker, or None."""
    rows = q("SELECT pid, datname FROM pg_stat_activity WHERE backend_type = %s", WORKER_TYPE,
             db="postgres")
    return rows[0] if rows else None


def _back_to_halo():
    set_system({name: None for name in NAMES})
    wait_until(lambda: (_worker() or (0, None))[1] == "halo", timeout=30,
               msg="the delivery worker back in halo")


def setup_module():
    ensure_extension("halo")
    ensure_extension("halo_manual")
    for role in (NOBODY, FLAKY):
        if q1("SELECT count(*) FROM pg_roles WHERE rolname = %s", role, db="postgres"):
            q("DROP OWNED BY %s" % role)
            q("DROP ROLE %s" % role, db="postgres")
    q("CREATE ROLE %s LOGIN" % NOBODY, db="postgres")
    q("GRANT USAGE ON SCHEMA halo_itsm TO %s" % NOBODY)


def teardown_module():
    _back_to_halo()
    q("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'hi_test_%%'")
    for role in (NOBODY, FLAKY):
        q("DROP OWNED BY %s" % role)
        q("DROP ROLE %s" % role, db="postgres")


@timeout(120)
def test_restart_worker_moves_the_worker_to_a_changed_database():
    try:
        _moves_the_worker()
    finally:
        if (_worker() or (0, None))[1] != "halo":
            _back_to_halo()


def _moves_the_worker():
    iid = fresh_integration("halo_manual")
    q("CREATE EXTENSION IF NOT EXISTS pg_cron")
    old_pid, old_db = _worker()
    assert old_db == "halo"
    mark = log_mark()
    # ALTER SYSTEM without pg_reload_conf(): restart_worker() reads the file itself
    q("ALTER SYSTEM SET halo_itsm.database_name = 'halo_manual'", db="postgres")
    assert q1("SELECT halo_itsm.restart_worker()") is True
    wait_until(lambda: (_worker() or (0, None))[1] == "halo_manual", timeout=20,
               msg="a worker in halo_manual")
    new_pid = _worker()[0]
    assert new_pid != old_pid
    assert q1("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", old_pid) == 0
    # the new name wins over the old one the cluster sets, and the conflict is said once
    conflict = ("WARNING:  halo_itsm: halo_itsm.database_name = 'halo_manual' and its old name"
                " halo_itsm.database = 'halo' are both set: 'halo_manual' is used")
    wait_until(lambda: server_log(mark).count(conflict) == 1, timeout=5, msg=conflict)

    # halo_manual's status: served by the worker since it started
    started = q1("SELECT backend_start FROM pg_stat_activity WHERE pid = %s", new_pid,
                 db="halo_manual")
    rows = q("SELECT integration_id, served_by, served_since FROM halo_itsm.status"
             " WHERE integration_id IS NOT NULL", db="halo_manual")
    assert [(r[0], r[1]) for r in rows] == [(iid, "background worker (pid %d)" % new_pid)]
    assert abs((rows[0][2] - started).total_seconds()) < 2, (rows, started)
    assert q("SELECT problem FROM halo_itsm.status WHERE pending IS NULL", db="halo_manual") == []
    wait_until(lambda: q1("SELECT state FROM halo_itsm.worker_status") == "running", timeout=10,
               msg="the worker's first round")
    ws = q("SELECT database_name, worker_pid, worker_database, state, quick_exits, serves_here"
           " FROM halo_itsm.worker_status", db="halo_manual")
    assert ws == [("halo_manual", new_pid, "halo_manual", "running", 0, True)], ws

    # halo now has no worker: the exact row, and each integration says what to set ...
    halo_iid = fresh_integration("halo")
    assert q("SELECT problem FROM halo_itsm.status WHERE pending IS NULL") == [
        ("no background worker serves this database (halo_itsm.database_name = 'halo_manual');"
         " set halo_itsm.database_name = 'halo', SELECT pg_reload_conf() and SELECT"
         " halo_itsm.restart_worker()",)]
    assert q("SELECT integration_id, served_by, served_since FROM halo_itsm.status"
             " WHERE integration_id IS NOT NULL") == [
        (halo_iid, "nothing: set halo_itsm.database_name = 'halo' (SELECT pg_reload_conf()), or"
         " SELECT halo_itsm.schedule_jobs() with pg_cron", None)]
    # ... until a pg_cron job calls deliver() here (pg_cron lives in halo)
    jobid = q1("SELECT cron.schedule('hi_test_deliver_status', '0 0 1 1 *',"
               " 'CALL halo_itsm.deliver(1000, only_without_worker => true)')")
    assert q("SELECT served_by, served_since FROM halo_itsm.status WHERE integration_id = %s",
             halo_iid) == [("pg_cron job %d (hi_test_deliver_status)" % jobid, None)]
    q("SELECT cron.unschedule('hi_test_deliver_status')")

    # a reload alone (SIGHUP) brings it back: the launcher restarts the worker in halo
    set_system({"halo_itsm.database_name": None})
    wait_until(lambda: (_worker() or (0, None))[1] == "halo", timeout=20,
               msg="the worker back in halo after pg_reload_conf()")
    assert _worker()[0] != new_pid


@timeout(60)
def test_restart_worker_is_for_the_owner_only():
    conn = db("halo")
    with conn.cursor() as cur:
        cur.execute("SET ROLE %s" % NOBODY)
    e = expect_error("42501", lambda: conn.cursor().execute("SELECT halo_itsm.restart_worker()"))
    assert e.diag.message_primary == ("halo_itsm: only the extension's owner or a superuser may"
                                      " restart the delivery worker")
    assert e.diag.message_hint == ("Ask the owner of the extension halo_itsm (or a superuser) to"
                                   " run SELECT halo_itsm.restart_worker().")
    conn.close()
    # the owner (a superuser here) may: the same database, a new pid
    pid = _worker()[0]
    assert q1("SELECT halo_itsm.restart_worker()") is True
    wait_until(lambda: (_worker() or (pid, None))[0] != pid and _worker()[1] == "halo",
               timeout=20, msg="a new worker pid in halo")


@timeout(120)
def test_restart_backoff_doubles_up_to_the_cap_and_shows():
    # a role that may log in but not connect to halo: the worker dies with FATAL at start
    q("CREATE ROLE %s LOGIN" % FLAKY, db="postgres")
    q("REVOKE CONNECT ON DATABASE halo FROM PUBLIC", db="postgres")
    try:
        mark = log_mark()
        set_system({"halo_itsm.worker_restart_delay": "200ms",
                    "halo_itsm.worker_restart_delay_max": "1600ms",
                    "halo_itsm.worker_role": FLAKY})
        wait_until(lambda: q1("SELECT quick_exits FROM halo_itsm.worker_status") >= 5,
                   timeout=30, msg="five quick exits")
        log = server_log(mark)
        assert 'FATAL:  permission denied for database "halo"' in log
        # pauses 200, 400, 800, 1600 ms, then the cap
        for n, ms in ((2, 400), (3, 800), (4, 1600), (5, 1600)):
            line = ("halo_itsm: the delivery worker exited %d times in a row soon after starting:"
                    " starting it again in %d ms" % (n, ms))
            assert line in log, line
        state, exits = q("SELECT state, quick_exits FROM halo_itsm.worker_status")[0]
        assert state == "starting" and exits >= 5
        problem = q1("SELECT problem FROM halo_itsm.status WHERE pending IS NULL")
        assert problem.startswith("the background worker of this database is not running: it"
                                  " exited"), problem
        assert ("(halo_itsm.worker_restart_delay, doubling up to"
                " halo_itsm.worker_restart_delay_max)") in problem, problem

        # the role may connect again: the worker starts at the next try, as that role
        q("GRANT CONNECT ON DATABASE halo TO %s" % FLAKY, db="postgres")
        wait_until(lambda: q1("SELECT usename FROM pg_stat_activity WHERE backend_type = %s",
                              WORKER_TYPE, db="postgres") == FLAKY, timeout=10,
                   msg="the worker as %s" % FLAKY)
    finally:
        q("GRANT CONNECT ON DATABASE halo TO PUBLIC", db="postgres")
    # back to the bootstrap superuser; restart_worker() starts afresh: no backoff
    set_system({"halo_itsm.worker_role": None})
    assert q1("SELECT halo_itsm.restart_worker()") is True
    wait_until(lambda: q1("SELECT usename FROM pg_stat_activity WHERE backend_type = %s",
                          WORKER_TYPE, db="postgres") == "postgres", timeout=10)
    assert q("SELECT quick_exits, next_start_at FROM halo_itsm.worker_status") == [(0, None)]


@timeout(90)
def test_the_default_database_is_not_silent():
    """database_name's default, postgres, rarely has the extension: the worker says so once
    in the log with what to set, and the status view of halo says what to set."""
    mark = log_mark()
    set_system({"halo_itsm.database_name": "postgres"})
    wait_until(lambda: (_worker() or (0, None))[1] == "postgres", timeout=20,
               msg="the worker in postgres")
    said = ('WARNING:  halo_itsm: the extension is not installed in database "postgres"'
            ' (halo_itsm.database_name): the delivery worker waits for it')
    hint = ('HINT:  Run CREATE EXTENSION halo_itsm in database "postgres", or set'
            ' halo_itsm.database_name to the database where it is installed and SELECT'
            ' pg_reload_conf().')
    wait_until(lambda: said in server_log(mark), timeout=15, msg=said)
    assert hint in server_log(mark)
    assert q1("SELECT state FROM halo_itsm.worker_status") == "waiting for CREATE EXTENSION"
    assert q("SELECT problem FROM halo_itsm.status WHERE pending IS NULL") == [
        ("no background worker serves this database (halo_itsm.database_name = 'postgres');"
         " set halo_itsm.database_name = 'halo', SELECT pg_reload_conf() and SELECT"
         " halo_itsm.restart_worker()",)]
    _back_to_halo()
    assert server_log(mark).count(said) == 1

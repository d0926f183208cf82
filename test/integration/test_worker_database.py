"""Which database the background worker serves (issue 9, item 13). The status view of a
database that no worker serves says so, and what to set; a halo_itsm.database that names a
missing database is said once in the log (before: a FATAL every 5 s, and the status view
said ok); a worker waiting for CREATE EXTENSION says that once too. The test cluster's
worker serves database halo; the last test points the setting elsewhere, restarts the
cluster, and puts everything back.
"""
import os
import re
import time

from halo_test import (WORKER_TYPE, ensure_extension, log_mark, q, q1, q1_retry,
                       restart_cluster, server_log, start_cluster, timeout, wait_until,
                       worker_pid)

MISSING = "halo_missing_db"
WORKER_ROW = "SELECT integration_id, name, pending, problem FROM halo_itsm.status WHERE pending IS NULL"


def _worker_database():
    """The database the delivery worker runs in (None while there is none)."""
    return q1_retry("SELECT datname FROM pg_stat_activity WHERE backend_type = %s",
                    WORKER_TYPE, db="postgres")


@timeout(60)
def test_status_names_the_database_the_worker_serves():
    ensure_extension("halo")
    ensure_extension("halo_manual")
    assert worker_pid() is not None
    assert _worker_database() == "halo"
    # halo: served, no row about the worker
    assert q(WORKER_ROW) == []
    # halo_manual has the extension and no worker: the row says what to set
    assert q(WORKER_ROW, db="halo_manual") == [
        (None, None, None, "no background worker serves this database (halo_itsm.database ="
         " 'halo'); set halo_itsm.database_name = 'halo_manual', SELECT pg_reload_conf() and"
         " SELECT halo_itsm.restart_worker()")]


def _count(text, since):
    return server_log(since).count(text)


@timeout(240)
def test_missing_database_said_once_then_served_when_it_appears():
    ensure_extension("halo")
    mark = log_mark()
    missing_said = ('WARNING:  halo_itsm: database "%s" named by halo_itsm.database does not'
                    ' exist: no delivery worker runs' % MISSING)
    try:
        q("ALTER SYSTEM SET halo_itsm.database = %s", MISSING, db="postgres")
        restart_cluster()
        # the launcher looks every 5 s: two looks and more, one warning (before: a FATAL
        # "database ... does not exist" every 5 s)
        time.sleep(12)
        log = server_log(mark)
        assert log.count(missing_said) == 1, log[-3000:]
        # no FATAL from the delivery worker; the webhook listener (on in the test cluster)
        # connects by name and retries every 10 s: a known limit, noted in docs/webhooks.md
        listener = set(re.findall(r'"halo_itsm webhook listener" \(PID (\d+)\)', log))
        fatal = re.findall(r'\[(\d+)\] FATAL:  database "%s" does not exist' % MISSING, log)
        assert [pid for pid in fatal if pid not in listener] == [], (fatal, listener)
        assert _worker_database() is None
        assert q1_retry("SELECT halo_itsm._worker_running()") is False
        assert q(WORKER_ROW) == [
            (None, None, None, "no background worker serves this database (halo_itsm.database"
             " = '%s', which does not exist); set halo_itsm.database_name = 'halo', SELECT"
             " pg_reload_conf() and SELECT halo_itsm.restart_worker()" % MISSING)]

        # the database appears: the worker starts there, finds no extension, says so once
        mark2 = log_mark()
        q("CREATE DATABASE %s" % MISSING, db="postgres")
        wait_until(lambda: _worker_database() == MISSING, timeout=15,
                   msg="a delivery worker in %s" % MISSING)
        time.sleep(11)      # the worker looks for the extension every 10 s
        assert _count('halo_itsm: database "%s" named by halo_itsm.database is there now:'
                      ' starting the delivery worker' % MISSING, mark2) == 1
        assert _count('WARNING:  halo_itsm: the extension is not installed in database "%s"'
                      ' (halo_itsm.database): the delivery worker waits for it' % MISSING,
                      mark2) == 1
        assert _count(missing_said, mark) == 1

        # CREATE EXTENSION: the worker delivers there; its status view has no worker row
        ensure_extension(MISSING)
        wait_until(lambda: _count('halo_itsm: the extension is installed in database "%s"'
                                  ' now: the delivery worker delivers' % MISSING, mark2) == 1,
                   timeout=15, msg="the worker noticing CREATE EXTENSION")
        assert q(WORKER_ROW, db=MISSING) == []
        assert q1("SELECT halo_itsm._worker_running()", db=MISSING) is True
    finally:
        if not os.path.exists(os.path.join(os.environ["HI_PGDATA"], "postmaster.pid")):
            start_cluster()
        q1_retry("SELECT 1", db="postgres")
        q("ALTER SYSTEM RESET halo_itsm.database", db="postgres")
        restart_cluster()
        q1_retry("SELECT 1", db="postgres")
        q("DROP DATABASE IF EXISTS %s" % MISSING, db="postgres")
        wait_until(lambda: _worker_database() == "halo", timeout=30,
                   msg="the delivery worker back in halo")

"""pg_cron really runs halo_itsm's scheduled work: a job registered the way
schedule_jobs() registers its delivery job ('CALL halo_itsm.deliver(1000,
only_without_worker => true)') delivers the cases of a database that no worker serves,
and the same command does nothing where the worker runs. pg_cron's smallest schedule is
one minute, so this module waits up to about 70 seconds.
"""
from halo_test import (Mock, db, ensure_extension, fresh_integration, q, q1, reset_system, set_system,
                       timeout, wait_until)

MOCK = Mock()
DELIVER = "CALL halo_itsm.deliver(1000, only_without_worker => true)"


def setup_module():
    """pg_cron lives in database halo (cron.database_name); the extension in both."""
    ensure_extension("halo")
    ensure_extension("halo_manual")
    q("CREATE EXTENSION IF NOT EXISTS pg_cron")


def teardown_module():
    """Remove this module's jobs."""
    q("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'hi_test_%%'")


@timeout(150)
def test_cron_job_delivers_where_no_worker_runs():
    iid = fresh_integration("halo_manual", category="Security>Incident")
    q("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'hi_test_%%'")
    q("DELETE FROM cron.job_run_details")
    assert q1("SELECT halo_itsm._worker_running()", db="halo_manual") is False
    q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('CRON-1', 'from pg_cron', 'high')",
      db="halo_manual")
    q("SELECT cron.schedule_in_database('hi_test_deliver', '* * * * *', %s, 'halo_manual')", DELIVER)

    wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.tickets", db="halo_manual") == 1,
               timeout=130, interval=0.5, msg="pg_cron's job delivered the case")
    posts = MOCK.requests(path="/api/Tickets", method="POST")
    assert [p["json"][0]["third_party_id_string"] for p in posts] == ["CRON-1"], posts
    assert q1("SELECT state FROM halo_itsm.outbox", db="halo_manual") == "done"
    wait_until(lambda: q("SELECT status, return_message FROM cron.job_run_details d"
                         " JOIN cron.job j USING (jobid) WHERE j.jobname = 'hi_test_deliver'"
                         " AND status <> 'running'"),
               timeout=30, msg="the job run is recorded")
    runs = q("SELECT status, return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
             " WHERE j.jobname = 'hi_test_deliver' AND status <> 'running'")
    assert runs[0] == ("succeeded", "CALL"), runs
    assert iid is not None


@timeout(60)
def test_deliver_only_without_worker_does_nothing_where_the_worker_runs():
    assert q1("SELECT halo_itsm._worker_running()") is True
    fresh_integration("halo")
    set_system({"halo_itsm.poll_interval": "1min"})
    try:
        # a due item the worker was not told about (no trigger, no wake-up at commit)
        conn = db("halo")
        with conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity)"
                        " VALUES ('CRON-2', 'x', 'low') RETURNING id")
            case_id = cur.fetchone()[0]
            cur.execute("INSERT INTO halo_itsm.outbox (kind, case_id) VALUES ('case', %s)", (case_id,))
        q(DELIVER)
        assert q1("SELECT state FROM halo_itsm.outbox") == "pending"
        assert MOCK.requests() == []
        # the same call without the flag does deliver it: the flag made the difference
        q("CALL halo_itsm.deliver(1000)")
        assert q1("SELECT state FROM halo_itsm.outbox") == "done"
        assert len(MOCK.requests(path="/api/Tickets", method="POST")) == 1
    finally:
        reset_system(["halo_itsm.poll_interval"])

/*
 * 50_operations.sql: operations: retry, purge, the worker's state and the request budget as
 * SQL sees them, restart_worker(), the status views (status, worker_status), deliver(),
 * check_connection() and the pg_cron jobs.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- Operations.
-- ---------------------------------------------------------------------------

-- Puts dead items back in the queue; returns how many.
CREATE OR REPLACE FUNCTION halo_itsm.retry(integration integer DEFAULT NULL, outbox_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN PERFORM halo_itsm._refuse_on_standby('retry()');  -- 25006 on a hot standby
    -- One sync per ticket brings everything: a dead sync whose ticket has another sync
    -- queued, or a newer dead one, is superseded instead of revived.
    UPDATE halo_itsm.outbox o
       SET state = 'done', finished_at = now(), result = 'superseded'
     WHERE o.state = 'dead' AND o.kind = 'sync'
       AND (retry.integration IS NULL OR o.integration_id = retry.integration)
       AND (retry.outbox_id IS NULL OR o.id = retry.outbox_id)
       AND EXISTS (SELECT 1 FROM halo_itsm.outbox p
                    WHERE p.kind = 'sync' AND p.integration_id = o.integration_id
                      AND p.halo_ticket_id = o.halo_ticket_id
                      AND (p.state IN ('pending', 'in_flight') OR (p.state = 'dead' AND p.id > o.id)));
    UPDATE halo_itsm.outbox o
       SET state = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL
     WHERE o.state = 'dead'
       AND (retry.integration IS NULL OR o.integration_id = retry.integration)
       AND (retry.outbox_id IS NULL OR o.id = retry.outbox_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM halo_itsm._wake_worker_at_commit();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION halo_itsm.retry(integer, bigint) IS
    'Puts dead outbox items (all, one integration''s, or one item) back in the queue with a fresh attempt count.';

-- Deletes finished outbox rows and webhook deliveries older than the given age; returns
-- how many rows it deleted. Deliveries are kept at least twice halo_itsm.webhook_tolerance
-- (and a minute): one dated up to the tolerance ahead of the clock when it came stays
-- acceptable that long, and only its row refuses a replay of it.
CREATE OR REPLACE FUNCTION halo_itsm.purge(older_than interval DEFAULT '7 days')
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tolerance text := coalesce(nullif(btrim(current_setting('halo_itsm.webhook_tolerance', true)), ''), '300');
    n integer;
    m integer;
BEGIN PERFORM halo_itsm._refuse_on_standby('purge()');  -- 25006 on a hot standby
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'halo_itsm: older_than must be zero or positive'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long finished rows are kept, e.g. ''7 days''.';
    END IF;
    IF v_tolerance ~ '^[0-9]+$' THEN
        v_tolerance := v_tolerance || 's';  -- the setting before the module is loaded: seconds
    END IF;
    DELETE FROM halo_itsm.outbox o WHERE o.state = 'done' AND o.finished_at < now() - older_than;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM halo_itsm.webhook_deliveries w
     WHERE w.received_at < now() - greatest(older_than, 2 * v_tolerance::interval + interval '1 minute');
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END
$$;
COMMENT ON FUNCTION halo_itsm.purge(interval) IS
    'Deletes finished (done) outbox rows and webhook deliveries older than older_than; deliveries stay at least twice halo_itsm.webhook_tolerance plus a minute (replay detection). Returns the number of rows deleted.';

-- Why no background worker delivers for this database, and what to set; NULL when one does.
CREATE OR REPLACE FUNCTION halo_itsm._worker_problem()
RETURNS text LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_worker_problem';

-- What the launcher and the delivery worker published in shared memory (one row).
CREATE OR REPLACE FUNCTION halo_itsm._worker_status(OUT database_name text, OUT worker_role text, OUT preloaded boolean,
                                         OUT worker_pid integer, OUT worker_database text,
                                         OUT worker_started_at timestamptz, OUT state text,
                                         OUT quick_exits integer, OUT next_start_at timestamptz,
                                         OUT serves_here boolean)
RETURNS record LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_worker_status';

-- The pg_cron job that calls deliver() in this database, when pg_cron lives here and the
-- reader may see it (read only; nothing when the cron schema is absent); since its first
-- recorded run.
CREATE OR REPLACE FUNCTION halo_itsm._deliver_jobs()
RETURNS TABLE (jobid bigint, jobname text, since timestamptz) LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_runs boolean := to_regclass('cron.job_run_details') IS NOT NULL
                      AND has_table_privilege('cron.job_run_details', 'SELECT');
BEGIN
    IF to_regclass('cron.job') IS NULL OR NOT has_table_privilege('cron.job', 'SELECT') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT j.jobid, j.jobname::text, %s
           FROM cron.job j
          WHERE j.active AND j.database OPERATOR(pg_catalog.=) current_database()
            AND j.command OPERATOR(pg_catalog.~*) %L
          ORDER BY j.jobid LIMIT 1',
        CASE WHEN v_runs
             THEN '(SELECT min(d.start_time) FROM cron.job_run_details d WHERE d.jobid OPERATOR(pg_catalog.=) j.jobid)'
             ELSE 'NULL::timestamptz' END,
        '\mhalo_itsm\s*\.\s*deliver\s*\(');
END
$$;

-- The request budget settings in force (the C settings: one source for C and SQL).
CREATE OR REPLACE FUNCTION halo_itsm._request_budget(OUT budget integer, OUT budget_window interval, OUT shared boolean)
RETURNS record LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_request_budget';

-- Requests the integration sent within the current budget window (every process counted
-- when halo_itsm is preloaded); NULL when there is no budget.
CREATE OR REPLACE FUNCTION halo_itsm._budget_used(integration integer)
RETURNS integer LANGUAGE C VOLATILE STRICT AS 'MODULE_PATHNAME', 'halo_itsm_budget_used';

-- Makes the launcher read its settings again and restart the delivery worker (owner only).
CREATE OR REPLACE FUNCTION halo_itsm.restart_worker()
RETURNS boolean LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_restart_worker';
COMMENT ON FUNCTION halo_itsm.restart_worker() IS
    'Makes the launcher read halo_itsm.database_name and halo_itsm.worker_role again and restart the delivery worker there at once; true when a worker was started. For the extension''s owner and superusers.';

-- One row per integration (and one for items that name none): the health of delivery,
-- who delivers (the worker or a pg_cron job calling deliver()) and since when; and a row
-- when no background worker serves this database.
CREATE OR REPLACE VIEW halo_itsm.status AS
WITH g AS (
    -- items that name no integration go to the single enabled one, as in _claim()
    SELECT coalesce(o.integration_id, (SELECT s.id FROM halo_itsm._single_enabled_integration s)) AS integration_id,
           count(*) FILTER (WHERE o.state = 'pending') AS pending,
           count(*) FILTER (WHERE o.state = 'in_flight') AS in_flight,
           count(*) FILTER (WHERE o.state = 'dead') AS dead,
           now() - min(o.created_at) FILTER (WHERE o.state IN ('pending', 'in_flight')) AS oldest_pending_age,
           -- the newest item of each kind only (its text is read below, by id): an array of
           -- every dead item's error would hold them all in memory
           max(o.id) FILTER (WHERE o.state = 'pending' AND o.last_error IS NOT NULL) AS pending_error_id,
           max(o.id) FILTER (WHERE o.state = 'dead') AS dead_id
      FROM halo_itsm.outbox o
     WHERE o.state <> 'done'     -- = pending, in_flight or dead: reads outbox_open
     GROUP BY 1
), q AS (
    SELECT g.*,
           (SELECT x.last_error FROM halo_itsm.outbox x WHERE x.id = g.pending_error_id) AS pending_error,
           -- the newest dead item and its reason, named in problem
           (SELECT 'outbox item ' || x.id || ': ' || coalesce(x.last_error, 'no error recorded')
              FROM halo_itsm.outbox x WHERE x.id = g.dead_id) AS dead_error
      FROM g
), enabled AS (
    SELECT count(*) AS n FROM halo_itsm.integrations WHERE enabled
), served AS (
    -- the worker when it runs here, else a pg_cron job calling deliver(), else what to set
    SELECT CASE WHEN w.serves_here THEN 'background worker (pid ' || w.worker_pid || ')'
                WHEN j.jobid IS NOT NULL THEN 'pg_cron job ' || j.jobid || ' (' || coalesce(j.jobname, 'unnamed') || ')'
                ELSE 'nothing: set halo_itsm.database_name = ' || quote_literal(current_database())
                     || ' (SELECT pg_reload_conf()), or SELECT halo_itsm.schedule_jobs() with pg_cron'
           END AS served_by,
           CASE WHEN w.serves_here THEN w.worker_started_at ELSE j.since END AS served_since
      FROM halo_itsm._worker_status() w
      LEFT JOIN halo_itsm._deliver_jobs() j ON true
)
SELECT i.id AS integration_id, i.name, i.enabled,
       coalesce(q.pending, 0) AS pending, coalesce(q.in_flight, 0) AS in_flight, coalesce(q.dead, 0) AS dead,
       q.oldest_pending_age, i.last_success_at, i.last_error, i.last_error_at,
       CASE WHEN NOT i.enabled THEN 'disabled: halo_itsm.set_enabled(' || i.id || ', true) resumes delivery'
            WHEN i.configured_at IS NULL THEN 'not configured: call halo_itsm.configure(' || i.id || ', category => ''...'')'
            WHEN coalesce(q.dead, 0) > 0 THEN 'dead items: fix the cause, then SELECT halo_itsm.retry(' || i.id || '); newest: ' || q.dead_error
            WHEN q.pending_error IS NOT NULL THEN 'retrying: ' || q.pending_error
            ELSE 'ok'
       END AS problem,
       s.served_by, s.served_since, halo_itsm._budget_used(i.id) AS budget_used
  FROM halo_itsm.integrations i
  LEFT JOIN q ON q.integration_id = i.id
  CROSS JOIN served s
UNION ALL
SELECT NULL, NULL, NULL, q.pending, q.in_flight, q.dead, q.oldest_pending_age, NULL, NULL, NULL,
       CASE WHEN e.n = 0 THEN 'no enabled integration: call halo_itsm.connect() and halo_itsm.configure()'
            ELSE e.n || ' enabled integrations and these rows name none: set integration_id on them'
       END,
       NULL, NULL, NULL
  FROM q CROSS JOIN enabled e
 WHERE q.integration_id IS NULL
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, w.problem, NULL, NULL, NULL
  FROM halo_itsm._worker_problem() AS w(problem)
 WHERE w.problem IS NOT NULL;
COMMENT ON VIEW halo_itsm.status IS
    'Delivery health per integration: queue sizes, oldest pending item, last success and error, what to do, who delivers (served_by: the worker or a pg_cron job) since when, and requests within the budget window; a row when no background worker serves this database.';

-- Everything the launcher knows of the delivery worker: settings in force, pid, start,
-- state and restart backoff.
CREATE OR REPLACE VIEW halo_itsm.worker_status AS
SELECT * FROM halo_itsm._worker_status();
COMMENT ON VIEW halo_itsm.worker_status IS
    'The delivery worker as the launcher sees it: halo_itsm.database_name and worker_role in force, pid, database, start, state, and the restart backoff (quick_exits in a row, next_start_at).';

-- ---------------------------------------------------------------------------
-- Delivery in the calling session, connection checks, pg_cron jobs.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE PROCEDURE halo_itsm.deliver(max_items integer DEFAULT 100, only_without_worker boolean DEFAULT false)
LANGUAGE C AS 'MODULE_PATHNAME', 'halo_itsm_deliver';
COMMENT ON PROCEDURE halo_itsm.deliver(integer, boolean) IS
    'Does the background worker''s job in this session (committing after every item): for installations without shared_preload_libraries, and for operators.';

CREATE OR REPLACE FUNCTION halo_itsm._check_connection(instance_url text, tenant text, client_id text, client_secret text,
                                            team text, category text, client integer, tickettype_id integer,
                                            auth_url text, scope text)
RETURNS jsonb LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_check_connection';

-- Finds the authorisation server (configured, discovered, or {instance}/auth), fetches a token
-- and looks up the configured team, category, client and ticket type in Halo.
CREATE OR REPLACE FUNCTION halo_itsm.check_connection(integration integer)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i halo_itsm.integrations;
    secret text;
BEGIN
    i := halo_itsm._integration(integration);
    SELECT s.client_secret INTO secret FROM halo_itsm.integration_secrets s WHERE s.integration_id = i.id;
    RETURN jsonb_build_object('integration', i.id, 'name', i.name, 'instance_url', i.instance_url)
        || halo_itsm._check_connection(i.instance_url, i.tenant, i.client_id, secret,
                                       i.team, i.category, i.client, i.tickettype_id,
                                       i.auth_url, i.scope);
END
$$;
COMMENT ON FUNCTION halo_itsm.check_connection(integer) IS
    'Checks an integration against Halo: authorisation server (token_url, token_url_source), credentials and scope, team, category, client and ticket type; says what is wrong.';

-- Registers the extension's pg_cron jobs (delivery when no worker runs, purging, reconcile); returns them.
CREATE OR REPLACE FUNCTION halo_itsm.schedule_jobs(deliver_schedule text DEFAULT '* * * * *',
                                        purge_schedule text DEFAULT '17 3 * * *',
                                        keep_finished interval DEFAULT '7 days',
                                        reconcile_schedule text DEFAULT '*/5 * * * *')
RETURNS TABLE (job_name text, jobid bigint, schedule text, command text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    jobs text[][] := ARRAY[
        ARRAY['halo_itsm_deliver', deliver_schedule,
              'CALL halo_itsm.deliver(1000, only_without_worker => true)'],
        ARRAY['halo_itsm_purge', purge_schedule,
              format('SELECT halo_itsm.purge(%L::interval)', keep_finished)],
        ARRAY['halo_itsm_reconcile', reconcile_schedule, 'CALL halo_itsm.reconcile()']];
    k integer;
BEGIN PERFORM halo_itsm._refuse_on_standby('schedule_jobs()');  -- 25006 on a hot standby
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'halo_itsm: pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name = %L, restart PostgreSQL and run CREATE EXTENSION pg_cron; or run CALL halo_itsm.deliver(), CALL halo_itsm.reconcile() and SELECT halo_itsm.purge() from another scheduler.',
                                current_database());
    END IF;
    FOR k IN 1 .. array_length(jobs, 1) LOOP
        job_name := jobs[k][1];
        schedule := jobs[k][2];
        command := jobs[k][3];
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid USING job_name, schedule, command;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION halo_itsm.schedule_jobs(text, text, interval, text) IS
    'Registers (or updates) the pg_cron jobs of halo_itsm: delivery when no worker runs, purging of old finished outbox rows and webhook deliveries, and reconcile() (syncs of open cases from Halo, catching up on lost webhooks).';

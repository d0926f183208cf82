--
-- 28_worker_operations: the SQL side of running the worker (issue 12): the budget settings
-- as C reads them (_request_budget(), one source for reconcile()), the standby check on a
-- primary, restart_worker() refused to a role that is not the owner (42501 and its hint),
-- and the status view's served_by in a database that no worker serves and where pg_cron
-- is not installed.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- The budget settings in force, as C reads them (sighup settings: the cluster's), and
-- whether the counts are shared (halo_itsm is preloaded in the test cluster).
SELECT budget, budget_window, shared FROM halo_itsm._request_budget();
SELECT budget = current_setting('halo_itsm.request_budget')::integer AS same_budget,
       budget_window = current_setting('halo_itsm.request_budget_window')::interval AS same_window
  FROM halo_itsm._request_budget();

-- On a primary the standby check lets every entry point through.
CALL pg_temp.try($$SELECT halo_itsm._refuse_on_standby('connect()')$$);

-- restart_worker() is for the owner (and superusers): another role gets 42501 and a hint.
CREATE ROLE hi_regress_not_owner;
GRANT USAGE ON SCHEMA halo_itsm TO hi_regress_not_owner;
SET ROLE hi_regress_not_owner;
CALL pg_temp.try($$SELECT halo_itsm.restart_worker()$$);
RESET ROLE;
DROP OWNED BY hi_regress_not_owner;
DROP ROLE hi_regress_not_owner;

-- No pg_cron here (cron.job does not exist): no job, and no error.
SELECT count(*) AS jobs FROM halo_itsm._deliver_jobs();

-- One integration: nothing serves it here, the status view says what to set; it has sent
-- nothing within the budget window.
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id \gset
SELECT integration_id = :id AS ours, served_by, served_since, budget_used
  FROM halo_itsm.status WHERE integration_id IS NOT NULL;
-- The worker's view: the settings in force and that it does not serve this database.
SELECT database_name, worker_role, preloaded, serves_here FROM halo_itsm.worker_status;

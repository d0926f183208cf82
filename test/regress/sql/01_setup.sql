--
-- 01_setup: CREATE EXTENSION halo_itsm; what it installs, and who may use it.
-- Every file starts from a freshly created extension (test/regress/common.sql).
--
\ir test/regress/common.sql

SELECT extname, extversion OPERATOR(pg_catalog.=) halo_itsm.library_version() AS at_library_version,
       extnamespace::regnamespace AS schema, extrelocatable
  FROM pg_extension WHERE extname = 'halo_itsm';

-- The tables and the view of the outbound half.
SELECT r.name, c.relkind
  FROM unnest(ARRAY['integrations', 'integration_secrets', 'cases', 'detections', 'tickets',
                    'outbox', 'timeline', 'webhook_deliveries', 'status']) WITH ORDINALITY AS r(name, n)
  LEFT JOIN pg_class c ON c.oid = to_regclass('halo_itsm.' || r.name)
 ORDER BY r.n;

-- No table, view or sequence of the schema is granted to PUBLIC.
SELECT c.relname
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relnamespace = 'halo_itsm'::regnamespace AND c.relkind IN ('r', 'v', 'S')
   AND a.grantee = 0;

-- PUBLIC may execute only the pure helpers that touch no table and no secret; no
-- procedure either (REVOKE ... ALL FUNCTIONS does not cover procedures such as deliver()).
SELECT p.proname
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'halo_itsm'::regnamespace AND a.grantee = 0
 ORDER BY p.proname;

-- The routines of the outbound half: kind, SECURITY DEFINER (only the PL/pgSQL trigger; the case
-- trigger is C and switches to its owner for its one insert), and
-- whether PUBLIC may execute them.
SELECT r.name, p.prokind, p.prosecdef,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0) AS public_execute
  FROM unnest(ARRAY['connect', 'configure', 'configure_ids', 'set_credentials', 'set_enabled',
                    'render_template', 'priority_id', 'ticket_payload', 'retry', 'purge',
                    'deliver', 'check_connection', 'schedule_jobs',
                    '_check_template', '_check_instance_url', '_random_secret',
                    '_wake_worker_at_commit', '_worker_running', '_integration',
                    '_build_payload', '_resolve_integration', '_case_enqueue', '_detection_enqueue',
                    '_recover_orphans', '_claim', '_record',
                    '_check_connection']) WITH ORDINALITY AS r(name, n)
  LEFT JOIN pg_proc p ON p.proname = r.name AND p.pronamespace = 'halo_itsm'::regnamespace
 ORDER BY r.n;

-- The triggers that write the outbox, and those that delete the rows of deleted cases and detections.
SELECT t.tgrelid::regclass AS table_name, t.tgname, t.tgfoid::regproc AS function
  FROM pg_trigger t
 WHERE NOT t.tgisinternal AND t.tgrelid IN ('halo_itsm.cases'::regclass, 'halo_itsm.detections'::regclass)
 ORDER BY t.tgrelid::regclass::text, t.tgname;

-- The severities, in order.
SELECT enum_range(NULL::halo_itsm.severity);

-- Everything starts empty.
SELECT (SELECT count(*) FROM halo_itsm.integrations) AS integrations,
       (SELECT count(*) FROM halo_itsm.cases) AS cases,
       (SELECT count(*) FROM halo_itsm.outbox) AS outbox,
       (SELECT count(*) FROM halo_itsm.status WHERE pending IS NOT NULL) AS status_rows;

-- The background worker of the test cluster serves database halo, not this one: the status
-- view says so, and what to set, in a row of its own.
SELECT integration_id, name, pending, problem FROM halo_itsm.status WHERE pending IS NULL;
SELECT halo_itsm._worker_running() AS worker_here, current_setting('halo_itsm.database') AS served;

-- allow_http may be changed by superusers only (SUSET).
SELECT name, context, vartype FROM pg_settings WHERE name = 'halo_itsm.allow_http';

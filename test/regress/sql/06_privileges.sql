--
-- 06_privileges: secrets are for the extension owner and superusers only. An application
-- role with INSERT on cases and detections can create them (the SECURITY DEFINER triggers
-- write the outbox) but cannot read the outbox or the secrets, nor call the setup,
-- delivery or claim functions. Roles are cluster-wide: the ones made here are dropped at
-- the end.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- Roles left over from an interrupted run are removed first.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['halo_itsm_regress_app', 'halo_itsm_regress_reader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('DROP OWNED BY %I CASCADE', r);
            EXECUTE format('DROP ROLE %I', r);
        END IF;
    END LOOP;
END
$$;
CREATE ROLE halo_itsm_regress_app NOLOGIN;
CREATE ROLE halo_itsm_regress_reader NOLOGIN;
GRANT USAGE ON SCHEMA halo_itsm TO halo_itsm_regress_app, halo_itsm_regress_reader;
GRANT INSERT, SELECT ON halo_itsm.cases, halo_itsm.detections TO halo_itsm_regress_app;
GRANT SELECT ON halo_itsm.integrations TO halo_itsm_regress_reader;

SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'top-secret-value') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident', standalone_detection_tickets => true);

-- ---------------------------------------------------------------------------
-- The application role.
-- ---------------------------------------------------------------------------
SET ROLE halo_itsm_regress_app;
SELECT current_user;
-- it creates cases and detections; the triggers queue them
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-1', 'From the app', 'high') RETURNING id, sid, status;
INSERT INTO halo_itsm.detections (sid, title, severity, status) VALUES ('D-1', 'From the app', 'low', 'closed') RETURNING id, sid, status;
-- but reads no secrets, no integrations, no outbox, no tickets, no status
CALL pg_temp.try($$SELECT * FROM halo_itsm.integration_secrets$$);
CALL pg_temp.try($$SELECT client_secret FROM halo_itsm.integration_secrets$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.integrations$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.outbox$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.tickets$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.status$$);
-- and writes none of them directly
CALL pg_temp.try($$INSERT INTO halo_itsm.outbox (kind, case_id) VALUES ('case', 1)$$);
CALL pg_temp.try($$UPDATE halo_itsm.integration_secrets SET client_secret = 'x'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET status = 'closed'$$);
CALL pg_temp.try($$DELETE FROM halo_itsm.cases$$);
-- calls none of the setup, payload, delivery and internal functions
CALL pg_temp.try($$SELECT halo_itsm.connect('https://evil.example.com', 'cid', 'secret', name => 'evil')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Other')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, tickettype_id => 2)$$);
CALL pg_temp.try($$SELECT halo_itsm.set_credentials(1, 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.set_enabled(1, false)$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-1')$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm._claim(10)$$);
CALL pg_temp.try($$SELECT halo_itsm._record(1, 'dead', NULL, NULL, 'x', 0, false, NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm._random_secret(32)$$);
CALL pg_temp.try($$SELECT halo_itsm.retry()$$);
CALL pg_temp.try($$SELECT halo_itsm.purge()$$);
CALL pg_temp.try($$SELECT halo_itsm.check_connection(1)$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.schedule_jobs()$$);
-- deliver() is a procedure: refused before it does anything
CALL halo_itsm.deliver();
\echo :LAST_ERROR_SQLSTATE
-- SUSET settings are not for this role
CALL pg_temp.try($$SET halo_itsm.allow_http = on$$);
-- render_template() is harmless and public
SELECT halo_itsm.render_template('{{sid}}: {{title}}', 'C-1', 'From the app', 'high');
RESET ROLE;

-- What the application role did is there, queued by the triggers.
SELECT o.kind, coalesce(c.sid, d.sid) AS sid, o.integration_id, o.state, o.attempts
  FROM halo_itsm.outbox o
  LEFT JOIN halo_itsm.cases c ON c.id = o.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = o.detection_id
 ORDER BY o.id;
-- The secrets were not changed.
SELECT client_secret FROM halo_itsm.integration_secrets;

-- ---------------------------------------------------------------------------
-- The reader role: sees the integrations it was granted, never the secrets.
-- ---------------------------------------------------------------------------
SET ROLE halo_itsm_regress_reader;
SELECT id, name, instance_url, client_id, category FROM halo_itsm.integrations;
CALL pg_temp.try($$SELECT * FROM halo_itsm.integration_secrets$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.cases$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-2', 'x', 'low')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret', name => 'r')$$);
RESET ROLE;
-- Without the grant, integrations are not readable either.
REVOKE SELECT ON halo_itsm.integrations FROM halo_itsm_regress_reader;
SET ROLE halo_itsm_regress_reader;
CALL pg_temp.try($$SELECT name FROM halo_itsm.integrations$$);
RESET ROLE;
-- A monitoring role granted the status view reads all of it, the row saying whether a
-- background worker serves this database too (the view calls _worker_problem()).
GRANT SELECT ON halo_itsm.status TO halo_itsm_regress_reader;
SET ROLE halo_itsm_regress_reader;
SELECT count(*) AS worker_rows FROM halo_itsm.status WHERE problem LIKE 'no background worker serves this database%';
RESET ROLE;
REVOKE SELECT ON halo_itsm.status FROM halo_itsm_regress_reader;

-- ---------------------------------------------------------------------------
-- Clean up: the roles are cluster-wide.
-- ---------------------------------------------------------------------------
DROP OWNED BY halo_itsm_regress_app CASCADE;
DROP OWNED BY halo_itsm_regress_reader CASCADE;
DROP ROLE halo_itsm_regress_app;
DROP ROLE halo_itsm_regress_reader;
SELECT count(*) AS leftover_roles FROM pg_roles WHERE rolname LIKE 'halo_itsm_regress_%';

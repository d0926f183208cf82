-- common.sql: included (\ir) by the regress tests: empty every halo_itsm table and
-- define pg_temp.try(cmd), which reports ok or the SQLSTATE, message and hint of an error.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE halo_itsm.integrations, halo_itsm.integration_secrets, halo_itsm.cases,
         halo_itsm.detections, halo_itsm.tickets, halo_itsm.outbox, halo_itsm.timeline,
         halo_itsm.webhook_deliveries RESTART IDENTITY CASCADE;
RESET client_min_messages;

-- try(cmd): runs cmd; reports "ok" or the error's SQLSTATE, message and hint as a NOTICE.
CREATE PROCEDURE pg_temp.try(cmd text) LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    hint text;
BEGIN
    EXECUTE cmd;
    RAISE NOTICE 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    IF hint = '' THEN
        RAISE NOTICE '%: %', st, msg;
    ELSE
        RAISE NOTICE '%: %', st, msg USING HINT = hint;
    END IF;
END
$$;

-- try.sql: included after the preamble by the tests that check errors: defines
-- pg_temp.try(cmd), which reports ok or the SQLSTATE, message and hint of an error, and
-- leaves the error context out of psql's output.
\set SHOW_CONTEXT never

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

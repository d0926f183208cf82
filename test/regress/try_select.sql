-- try_select.sql: included by the tests that list their attempts in a table: defines
-- pg_temp.try(call), which runs SELECT call and returns "ok" (followed by the call's result
-- when it has one, e.g. configure_webhook_signature()'s jsonb) or the error's SQLSTATE,
-- message and hint, as one text value.
CREATE FUNCTION pg_temp.try(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text; msg text; hint text;
BEGIN
    EXECUTE 'SELECT ' || call INTO r;
    RETURN 'ok' || coalesce(' ' || nullif(r, ''), '');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ' ' || msg || ' / ' || coalesce(hint, '(no hint)');
END
$$;

/*
 * 95_listener.sql: what the webhook listener (src/inbound/listener*.c) needs in SQL: the role it
 * applies deliveries as, and the one SQLSTATE-to-HTTP map of webhook answers
 * (webhook_http_status(), src/core/hi_webhook_status.c), which external receivers read too.
 * Numbered after 90_privileges.sql, whose REVOKE ALL would take back the grants made here.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- The HTTP status a webhook receiver answers for an ingest_webhook() outcome: NULL (accepted)
-- 200, WH001 404, WH002 413, WH005..WH007 401, the other WH codes 400, 25006 and 57P01..57P03
-- 503, anything else 500. The listener uses the same C function.
CREATE OR REPLACE FUNCTION halo_itsm.webhook_http_status(sqlstate text)
RETURNS integer LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'halo_itsm_webhook_http_status';
COMMENT ON FUNCTION halo_itsm.webhook_http_status(text) IS
    'The HTTP status a webhook receiver answers: NULL (accepted) 200; the SQLSTATE of an ingest_webhook() error otherwise (WH001 404, WH002 413, WH005-WH007 401, other WH 400, 25006/57P0x 503, anything else 500).';
GRANT EXECUTE ON FUNCTION halo_itsm.webhook_http_status(text) TO PUBLIC;

-- The role the listener applies deliveries as (halo_itsm.listen_role's default): it cannot log
-- in and may only call ingest_webhook() (a SECURITY DEFINER function). Roles are global: an
-- existing one is kept as it is (its grants here are added), and DROP EXTENSION leaves it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) 'halo_itsm_listener') THEN
        CREATE ROLE halo_itsm_listener NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA halo_itsm TO halo_itsm_listener;
GRANT EXECUTE ON FUNCTION halo_itsm.ingest_webhook(text, jsonb, bytea) TO halo_itsm_listener;

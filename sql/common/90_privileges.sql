/*
 * 90_privileges.sql: privileges: nothing for PUBLIC but what is safe; secrets only for the
 * extension owner and superusers.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; secrets only for the owner and superusers.
-- ---------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA halo_itsm FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA halo_itsm FROM PUBLIC;
-- ALL FUNCTIONS does not include procedures (deliver()).
REVOKE ALL ON ALL PROCEDURES IN SCHEMA halo_itsm FROM PUBLIC;
GRANT USAGE ON SCHEMA halo_itsm TO PUBLIC;
GRANT EXECUTE ON FUNCTION halo_itsm.render_template(text, text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION halo_itsm.priority_id(halo_itsm.integrations, halo_itsm.severity) TO PUBLIC;
-- the status view calls it (with the reader's rights): it reveals only halo_itsm.database
GRANT EXECUTE ON FUNCTION halo_itsm._worker_problem() TO PUBLIC;

-- Webhooks: the signature calculator is harmless; ingest_webhook (SECURITY DEFINER) is
-- granted by the administrator to the receiver's role only (README, "Webhooks", "Privileges");
-- everything else (settings, rotation, reconcile, the timeline) stays with the owner.
GRANT EXECUTE ON FUNCTION halo_itsm.webhook_signature(text, jsonb, bytea) TO PUBLIC;

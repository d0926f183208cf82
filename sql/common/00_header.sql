/*
 * halo_itsm--<version>.sql: install script of the halo_itsm extension.
 *
 * Made by make from sql/common/, sql/outbound/ and sql/inbound/ (README, "Layout"):
 * tables (cases, detections, tickets, outbox, timeline, integrations and their
 * secrets, webhook deliveries and signature schemes), the triggers that write the
 * outbox in the inserting transaction, the configuration functions, the status
 * views, the SQL side of delivery (claim and record) used by the background worker
 * and by deliver(), webhook ingest and apply, and the privileges.
 */
\echo Use "CREATE EXTENSION halo_itsm" to load this file. \quit


-- Halo speaks UTF-8, and its answers, notes and webhooks are read as UTF-8 (the worker
-- reads them outside any transaction, where PostgreSQL cannot convert encodings): the
-- extension needs a UTF-8 database, and says so at CREATE EXTENSION instead of failing
-- later on every answer.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'halo_itsm: this database''s encoding is %, and halo_itsm needs UTF8',
                        pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (e.g. CREATE DATABASE soc ENCODING ''UTF8'' TEMPLATE template0 LOCALE ''C.UTF-8'') and install halo_itsm there.';
    END IF;
END
$$;

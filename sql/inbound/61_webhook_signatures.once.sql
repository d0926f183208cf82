/*
 * 61_webhook_signatures.once.sql: the table of per-integration webhook signing settings
 * (configure_webhook_signature() in 62_webhook_signature.sql writes it).
 * Runs once, at CREATE EXTENSION; later versions change it in sql/updates/.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- The signing settings of an integration; no row means the defaults (today's scheme).
CREATE TABLE halo_itsm.webhook_signatures (
    integration_id integer PRIMARY KEY REFERENCES halo_itsm.integrations (id) ON DELETE CASCADE,
    signature_header text NOT NULL DEFAULT 'x-signature',
    signed_headers text[] NOT NULL DEFAULT '{content-length,content-type,host,x-halo-date}',
    digest text NOT NULL DEFAULT 'base64' CHECK (digest IN ('base64', 'hex')),
    prefix text NOT NULL DEFAULT '',
    timestamp_header text DEFAULT 'x-halo-date',    -- NULL: no freshness check
    layout text NOT NULL DEFAULT 'default'
);
COMMENT ON TABLE halo_itsm.webhook_signatures IS
    'How Halo signs the webhooks of an integration (set with configure_webhook_signature()); no row means the default scheme of docs/webhook-signature.md.';
SELECT pg_catalog.pg_extension_config_dump('halo_itsm.webhook_signatures', '');

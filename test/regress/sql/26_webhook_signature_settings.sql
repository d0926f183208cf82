-- 26_webhook_signature_settings: configure_webhook_signature() validates every argument
-- (SQLSTATE 22023, halo_itsm: message, hint) and keeps a value given as NULL;
-- webhook_layouts() lists the layouts. Verification under a configured scheme is
-- test/integration/test_webhook_signing.py's (the mock signs).
\ir test/regress/common.sql
\ir test/regress/integration.sql

SELECT halo_itsm.webhook_layouts();

\ir test/regress/try_select.sql

CREATE TEMP TABLE attempts (what text, call text);
INSERT INTO attempts VALUES
  ('no such integration', $$halo_itsm.configure_webhook_signature(99)$$),
  ('nothing changed', $$halo_itsm.configure_webhook_signature(1)$$),
  ('signature header with a space', $$halo_itsm.configure_webhook_signature(1, signature_header => 'x signature')$$),
  ('signature header empty', $$halo_itsm.configure_webhook_signature(1, signature_header => '')$$),
  ('signature header 65 characters', $$halo_itsm.configure_webhook_signature(1, signature_header => repeat('x', 65))$$),
  ('signed header with a colon', $$halo_itsm.configure_webhook_signature(1, signed_headers => '{host:,content-type}')$$),
  ('signed header NULL', $$halo_itsm.configure_webhook_signature(1, signed_headers => ARRAY['host', NULL])$$),
  ('signed header twice (case)', $$halo_itsm.configure_webhook_signature(1, signed_headers => '{Host,host,x-halo-date}')$$),
  ('17 signed headers', $$halo_itsm.configure_webhook_signature(1, signed_headers => (SELECT array_agg('h' || i) FROM generate_series(1, 17) i))$$),
  ('two-dimensional', $$halo_itsm.configure_webhook_signature(1, signed_headers => '{{host},{x-halo-date}}')$$),
  ('no signed headers', $$halo_itsm.configure_webhook_signature(1, signed_headers => '{}')$$),
  ('signature header signed', $$halo_itsm.configure_webhook_signature(1, signature_header => 'host')$$),
  ('digest sha1', $$halo_itsm.configure_webhook_signature(1, digest => 'sha1')$$),
  ('prefix with a space', $$halo_itsm.configure_webhook_signature(1, prefix => 'sha 256=')$$),
  ('prefix of 33', $$halo_itsm.configure_webhook_signature(1, prefix => repeat('p', 33))$$),
  ('timestamp header not signed', $$halo_itsm.configure_webhook_signature(1, timestamp_header => 'date')$$),
  ('timestamp header bad', $$halo_itsm.configure_webhook_signature(1, timestamp_header => 'x-halo date')$$),
  ('layout unknown', $$halo_itsm.configure_webhook_signature(1, layout => 'Default')$$),
  ('body layout with headers', $$halo_itsm.configure_webhook_signature(1, layout => 'body')$$),
  ('body layout', $$halo_itsm.configure_webhook_signature(1, layout => 'body', signed_headers => '{}', timestamp_header => 'none')$$),
  ('NULL keeps, upper case lowered', $$halo_itsm.configure_webhook_signature(1, signature_header => 'X-Hook-Signature', digest => 'HEX', prefix => 'sha256=', signed_headers => '{Content-Type,Host,X-Halo-Date}', timestamp_header => 'X-Halo-Date', layout => 'cavage')$$),
  ('and kept', $$halo_itsm.configure_webhook_signature(1, layout => NULL)$$);
SELECT what, pg_temp.try(call) AS result FROM attempts;
SELECT integration_id, signature_header, signed_headers, digest, prefix, timestamp_header, layout
  FROM halo_itsm.webhook_signatures;


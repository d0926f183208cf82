-- 23_webhook_rotation: webhook_settings(), rotate_webhook_secret() with the previous
-- secret inside and outside its grace period, and who may do what (timeline privileges).
\ir test/regress/common.sql
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_halo_receiver;
DROP ROLE IF EXISTS regress_halo_analyst;
RESET client_min_messages;
\ir test/regress/integration.sql
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('CASE-1', 'Ransomware', 'critical', 1);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id) SELECT 1, 4242, id FROM halo_itsm.cases;

-- helpers: signed headers for a body under a secret; an ingest that reports SQLSTATE and message
CREATE FUNCTION pg_temp.signed(body text, secret text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT h || jsonb_build_object('X-Signature', halo_itsm.webhook_signature(secret, h, convert_to(body, 'UTF8')))
      FROM (SELECT jsonb_build_object('Content-Type', 'application/json', 'Host', 'soc.example.com',
                                      'Content-Length', octet_length(convert_to(body, 'UTF8'))::text,
                                      'X-Halo-Date', to_char(now() AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"')) h) x
$$;
CREATE FUNCTION pg_temp.try(delivery_id text, secret text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    body text := format('{"id": "%s", "object_id": 4242, "ticket": {"id": 4242, "status_id": 2}}', delivery_id);
    r jsonb;
    st text; msg text; detail text; hint text;
BEGIN
    r := halo_itsm.ingest_webhook((SELECT webhook_key FROM halo_itsm.integrations WHERE id = 1),
                                  pg_temp.signed(body, secret), convert_to(body, 'UTF8'));
    RETURN 'ok ' || (r ->> 'outcome');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            hint = PG_EXCEPTION_HINT;
    IF position(secret IN msg || coalesce(detail, '') || coalesce(hint, '')) > 0 THEN
        RETURN 'SECRET LEAKED';
    END IF;
    RETURN st || ' ' || msg || ' / ' || regexp_replace(coalesce(detail, ''), '(valid until|ended at) .*', '\1 <time>.');
END
$$;

-- webhook_settings(): the URL is halo_itsm.webhook_base_url plus the webhook key.
SELECT webhook_key AS key, (SELECT webhook_secret FROM halo_itsm.integration_secrets) AS secret0
  FROM halo_itsm.integrations \gset
SELECT url = 'https://soc.example.com/halo/' || :'key' AS url_ok, secret = :'secret0' AS secret_ok,
       length(secret) AS secret_length
  FROM halo_itsm.webhook_settings(1);
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo';
SELECT url = 'https://soc.example.com/halo/' || :'key' AS url_ok_without_slash FROM halo_itsm.webhook_settings(1);
-- without it, the webhook listener's own URL (the test cluster listens on 127.0.0.1)
SET halo_itsm.webhook_base_url = '';
SELECT url = 'http://127.0.0.1:' || current_setting('halo_itsm.listen_port') || '/halo/' || :'key' AS listener_url,
       secret IS NOT NULL AS has_secret FROM halo_itsm.webhook_settings(1);
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
SELECT * FROM halo_itsm.webhook_settings(99);

-- The current secret works.
SELECT pg_temp.try('r-1', :'secret0');

-- Rotation: a new secret; the old one stays valid for the grace period (24 hours by default).
SELECT halo_itsm.rotate_webhook_secret(1) AS secret1 \gset
SELECT length(:'secret1') AS length, :'secret1' <> :'secret0' AS changed,
       (SELECT secret FROM halo_itsm.webhook_settings(1)) = :'secret1' AS settings_show_new,
       previous_secret_valid_until BETWEEN now() + interval '23 hours 59 minutes' AND now() + interval '24 hours 1 minute' AS grace_24h
  FROM halo_itsm.integration_secrets;
SELECT pg_temp.try('r-2', :'secret1') AS new_secret, pg_temp.try('r-3', :'secret0') AS old_secret_in_grace,
       pg_temp.try('r-4', 'some-other-secret') AS other_secret;

-- Outside its grace period the previous secret is refused (WH007), and says so.
UPDATE halo_itsm.integration_secrets SET previous_secret_valid_until = now() - interval '1 minute';
SELECT pg_temp.try('r-5', :'secret0') AS old_secret_after_grace, pg_temp.try('r-6', :'secret1') AS new_secret;

-- A rotation with grace '0' drops the previous secret at once; the one before is gone for good.
SELECT halo_itsm.rotate_webhook_secret(1, grace => '0') AS secret2 \gset
SELECT pg_temp.try('r-7', :'secret2') AS newest, pg_temp.try('r-8', :'secret1') AS previous_no_grace,
       pg_temp.try('r-9', :'secret0') AS first;
SELECT halo_itsm.rotate_webhook_secret(1, grace => '1 hour') AS secret3 \gset
SELECT pg_temp.try('r-10', :'secret3') AS newest, pg_temp.try('r-11', :'secret2') AS previous_in_grace,
       pg_temp.try('r-12', :'secret1') AS older;
SELECT halo_itsm.rotate_webhook_secret(1, grace => '-1 hour');
SELECT halo_itsm.rotate_webhook_secret(42);
SELECT delivery_id FROM halo_itsm.webhook_deliveries ORDER BY received_at, delivery_id;

-- Privileges. The receiver's role needs only EXECUTE on ingest_webhook (SECURITY DEFINER):
-- it can deliver, but cannot read secrets, the timeline, or call anything else.
CREATE ROLE regress_halo_receiver;
CREATE ROLE regress_halo_analyst;
GRANT EXECUTE ON FUNCTION halo_itsm.ingest_webhook(text, jsonb, bytea) TO regress_halo_receiver;
\set body '{"id": "p-1", "object_id": 4242, "ticket": {"id": 4242, "status_id": 2}, "action": {"id": 9001, "who": "Alice", "note": "Hello from Halo."}}'
SELECT pg_temp.signed(:'body', :'secret3') AS headers \gset
SET ROLE regress_halo_receiver;
SELECT halo_itsm.ingest_webhook(:'key', :'headers', convert_to(:'body', 'UTF8')) ->> 'outcome' AS outcome;
SELECT halo_itsm.ingest_webhook(:'key', :'headers', convert_to(:'body', 'UTF8')) ->> 'outcome' AS again;
\set VERBOSITY sqlstate
SELECT count(*) FROM halo_itsm.timeline;
SELECT webhook_secret FROM halo_itsm.integration_secrets;
SELECT * FROM halo_itsm.webhook_settings(1);
SELECT halo_itsm.rotate_webhook_secret(1);
CALL halo_itsm.reconcile();
SELECT halo_itsm._apply_webhook(1, '{"id": "x", "object_id": 4242}');
SELECT halo_itsm._apply_sync(1, '{}', '{}', NULL);
INSERT INTO halo_itsm.timeline (case_id, occurred_at, source, kind, body) VALUES (1, now(), 'local', 'note', 'x');
\set VERBOSITY default
SELECT halo_itsm.webhook_signature('k', '{"content-type": "t", "host": "h", "x-halo-date": "d"}', '') AS anyone_may_sign;
RESET ROLE;

-- An analyst granted SELECT on the timeline (and on cases, detections, integrations, and
-- EXECUTE on webhook_settings and timeline_of) reads the timeline and the URL, but not the secret, and cannot ingest.
GRANT SELECT ON halo_itsm.timeline, halo_itsm.integrations, halo_itsm.cases, halo_itsm.detections TO regress_halo_analyst;
GRANT EXECUTE ON FUNCTION halo_itsm.webhook_settings(integer), halo_itsm.timeline_of(text) TO regress_halo_analyst;
SET ROLE regress_halo_analyst;
SELECT kind, author, body FROM halo_itsm.timeline;
SELECT subject, kind, author, body FROM halo_itsm.timeline_of('CASE-1');
SELECT url = 'https://soc.example.com/halo/' || :'key' AS url_ok, secret IS NULL AS secret_hidden
  FROM halo_itsm.webhook_settings(1);
\set VERBOSITY sqlstate
SELECT halo_itsm.ingest_webhook(:'key', :'headers', convert_to(:'body', 'UTF8'));
DELETE FROM halo_itsm.timeline;
SELECT webhook_secret FROM halo_itsm.integration_secrets;
\set VERBOSITY default
RESET ROLE;
-- A role with no grants sees nothing.
SET ROLE regress_halo_receiver;
\set VERBOSITY sqlstate
SELECT * FROM halo_itsm.timeline_of('CASE-1');
\set VERBOSITY default
RESET ROLE;

SELECT count(*) AS timeline_rows FROM halo_itsm.timeline;
DROP OWNED BY regress_halo_receiver, regress_halo_analyst;
DROP ROLE regress_halo_receiver;
DROP ROLE regress_halo_analyst;

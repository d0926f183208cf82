-- 21_webhook_verify: ingest_webhook() verifies before it parses or stores anything.
-- Every rejection has its own SQLSTATE (class WH), a halo_itsm: message and a hint,
-- never shows the secret, and changes nothing.
\ir test/regress/common.sql
\ir test/regress/integration.sql
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
UPDATE halo_itsm.integration_secrets SET webhook_secret = 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2';
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('CASE-1', 'Ransomware', 'critical', 1);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id) SELECT 1, 4242, id FROM halo_itsm.cases;

-- helpers: an IMF-fixdate, signed headers for a body, and a delivery by text
CREATE FUNCTION pg_temp.imf(ts timestamptz) RETURNS text LANGUAGE sql
    AS $$ SELECT to_char(ts AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"') $$;
CREATE FUNCTION pg_temp.key() RETURNS text LANGUAGE sql
    AS $$ SELECT webhook_key FROM halo_itsm.integrations WHERE id = 1 $$;
CREATE FUNCTION pg_temp.signed(body text, secret text DEFAULT 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2',
                               date text DEFAULT NULL, host text DEFAULT 'soc.example.com')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT h || jsonb_build_object('X-Signature', halo_itsm.webhook_signature(secret, h, convert_to(body, 'UTF8')))
      FROM (SELECT jsonb_build_object('Content-Type', 'application/json',
                                      'Content-Length', octet_length(convert_to(body, 'UTF8'))::text,
                                      'Host', host, 'X-Halo-Date', coalesce(date, pg_temp.imf(now())),
                                      'User-Agent', 'Halo') AS h) x
$$;
-- runs an ingest_webhook call; shows the result or SQLSTATE: message (hint checked, secret searched)
CREATE FUNCTION pg_temp.try(call text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    st text; msg text; hint text; detail text;
BEGIN
    EXECUTE 'SELECT ' || call INTO r;
    RETURN 'ok ' || (r ->> 'outcome');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT,
                            detail = PG_EXCEPTION_DETAIL;
    IF position('hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2' IN msg || coalesce(hint, '') || coalesce(detail, '')) > 0 THEN
        RETURN 'SECRET LEAKED';
    END IF;
    RETURN st || ' ' || regexp_replace(msg, 'dated .*, \d+ seconds', 'dated <date>, <n> seconds')
           || CASE WHEN coalesce(hint, '') = '' THEN ' [NO HINT]' ELSE '' END;
END
$$;
\set body '{"id":"d-1","event":"Ticket Updated by Agent","object_id":4242,"ticket":{"id":4242,"status_id":2}}'

-- A correct delivery passes (and the body is applied: no action, so a sync is queued).
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))', :'body', :'body'));
SELECT count(*) AS deliveries FROM halo_itsm.webhook_deliveries;

-- Each rejection, in the order of the checks.
CREATE TEMP TABLE attempts (what text, call text);
INSERT INTO attempts VALUES
  ('unknown key',
   $$halo_itsm.ingest_webhook('nosuchkey', pg_temp.signed(:'b'), convert_to(:'b', 'UTF8'))$$),
  ('NULL key',
   $$halo_itsm.ingest_webhook(NULL, pg_temp.signed(:'b'), convert_to(:'b', 'UTF8'))$$),
  ('missing x-halo-date',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') - 'X-Halo-Date', convert_to(:'b', 'UTF8'))$$),
  ('missing content-type',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') - 'Content-Type', convert_to(:'b', 'UTF8'))$$),
  ('missing content-length',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') - 'Content-Length', convert_to(:'b', 'UTF8'))$$),
  ('no headers at all',
   $$halo_itsm.ingest_webhook(pg_temp.key(), NULL, convert_to(:'b', 'UTF8'))$$),
  ('headers not an object',
   $$halo_itsm.ingest_webhook(pg_temp.key(), '["Host"]', convert_to(:'b', 'UTF8'))$$),
  ('content-type twice (other case)',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"content-type": "application/json"}', convert_to(:'b', 'UTF8'))$$),
  ('host twice (other case)',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"host": "soc.example.com"}', convert_to(:'b', 'UTF8'))$$),
  ('x-halo-date twice (array)',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || jsonb_build_object('X-Halo-Date', jsonb_build_array(pg_temp.imf(now()), pg_temp.imf(now()))), convert_to(:'b', 'UTF8'))$$),
  ('empty content-type',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"Content-Type": " \t"}', convert_to(:'b', 'UTF8'))$$),
  ('date unreadable',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', date => 'yesterday noon'), convert_to(:'b', 'UTF8'))$$),
  ('date "now"',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', date => 'now'), convert_to(:'b', 'UTF8'))$$),
  ('date without a zone',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', date => '2026-11-28T15:56:01'), convert_to(:'b', 'UTF8'))$$),
  ('content-length too big',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"Content-Length": "999"}', convert_to(:'b', 'UTF8'))$$),
  ('content-length not a number',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"Content-Length": "1e2"}', convert_to(:'b', 'UTF8'))$$),
  ('date 310 s old',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', date => pg_temp.imf(now() - interval '310 s')), convert_to(:'b', 'UTF8'))$$),
  ('date 310 s ahead',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', date => pg_temp.imf(now() + interval '310 s')), convert_to(:'b', 'UTF8'))$$),
  ('missing x-signature',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') - 'X-Signature', convert_to(:'b', 'UTF8'))$$),
  ('x-signature not base64',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || '{"X-Signature": "not-a-signature"}', convert_to(:'b', 'UTF8'))$$),
  ('x-signature of 31 bytes',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b') || jsonb_build_object('X-Signature', encode(decode(repeat('ab', 31), 'hex'), 'base64')), convert_to(:'b', 'UTF8'))$$),
  ('wrong secret',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', secret => 'not-the-secret'), convert_to(:'b', 'UTF8'))$$),
  ('body changed after signing',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b'), convert_to(replace(:'b', '"status_id":2', '"status_id":9'), 'UTF8'))$$),
  ('signed for another host',
   $$halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', host => 'evil.example.com'), convert_to(:'b', 'UTF8'))$$);
-- the body goes in through a psql variable
\set b :body
SELECT what, pg_temp.try(replace(call, ':''b''', quote_literal(:'b'))) AS result FROM attempts;
SELECT count(*) AS deliveries, (SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync') AS syncs
  FROM halo_itsm.webhook_deliveries;

-- The body is parsed only once it is verified: malformed JSON, duplicate keys, no ticket, no id.
CREATE TEMP TABLE bodies (what text, body text);
INSERT INTO bodies VALUES
  ('not JSON', '{"id": "x", '),
  ('JSON array of a non-object', '["x"]'),
  ('JSON scalar', '"ticket"'),
  ('empty body', ''),
  ('NUL escape', '{"id": "x\u0000", "object_id": 4242}'),
  ('duplicate key', '{"id": "x", "object_id": 4242, "id": "y"}'),
  ('duplicate nested key', '{"id": "x", "ticket": {"id": 4242, "status_id": 9, "status_id": 2}}'),
  ('duplicate key, escaped', '{"id": "x", "object_id": 4242, "\u006fbject_id": 1}'),
  ('no ticket id', '{"id": "x", "event": "Client Updated"}'),
  ('ticket id not a number', '{"id": "x2", "object_id": "four"}'),
  ('no delivery id', '{"event": "Ticket Updated by Agent", "object_id": 4242}'),
  ('same key in sibling objects is fine', '{"id": "sib", "object_id": 4242, "a": {"k": 1}, "b": {"k": 1}}');
SELECT what, pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))', body, body)) AS result
  FROM bodies;
-- invalid UTF-8, signed as bytes
SELECT pg_temp.try($$halo_itsm.ingest_webhook(pg_temp.key(),
         (SELECT h || jsonb_build_object('X-Signature', halo_itsm.webhook_signature('hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2', h, '\xff7b7d'::bytea))
            FROM (SELECT jsonb_build_object('Content-Type', 'application/json', 'Content-Length', '3', 'Host', 'soc.example.com',
                                           'X-Halo-Date', pg_temp.imf(now())) h) x),
         '\xff7b7d'::bytea)$$) AS invalid_utf8;

-- Body over halo_itsm.webhook_max_body: refused before anything else is looked at.
SET halo_itsm.webhook_max_body = 1024;
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), ''{}'', convert_to(%L, ''UTF8''))', repeat('x', 1025))) AS too_large;
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))',
                          '{"id":"big","object_id":4242,"pad":"' || repeat('x', 1024 - 40) || '"}',
                          '{"id":"big","object_id":4242,"pad":"' || repeat('x', 1024 - 40) || '"}')) AS just_under;
RESET halo_itsm.webhook_max_body;

-- The tolerance is a setting; both directions.
SET halo_itsm.webhook_tolerance = '10min';
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, date => pg_temp.imf(now() - interval ''9 min'')), convert_to(%L, ''UTF8''))',
                          '{"id":"old","object_id":4242}', '{"id":"old","object_id":4242}')) AS nine_minutes_old,
       pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, date => pg_temp.imf(now() + interval ''9 min'')), convert_to(%L, ''UTF8''))',
                          '{"id":"new","object_id":4242}', '{"id":"new","object_id":4242}')) AS nine_minutes_ahead;
RESET halo_itsm.webhook_tolerance;

-- RFC 3339 dates are accepted too.
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, date => %L), convert_to(%L, ''UTF8''))',
                          '{"id":"rfc","object_id":4242}', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                          '{"id":"rfc","object_id":4242}')) AS rfc3339,
       pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, date => %L), convert_to(%L, ''UTF8''))',
                          '{"id":"rfc2","object_id":4242}', to_char(now() AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD"T"HH24:MI:SS"+05:30"'),
                          '{"id":"rfc2","object_id":4242}')) AS rfc3339_offset;

-- Host: with halo_itsm.webhook_base_url set, its host[:port] is signed, whatever Host says
-- (a proxy may rewrite it); without it, the received Host header is signed.
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L) || ''{"Host": "10.0.0.5:8080"}'', convert_to(%L, ''UTF8''))',
                          '{"id":"h1","object_id":4242}', '{"id":"h1","object_id":4242}')) AS proxy_rewrote_host,
       pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L) - ''Host'', convert_to(%L, ''UTF8''))',
                          '{"id":"h2","object_id":4242}', '{"id":"h2","object_id":4242}')) AS no_host_header;
SET halo_itsm.webhook_base_url = 'HTTPS://SOC.Example.com:443/halo/';
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))',
                          '{"id":"h3","object_id":4242}', '{"id":"h3","object_id":4242}')) AS default_port_dropped;
SET halo_itsm.webhook_base_url = 'http://127.0.0.1:8080/halo/';
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, host => ''127.0.0.1:8080'') || ''{"Host": "x"}'', convert_to(%L, ''UTF8''))',
                          '{"id":"h4","object_id":4242}', '{"id":"h4","object_id":4242}')) AS other_port_kept,
       pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))',
                          '{"id":"h5","object_id":4242}', '{"id":"h5","object_id":4242}')) AS signed_for_other_host;
SET halo_itsm.webhook_base_url = '';
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L, host => ''receiver.local:81''), convert_to(%L, ''UTF8''))',
                          '{"id":"h6","object_id":4242}', '{"id":"h6","object_id":4242}')) AS received_host,
       pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L) - ''Host'', convert_to(%L, ''UTF8''))',
                          '{"id":"h7","object_id":4242}', '{"id":"h7","object_id":4242}')) AS host_required_now;
SET halo_itsm.webhook_base_url = 'not a url';
SELECT pg_temp.try(format('halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(%L), convert_to(%L, ''UTF8''))',
                          '{"id":"h8","object_id":4242}', '{"id":"h8","object_id":4242}')) AS bad_base_url;
RESET halo_itsm.webhook_base_url;

-- Nothing was stored by any rejection: only the accepted deliveries are recorded.
SELECT delivery_id, outcome FROM halo_itsm.webhook_deliveries ORDER BY received_at, delivery_id;
SELECT count(*) AS timeline_rows FROM halo_itsm.timeline;
SELECT status FROM halo_itsm.cases;

-- The messages in full, with their hints (two examples).
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
SELECT halo_itsm.ingest_webhook('nosuchkey', '{}', '');
SELECT halo_itsm.ingest_webhook(pg_temp.key(), pg_temp.signed(:'b', secret => 'wrong'), convert_to(:'b', 'UTF8'));

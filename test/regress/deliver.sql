-- deliver.sql: defines pg_temp.deliver(payload), which signs a payload with integration
-- 1's webhook secret (set by the including test) and ingests it as Halo would send it now.
-- Included again after each \c that needs it (pg_temp goes with the session).
CREATE FUNCTION pg_temp.deliver(payload jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT halo_itsm.ingest_webhook(
               (SELECT webhook_key FROM halo_itsm.integrations WHERE id = 1),
               h || jsonb_build_object('X-Signature',
                        halo_itsm.webhook_signature('hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2', h, convert_to(payload::text, 'UTF8'))),
               convert_to(payload::text, 'UTF8'))
      FROM (SELECT jsonb_build_object('Content-Type', 'application/json',
                                      'Content-Length', octet_length(convert_to(payload::text, 'UTF8'))::text,
                                      'Host', 'soc.example.com',
                                      'X-Halo-Date', to_char(now() AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"')) h) x
$$;

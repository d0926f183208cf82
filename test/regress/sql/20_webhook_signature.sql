-- 20_webhook_signature: halo_itsm.webhook_signature() reproduces the golden vector of
-- webhook-signature.md and builds the canonical string exactly (names in any case,
-- values trimmed, content-length defaulting to the body's length).
\ir test/regress/common.sql

\set golden_body '{"id":"5b0c2f4e-8d1a-4c1e-9a57-2f1f0d3e6b11","event":"Ticket Updated by Agent","object_id":4242,"ticket":{"id":4242,"status_id":9,"hasbeenclosed":true}}'
\set golden_secret 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2'

-- The golden vector: x-signature UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=
SELECT octet_length(convert_to(:'golden_body', 'UTF8')) AS body_bytes;
SELECT halo_itsm.webhook_signature(:'golden_secret',
         '{"content-length": "152", "content-type": "application/json",
           "host": "soc.example.com", "x-halo-date": "Sat, 28 Nov 2026 15:56:01 GMT"}',
         convert_to(:'golden_body', 'UTF8'))
       = 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=' AS golden_vector;

-- Header names in any case, values with surrounding spaces and tabs, content-length left out.
SELECT halo_itsm.webhook_signature(:'golden_secret',
         jsonb_build_object('Content-Type', E' application/json\t', 'HOST', 'soc.example.com  ',
                            'X-Halo-Date', '  Sat, 28 Nov 2026 15:56:01 GMT', 'Accept', '*/*'),
         convert_to(:'golden_body', 'UTF8'))
       = 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=' AS same_signature;

-- Any change to a signed part changes the signature.
SELECT halo_itsm.webhook_signature(:'golden_secret',
         '{"content-type": "application/json", "host": "soc.example.com:443",
           "x-halo-date": "Sat, 28 Nov 2026 15:56:01 GMT"}',
         convert_to(:'golden_body', 'UTF8')) <> 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=' AS host_is_signed,
       halo_itsm.webhook_signature(:'golden_secret',
         '{"content-type": "application/json", "host": "soc.example.com",
           "x-halo-date": "Sat, 28 Nov 2026 15:56:02 GMT"}',
         convert_to(:'golden_body', 'UTF8')) <> 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=' AS date_is_signed,
       halo_itsm.webhook_signature(:'golden_secret',
         '{"content-type": "application/json", "host": "soc.example.com",
           "x-halo-date": "Sat, 28 Nov 2026 15:56:01 GMT"}',
         convert_to(:'golden_body' || ' ', 'UTF8')) <> 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=' AS body_is_signed;

-- An empty body; the expected value is from
-- printf 'content-length:0\ncontent-type:t\nhost:h\nx-halo-date:d\n' | openssl dgst -sha256 -hmac k -binary | base64
SELECT halo_itsm.webhook_signature('k', '{"content-type": "t", "host": "h", "x-halo-date": "d"}', ''::bytea)
       = 'HsCF+D4u12x8H+63pbC5B1GbawLgvWlFfMVOxR2telg=' AS empty_body;

-- Errors carry their SQLSTATE (WH003 header, WH004 content-length) and never the secret.
\set VERBOSITY sqlstate
SELECT halo_itsm.webhook_signature(:'golden_secret', '{"content-type": "a", "host": "h"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret',
         '{"content-type": "a", "Content-Type": "a", "host": "h", "x-halo-date": "d"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret', '{"content-type": " ", "host": "h", "x-halo-date": "d"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret', '{"content-type": "a", "host": ["h", "i"], "x-halo-date": "d"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret', '{"content-type": "a", "host": 7, "x-halo-date": "d"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret', E'{"content-type": "a\\nb", "host": "h", "x-halo-date": "d"}', ''::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret',
         '{"content-length": "3", "content-type": "a", "host": "h", "x-halo-date": "d"}', 'ab'::bytea);
SELECT halo_itsm.webhook_signature(:'golden_secret', '["content-type"]', ''::bytea);
SELECT halo_itsm.webhook_signature('', '{"content-type": "a", "host": "h", "x-halo-date": "d"}', ''::bytea);
\set VERBOSITY default
SELECT halo_itsm.webhook_signature(:'golden_secret', '{"content-type": "a", "host": "h"}', ''::bytea);

-- 25_pinned_settings: the session settings that change how SQL text is read do not change
-- what the extension's own code does (issue 9, item 9): a receiver session with
-- standard_conforming_strings off, an odd DateStyle, IntervalStyle and TimeZone ingests a
-- note dated 2020, and a deliver()-like session applies a sync, both stored at their 2020
-- times (not at now()). Each part runs in a new session, before the extension's PL/pgSQL
-- helpers are compiled in it.
\ir test/regress/common.sql
\ir test/regress/integration.sql
SELECT halo_itsm.configure(1, category => 'Security>Incident');
UPDATE halo_itsm.integration_secrets SET webhook_secret = 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2';
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('CASE-1', 'Ransomware', 'critical', 1);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 1000 + id, id FROM halo_itsm.cases;
DELETE FROM halo_itsm.outbox;
-- what the SECURITY DEFINER functions and _apply_sync pin beside search_path
SELECT p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'halo_itsm'::regnamespace
   AND (p.prosecdef OR p.proname = '_apply_sync')
 ORDER BY p.proname;

-- 1. The receiver's session: standard_conforming_strings off (as an old driver might set it).
\c
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET TimeZone = 'Pacific/Chatham';
\ir test/regress/deliver.sql
SELECT pg_temp.deliver('{"id": "w-2020", "object_id": 1001,
  "ticket": {"id": 1001, "status_id": 2, "hasbeenclosed": false},
  "actions": [{"id": 7001, "who": "Carol", "note": "Noted in 2020.", "datetime": "2020-03-04T05:06:07Z"},
              {"id": 7002, "who": "Carol", "note": "Local time, no zone.", "datetime": "2020-03-04 06:07"}]}')
       - 'delivery_id';

-- 2. A session that applies a sync (as deliver() does) with the same settings.
\c
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Pacific/Chatham';
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id) VALUES ('sync', 1, 1001);
SELECT outbox_id AS sync_id, claim_token AS sync_token FROM halo_itsm._claim(10) \gset
SELECT halo_itsm._apply_sync(:sync_id,
    '{"id": 1001, "status_id": 2, "hasbeenclosed": false}',
    '{"ticket_id": 1001, "record_count": 1, "actions": [{"id": 7003, "who": "Dan", "note": "Synced from 2020.", "datetime": "2020-12-31T23:59:59+02:00"}]}',
    :'sync_token');

\c
SELECT t.halo_action_id, t.author, t.body,
       to_char(t.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS occurred_utc
  FROM halo_itsm.timeline t ORDER BY t.halo_action_id;

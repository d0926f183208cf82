--
-- 30_attach: attaching a table of the platform's (attach, detach, backfill): the mapped
-- case rows and their outbox items, the severity map with unknown values that never fail
-- the insert, rows closed at insert, uuid / bigint / text keys, partitioned tables, other
-- schemas, row-level security and an application role without rights on halo_itsm; local
-- closes, notes and updates queued; the write-back of a close from Halo; hostile
-- arguments, table-driven.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');

-- The built-in tables are attachments 1 and 2, with one trigger function for both.
SELECT id, source, kind, builtin, key_column, sid_column, closed_values, closed_value
  FROM halo_itsm.attachments ORDER BY id;
SELECT tgrelid::regclass, tgname, tgfoid::regproc, encode(tgargs, 'escape') AS args
  FROM pg_trigger WHERE tgname = 'enqueue_ticket' ORDER BY 1;

-- ---------------------------------------------------------------------------
-- A realistic foreign schema: uuid keys, 'Sev1'..'Sev4', state new/resolved, closed_at,
-- row-level security on, and an application role with no rights on halo_itsm.
-- ---------------------------------------------------------------------------
CREATE SCHEMA platform;
CREATE TABLE platform.incidents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ref text NOT NULL UNIQUE,
    name text NOT NULL,
    sev text,
    body text,
    state text NOT NULL DEFAULT 'new',
    closed_at timestamptz,
    tenant text NOT NULL DEFAULT 'a'
);
ALTER TABLE platform.incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform.incidents FORCE ROW LEVEL SECURITY;
SET client_min_messages = warning;
DROP ROLE IF EXISTS hi_app_role;   -- left by an interrupted run (roles outlive the database)
RESET client_min_messages;
CREATE ROLE hi_app_role NOLOGIN;
GRANT USAGE ON SCHEMA platform TO hi_app_role;
GRANT SELECT, INSERT, UPDATE ON platform.incidents TO hi_app_role;
CREATE POLICY tenant_a ON platform.incidents TO hi_app_role USING (tenant = 'a') WITH CHECK (tenant = 'a');

SELECT halo_itsm.attach('platform.incidents', 'case', sid_column => 'ref', title_column => 'name',
                        severity_column => 'sev', description_column => 'body',
                        severity_map => '{"Sev1": "critical", "Sev2": "high", "Sev3": "medium", "Sev4": "low"}',
                        default_severity => 'medium', status_column => 'state',
                        closed_values => '{resolved}', closed_value => 'resolved',
                        closed_at_column => 'closed_at') AS attachment;
SELECT tgname, tgfoid::regproc, encode(tgargs, 'escape') AS args, pg_get_triggerdef(oid) ~ 'UPDATE OF name, sev, state' AS watches
  FROM pg_trigger WHERE tgrelid = 'platform.incidents'::regclass;

-- The application role inserts; it has no right on any table of halo_itsm.
SET ROLE hi_app_role;
INSERT INTO platform.incidents (ref, name, sev, body) VALUES
    ('INC-1', 'Ransomware on host 7', 'Sev1', 'Encrypted shares'),
    ('INC-2', 'Phishing wave', 'Sev3', NULL),
    ('INC-3', 'Unknown severity', 'Sev9', NULL),     -- unknown: the default, never an error
    ('INC-4', 'No severity at all', NULL, NULL),
    ('INC-5', 'Case-insensitive', ' sev2 ', NULL),
    ('INC-6', 'Already resolved', 'Sev1', NULL);
UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-6' AND false;  -- nothing
SELECT count(*) FROM halo_itsm.cases;   -- refused: no rights
RESET ROLE;
-- closed at insert: no ticket
INSERT INTO platform.incidents (ref, name, sev, state) VALUES ('INC-7', 'Closed at insert', 'Sev2', 'resolved');

SELECT c.sid, c.title, c.description, c.severity, c.status, c.attachment_id,
       c.source_key = i.id::text AS keyed
  FROM halo_itsm.cases c JOIN platform.incidents i ON i.ref = c.sid ORDER BY c.sid;
SELECT o.kind, c.sid, o.state, o.warning
  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id ORDER BY o.id;
SELECT source, kind, open_warnings, last_warning, last_error FROM halo_itsm.attachment_status ORDER BY id;
-- the payload carries the mapped priority
SELECT halo_itsm.ticket_payload('case', 'INC-1') ->> 'priority_id' AS p1,
       halo_itsm.ticket_payload('case', 'INC-5') ->> 'priority_id' AS p2,
       halo_itsm.ticket_payload('case', 'INC-3') ->> 'priority_id' AS p_default;

-- ---------------------------------------------------------------------------
-- Rows that cannot get a ticket never fail the platform's insert: table-driven.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE hostile_rows (label text, ref text, name text, sev text);
INSERT INTO hostile_rows VALUES
    ('sid too long', repeat('x', 300), 'Long sid', 'Sev1'),
    ('title too long', 'INC-L', repeat('t', 70000), 'Sev2'),
    ('non-ASCII', 'INC-Ü-日本', 'Überfall — 攻撃 🚨', 'Sev2'),
    ('quote and backslash', 'INC-Q''\', 'O''Brien \ "quoted"', E'Sev\\1'),
    ('long severity', 'INC-S', 'Long severity', repeat('S', 5000));
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM hostile_rows LOOP
        BEGIN
            INSERT INTO platform.incidents (ref, name, sev) VALUES (r.ref, r.name, r.sev);
            RAISE NOTICE '%: inserted', r.label;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE '%: FAILED %', r.label, SQLERRM;
        END;
    END LOOP;
END
$$;
-- a sid in use by a built-in case: the platform's row is written, without a ticket
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('BUILTIN-1', 'Built-in', 'low');
INSERT INTO platform.incidents (ref, name, sev) VALUES ('BUILTIN-1', 'Clashes with a built-in sid', 'Sev1');
SELECT count(*) AS platform_rows FROM platform.incidents;
SELECT c.sid, c.severity, length(c.title) AS title_length
  FROM halo_itsm.cases c WHERE c.attachment_id IS NOT NULL AND c.sid NOT LIKE 'INC-_' ORDER BY c.sid;
SELECT o.warning FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
 WHERE c.sid IN ('INC-Q''\', 'INC-S') ORDER BY c.sid;
SELECT left(last_error, 120) AS last_error FROM halo_itsm.attachment_status WHERE NOT builtin;

-- ---------------------------------------------------------------------------
-- Hostile arguments of attach(), table-driven.
-- ---------------------------------------------------------------------------
CREATE TABLE public.plain (id bigint PRIMARY KEY, sid text, title text, sev integer, state text, done date, n numeric);
CREATE TABLE public.nokey (sid text, title text, sev text);
CREATE VIEW public.a_view AS SELECT * FROM public.plain;
CREATE TEMP TABLE bad_attach (label text, cmd text);
INSERT INTO bad_attach VALUES
    ('no table', $c$SELECT halo_itsm.attach('public.missing', 'case', 'sid', 'title', 'sev')$c$),
    ('NULL source', $c$SELECT halo_itsm.attach(NULL, 'case', 'sid', 'title', 'sev')$c$),
    ('a view', $c$SELECT halo_itsm.attach('public.a_view', 'case', 'sid', 'title', 'sev')$c$),
    ('a table of halo_itsm', $c$SELECT halo_itsm.attach('halo_itsm.timeline', 'case', 'kind', 'body', 'source')$c$),
    ('bad kind', $c$SELECT halo_itsm.attach('public.plain', 'ticket', 'sid', 'title', 'sev')$c$),
    ('NULL kind', $c$SELECT halo_itsm.attach('public.plain', NULL, 'sid', 'title', 'sev')$c$),
    ('no such column', $c$SELECT halo_itsm.attach('public.plain', 'case', 'nope', 'title', 'sev')$c$),
    ('NULL title column', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', NULL, 'sev')$c$),
    ('map not an object', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', severity_map => '["high"]')$c$),
    ('map to a non-severity', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', severity_map => '{"1": "urgent"}')$c$),
    ('map to a number', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', severity_map => '{"1": 1}')$c$),
    ('bad default', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', default_severity => 'urgent')$c$),
    ('closed values without status', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', closed_values => '{x}')$c$),
    ('status without closed values', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', status_column => 'state')$c$),
    ('closed value not closed', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', status_column => 'state', closed_values => '{done}', closed_value => 'open')$c$),
    ('closed_at not a time', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', status_column => 'state', closed_values => '{done}', closed_at_column => 'n')$c$),
    ('no integration', $c$SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev', integration => 42)$c$),
    ('no primary key', $c$SELECT halo_itsm.attach('public.nokey', 'case', 'sid', 'title', 'sev')$c$),
    ('attached twice', $c$SELECT halo_itsm.attach('platform.incidents', 'case', 'ref', 'name', 'sev')$c$),
    ('detach not attached', $c$SELECT halo_itsm.detach('public.plain')$c$),
    ('detach built-in', $c$SELECT halo_itsm.detach('halo_itsm.cases')$c$),
    ('backfill not attached', $c$SELECT halo_itsm.backfill('public.plain')$c$),
    ('note on unattached', $c$SELECT halo_itsm.add_note('public.plain', 'x', 'y')$c$),
    ('note on unknown sid', $c$SELECT halo_itsm.add_note('platform.incidents', 'INC-404', 'y')$c$),
    ('empty note', $c$SELECT halo_itsm.add_note('platform.incidents', 'INC-1', E' \n ')$c$);
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM bad_attach LOOP
        RAISE NOTICE '--- %', r.label;
        CALL pg_temp.try(r.cmd);
    END LOOP;
END
$$;
SELECT count(*) AS attachments FROM halo_itsm.attachments;

-- ---------------------------------------------------------------------------
-- bigint keys with integer severities, a date closed-at column, backfill once in batches.
-- ---------------------------------------------------------------------------
INSERT INTO public.plain (id, sid, title, sev, state) VALUES
    (1, 'P-1', 'Old one', 1, 'open'), (2, 'P-2', 'Old two', 2, 'open'), (3, 'P-3', 'Old done', 1, 'done'),
    (4, 'P-4', 'Old four', 4, 'open'), (5, 'P-5', 'Old five', 3, NULL);
SELECT halo_itsm.attach('public.plain', 'case', 'sid', 'title', 'sev',
                        severity_map => '{"1": "critical", "2": "high", "3": "medium", "4": "low"}',
                        status_column => 'state', closed_values => '{done}', closed_value => 'done',
                        closed_at_column => 'done') AS attachment;
SELECT count(*) AS before_backfill FROM halo_itsm.cases WHERE sid LIKE 'P-%';
SELECT halo_itsm.backfill('public.plain', 2) AS batch_1;
SELECT halo_itsm.backfill('public.plain', 2) AS batch_2;
SELECT halo_itsm.backfill('public.plain', 2) AS batch_3;
SELECT halo_itsm.backfill('public.plain', 2) AS batch_4;   -- done: once
SELECT c.sid, c.severity FROM halo_itsm.cases c WHERE c.sid LIKE 'P-%' ORDER BY c.sid;
SELECT backfilled_at IS NOT NULL AS backfilled FROM halo_itsm.attachments WHERE source = 'public.plain'::regclass;
CALL pg_temp.try($c$SELECT halo_itsm.backfill('public.plain', 0)$c$);

-- ---------------------------------------------------------------------------
-- text keys in a partitioned table of another schema, kind detection.
-- ---------------------------------------------------------------------------
CREATE TABLE platform.alerts (code text, summary text, level text, region text, PRIMARY KEY (code, region)) PARTITION BY LIST (region);
CREATE TABLE platform.alerts_eu PARTITION OF platform.alerts FOR VALUES IN ('eu');
CREATE TABLE platform.alerts_us PARTITION OF platform.alerts FOR VALUES IN ('us');
CALL pg_temp.try($c$SELECT halo_itsm.attach('platform.alerts', 'detection', 'code', 'summary', 'level')$c$);
SELECT halo_itsm.attach('platform.alerts', 'detection', 'code', 'summary', 'level', key_column => 'code') AS attachment;
INSERT INTO platform.alerts VALUES ('AL-1', 'EU alert', 'HIGH', 'eu'), ('AL-2', 'US alert', 'info', 'us');
SELECT d.sid, d.severity, d.source_key, o.kind, o.state
  FROM halo_itsm.detections d JOIN halo_itsm.outbox o ON o.detection_id = d.id ORDER BY d.sid;

-- ---------------------------------------------------------------------------
-- Changes after the insert: local close, notes, updates (queued until the ticket exists).
-- ---------------------------------------------------------------------------
-- the ticket of INC-1 exists (as the worker would record it)
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 5001, c.id FROM halo_itsm.cases c WHERE c.sid = 'INC-1';
UPDATE halo_itsm.outbox o SET state = 'done' FROM halo_itsm.cases c WHERE c.id = o.case_id AND c.sid = 'INC-1';
SET ROLE hi_app_role;
UPDATE platform.incidents SET sev = 'Sev2' WHERE ref = 'INC-1';
UPDATE platform.incidents SET sev = 'Sev3' WHERE ref = 'INC-1';
UPDATE platform.incidents SET name = 'Ransomware on host 7 and 8' WHERE ref = 'INC-1';  -- title: not synced by default
RESET ROLE;
SELECT o.kind, o.state, o.halo_ticket_id, o.again FROM halo_itsm.outbox o
  JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = 'INC-1' AND o.kind = 'update';
SELECT c.title, c.severity FROM halo_itsm.cases c WHERE c.sid = 'INC-1';
-- a note: on the timeline at once, queued for Halo
SET ROLE hi_app_role;
CALL pg_temp.try($c$SELECT halo_itsm.add_note('platform.incidents', 'INC-1', 'Isolated the host')$c$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION halo_itsm.add_note(regclass, text, text, boolean) TO hi_app_role;
SET ROLE hi_app_role;
SELECT halo_itsm.add_note('platform.incidents', 'INC-1', 'Isolated the host') > 0 AS noted;
RESET ROLE;
SELECT halo_itsm.add_note('platform.incidents', 'INC-2', 'Before the ticket exists', internal => false) > 0 AS noted;
SELECT e.source, e.kind, e.body, e.internal, e.halo_ticket_id, c.sid
  FROM halo_itsm.timeline e JOIN halo_itsm.cases c ON c.id = e.case_id ORDER BY e.id;
SELECT o.kind, c.sid, o.halo_ticket_id, o.timeline_id IS NOT NULL AS linked
  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id WHERE o.kind = 'note' ORDER BY o.id;
-- the claim skips the note waiting for INC-2's ticket; the payloads of the others
SELECT kind, payload::jsonb FROM halo_itsm._claim(100, 100)
 WHERE kind IN ('note', 'update') ORDER BY outbox_id;
-- a local close by the application: queued once, with a timeline entry
SET ROLE hi_app_role;
UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-1';
UPDATE platform.incidents SET state = 'resolved' WHERE ref = 'INC-1';   -- no change: nothing more
RESET ROLE;
SELECT c.status, c.closed_at IS NOT NULL AS closed_at FROM halo_itsm.cases c WHERE c.sid = 'INC-1';
SELECT o.kind, o.state, o.halo_ticket_id FROM halo_itsm.outbox o
  JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = 'INC-1' AND o.kind = 'close';
-- a reopening is noted on the timeline only
UPDATE platform.incidents SET state = 'new' WHERE ref = 'INC-1';
SELECT e.source, e.kind, e.body FROM halo_itsm.timeline e JOIN halo_itsm.cases c ON c.id = e.case_id
 WHERE c.sid = 'INC-1' ORDER BY e.id;

-- ---------------------------------------------------------------------------
-- A close from Halo: written back to the platform's row, in the same transaction, once.
-- ---------------------------------------------------------------------------
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 5002, c.id FROM halo_itsm.cases c WHERE c.sid = 'INC-2';
SELECT halo_itsm._apply_ticket(1, 5002, '{"id": 5002, "status_id": 9, "hasbeenclosed": true, "agent_name": "Ann"}',
                               '[]', '2026-11-28 15:56:01+00') ->> 'outcome' AS outcome;
SELECT ref, state, closed_at FROM platform.incidents WHERE ref = 'INC-2';
SELECT c.status FROM halo_itsm.cases c WHERE c.sid = 'INC-2';
-- nothing queued to close it in Halo again
SELECT count(*) AS closes FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
 WHERE c.sid = 'INC-2' AND o.kind = 'close';
SELECT e.source, e.kind FROM halo_itsm.timeline e JOIN halo_itsm.cases c ON c.id = e.case_id
 WHERE c.sid = 'INC-2' ORDER BY e.id;
-- the write-back of the bigint table sets its date column
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 5003, c.id FROM halo_itsm.cases c WHERE c.sid = 'P-1';
SELECT halo_itsm._apply_ticket(1, 5003, '{"id": 5003, "status_id": 9}', '[]', '2026-11-28 15:56:01+00') ->> 'outcome' AS outcome;
SELECT id, state, done FROM public.plain WHERE id = 1;
-- a close function instead of columns
CREATE TABLE public.by_function (id integer PRIMARY KEY, sid text, title text, sev text, closed_by_halo boolean);
CREATE FUNCTION public.close_it(source regclass, key text) RETURNS void LANGUAGE sql AS
    $$ UPDATE public.by_function SET closed_by_halo = true WHERE id = key::integer $$;
SELECT halo_itsm.attach('public.by_function', 'case', 'sid', 'title', 'sev', close_function => 'public.close_it') AS attachment;
INSERT INTO public.by_function VALUES (7, 'F-7', 'Closed by function', 'high', false);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 5004, c.id FROM halo_itsm.cases c WHERE c.sid = 'F-7';
SELECT halo_itsm._apply_ticket(1, 5004, '{"id": 5004, "status_id": 9}', '[]', now()) ->> 'outcome' AS outcome;
SELECT closed_by_halo FROM public.by_function;
-- a mapped column renamed after attach(): rows are written without a ticket, with a warning
ALTER TABLE public.by_function RENAME COLUMN title TO headline;
INSERT INTO public.by_function VALUES (8, 'F-8', 'After the rename', 'high', false), (9, 'F-9', 'Same statement', 'low', false);
SELECT count(*) AS platform_rows, (SELECT count(*) FROM halo_itsm.cases WHERE sid IN ('F-8', 'F-9')) AS cases
  FROM public.by_function;
SELECT last_error FROM halo_itsm.attachments WHERE source = 'public.by_function'::regclass;

-- ---------------------------------------------------------------------------
-- The built-in table: a local close queues the Halo close; Halo's close does not.
-- ---------------------------------------------------------------------------
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 5005, c.id FROM halo_itsm.cases c WHERE c.sid = 'BUILTIN-1';
UPDATE halo_itsm.cases SET severity = 'critical' WHERE sid = 'BUILTIN-1';
UPDATE halo_itsm.cases SET status = 'closed' WHERE sid = 'BUILTIN-1';
SELECT o.kind, o.halo_ticket_id FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id
 WHERE c.sid = 'BUILTIN-1' ORDER BY o.id;

-- ---------------------------------------------------------------------------
-- detach: the trigger goes, the cases stay, a notice says what stays queued.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.detach('platform.incidents');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'platform.incidents'::regclass;
INSERT INTO platform.incidents (ref, name, sev) VALUES ('INC-after', 'After detach', 'Sev1');
SELECT count(*) AS cases_of_after FROM halo_itsm.cases WHERE sid = 'INC-after';
SELECT count(*) AS still_there FROM halo_itsm.cases WHERE sid LIKE 'INC-%' AND attachment_id IS NULL;

-- the role is the cluster's: gone with what it was granted
DROP SCHEMA platform CASCADE;
REVOKE ALL ON FUNCTION halo_itsm.add_note(regclass, text, text, boolean) FROM hi_app_role;
DROP ROLE hi_app_role;

--
-- 05_triggers: the outbox rows written by the triggers, in the inserting transaction:
-- one per case (also with no integration or an unconfigured one, which the status view
-- then explains); for detections only with standalone_detection_tickets, only when
-- closed and not part of a case, and only once ever.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- The outbox, without the columns that hold times.
CREATE VIEW pg_temp.queue AS
SELECT o.id, o.kind, o.case_id, o.detection_id, o.integration_id, o.state, o.attempts, o.maybe_sent,
       o.halo_ticket_id, o.claimed_by, o.finished_at, o.last_error, o.result,
       o.next_attempt_at <= now() AS due
  FROM halo_itsm.outbox o;
-- The status view, without the columns that hold times, per integration and for unbound items.
CREATE VIEW pg_temp.health AS
SELECT s.integration_id, s.name, s.enabled, s.pending, s.in_flight, s.dead,
       s.oldest_pending_age IS NOT NULL AS waiting, s.last_error, s.problem
  FROM halo_itsm.status s
 WHERE s.pending IS NOT NULL;  -- not the row saying no worker serves this database (01_setup)

-- ---------------------------------------------------------------------------
-- Cases with no integration at all: the insert succeeds and queues the ticket.
-- ---------------------------------------------------------------------------
BEGIN;
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-1', 'First', 'high');
-- the outbox row exists inside the inserting transaction, written by it
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT o.xmin = c.xmin AS same_transaction, o.xmin::text = (txid_current() % 4294967296)::text AS this_transaction
  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id;
COMMIT;
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;

-- ROLLBACK leaves neither the case nor its outbox row.
BEGIN;
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-2', 'Rolled back', 'low');
SELECT count(*) AS outbox_rows_inside FROM halo_itsm.outbox;
ROLLBACK;
SELECT count(*) AS cases FROM halo_itsm.cases WHERE sid = 'C-2';
SELECT * FROM pg_temp.queue ORDER BY id;
-- A failed insert (duplicate sid) leaves no outbox row either.
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-1', 'Duplicate', 'low');
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox;
-- One statement, several cases: one row each.
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-3', 'Third', 'medium'), ('C-4', 'Fourth', 'info');
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT c.sid, count(o.id) AS outbox_rows
  FROM halo_itsm.cases c LEFT JOIN halo_itsm.outbox o ON o.case_id = c.id AND o.kind = 'case'
 GROUP BY c.sid ORDER BY c.sid;
-- A case is queued once: the outbox allows one row per case.
INSERT INTO halo_itsm.outbox (kind, case_id) SELECT 'case', id FROM halo_itsm.cases WHERE sid = 'C-1';

-- ---------------------------------------------------------------------------
-- One integration, not configured: inserts still succeed; the rows that name no
-- integration count for the single enabled one, and the status says what to do.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('C-5', 'Named', 'critical', 1);
SELECT * FROM pg_temp.queue WHERE case_id = (SELECT id FROM halo_itsm.cases WHERE sid = 'C-5');
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- configured: ok
SELECT halo_itsm.configure(1, 'Security>Incident');
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- disabled
SELECT halo_itsm.set_enabled(1, false);
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
SELECT halo_itsm.set_enabled(1, true);
-- two enabled integrations: the rows that name none wait for an integration_id
SELECT halo_itsm.connect('https://other.halopsa.com', 'cid2', 'secret2', name => 'other') AS id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- rows naming the second integration count for it
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('C-6', 'Second', 'low', 2);
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;

-- ---------------------------------------------------------------------------
-- Detections: no ticket unless an integration wants standalone detection tickets.
-- ---------------------------------------------------------------------------
\ir test/regress/empty.sql
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');
INSERT INTO halo_itsm.detections (sid, title, severity, status) VALUES ('D-1', 'Closed at once', 'high', 'closed');
INSERT INTO halo_itsm.detections (sid, title, severity) VALUES ('D-2', 'Closed later', 'high');
UPDATE halo_itsm.detections SET status = 'closed', closed_at = now() WHERE sid = 'D-2';
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox;

-- With standalone_detection_tickets: only closed detections without a case.
SELECT halo_itsm.configure(1, 'Security>Incident', standalone_detection_tickets => true);
-- open: nothing yet
INSERT INTO halo_itsm.detections (sid, title, severity) VALUES ('D-3', 'Open', 'medium');
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox;
-- closed on insert: queued in the inserting transaction
BEGIN;
INSERT INTO halo_itsm.detections (sid, title, severity, status) VALUES ('D-4', 'Closed on insert', 'low', 'closed');
SELECT * FROM pg_temp.queue ORDER BY id;
COMMIT;
-- closed by a later UPDATE
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-3';
SELECT q.*, d.sid FROM pg_temp.queue q JOIN halo_itsm.detections d ON d.id = q.detection_id ORDER BY q.id;
-- closing in a transaction that rolls back queues nothing
INSERT INTO halo_itsm.detections (sid, title, severity) VALUES ('D-5', 'Rolled back close', 'info');
BEGIN;
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-5';
SELECT count(*) AS outbox_rows_inside FROM halo_itsm.outbox;
ROLLBACK;
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox;
-- never twice: reopen and close again, update other columns, close an already closed one
UPDATE halo_itsm.detections SET status = 'open' WHERE sid = 'D-3';
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-3';
UPDATE halo_itsm.detections SET status = 'closed', title = 'Renamed' WHERE sid = 'D-3';
UPDATE halo_itsm.detections SET status = 'open' WHERE sid = 'D-4';
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-4';
SELECT d.sid, count(o.id) AS outbox_rows
  FROM halo_itsm.detections d LEFT JOIN halo_itsm.outbox o ON o.detection_id = d.id
 GROUP BY d.sid ORDER BY d.sid;
-- D-1 and D-2 were closed before the setting: they stay without a ticket
-- (only an insert or a change of status or case_id queues a detection).

-- Part of a case: no ticket of its own, on insert or when closed later.
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('C-1', 'The case', 'high');
INSERT INTO halo_itsm.detections (sid, title, severity, status, case_id)
SELECT 'D-6', 'In a case, closed', 'high', 'closed', id FROM halo_itsm.cases WHERE sid = 'C-1';
INSERT INTO halo_itsm.detections (sid, title, severity, case_id)
SELECT 'D-7', 'In a case, open', 'high', id FROM halo_itsm.cases WHERE sid = 'C-1';
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-7';
SELECT d.sid, d.status, d.case_id IS NOT NULL AS in_case, count(o.id) AS outbox_rows
  FROM halo_itsm.detections d LEFT JOIN halo_itsm.outbox o ON o.detection_id = d.id
 WHERE d.sid IN ('D-6', 'D-7') GROUP BY d.sid, d.status, d.case_id ORDER BY d.sid;
-- taken out of its case while closed: now a standalone closed detection, queued once
UPDATE halo_itsm.detections SET case_id = NULL WHERE sid = 'D-7';
UPDATE halo_itsm.detections SET case_id = (SELECT id FROM halo_itsm.cases WHERE sid = 'C-1') WHERE sid = 'D-7';
UPDATE halo_itsm.detections SET case_id = NULL WHERE sid = 'D-7';
SELECT d.sid, count(o.id) AS outbox_rows
  FROM halo_itsm.detections d LEFT JOIN halo_itsm.outbox o ON o.detection_id = d.id
 WHERE d.sid IN ('D-6', 'D-7') GROUP BY d.sid ORDER BY d.sid;

-- Once ever, even after the finished outbox row has been purged.
UPDATE halo_itsm.outbox o SET state = 'done', result = 'created', halo_ticket_id = 5003,
       finished_at = now() - interval '30 days'
  FROM halo_itsm.detections d WHERE d.id = o.detection_id AND d.sid = 'D-3';
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, detection_id)
SELECT 1, 5003, id FROM halo_itsm.detections WHERE sid = 'D-3';
SELECT halo_itsm.purge() AS purged;
UPDATE halo_itsm.detections SET status = 'open' WHERE sid = 'D-3';
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'D-3';
SELECT count(*) AS outbox_rows_for_d3
  FROM halo_itsm.outbox o JOIN halo_itsm.detections d ON d.id = o.detection_id WHERE d.sid = 'D-3';

-- Which integration wants standalone tickets matters.
SELECT halo_itsm.connect('https://other.halopsa.com', 'cid2', 'secret2', name => 'other') AS id;
SELECT halo_itsm.configure(2, 'Other');
-- names the integration without standalone tickets: nothing
INSERT INTO halo_itsm.detections (sid, title, severity, status, integration_id) VALUES ('D-8', 'To other', 'low', 'closed', 2);
-- names the one with standalone tickets: queued for it
INSERT INTO halo_itsm.detections (sid, title, severity, status, integration_id) VALUES ('D-9', 'To default', 'low', 'closed', 1);
-- names none: queued, as some enabled integration wants standalone tickets
INSERT INTO halo_itsm.detections (sid, title, severity, status) VALUES ('D-10', 'To any', 'low', 'closed');
-- the standalone integration disabled: nothing
SELECT halo_itsm.set_enabled(1, false);
INSERT INTO halo_itsm.detections (sid, title, severity, status) VALUES ('D-11', 'Disabled', 'low', 'closed');
INSERT INTO halo_itsm.detections (sid, title, severity, status, integration_id) VALUES ('D-12', 'Disabled', 'low', 'closed', 1);
SELECT d.sid, d.integration_id AS row_integration, o.integration_id AS outbox_integration, o.kind, o.state, o.attempts
  FROM halo_itsm.detections d LEFT JOIN halo_itsm.outbox o ON o.detection_id = d.id
 WHERE d.sid IN ('D-8', 'D-9', 'D-10', 'D-11', 'D-12') ORDER BY d.id;

-- ---------------------------------------------------------------------------
-- The outbox and webhook_deliveries have no foreign keys (their checks cost every insert);
-- deleting or truncating cases, detections or integrations removes their rows, as
-- ON DELETE CASCADE did (_cascade_delete()).
-- ---------------------------------------------------------------------------
\ir test/regress/empty.sql
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.connect('https://other.halopsa.com', 'cid2', 'secret2', name => 'other') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident', standalone_detection_tickets => true);
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)
VALUES ('F-1', 'Kept', 'high', 1), ('F-2', 'Deleted', 'high', 1), ('F-3', 'Other', 'low', 2);
INSERT INTO halo_itsm.detections (sid, title, severity, status, integration_id)
VALUES ('FD-1', 'Kept', 'low', 'closed', 1), ('FD-2', 'Deleted', 'low', 'closed', 1);
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id) VALUES ('sync', 2, 77);
CREATE VIEW pg_temp.subjects AS
SELECT o.kind, coalesce(c.sid, d.sid) AS subject, o.integration_id
  FROM halo_itsm.outbox o
  LEFT JOIN halo_itsm.cases c ON c.id = o.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = o.detection_id;
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
-- deleting a case or a detection deletes its row, and only its row
DELETE FROM halo_itsm.cases WHERE sid = 'F-2';
DELETE FROM halo_itsm.detections WHERE sid = 'FD-2';
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
-- a rolled-back delete deletes nothing
BEGIN;
DELETE FROM halo_itsm.cases;
SELECT count(*) AS inside FROM halo_itsm.outbox WHERE kind = 'case';
ROLLBACK;
SELECT count(*) AS after_rollback FROM halo_itsm.outbox WHERE kind = 'case';
-- deleting an integration deletes the rows queued for it and its webhook deliveries
-- (its cases go first)
INSERT INTO halo_itsm.webhook_deliveries (integration_id, delivery_id, outcome)
VALUES (1, 'w-1', 'notes_added'), (2, 'w-2', 'notes_added');
DELETE FROM halo_itsm.cases WHERE integration_id = 2;
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
DELETE FROM halo_itsm.integrations WHERE id = 2;
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
SELECT integration_id, delivery_id FROM halo_itsm.webhook_deliveries ORDER BY 1;
-- TRUNCATE: detections' rows only, then cases' rows only
SET client_min_messages = warning;
TRUNCATE halo_itsm.detections CASCADE;
RESET client_min_messages;
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id) VALUES ('sync', 1, 78);
SET client_min_messages = warning;
TRUNCATE halo_itsm.cases CASCADE;
RESET client_min_messages;
SELECT * FROM pg_temp.subjects ORDER BY kind, subject;
-- the outbox accepts only its own kinds and states (enums rather than CHECK constraints)
CALL pg_temp.try($$INSERT INTO halo_itsm.outbox (kind, integration_id) VALUES ('ticket', 1)$$);
CALL pg_temp.try($$UPDATE halo_itsm.outbox SET state = 'lost'$$);

-- The enqueue trigger (C) refuses to run as anything but an AFTER row trigger, and without
-- its attachment id on a table that is not built in.
CREATE TABLE pg_temp.misuse (id bigint, integration_id integer);
CREATE TRIGGER wrong BEFORE INSERT ON pg_temp.misuse
    FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue('1');
CALL pg_temp.try($$INSERT INTO pg_temp.misuse VALUES (1, NULL)$$);
DROP TRIGGER wrong ON pg_temp.misuse;
CREATE TRIGGER wrong AFTER INSERT ON pg_temp.misuse
    FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._enqueue('1');
CALL pg_temp.try($$INSERT INTO pg_temp.misuse VALUES (1, NULL)$$);
DROP TRIGGER wrong ON pg_temp.misuse;
CREATE TRIGGER wrong AFTER INSERT ON pg_temp.misuse
    FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue();
CALL pg_temp.try($$INSERT INTO pg_temp.misuse VALUES (1, NULL)$$);
DROP TRIGGER wrong ON pg_temp.misuse;
CREATE TRIGGER wrong AFTER INSERT ON pg_temp.misuse
    FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue('99');
CALL pg_temp.try($$INSERT INTO pg_temp.misuse VALUES (1, NULL)$$);
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox WHERE kind = 'case';

-- Size limits, checked at insert with a constraint named for the limit (23514).
CALL pg_temp.try($$INSERT INTO halo_itsm.cases (sid, title, severity) VALUES (repeat('s', 256), 't', 'low')$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.cases (sid, title, severity) VALUES (repeat('é', 128), 't', 'low')$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('SZ-1', repeat('t', 65537), 'low')$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.cases (sid, title, severity, description) VALUES ('SZ-1', 't', 'low', repeat('d', 1048577))$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.detections (sid, title, severity) VALUES (repeat('s', 256), 't', 'low')$$);
CALL pg_temp.try($$INSERT INTO halo_itsm.detections (sid, title, severity, description) VALUES ('SZ-1', repeat('t', 65537), 'low', repeat('d', 1048577))$$);
-- exactly at the limits: accepted
INSERT INTO halo_itsm.cases (sid, title, severity, description)
VALUES (repeat('s', 255), repeat('t', 65536), 'low', repeat('d', 1048576));
SELECT octet_length(sid) AS sid_bytes, octet_length(title) AS title_bytes, octet_length(description) AS description_bytes
  FROM halo_itsm.cases WHERE sid = repeat('s', 255);
DELETE FROM halo_itsm.cases WHERE sid = repeat('s', 255);

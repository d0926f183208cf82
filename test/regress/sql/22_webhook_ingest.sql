-- 22_webhook_ingest: what a verified delivery does: closing cases, notes on the
-- timeline, deduplication (delivery id, action id), unknown tickets, payloads without
-- detail queueing syncs, _apply_sync() and reconcile().
\ir test/regress/common.sql
\ir test/regress/integration.sql
SET halo_itsm.webhook_base_url = 'https://soc.example.com/halo/';
SELECT halo_itsm.configure(1, category => 'Security>Incident');
UPDATE halo_itsm.integration_secrets SET webhook_secret = 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2';
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES
  ('CASE-1', 'Ransomware', 'critical', 1), ('CASE-2', 'Phishing', 'medium', 1),
  ('CASE-3', 'Impossible travel', 'high', 1), ('CASE-4', 'Old TLS', 'low', 1);
INSERT INTO halo_itsm.detections (sid, title, severity, status, integration_id)
VALUES ('DET-1', 'Port scan', 'medium', 'closed', 1);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 1000 + id, id FROM halo_itsm.cases;
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, detection_id)
SELECT 1, 2001, id FROM halo_itsm.detections;
-- (the outbox rows of the cases themselves are not what this test is about)
DELETE FROM halo_itsm.outbox;

-- helper: sign and ingest a payload as Halo would send it now
\ir test/regress/deliver.sql
CREATE VIEW pg_temp.tl AS
SELECT coalesce(c.sid, d.sid) AS sid, t.kind, t.source, t.author, t.body, t.internal, t.halo_ticket_id,
       t.halo_action_id, to_char(t.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS occurred_utc
  FROM halo_itsm.timeline t
  LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id
 ORDER BY t.id;

-- 1. An agent closes ticket 1001 in Halo: the full-object payload with the closing action.
SELECT pg_temp.deliver('{"id": "w-1", "event": "Ticket Updated by Agent", "object_id": 1001,
  "timestamp": "2026-11-28T10:00:05Z",
  "ticket": {"id": 1001, "status_id": 9, "hasbeenclosed": true, "agent_name": "Alice"},
  "action": {"id": 5001, "ticket_id": 1001, "who": "Alice", "note": "False positive: backup job.",
             "outcome": "Closed", "new_status": 9, "hiddenfromuser": false, "datetime": "2026-11-28T10:00:00Z"}}');
SELECT sid, status, to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS closed_at_utc
  FROM halo_itsm.cases ORDER BY id;
SELECT * FROM pg_temp.tl;

-- The same delivery again: duplicate, nothing changes.
SELECT pg_temp.deliver('{"id": "w-1", "event": "Ticket Updated by Agent", "object_id": 1001,
  "ticket": {"id": 1001, "status_id": 9, "hasbeenclosed": true},
  "action": {"id": 5001, "ticket_id": 1001, "who": "Alice", "note": "False positive: backup job.", "new_status": 9}}');
-- Another delivery of the closed ticket (e.g. a later update): the case stays as it is,
-- the known action is not copied twice, a new note is added.
SELECT pg_temp.deliver('{"id": "w-2", "object_id": 1001,
  "ticket": {"id": 1001, "status_id": 9, "hasbeenclosed": true, "agent_name": "Bob"},
  "actions": [{"id": 5001, "who": "Alice", "note": "False positive: backup job.", "new_status": 9},
              {"id": 5002, "who": "Bob", "note": "Agreed.", "hiddenfromuser": true, "datetime": "2026-11-28T10:05:00Z"}]}');
SELECT sid, status, to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS closed_at_utc
  FROM halo_itsm.cases WHERE sid = 'CASE-1';
SELECT * FROM pg_temp.tl;

-- 2. Notes on an open case: plain text, from note_html when only that is there, internal flag;
-- system actions, actions without text, the integration's own actions (posted through its
-- API application, client id 'client') and other tickets' actions are skipped. A note that
-- merely starts with "[halo_itsm]" is anyone's note, and so is one from another application.
SELECT pg_temp.deliver('{"id": "w-3", "object_id": 1002,
  "ticket": {"id": 1002, "status_id": 2, "hasbeenclosed": false},
  "actions": [
    {"id": 5010, "ticket_id": 1002, "who": "Carol", "note": "  Called the user.  ", "hiddenfromuser": false, "datetime": "2026-11-28T11:00:00"},
    {"id": 5011, "ticket_id": 1002, "who": "Carol", "note_html": "<p>Mail <b>quarantined</b> &amp; blocked:<br>sender &lt;x@evil.test&gt;&#33;</p><div>&#x2714; done</div>", "hiddenfromuser": true, "datetime": "2026-11-28T11:01:00+01:00"},
    {"id": 5012, "ticket_id": 1002, "who": "System", "note": "Status changed", "action_systemid": 21, "who_type": 0},
    {"id": 5013, "ticket_id": 1002, "who": "Carol", "note": "", "note_html": "<p> </p>"},
    {"id": 5014, "ticket_id": 1002, "datetime": "2026-11-28T11:02:00Z", "who": "Mallory", "note": "[halo_itsm] Nothing to see here."},
    {"id": 5016, "ticket_id": 1002, "datetime": "2026-11-28T11:03:00Z", "who": "API User", "note": "Posted by this integration.", "actionby_application_id": " CLIENT "},
    {"id": 5017, "ticket_id": 1002, "datetime": "2026-11-28T11:04:00Z", "who": "API User", "note": "Posted by another application.", "actionby_application_id": "another-app"},
    {"id": 5018, "ticket_id": 1002, "datetime": "2026-11-28T11:05:00Z", "who": "API User", "note": "Not an application id.", "actionby_application_id": 7},
    {"id": 5015, "ticket_id": 9999, "who": "Mallory", "note": "Not this ticket."},
    {"ticket_id": 1002, "who": "Nobody", "note": "No action id."},
    "not an object"]}');
SELECT sid, status FROM halo_itsm.cases WHERE sid = 'CASE-2';
SELECT * FROM pg_temp.tl WHERE sid = 'CASE-2';

-- 3. A configurable closed set: status 8 closes once it is listed; hasbeenclosed alone closes too.
SELECT pg_temp.deliver('{"id": "w-4", "object_id": 1003, "ticket": {"id": 1003, "status_id": 8},
                         "action": {"id": 5020, "who": "Dan", "note": "Resolved.", "new_status": 8, "datetime": "2026-11-28T11:50:00Z"}}') ->> 'outcome' AS status_8_default;
SELECT halo_itsm.configure_ids(1, closed_status_ids => '{8,9}');
SELECT pg_temp.deliver('{"id": "w-5", "object_id": 1003, "ticket": {"id": 1003, "status_id": 8, "closure_note": "Travel was a VPN."},
                         "action": {"id": 5021, "who": "Dan", "note": "Closing.", "new_status": 8, "datetime": "2026-11-28T12:00:00Z"}}');
-- (no action time: the payload's timestamp is used)
SELECT pg_temp.deliver('{"id": "w-6", "object_id": 1004, "timestamp": "2026-11-28T12:30:00Z", "ticket": {"id": 1004, "status_id": 2, "hasbeenclosed": true},
                         "action": {"id": 5030, "who": "Eve", "note": "Done."}}') ->> 'outcome' AS hasbeenclosed;
SELECT sid, status, closed_at IS NOT NULL AS has_closed_at FROM halo_itsm.cases ORDER BY id;
SELECT * FROM pg_temp.tl WHERE sid IN ('CASE-3', 'CASE-4');

-- 4. A detection's ticket: notes go to the detection; it is already closed and stays so.
SELECT pg_temp.deliver('{"id": "w-7", "object_id": 2001, "ticket": {"id": 2001, "status_id": 9, "hasbeenclosed": true},
                         "action": {"id": 5040, "who": "Frank", "note": "Scanner was the IT inventory.", "new_status": 9,
                                    "datetime": "2026-11-28T12:40:00Z"}}');
SELECT * FROM pg_temp.tl WHERE sid = 'DET-1';

-- 5. A ticket linked to nothing: acknowledged as ignored, recorded, nothing else.
SELECT pg_temp.deliver('{"id": "w-8", "object_id": 7777, "ticket": {"id": 7777, "status_id": 9},
                         "action": {"id": 5050, "who": "Gina", "note": "Printer fixed."}}');
SELECT pg_temp.deliver('{"id": "w-8b", "object_id": 7777}');
SELECT delivery_id, halo_ticket_id, outcome FROM halo_itsm.webhook_deliveries WHERE halo_ticket_id = 7777 ORDER BY 1;
SELECT count(*) AS timeline_rows_for_7777 FROM halo_itsm.timeline WHERE halo_ticket_id = 7777;

-- 6. Event information only, or no action: accepted, and a sync of the ticket is queued (once).
SELECT pg_temp.deliver('{"id": "w-9", "event": "Ticket Updated by Agent", "object_id": 1002, "timestamp": "2026-11-28T13:00:00Z"}');
SELECT pg_temp.deliver('{"id": "w-10", "object_id": 1002, "ticket": {"id": 1002, "status_id": 2}}');
SELECT kind, integration_id, halo_ticket_id, state FROM halo_itsm.outbox ORDER BY id;

-- 7. The sync, as the worker applies it: GET /api/Tickets/1002 and GET /api/Actions?ticket_id=1002,
-- on the item it claimed (with the claim's token).
SELECT outbox_id AS sync_id, claim_token AS sync_token FROM halo_itsm._claim(10) \gset
SELECT halo_itsm._apply_sync(:sync_id,
  '{"id": 1002, "status_id": 9, "hasbeenclosed": true, "agent_name": "Carol", "dateclosed": "2026-11-28T13:30:00Z"}',
  '{"ticket_id": 1002, "record_count": 3, "actions": [
     {"id": 5010, "ticket_id": 1002, "who": "Carol", "note": "Called the user.", "datetime": "2026-11-28T11:00:00"},
     {"id": 5060, "ticket_id": 1002, "who": "Carol", "note": "User confirmed it was phishing.", "datetime": "2026-11-28T13:20:00"},
     {"id": 5061, "ticket_id": 1002, "who": "Carol", "note": "Closing.", "new_status": 9, "datetime": "2026-11-28T13:30:00"}]}',
  :'sync_token');
SELECT sid, status, to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS closed_at_utc
  FROM halo_itsm.cases WHERE sid = 'CASE-2';
SELECT * FROM pg_temp.tl WHERE sid = 'CASE-2';
SELECT halo_ticket_id, last_synced_at IS NOT NULL AS synced FROM halo_itsm.tickets ORDER BY halo_ticket_id;
-- Applying the same sync again changes nothing.
SELECT halo_itsm._apply_sync(:sync_id,
  '{"id": 1002, "status_id": 9, "hasbeenclosed": true}',
  '{"ticket_id": 1002, "record_count": 1, "actions": [{"id": 5060, "who": "Carol", "note": "User confirmed it was phishing."}]}',
  :'sync_token');
SELECT count(*) AS case_2_rows FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = 'CASE-2';
-- Odd answers from Halo do not break the worker: nothing applied, the ticket counts as synced.
SELECT halo_itsm._apply_sync(:sync_id, '[]', '"nothing"', :'sync_token');
SELECT halo_itsm._apply_sync(-1, '{}', '{}', :'sync_token');

-- 8. reconcile(): syncs for open cases with tickets, least recently synced first, once each.
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES
  ('CASE-5', 'Beaconing', 'high', 1), ('CASE-6', 'Malware', 'high', 1), ('CASE-7', 'DLP', 'low', 1);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id, last_synced_at)
SELECT 1, 1000 + id, id, CASE sid WHEN 'CASE-5' THEN now() - interval '1 hour'
                                  WHEN 'CASE-6' THEN now() - interval '2 hours' END
  FROM halo_itsm.cases WHERE sid IN ('CASE-5', 'CASE-6', 'CASE-7');
UPDATE halo_itsm.outbox SET state = 'done' WHERE kind = 'sync';
DELETE FROM halo_itsm.outbox WHERE kind <> 'sync';
SELECT sid, status FROM halo_itsm.cases WHERE status = 'open' ORDER BY id;
CALL halo_itsm.reconcile(max_tickets => 2);
SELECT o.halo_ticket_id, c.sid FROM halo_itsm.outbox o JOIN halo_itsm.tickets t USING (integration_id, halo_ticket_id)
  JOIN halo_itsm.cases c ON c.id = t.case_id WHERE o.kind = 'sync' AND o.state = 'pending' ORDER BY o.id;
CALL halo_itsm.reconcile();
SELECT o.halo_ticket_id, c.sid FROM halo_itsm.outbox o JOIN halo_itsm.tickets t USING (integration_id, halo_ticket_id)
  JOIN halo_itsm.cases c ON c.id = t.case_id WHERE o.kind = 'sync' AND o.state = 'pending' ORDER BY o.id;
CALL halo_itsm.reconcile();
-- The budget: a quarter of halo_itsm.request_budget (250) syncs per window, counting the
-- syncs queued in the window already (here 3 + 1 done).
SELECT current_setting('halo_itsm.request_budget') AS budget,
       (SELECT count(*) FROM halo_itsm.outbox WHERE kind = 'sync') AS syncs_in_window;
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)
SELECT 'BULK-' || g, 'bulk', 'low', 1 FROM generate_series(1, 70) g;
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id)
SELECT 1, 100000 + id, id FROM halo_itsm.cases WHERE sid LIKE 'BULK-%';
CALL halo_itsm.reconcile();
CALL halo_itsm.reconcile();
-- A disabled integration is left alone; a negative limit is an error.
SELECT halo_itsm.set_enabled(1, false);
UPDATE halo_itsm.outbox SET state = 'done' WHERE kind = 'sync';
CALL halo_itsm.reconcile();
CALL halo_itsm.reconcile(-1);

-- 9. The timeline of a case by sid.
SELECT subject, source, kind, author, body, internal FROM halo_itsm.timeline_of('CASE-1');

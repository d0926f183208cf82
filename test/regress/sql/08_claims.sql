--
-- 08_claims: what a claim carries and what may change under it. An outcome is recorded
-- only on the row that still holds its claim token (outbox ids restart after TRUNCATE
-- ... RESTART IDENTITY); deleting the integration to which items that named none were
-- bound at claim time puts them back, unbound; a sid changes only while nothing can have
-- reached Halo. This session claims and records as the worker would (its own pid).
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- The outbox, without the columns that hold times or random tokens.
CREATE VIEW pg_temp.queue AS
SELECT o.id, o.kind, coalesce(c.sid, d.sid) AS sid, o.integration_id, o.bound_at_claim, o.state,
       o.attempts, o.maybe_sent, o.claimed_by = pg_backend_pid() AS claimed_here,
       o.claim_token IS NOT NULL AS has_token, o.next_attempt_at <= now() AS due, o.result, o.last_error
  FROM halo_itsm.outbox o
  LEFT JOIN halo_itsm.cases c ON c.id = o.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = o.detection_id;
CREATE VIEW pg_temp.links AS
SELECT coalesce(c.sid, d.sid) AS sid, t.integration_id, t.halo_ticket_id, t.linked_by
  FROM halo_itsm.tickets t
  LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
  LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id;
CREATE VIEW pg_temp.health AS
SELECT s.integration_id, s.name, s.pending, s.in_flight, s.dead, s.problem
  FROM halo_itsm.status s
 WHERE s.pending IS NOT NULL;  -- not the row saying no worker serves this database (01_setup)
-- what _claim gave out, kept as the worker keeps its items
CREATE TABLE pg_temp.claims (outbox_id bigint, sid text, integration_id integer, maybe_sent boolean,
                             payload jsonb, claim_token uuid, round integer);
CREATE PROCEDURE pg_temp.claim(round integer, max_items integer DEFAULT 10) LANGUAGE sql AS $$
    INSERT INTO pg_temp.claims
    SELECT c.outbox_id, c.sid, c.integration_id, c.maybe_sent, c.payload::jsonb, c.claim_token, round
      FROM halo_itsm._claim(max_items, 10) c;
$$;

-- ---------------------------------------------------------------------------
-- Claim tokens: each claim gets its own; the outcome must bring it back.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('OLD-1', 'Before the truncate', 'high');
CALL pg_temp.claim(1);
SELECT outbox_id, sid, integration_id, maybe_sent, claim_token IS NOT NULL AS has_token FROM pg_temp.claims;
SELECT * FROM pg_temp.queue ORDER BY id;
-- The outbox is emptied (ids restart) while OLD-1's create is in flight; a new case
-- takes id 1 and is claimed by the same session.
TRUNCATE halo_itsm.outbox RESTART IDENTITY;
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('NEW-1', 'After the truncate', 'low');
CALL pg_temp.claim(2);
SELECT outbox_id, sid, round FROM pg_temp.claims ORDER BY round;
SELECT count(DISTINCT claim_token) AS distinct_tokens FROM pg_temp.claims;
-- OLD-1's answer arrives: not recorded on NEW-1's row (which has the same id, pid and state)
SELECT halo_itsm._record(c.outbox_id, 'created', 9001, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 1;
-- nor without a token, nor with one that was never given out
SELECT halo_itsm._record(1, 'created', 9001, 201, NULL, 0, false, NULL);
SELECT halo_itsm._record(1, 'dead', NULL, 400, 'x', 0, false, '00000000-0000-0000-0000-000000000000');
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.links;
-- NEW-1's own answer is recorded: its own ticket
SELECT halo_itsm._record(c.outbox_id, 'created', 9002, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 2;
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.links;
-- A retried item is claimed again with a new token; the first claim's token is void.
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('RE-1', 'Retried', 'medium');
CALL pg_temp.claim(3);
SELECT halo_itsm._record(c.outbox_id, 'retry', NULL, 503, 'halo_itsm: Halo answered 503', 0, true, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 3;
CALL pg_temp.claim(4);
SELECT c.round, c.sid, c.maybe_sent FROM pg_temp.claims c WHERE c.round IN (3, 4) ORDER BY c.round;
SELECT halo_itsm._record(c.outbox_id, 'created', 9003, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 3;
SELECT * FROM pg_temp.queue WHERE sid = 'RE-1';
SELECT halo_itsm._record(c.outbox_id, 'found', 9004, 200, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 4;
SELECT * FROM pg_temp.links ORDER BY sid;

-- Syncs likewise: the answer is applied only with the claim's token.
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id) VALUES ('sync', 1, 9002);
CALL pg_temp.claim(5);
SELECT halo_itsm._apply_sync(c.outbox_id, '{"id": 9002, "status_id": 9}', '[]', gen_random_uuid())
  FROM pg_temp.claims c WHERE c.round = 5;
SELECT sid, status FROM halo_itsm.cases WHERE sid = 'NEW-1';
SELECT halo_itsm._apply_sync(c.outbox_id, '{"id": 9002, "status_id": 9}', '[]', c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 5;
SELECT sid, status FROM halo_itsm.cases WHERE sid = 'NEW-1';

-- ---------------------------------------------------------------------------
-- Deleting an integration: items that named none wait, unbound, for the next one.
-- ---------------------------------------------------------------------------
\ir test/regress/empty.sql
TRUNCATE pg_temp.claims;
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES
    ('U-1', 'In flight', 'high'), ('U-2', 'Failed once', 'high'), ('U-3', 'Dead', 'low'), ('U-4', 'Not claimed yet', 'low');
-- bound to integration 1 as they are claimed (U-4 is not)
CALL pg_temp.claim(1, 3);
SELECT halo_itsm._record(c.outbox_id, 'retry', NULL, 500, 'halo_itsm: Halo answered 500', 60000, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'U-2';
SELECT halo_itsm._record(c.outbox_id, 'dead', NULL, 400, 'halo_itsm: Halo answered 400: category is required', 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'U-3';
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id) VALUES ('sync', 1, 77);
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
BEGIN;
DELETE FROM halo_itsm.integrations WHERE id = 1;
-- U-1 was in flight: its request may still be on the wire, so it waits two request
-- timeouts before the next integration looks it up; the others are due at once
SELECT c.sid, o.next_attempt_at > now() AS waits,
       o.next_attempt_at = now() + 2 * current_setting('halo_itsm.request_timeout')::interval AS two_timeouts
  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id WHERE o.state <> 'dead' ORDER BY c.sid;
COMMIT;
UPDATE halo_itsm.outbox o SET next_attempt_at = now() FROM halo_itsm.cases c
 WHERE c.id = o.case_id AND c.sid = 'U-1';  -- as if the wait had passed
-- U-1..U-3 are unbound again (U-1, in flight, may have reached Halo: looked up first;
-- U-2 starts afresh; U-3 stays dead for retry()); the sync went with its integration
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- U-1's answer from the deleted integration is not recorded
SELECT halo_itsm._record(c.outbox_id, 'created', 9100, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'U-1';
SELECT count(*) AS tickets FROM halo_itsm.tickets;
-- the next single enabled integration takes them
SELECT halo_itsm.connect('https://next.halopsa.com', 'cid2', 'secret2', name => 'next') AS id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
SELECT halo_itsm.configure(2, 'Security>Incident');
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
CALL pg_temp.claim(2);
SELECT c.sid, c.integration_id, c.maybe_sent FROM pg_temp.claims c WHERE c.round = 2 ORDER BY c.sid;
SELECT halo_itsm.retry() AS retried;
CALL pg_temp.claim(3);
SELECT c.sid, c.integration_id, c.maybe_sent FROM pg_temp.claims c WHERE c.round = 3 ORDER BY c.sid;
-- an integration that items named themselves is not deleted (their cases refer to it)
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('N-1', 'Named', 'high', 2);
CALL pg_temp.try($$DELETE FROM halo_itsm.integrations WHERE id = 2$$);

-- ---------------------------------------------------------------------------
-- A sid changes only while nothing can have reached Halo.
-- ---------------------------------------------------------------------------
\ir test/regress/empty.sql
TRUNCATE pg_temp.claims;
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident', standalone_detection_tickets => true);
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES
    ('S-1', 'Pending', 'high'), ('S-2', 'Failed, not sent', 'high'), ('S-3', 'Maybe sent', 'high'),
    ('S-4', 'In flight', 'high'), ('S-5', 'Linked', 'high'), ('S-6', 'Dead, not sent', 'low'),
    ('S-7', 'Dead, maybe sent', 'low');
CALL pg_temp.claim(1, 6);
SELECT halo_itsm._record(c.outbox_id, 'retry', NULL, 401, 'halo_itsm: Halo answered 401', 60000, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-2';
SELECT halo_itsm._record(c.outbox_id, 'retry', NULL, NULL, 'halo_itsm: POST /api/Tickets failed: timeout', 60000, true, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-3';
SELECT halo_itsm._record(c.outbox_id, 'created', 9500, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-5';
SELECT halo_itsm._record(c.outbox_id, 'dead', NULL, 400, 'halo_itsm: Halo answered 400', 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-6';
-- (S-1 goes back unsent, as at the worker's shutdown)
SELECT halo_itsm._record(c.outbox_id, 'requeue', NULL, NULL, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-1';
CALL pg_temp.claim(2, 1);
SELECT halo_itsm._record(c.outbox_id, 'dead', NULL, NULL, 'halo_itsm: POST /api/Tickets failed: reset', 0, true, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'S-7';
SELECT * FROM pg_temp.queue ORDER BY id;
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-1 renamed' WHERE sid = 'S-1'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-2 renamed' WHERE sid = 'S-2'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-3 renamed' WHERE sid = 'S-3'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-4 renamed' WHERE sid = 'S-4'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-5 renamed' WHERE sid = 'S-5'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-6 renamed' WHERE sid = 'S-6'$$);
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = 'S-7 renamed' WHERE sid = 'S-7'$$);
-- several rows in one statement: all or nothing
CALL pg_temp.try($$UPDATE halo_itsm.cases SET sid = sid || '!' WHERE sid IN ('S-1 renamed', 'S-5')$$);
-- the same sid, and other columns, are always fine
UPDATE halo_itsm.cases SET sid = sid, title = 'Linked, retitled' WHERE sid = 'S-5';
SELECT sid, title FROM halo_itsm.cases ORDER BY id;
-- the renamed pending case is sent under its new sid (the payload is built at claim)
CALL pg_temp.claim(3);
SELECT c.sid, c.payload ->> 'third_party_id_string' AS third_party_id_string, c.payload ->> 'summary' AS summary
  FROM pg_temp.claims c WHERE c.round = 3 ORDER BY c.sid;
-- Detections: without an outbox row or ticket a sid may change; linked, not.
INSERT INTO halo_itsm.detections (sid, title, severity) VALUES ('DS-1', 'Open', 'low');
UPDATE halo_itsm.detections SET sid = 'DS-1 renamed' WHERE sid = 'DS-1';
UPDATE halo_itsm.detections SET status = 'closed' WHERE sid = 'DS-1 renamed';
CALL pg_temp.claim(4);
SELECT halo_itsm._record(c.outbox_id, 'created', 9600, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.round = 4 AND c.sid = 'DS-1 renamed';
SELECT * FROM pg_temp.links ORDER BY sid;
CALL pg_temp.try($$UPDATE halo_itsm.detections SET sid = 'DS-1 again' WHERE sid = 'DS-1 renamed'$$);

-- ---------------------------------------------------------------------------
-- A ticket id Halo gives that is already linked elsewhere: the item is dead, with why.
-- ---------------------------------------------------------------------------
\ir test/regress/empty.sql
TRUNCATE pg_temp.claims;
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('L-1', 'First', 'high'), ('L-2', 'Second', 'high');
CALL pg_temp.claim(1);
SELECT halo_itsm._record(c.outbox_id, 'created', 9700, 201, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'L-1';
-- Halo answers L-2's lookup with L-1's ticket (it matched the wrong third_party_id_string)
SELECT halo_itsm._record(c.outbox_id, 'found', 9700, 200, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'L-2';
SELECT * FROM pg_temp.links ORDER BY sid;
SELECT sid, state, result, last_error FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- the same ticket recorded again for the case it is linked to is fine (done)
INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('L-3', 'Third', 'low');
CALL pg_temp.claim(2);
INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id, linked_by)
SELECT 1, 9800, c.id, 'created' FROM halo_itsm.cases c WHERE c.sid = 'L-3';
SELECT halo_itsm._record(c.outbox_id, 'found', 9800, 200, NULL, 0, false, c.claim_token)
  FROM pg_temp.claims c WHERE c.sid = 'L-3';
-- (done, nothing new linked)
SELECT sid, state, result, last_error FROM pg_temp.queue WHERE sid = 'L-3';

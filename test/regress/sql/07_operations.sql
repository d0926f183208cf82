--
-- 07_operations: retry() of dead items, purge() of finished ones, the status view's
-- advice, schedule_jobs() without pg_cron, deliver()'s refusals (inside a transaction
-- block or a function, max_items <= 0) and check_connection() of an unknown integration.
-- No worker runs in this database, and no test here reaches out to Halo.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- The outbox, without the columns that hold times.
CREATE VIEW pg_temp.queue AS
SELECT o.id, o.kind, c.sid, o.integration_id, o.state, o.attempts, o.maybe_sent, o.claimed_by IS NOT NULL AS claimed,
       o.finished_at IS NOT NULL AS finished, o.next_attempt_at <= now() AS due,
       o.last_http_status, o.last_error
  FROM halo_itsm.outbox o LEFT JOIN halo_itsm.cases c ON c.id = o.case_id;
-- The status view, without the columns that hold times, per integration and for unbound items.
CREATE VIEW pg_temp.health AS
SELECT s.integration_id, s.name, s.pending, s.in_flight, s.dead, s.problem
  FROM halo_itsm.status s
 WHERE s.pending IS NOT NULL;  -- not the row saying no worker serves this database (01_setup)

-- ---------------------------------------------------------------------------
-- deliver(): refused inside a transaction block or a function, and for max_items <= 0.
-- ---------------------------------------------------------------------------
BEGIN;
CALL halo_itsm.deliver();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
CREATE FUNCTION pg_temp.deliver_from_function() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CALL halo_itsm.deliver();
END
$$;
SELECT pg_temp.deliver_from_function();
\echo :LAST_ERROR_SQLSTATE
CALL pg_temp.try($$CALL halo_itsm.deliver(10)$$);
CALL halo_itsm.deliver(0);
\echo :LAST_ERROR_SQLSTATE
CALL halo_itsm.deliver(-5);
\echo :LAST_ERROR_SQLSTATE
CALL halo_itsm.deliver(max_items => 0, only_without_worker => false);
\echo :LAST_ERROR_SQLSTATE
-- On its own, with nothing queued, it does nothing and succeeds.
CALL halo_itsm.deliver();
SELECT count(*) AS outbox_rows FROM halo_itsm.outbox;

-- ---------------------------------------------------------------------------
-- check_connection() and schedule_jobs().
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.check_connection(99)$$);
CALL pg_temp.try($$SELECT halo_itsm.check_connection(NULL)$$);
SELECT count(*) AS pg_cron_here FROM pg_extension WHERE extname = 'pg_cron';
CALL pg_temp.try($$SELECT * FROM halo_itsm.schedule_jobs()$$);
CALL pg_temp.try($$SELECT * FROM halo_itsm.schedule_jobs('*/5 * * * *', '0 4 * * *', '30 days')$$);

-- ---------------------------------------------------------------------------
-- retry(): dead items back to the queue with a fresh attempt count.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
SELECT halo_itsm.connect('https://other.halopsa.com', 'cid2', 'secret2', name => 'other') AS id;
SELECT halo_itsm.configure(1, 'Security>Incident');
SELECT halo_itsm.configure(2, 'Security>Incident');
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES
    ('C-1', 'One', 'high', 1), ('C-2', 'Two', 'high', 1), ('C-3', 'Three', 'low', 1),
    ('C-4', 'Four', 'low', 1), ('C-5', 'Five', 'medium', 2), ('C-6', 'Six', 'info', 2);
-- nothing dead yet
SELECT halo_itsm.retry() AS retried;
-- C-1, C-2 and C-5 died (as the worker records it); C-3 is done, C-4 in flight, C-6 pending.
UPDATE halo_itsm.outbox o
   SET state = 'dead', attempts = 12, finished_at = now(), last_http_status = 400,
       last_error = 'halo_itsm: Halo answered 400: category is required', maybe_sent = (c.sid = 'C-2'),
       next_attempt_at = now() + interval '1 hour'
  FROM halo_itsm.cases c WHERE c.id = o.case_id AND c.sid IN ('C-1', 'C-2', 'C-5');
UPDATE halo_itsm.outbox o SET state = 'done', attempts = 1, finished_at = now(), result = 'created', halo_ticket_id = 7003
  FROM halo_itsm.cases c WHERE c.id = o.case_id AND c.sid = 'C-3';
UPDATE halo_itsm.outbox o SET state = 'in_flight', attempts = 1, claimed_by = pg_backend_pid(), claimed_at = now()
  FROM halo_itsm.cases c WHERE c.id = o.case_id AND c.sid = 'C-4';
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- one item
SELECT halo_itsm.retry(outbox_id => (SELECT o.id FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = 'C-1')) AS retried;
-- an item that is not dead is left alone
SELECT halo_itsm.retry(outbox_id => (SELECT o.id FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = 'C-3')) AS retried;
-- one integration's
SELECT halo_itsm.retry(integration => 2) AS retried;
SELECT halo_itsm.retry(integration => 99) AS retried;
SELECT * FROM pg_temp.queue ORDER BY id;
SELECT * FROM pg_temp.health ORDER BY integration_id NULLS LAST;
-- all that are left (C-2 keeps maybe_sent: it is looked up in Halo before being sent again)
SELECT halo_itsm.retry() AS retried;
SELECT halo_itsm.retry() AS retried_again;
SELECT * FROM pg_temp.queue ORDER BY id;
-- dead again, and retried in a transaction that rolls back: still dead
UPDATE halo_itsm.outbox o SET state = 'dead', finished_at = now()
  FROM halo_itsm.cases c WHERE c.id = o.case_id AND c.sid = 'C-2';
BEGIN;
SELECT halo_itsm.retry() AS retried;
ROLLBACK;
SELECT c.sid, o.state FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id WHERE c.sid = 'C-2';

-- ---------------------------------------------------------------------------
-- purge(): only finished (done) rows older than the given age.
-- ---------------------------------------------------------------------------
TRUNCATE halo_itsm.outbox RESTART IDENTITY;
INSERT INTO halo_itsm.outbox (kind, case_id, integration_id, state, finished_at)
SELECT 'case', c.id, c.integration_id, v.state::halo_itsm.outbox_state, now() - v.age
  FROM (VALUES ('C-1', 'done', interval '30 days'), ('C-2', 'done', interval '8 days'),
               ('C-3', 'done', interval '2 days'), ('C-4', 'done', interval '1 minute'),
               ('C-5', 'dead', interval '30 days')) AS v(sid, state, age)
  JOIN halo_itsm.cases c ON c.sid = v.sid;
INSERT INTO halo_itsm.outbox (kind, case_id, integration_id)
SELECT 'case', id, integration_id FROM halo_itsm.cases WHERE sid = 'C-6';
-- default: older than 7 days
SELECT halo_itsm.purge() AS purged;
SELECT c.sid, o.state FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id ORDER BY c.sid;
SELECT halo_itsm.purge('1 day') AS purged;
SELECT halo_itsm.purge('1 day') AS purged_again;
SELECT halo_itsm.purge(interval '0') AS purged;
-- dead and pending rows are never purged; the cases stay
SELECT c.sid, o.state FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id ORDER BY c.sid;
SELECT count(*) AS cases FROM halo_itsm.cases;
CALL pg_temp.try($$SELECT halo_itsm.purge(interval '-1 day')$$);
CALL pg_temp.try($$SELECT halo_itsm.purge(NULL)$$);

-- purge() of webhook deliveries: older than older_than, but never those received within
-- twice halo_itsm.webhook_tolerance and a minute (a delivery dated up to the tolerance ahead
-- of the clock stays acceptable that long: only its row refuses a replay).
INSERT INTO halo_itsm.webhook_deliveries (integration_id, delivery_id, received_at, outcome)
SELECT 1, v.id, now() - v.age, 'notes_added'
  FROM (VALUES ('w-30d', interval '30 days'), ('w-8d', interval '8 days'), ('w-2d', interval '2 days'),
               ('w-12m', interval '12 minutes'), ('w-10m', interval '10 minutes'),
               ('w-3m', interval '3 minutes'), ('w-1m', interval '1 minute'), ('w-now', interval '0')) AS v(id, age);
SHOW halo_itsm.webhook_tolerance;
-- default: older than 7 days (no finished outbox row is left to purge)
SELECT halo_itsm.purge() AS purged;
SELECT delivery_id FROM halo_itsm.webhook_deliveries ORDER BY received_at;
SELECT halo_itsm.purge('1 day') AS purged;
-- zero: all but the last 11 minutes (2 x 5 min + 1 min)
SELECT halo_itsm.purge('0') AS purged;
SELECT delivery_id FROM halo_itsm.webhook_deliveries ORDER BY received_at;
-- a shorter tolerance keeps less: 2 x 30 s + 1 min
SET halo_itsm.webhook_tolerance = '30s';
SELECT halo_itsm.purge('0') AS purged;
SELECT delivery_id FROM halo_itsm.webhook_deliveries ORDER BY received_at;
RESET halo_itsm.webhook_tolerance;
-- a delivery still in the window is a duplicate when it comes again: its row is kept
SELECT halo_itsm._apply_webhook(1, '{"id": "w-now", "object_id": 4242}') ->> 'outcome' AS replay;

-- retry() of dead syncs: one sync per ticket is revived, the others are superseded
TRUNCATE halo_itsm.outbox;
INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id, state)
SELECT 'sync', (SELECT min(id) FROM halo_itsm.integrations), t, s::halo_itsm.outbox_state
  FROM (VALUES (501, 'dead'), (501, 'dead'), (502, 'dead'), (502, 'pending'), (503, 'dead')) v(t, s);
SELECT halo_itsm.retry() AS revived;
SELECT halo_ticket_id, state, result FROM halo_itsm.outbox ORDER BY id;

/*
 * 40_delivery.sql: the SQL side of delivery: recovering abandoned items, claiming due
 * items, recording outcomes.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- Delivery, SQL side: claim due items, record outcomes.
-- ---------------------------------------------------------------------------

-- Puts items claimed by sessions that no longer exist (or by this one, when
-- include_self: its engine was reset) back in the queue; an item held far
-- longer than any delivery can take (30 request timeouts) is recovered too.
CREATE OR REPLACE FUNCTION halo_itsm._recover_orphans(include_self boolean, request_timeout_ms integer)
RETURNS integer LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $$
    WITH r AS (
        UPDATE halo_itsm.outbox o
           SET state = 'pending', claimed_by = NULL, claim_token = NULL,
               maybe_sent = o.maybe_sent OR o.kind <> 'sync',
               last_error = 'halo_itsm: the session delivering this item ended before recording the outcome; it will be looked up in Halo before it is sent again'
         WHERE o.state = 'in_flight'
           AND ((o.claimed_by = pg_backend_pid() AND include_self)
                OR (o.claimed_by IS DISTINCT FROM pg_backend_pid()
                    AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(o.claimed_by) a WHERE a.pid IS NOT NULL))
                OR o.claimed_at < now() - make_interval(secs => 30 * request_timeout_ms / 1000.0))
        RETURNING 1)
    SELECT count(*)::integer FROM r
$$;

-- _claim, step 1 with a single enabled integration: the ids of up to n due items, its own
-- and those that name none, oldest first, locked.
CREATE OR REPLACE FUNCTION halo_itsm._claim_due_single(single integer, n integer)
RETURNS bigint[] LANGUAGE plpgsql
-- one generic plan per statement, made once per session (see _claim and _claim_mark)
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
-- no JIT: with seqscans off the estimates pass jit_above_cost, and each call would compile
SET jit = off AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(u.id) INTO v_ids
      FROM (SELECT a.id, a.next_attempt_at
              FROM (SELECT o.id, o.next_attempt_at FROM halo_itsm.outbox o
                     WHERE o.integration_id = single AND o.state = 'pending'
                       AND o.next_attempt_at <= now()
                       AND (o.halo_ticket_id IS NOT NULL OR o.kind = 'case' OR o.kind = 'detection')
                     ORDER BY o.next_attempt_at, o.id
                     LIMIT n
                     FOR UPDATE SKIP LOCKED) a
            UNION ALL
            SELECT b.id, b.next_attempt_at
              FROM (SELECT o.id, o.next_attempt_at FROM halo_itsm.outbox o
                     WHERE o.integration_id IS NULL AND o.state = 'pending'
                       AND o.next_attempt_at <= now()
                       AND (o.halo_ticket_id IS NOT NULL OR o.kind = 'case' OR o.kind = 'detection')
                     -- integration_id first: the planner then reads outbox_open in order
                     -- (for IS NULL it would otherwise sort every such item)
                     ORDER BY o.integration_id, o.next_attempt_at, o.id
                     LIMIT n
                     FOR UPDATE SKIP LOCKED) b
             ORDER BY 2, 1
             LIMIT n) u;
    RETURN v_ids;
END
$$;

-- _claim, step 1 otherwise: the ids of up to per_integration due items of each enabled,
-- configured integration not excluded, at most max_items in all, locked.
CREATE OR REPLACE FUNCTION halo_itsm._claim_due_each(exclude_integrations integer[], per_integration integer,
                                          max_items integer)
RETURNS bigint[] LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
-- no JIT: with seqscans off the estimates pass jit_above_cost, and each call would compile
SET jit = off AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(p.id) INTO v_ids
      FROM (SELECT x.id
              FROM halo_itsm.integrations i
             CROSS JOIN LATERAL (
                   SELECT o.id FROM halo_itsm.outbox o
                    WHERE o.integration_id = i.id AND o.state = 'pending' AND o.next_attempt_at <= now()
                       AND (o.halo_ticket_id IS NOT NULL OR o.kind = 'case' OR o.kind = 'detection')
                    ORDER BY o.next_attempt_at, o.id
                    LIMIT per_integration
                    FOR UPDATE SKIP LOCKED) x
             WHERE i.enabled AND i.configured_at IS NOT NULL AND i.id <> ALL (exclude_integrations)
             LIMIT max_items) p;
    RETURN v_ids;
END
$$;

-- _claim, step 2: marks the picked items in flight and returns them. Its one statement has
-- a generic plan made once per session, when the worker first claims, often on an empty
-- outbox, and kept while the backlog grows: the planner settings make it an index lookup per
-- id whatever the statistics said then (a hash join over a sequential scan of the outbox,
-- chosen on an empty table, cost 15-17 ms per claim at 50,000 rows; regress 09_claim_plans).
-- They are set here only: on _claim they would also reach the payload's functions, whose
-- joins of Halo's field list need hash joins (a claim took 40 ms with them off).
CREATE OR REPLACE FUNCTION halo_itsm._claim_mark(ids bigint[], single integer)
RETURNS SETOF halo_itsm.outbox LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
-- no JIT: with seqscans off the estimates pass jit_above_cost, and each call would compile
SET jit = off AS $$
BEGIN
    RETURN QUERY
    UPDATE halo_itsm.outbox o
       SET state = 'in_flight', attempts = o.attempts + 1,
           integration_id = coalesce(o.integration_id, single),
           bound_at_claim = o.bound_at_claim OR o.integration_id IS NULL,
           claimed_by = pg_backend_pid(), claimed_at = now(), claim_token = gen_random_uuid()
      FROM unnest(ids) AS u(id)
     WHERE o.id OPERATOR(pg_catalog.=) u.id
    RETURNING o.*;
END
$$;

-- Claims due items (at most per_integration per integration), skipping busy integrations.
-- Items that name no integration go to the single enabled one, when there is exactly one
-- (_single_enabled_integration): they are bound to it as they are claimed (not all at
-- once: a backlog of such items would be rewritten by every claim), and remember it
-- (bound_at_claim), so that deleting that integration puts them back instead of deleting
-- them (_cascade_delete). Every claim gets a new claim_token, which the outcome must bring
-- back (_record). Step 1 picks and locks the due items (_claim_due_single or
-- _claim_due_each); step 2 (_claim_mark) marks them in flight and returns them with their integration,
-- credentials and ticket payload.
CREATE OR REPLACE FUNCTION halo_itsm._claim(max_items integer, per_integration integer DEFAULT 1,
                                 exclude_integrations integer[] DEFAULT '{}')
RETURNS TABLE (outbox_id bigint, kind text, integration_id integer, instance_url text, tenant text,
               client_id text, client_secret text, sid text, payload text, maybe_sent boolean,
               attempts integer, halo_ticket_id bigint, claim_token uuid, payload_error text,
               auth_url text, scope text)
LANGUAGE plpgsql
-- One generic plan per statement, made once per session: planning them anew for every call
-- (with the ticket payload inlined) cost more than running them.
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_single integer;
    v_ids bigint[];
BEGIN
    SELECT s.id INTO v_single FROM halo_itsm._single_enabled_integration s;
    IF v_single IS NULL THEN
        v_ids := halo_itsm._claim_due_each(exclude_integrations, per_integration, max_items);
    ELSIF v_single <> ALL (exclude_integrations) AND EXISTS (
              SELECT 1 FROM halo_itsm.integrations i WHERE i.id = v_single AND i.configured_at IS NOT NULL) THEN
        v_ids := halo_itsm._claim_due_single(v_single, least(per_integration, max_items));
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- Written so that the generic plan stays right as the tables grow: the claimed ids are
    -- joined row by row, and each case or detection is one index lookup.
    RETURN QUERY
    WITH claimed AS (SELECT * FROM halo_itsm._claim_mark(v_ids, v_single))
    SELECT c.id, c.kind::text, i.id, i.instance_url, i.tenant, i.client_id, s.client_secret,
           coalesce(ca.sid, d.sid),
           coalesce(p.payload, f.payload), c.maybe_sent, c.attempts, c.halo_ticket_id, c.claim_token,
           coalesce(p.error, f.error),
           i.auth_url, i.scope
      FROM claimed c
      JOIN halo_itsm.integrations i ON i.id = c.integration_id
      JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id
      LEFT JOIN LATERAL (SELECT x.* FROM halo_itsm.cases x WHERE x.id = c.case_id LIMIT 1) ca ON true
      LEFT JOIN LATERAL (SELECT x.* FROM halo_itsm.detections x WHERE x.id = c.detection_id LIMIT 1) d ON true
      -- in FROM, so that it runs once per item; an item whose ticket cannot be built gets
      -- the error instead (the caller records it dead), not an error for the whole claim.
      -- Each function is in a subquery (not pulled up: OFFSET 0) whose WHERE names only c, a
      -- one-time filter: it is not called at all for the items of the other kinds (a plpgsql call each, 0.1 ms).
      LEFT JOIN LATERAL (SELECT x.* FROM halo_itsm._payload_or_error(
                    i, c.kind::text, coalesce(ca.sid, d.sid), coalesce(ca.title, d.title),
                    CASE WHEN c.kind = 'case' THEN ca.description ELSE d.description END,
                    coalesce(ca.severity, d.severity)) x
                          WHERE c.kind = 'case' OR c.kind = 'detection' OFFSET 0) p ON true
      -- a note, close or update of an existing ticket (70_attach.sql)
      LEFT JOIN LATERAL (SELECT x.* FROM halo_itsm._followup_payload(i, c.kind::text, c.case_id, c.detection_id,
                                                                     c.halo_ticket_id, c.timeline_id) x
                          WHERE c.kind <> 'case' AND c.kind <> 'detection' AND c.kind <> 'sync' OFFSET 0) f ON true
     ORDER BY c.id;
END
$$;

-- The ticket object of a claimed case or detection as text, or (payload NULL) the error that
-- building it raised: a broken title template, or a ticket too large for jsonb. The claim
-- must not fail for every item because one cannot be built (the worker would claim it again
-- at every poll). The EXCEPTION block costs a subtransaction per claimed item.
CREATE OR REPLACE FUNCTION halo_itsm._payload_or_error(i halo_itsm.integrations, kind text, sid text, title text,
                                            description text, severity halo_itsm.severity,
                                            OUT payload text, OUT error text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    payload := halo_itsm._build_payload(i, kind, sid, title, description, severity)::text;
EXCEPTION WHEN OTHERS THEN
    error := format('halo_itsm: the ticket for this %s could not be built: %s', kind,
                    left(regexp_replace(SQLERRM, '^halo_itsm: ', ''), 1000));
END
$$;

-- _record of a ticket created or found when its link was not inserted: fine (false) when
-- this very link exists (recorded before); otherwise the ticket is linked to another case
-- or detection, or this one has another ticket, and the item must not look done while its
-- case has no ticket of its own: it is dead with the reason, and true is returned.
CREATE OR REPLACE FUNCTION halo_itsm._record_unlinked(o halo_itsm.outbox, outcome text, ticket_id bigint,
                                           http_status integer)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    error text;
BEGIN
    IF EXISTS (SELECT 1 FROM halo_itsm.tickets t
                WHERE t.integration_id = o.integration_id AND t.halo_ticket_id = ticket_id
                  AND t.case_id IS NOT DISTINCT FROM o.case_id
                  AND t.detection_id IS NOT DISTINCT FROM o.detection_id) THEN
        RETURN false;
    END IF;
    SELECT format('halo_itsm: Halo ticket %s was %s, but %s', ticket_id, outcome,
                  coalesce((SELECT format('it is already linked to %s "%s"',
                                          CASE WHEN t.case_id IS NOT NULL THEN 'case' ELSE 'detection' END,
                                          coalesce(c.sid, d.sid))
                              FROM halo_itsm.tickets t
                              LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
                              LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id
                             WHERE t.integration_id = o.integration_id
                               AND t.halo_ticket_id = ticket_id),
                           (SELECT format('this %s is already linked to Halo ticket %s',
                                          o.kind, t.halo_ticket_id)
                              FROM halo_itsm.tickets t
                             WHERE t.case_id = o.case_id OR t.detection_id = o.detection_id
                             LIMIT 1),
                           'it could not be linked'))
           || '; check both in Halo, then link the right one' INTO error;
    UPDATE halo_itsm.outbox x
       SET state = 'dead', finished_at = now(), claimed_by = NULL, last_http_status = http_status,
           halo_ticket_id = ticket_id, last_error = error, maybe_sent = false
     WHERE x.id = o.id;
    UPDATE halo_itsm.integrations i SET last_error = error, last_error_at = now()
     WHERE i.id = o.integration_id;
    RETURN true;
END
$$;

-- _record of a note, close or update that reached Halo (created) or was found there after
-- an ambiguous failure (found): action_id is the Halo action's id (the ticket's for an
-- update). The note's or close's timeline entry gets the action id, so that Halo's webhook
-- for it is not taken as a new note; a close marks the ticket closed; an update changed
-- again meanwhile goes back to the queue.
CREATE OR REPLACE FUNCTION halo_itsm._record_followup(o halo_itsm.outbox, outcome text, action_id bigint,
                                                      http_status integer)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF o.kind = 'note' OR o.kind = 'close' THEN
        UPDATE halo_itsm.timeline e
           SET integration_id = o.integration_id, halo_ticket_id = o.halo_ticket_id, halo_action_id = action_id
         WHERE e.id = o.timeline_id;
    END IF;
    IF o.kind = 'close' THEN
        UPDATE halo_itsm.tickets t SET halo_closed = true
         WHERE t.integration_id = o.integration_id AND t.halo_ticket_id = o.halo_ticket_id;
    END IF;
    UPDATE halo_itsm.outbox x
       SET state = CASE WHEN x.again THEN 'pending' ELSE 'done' END::halo_itsm.outbox_state,
           again = false, finished_at = CASE WHEN x.again THEN NULL ELSE now() END,
           next_attempt_at = now(), claimed_by = NULL, last_http_status = http_status, maybe_sent = false,
           result = CASE WHEN o.kind = 'update' THEN 'sent' ELSE format('%s: action %s', outcome, action_id) END,
           last_error = NULL
     WHERE x.id = o.id;
    UPDATE halo_itsm.integrations i SET last_success_at = now()
     WHERE i.id = o.integration_id AND i.last_success_at IS DISTINCT FROM now();
END
$$;

-- Records the outcome of one delivery attempt, on the row that still holds its claim.
CREATE OR REPLACE FUNCTION halo_itsm._record(outbox_id bigint, outcome text, halo_ticket_id bigint,
                                  http_status integer, error text, retry_in_ms bigint,
                                  maybe_sent boolean, claim_token uuid)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    o halo_itsm.outbox;
BEGIN
    SELECT * INTO o FROM halo_itsm.outbox x WHERE x.id = _record.outbox_id FOR UPDATE;
    IF NOT FOUND OR o.state <> 'in_flight' OR o.claimed_by IS DISTINCT FROM pg_backend_pid()
       OR o.claim_token IS DISTINCT FROM _record.claim_token OR _record.claim_token IS NULL THEN
        -- Recovered by someone else meanwhile (the lookup before any resend prevents a
        -- duplicate), or no longer the claimed row at all: the outbox was emptied or the
        -- extension re-created, and its ids started again.
        RAISE WARNING 'halo_itsm: outbox item % was no longer claimed by this session; outcome % not recorded',
            _record.outbox_id, outcome;
        RETURN;
    END IF;

    IF o.kind <> 'case' AND o.kind <> 'detection' AND o.kind <> 'sync' AND outcome IN ('created', 'found') THEN
        PERFORM halo_itsm._record_followup(o, outcome, _record.halo_ticket_id, http_status);
    ELSIF outcome IN ('created', 'found') THEN
        INSERT INTO halo_itsm.tickets (integration_id, halo_ticket_id, case_id, detection_id, linked_by)
        VALUES (o.integration_id, _record.halo_ticket_id, o.case_id, o.detection_id, outcome)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            IF halo_itsm._record_unlinked(o, outcome, _record.halo_ticket_id, http_status) THEN
                RETURN;
            END IF;
        END IF;
        UPDATE halo_itsm.outbox x
           SET state = 'done', finished_at = now(), claimed_by = NULL, last_http_status = http_status,
               halo_ticket_id = _record.halo_ticket_id, result = outcome, maybe_sent = false
         WHERE x.id = o.id;
        -- the notes, closes and updates queued before the ticket existed go after it
        IF o.case_id IS NOT NULL THEN
            UPDATE halo_itsm.outbox x SET halo_ticket_id = _record.halo_ticket_id, integration_id = o.integration_id
             WHERE x.case_id = o.case_id AND x.halo_ticket_id IS NULL AND x.kind <> 'case' AND x.kind <> 'detection';
        ELSE
            UPDATE halo_itsm.outbox x SET halo_ticket_id = _record.halo_ticket_id, integration_id = o.integration_id
             WHERE x.detection_id = o.detection_id AND x.case_id IS NULL AND x.halo_ticket_id IS NULL
               AND x.kind <> 'case' AND x.kind <> 'detection';
        END IF;
        -- once per transaction: the worker records many items of an integration in one
        UPDATE halo_itsm.integrations i SET last_success_at = now()
         WHERE i.id = o.integration_id AND i.last_success_at IS DISTINCT FROM now();
    ELSIF outcome = 'synced' THEN
        UPDATE halo_itsm.outbox x
           SET state = 'done', finished_at = now(), claimed_by = NULL, last_http_status = http_status,
               result = outcome, last_error = NULL
         WHERE x.id = o.id;
        UPDATE halo_itsm.integrations i SET last_success_at = now() WHERE i.id = o.integration_id;
    ELSIF outcome = 'retry' THEN
        UPDATE halo_itsm.outbox x
           SET state = 'pending', claimed_by = NULL, last_http_status = http_status, last_error = error,
               maybe_sent = x.maybe_sent OR coalesce(_record.maybe_sent, false),
               next_attempt_at = now() + make_interval(secs => greatest(retry_in_ms, 0) / 1000.0)
         WHERE x.id = o.id;
        UPDATE halo_itsm.integrations i SET last_error = error, last_error_at = now() WHERE i.id = o.integration_id;
    ELSIF outcome = 'requeue' THEN
        -- Not attempted (the integration's request budget was spent): back to the queue without counting an attempt.
        UPDATE halo_itsm.outbox x
           SET state = 'pending', claimed_by = NULL, attempts = greatest(x.attempts - 1, 0),
               last_error = coalesce(error, x.last_error),
               next_attempt_at = now() + make_interval(secs => greatest(retry_in_ms, 0) / 1000.0)
         WHERE x.id = o.id;
    ELSIF outcome = 'dead' THEN
        UPDATE halo_itsm.outbox x
           SET state = 'dead', finished_at = now(), claimed_by = NULL, last_http_status = http_status,
               last_error = error, maybe_sent = x.maybe_sent OR coalesce(_record.maybe_sent, false)
         WHERE x.id = o.id;
        UPDATE halo_itsm.integrations i SET last_error = error, last_error_at = now() WHERE i.id = o.integration_id;
    ELSE
        RAISE EXCEPTION 'halo_itsm: unknown delivery outcome "%"', outcome
            USING ERRCODE = 'invalid_parameter_value', HINT = 'This is a bug in halo_itsm; please report it.';
    END IF;
END
$$;


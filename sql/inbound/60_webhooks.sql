/*
 * 60_webhooks.sql: Halo's side of the story: webhook settings and secret rotation,
 * ingest_webhook() (verification in C, src/inbound/webhook.c), applying a ticket's state and
 * notes to the linked case or detection (shared by webhooks and API syncs), queueing
 * syncs, reconcile(), and timeline helpers.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 *
 * Rules (the README's "Webhooks" section explains them to users):
 * - A ticket whose status_id is in the integration's closed_status_ids, or whose
 *   hasbeenclosed is true, closes the linked case (or detection) once: status 'closed',
 *   closed_at, and one 'closed' timeline entry naming who closed it. A closed row stays
 *   as it is.
 * - Every action with note text becomes one 'note' entry, deduplicated by
 *   (integration, halo_action_id). System actions (action_systemid non-zero), actions
 *   without note text and the integration's own actions are skipped: those whose
 *   actionby_application_id is the integration's API application (its client_id), which
 *   Halo sets itself and no agent can set. Plain text comes from note, else from note_html.
 * - A delivery is recorded by (integration, payload id) before anything is applied:
 *   a second delivery with the same id returns 'duplicate' (also when two sessions race:
 *   the second waits for the first's primary key entry).
 * - A payload without the ticket object or without actions queues a sync of the ticket
 *   (GET /api/Tickets/{id} and GET /api/Actions), which the worker or deliver() performs
 *   and _apply_sync() applies by the same rules.
 * SQLSTATEs of class WH are the webhook rejections (table in src/inbound/webhook.c and
 * the README); WH011 is raised here (and WH008 for a batch element that is not an
 * object). A verified event that names no ticket is accepted as 'ignored' (WH010 is no
 * longer raised: Halo would count the 400 towards disabling the webhook).
 */

-- ---------------------------------------------------------------------------
-- Small helpers.
-- ---------------------------------------------------------------------------

-- A JSON number or digit string (at most 18 digits, white space around them allowed) as a
-- bigint; NULL for anything else. In C (src/inbound/halo_values.c): it runs several times
-- per action of every webhook delivery, where a regular expression cost more.
CREATE OR REPLACE FUNCTION halo_itsm._json_bigint(v jsonb)
RETURNS bigint LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'halo_itsm_json_bigint';

-- A Halo time (RFC 3339; without a zone it is UTC, as Halo's API sends it); NULL when
-- unreadable. In C (src/inbound/halo_values.c): the shape check of the regular expression
-- ^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?\s*$
-- then PostgreSQL's date/time parser, without the exception block (a subtransaction per
-- call) that catching the cast's errors took in PL/pgSQL.
CREATE OR REPLACE FUNCTION halo_itsm._halo_time(v text)
RETURNS timestamptz LANGUAGE C STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'halo_itsm_halo_time';

-- Is this Halo action a system action? Halo marks them with a non-zero action_systemid
-- (GET /api/Actions?excludesys=true drops exactly those); it sends no is_system field.
-- who_type is not used: its codes are not published.
CREATE OR REPLACE FUNCTION halo_itsm._is_system_action(action jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(halo_itsm._json_bigint(action -> 'action_systemid'), 0) <> 0
$$;

-- Plain text of Halo's note_html in one linear pass (src/core/hi_html.c): line breaks for
-- <br>, </p>, </div>, </li>, </tr>, </h1-6>; tags dropped; references decoded once; trimmed.
CREATE OR REPLACE FUNCTION halo_itsm._html_to_text(html text)
RETURNS text LANGUAGE C IMMUTABLE PARALLEL SAFE STRICT AS 'MODULE_PATHNAME', 'halo_itsm_html_to_text';

-- The plain text of an action's note (note, else note_html); NULL when it has none.
-- No SET clause, so that the planner inlines it into _apply_ticket (whose search_path is
-- pinned): with one, it was parsed and planned again for every action (a quarter of the
-- time of an ingest_webhook call, test/bench figure 5).
CREATE OR REPLACE FUNCTION halo_itsm._note_text(action jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        CASE WHEN jsonb_typeof(action -> 'note') = 'string' THEN nullif(btrim(action ->> 'note', E' \t\r\n'), '') END,
        CASE WHEN jsonb_typeof(action -> 'note_html') = 'string' THEN halo_itsm._html_to_text(action ->> 'note_html') END)
$$;

-- Queues a sync of a Halo ticket (once while one is pending) and wakes the worker at commit.
CREATE OR REPLACE FUNCTION halo_itsm._queue_sync(integration integer, halo_ticket_id bigint)
RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id)
    VALUES ('sync', _queue_sync.integration, _queue_sync.halo_ticket_id)
    -- a sync row can only conflict in outbox_one_sync_pending (10_schema.once.sql), the one
    -- home of "one pending sync per ticket": no conflict target repeats its predicate
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM halo_itsm._wake_worker_at_commit();
    END IF;
    RETURN true;
END
$$;

-- ---------------------------------------------------------------------------
-- Applying a ticket's state and actions (webhooks and syncs alike).
-- ---------------------------------------------------------------------------

-- Applies a Halo ticket (object or NULL) and its actions (array) to the linked case or
-- detection in one go; returns {outcome, case_sid|detection_sid, notes_added, closed}.
CREATE OR REPLACE FUNCTION halo_itsm._apply_ticket(integration integer, halo_ticket_id bigint, ticket jsonb,
                                        actions jsonb, fallback_time timestamptz)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket_row bigint;
    v_case_id bigint;
    v_detection_id bigint;
    v_closed_ids integer[];
    v_sid text;
    v_status text;
    v_is_case boolean;
    v_status_id bigint;
    v_closing jsonb;
    v_when timestamptz;
    v_author text;
    v_notes integer;
    v_closed boolean := false;
BEGIN
    -- One statement: the ticket with its integration's settings and its case or detection,
    -- locked (concurrent webhooks and syncs of a ticket apply in turn), then the notes: one
    -- timeline entry per Halo action with note text, deduplicated by action id, oldest
    -- first. Skipped: actions without id or text, system actions, the integration's own
    -- (posted through its API application, whatever the text) and those of another ticket.
    WITH t AS (
        SELECT x.id, x.case_id, x.detection_id, i.closed_status_ids, lower(i.client_id) AS client_id
          FROM halo_itsm.tickets x
          JOIN halo_itsm.integrations i ON i.id = x.integration_id
         WHERE x.integration_id = _apply_ticket.integration AND x.halo_ticket_id = _apply_ticket.halo_ticket_id
    ), c AS (
        SELECT c.sid, c.status FROM halo_itsm.cases c WHERE c.id = (SELECT t.case_id FROM t) FOR UPDATE
    ), d AS (
        SELECT d.sid, d.status FROM halo_itsm.detections d WHERE d.id = (SELECT t.detection_id FROM t) FOR UPDATE
    ), k AS (
        SELECT * FROM c UNION ALL SELECT * FROM d
    ), n AS (
        INSERT INTO halo_itsm.timeline (case_id, detection_id, occurred_at, source, kind, author, body,
                                        internal, integration_id, halo_ticket_id, halo_action_id)
        SELECT t.case_id, t.detection_id, coalesce(a.at, fallback_time, now()), 'halo', 'note',
               CASE WHEN jsonb_typeof(a.v -> 'who') = 'string' THEN a.v ->> 'who' END, a.body,
               coalesce(a.v -> 'hiddenfromuser' = 'true'::jsonb, false),
               _apply_ticket.integration, _apply_ticket.halo_ticket_id, a.action_id
          FROM t, k,            -- k: after the lock
               (SELECT e.v, halo_itsm._json_bigint(e.v -> 'id') AS action_id, halo_itsm._note_text(e.v) AS body,
                       halo_itsm._halo_time(e.v ->> 'datetime') AS at
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(actions) = 'array' THEN actions ELSE '[]' END) e(v)
                 WHERE jsonb_typeof(e.v) = 'object'
                OFFSET 0) a             -- each action's text and time computed once
         WHERE (a.action_id IS NULL OR a.body IS NULL
                OR halo_itsm._is_system_action(a.v)
                OR (jsonb_typeof(a.v -> 'actionby_application_id') = 'string'
                    AND lower(btrim(a.v ->> 'actionby_application_id')) = t.client_id)
                OR (a.v ? 'ticket_id' AND halo_itsm._json_bigint(a.v -> 'ticket_id') IS DISTINCT FROM _apply_ticket.halo_ticket_id))
               IS NOT TRUE
         ORDER BY a.at NULLS LAST, a.action_id
        ON CONFLICT (integration_id, halo_action_id) WHERE halo_action_id IS NOT NULL DO NOTHING
        RETURNING 1
    )
    SELECT t.id, t.case_id, t.detection_id, k.sid, k.status, t.closed_status_ids, (SELECT count(*) FROM n)
      INTO v_ticket_row, v_case_id, v_detection_id, v_sid, v_status, v_closed_ids, v_notes
      FROM t, k;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'ignored', 'notes_added', 0, 'closed', false);
    END IF;
    v_is_case := v_case_id IS NOT NULL;

    -- Closing: a ticket in a closed status closes an open case or detection, once.
    IF jsonb_typeof(ticket) = 'object' AND v_status = 'open' THEN
        v_status_id := halo_itsm._json_bigint(ticket -> 'status_id');
        IF v_status_id = ANY (v_closed_ids) OR ticket -> 'hasbeenclosed' = 'true'::jsonb THEN
            -- the newest non-system action that set a closed status says who and when
            SELECT e.v INTO v_closing
              FROM jsonb_array_elements(CASE WHEN jsonb_typeof(actions) = 'array' THEN actions ELSE '[]' END) e(v)
             WHERE jsonb_typeof(e.v) = 'object' AND NOT halo_itsm._is_system_action(e.v)
               AND halo_itsm._json_bigint(e.v -> 'new_status') = ANY (v_closed_ids)
             ORDER BY halo_itsm._halo_time(e.v ->> 'datetime') DESC NULLS LAST, halo_itsm._json_bigint(e.v -> 'id') DESC
             LIMIT 1;
            v_when := least(coalesce(halo_itsm._halo_time(v_closing ->> 'datetime'),
                                     halo_itsm._halo_time(ticket ->> 'dateclosed'),
                                     fallback_time, now()), now());
            v_author := coalesce(CASE WHEN jsonb_typeof(v_closing -> 'who') = 'string' THEN v_closing ->> 'who' END,
                                 CASE WHEN jsonb_typeof(ticket -> 'agent_name') = 'string' THEN nullif(ticket ->> 'agent_name', '') END);
            -- first: the case's own trigger then knows that Halo closed it (nothing to send)
            UPDATE halo_itsm.tickets x SET halo_closed = true WHERE x.id = v_ticket_row;
            IF v_is_case THEN
                UPDATE halo_itsm.cases c SET status = 'closed', closed_at = v_when WHERE c.id = v_case_id;
            ELSE
                UPDATE halo_itsm.detections d SET status = 'closed', closed_at = v_when WHERE d.id = v_detection_id;
            END IF;
            INSERT INTO halo_itsm.timeline (case_id, detection_id, occurred_at, source, kind, author, body,
                                            internal, integration_id, halo_ticket_id)
            VALUES (v_case_id, v_detection_id, v_when, 'halo', 'closed', v_author,
                    coalesce(CASE WHEN jsonb_typeof(ticket -> 'closure_note') = 'string'
                                  THEN nullif(btrim(ticket ->> 'closure_note'), '') END,
                             format('Closed in Halo%s (ticket %s, status %s).',
                                    ' by ' || v_author, _apply_ticket.halo_ticket_id, coalesce(v_status_id::text, 'closed'))),
                    false, _apply_ticket.integration, _apply_ticket.halo_ticket_id);
            -- the attached row of the platform's, in this transaction (docs/attach.md)
            PERFORM halo_itsm._write_back(CASE WHEN v_is_case THEN 'case' ELSE 'detection' END,
                                          coalesce(v_case_id, v_detection_id), v_when);
            v_closed := true;
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'outcome', CASE WHEN v_closed AND v_is_case THEN 'case_closed'
                        WHEN v_closed THEN 'detection_closed'
                        WHEN v_notes > 0 THEN 'notes_added'
                        ELSE 'no_change' END,
        CASE WHEN v_is_case THEN 'case_sid' ELSE 'detection_sid' END, v_sid,
        'notes_added', v_notes, 'closed', v_closed);
END
$$;

-- Applies one event of a verified delivery (an object); _apply_webhook() calls it per event.
CREATE OR REPLACE FUNCTION halo_itsm._apply_event(integration integer, payload jsonb)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_delivery text;
    v_ticket_id bigint;
    v_ticket jsonb;
    v_actions jsonb;
    v_result jsonb;
    v_sync boolean := false;
BEGIN
    v_delivery := CASE WHEN jsonb_typeof(payload -> 'id') IN ('string', 'number')
                       THEN nullif(btrim(payload ->> 'id'), '') END;
    IF v_delivery IS NULL OR length(v_delivery) > 200 THEN
        RAISE EXCEPTION 'halo_itsm: the webhook payload has no delivery "id"'
            USING ERRCODE = 'WH011',
                  HINT = 'Halo puts a unique "id" in every webhook payload; check that the sender is Halo and that the receiver passes the body unchanged.';
    END IF;
    v_ticket := CASE WHEN jsonb_typeof(payload -> 'ticket') = 'object' THEN payload -> 'ticket' END;
    v_ticket_id := coalesce(halo_itsm._json_bigint(v_ticket -> 'id'), halo_itsm._json_bigint(payload -> 'object_id'));
    IF v_ticket_id IS NULL OR v_ticket_id = 0 THEN
        -- verified but unusable (an event about something else than a ticket): accepted and
        -- recorded, so that Halo does not count it towards disabling the webhook
        INSERT INTO halo_itsm.webhook_deliveries (integration_id, delivery_id, halo_ticket_id, outcome)
        VALUES (integration, v_delivery, NULL, 'ignored')
        ON CONFLICT DO NOTHING;
        RETURN jsonb_build_object('outcome', CASE WHEN FOUND THEN 'ignored' ELSE 'duplicate' END,
                                  'reason', 'the event names no ticket (neither ticket.id nor object_id)',
                                  'delivery_id', v_delivery, 'halo_ticket_id', NULL);
    END IF;

    -- The delivery id first: a second delivery of it (even a concurrent one) changes nothing.
    INSERT INTO halo_itsm.webhook_deliveries (integration_id, delivery_id, halo_ticket_id, outcome)
    VALUES (integration, v_delivery, v_ticket_id, 'received')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'duplicate', 'delivery_id', v_delivery, 'halo_ticket_id', v_ticket_id);
    END IF;

    v_actions := CASE WHEN jsonb_typeof(payload -> 'actions') = 'array' THEN payload -> 'actions' ELSE '[]' END
              || CASE WHEN jsonb_typeof(payload -> 'action') = 'object' THEN jsonb_build_array(payload -> 'action') ELSE '[]' END;
    v_result := halo_itsm._apply_ticket(integration, v_ticket_id, v_ticket, v_actions,
                                        halo_itsm._halo_time(payload ->> 'timestamp'));
    IF v_result ->> 'outcome' <> 'ignored' AND (v_ticket IS NULL OR jsonb_array_length(v_actions) = 0) THEN
        -- event information only, or no action: the API has the rest
        v_sync := halo_itsm._queue_sync(integration, v_ticket_id);
    END IF;
    IF v_sync AND v_result ->> 'outcome' = 'no_change' THEN
        v_result := v_result || jsonb_build_object('outcome', 'sync_queued');
    END IF;
    v_result := v_result || jsonb_build_object('delivery_id', v_delivery, 'halo_ticket_id', v_ticket_id,
                                               'sync_queued', v_sync);
    UPDATE halo_itsm.webhook_deliveries w SET outcome = v_result ->> 'outcome'
     WHERE w.integration_id = _apply_event.integration AND w.delivery_id = v_delivery;
    RETURN v_result;
END
$$;

-- Applies one verified, parsed delivery (called by ingest_webhook in its transaction): an
-- object is one event; an array (Halo's batching) is several, applied in order in this one
-- transaction (all or nothing), each deduplicated by its own id.
CREATE OR REPLACE FUNCTION halo_itsm._apply_webhook(integration integer, payload jsonb)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_events jsonb := '[]';
    e record;
BEGIN
    IF jsonb_typeof(payload) <> 'array' THEN
        RETURN halo_itsm._apply_event(integration, payload);
    END IF;
    FOR e IN SELECT x.v, x.n FROM jsonb_array_elements(payload) WITH ORDINALITY x(v, n) LOOP
        IF jsonb_typeof(e.v) <> 'object' THEN
            RAISE EXCEPTION 'halo_itsm: event % of the batched webhook is not a JSON object', e.n
                USING ERRCODE = 'WH008',
                      HINT = 'A batched delivery is a JSON array of event objects; check what sits between Halo and the receiver.';
        END IF;
        v_events := v_events || jsonb_build_array(halo_itsm._apply_event(integration, e.v));
    END LOOP;
    RETURN jsonb_build_object('outcome', 'batch', 'events', v_events);
END
$$;

-- standard_conforming_strings is pinned here and on ingest_webhook(), the two ways into the
-- apply code (_apply_ticket and the helpers it calls read regular expressions).
-- Applies a ticket sync fetched by the worker or deliver(): ticket = GET /api/Tickets/{id},
-- actions = GET /api/Actions?ticket_id=... ({"ticket_id", "record_count", "actions": [...]}),
-- on the outbox row that still holds the claim (claim_token from _claim()).
CREATE OR REPLACE FUNCTION halo_itsm._apply_sync(outbox_id bigint, ticket jsonb, actions jsonb, claim_token uuid)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on AS $$
DECLARE
    o halo_itsm.outbox;
    v_actions jsonb;
    v_result jsonb;
BEGIN
    SELECT * INTO o FROM halo_itsm.outbox x WHERE x.id = _apply_sync.outbox_id;
    IF NOT FOUND OR o.kind <> 'sync' OR o.halo_ticket_id IS NULL OR o.integration_id IS NULL THEN
        RAISE WARNING 'halo_itsm: outbox item % is not a ticket sync; nothing applied', outbox_id;
        RETURN;
    END IF;
    IF o.state <> 'in_flight' OR o.claimed_by IS DISTINCT FROM pg_backend_pid()
       OR o.claim_token IS DISTINCT FROM _apply_sync.claim_token OR _apply_sync.claim_token IS NULL THEN
        -- not this claim's row any more (recovered, or the outbox ids started again):
        -- the answer may belong to another ticket
        RAISE WARNING 'halo_itsm: outbox item % was no longer claimed by this session; its sync was not applied', outbox_id;
        RETURN;
    END IF;
    v_actions := CASE WHEN jsonb_typeof(actions -> 'actions') = 'array' THEN actions -> 'actions'
                      WHEN jsonb_typeof(actions) = 'array' THEN actions
                      ELSE '[]' END;
    -- An error here is not swallowed: the caller (src/outbound/store.c) rolls back this item's
    -- subtransaction and records the item dead with the error, which the status view shows.
    v_result := halo_itsm._apply_ticket(o.integration_id, o.halo_ticket_id,
                                        CASE WHEN jsonb_typeof(ticket) = 'object' THEN ticket END,
                                        v_actions, now());
    UPDATE halo_itsm.tickets t SET last_synced_at = now()
     WHERE t.integration_id = o.integration_id AND t.halo_ticket_id = o.halo_ticket_id;
END
$$;

-- ---------------------------------------------------------------------------
-- The webhook interface.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION halo_itsm.ingest_webhook(webhook_key text, headers jsonb, body bytea)
RETURNS jsonb LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS 'MODULE_PATHNAME', 'halo_itsm_ingest_webhook';
COMMENT ON FUNCTION halo_itsm.ingest_webhook(text, jsonb, bytea) IS
    'Verifies and applies one Halo webhook delivery (the receiver passes the URL''s key, all request headers as a JSON object and the raw body); returns what it did. Rejections raise SQLSTATE WH001..WH011.';

CREATE OR REPLACE FUNCTION halo_itsm.webhook_signature(secret text, headers jsonb, body bytea)
RETURNS text LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'halo_itsm_webhook_signature';
COMMENT ON FUNCTION halo_itsm.webhook_signature(text, jsonb, bytea) IS
    'The x-signature Halo must send for a request with these headers (content-type, host, x-halo-date; content-length defaults to the body''s length) and body.';

-- The URL and secret to paste into Halo; the secret only for roles that may read it. The URL is
-- webhook_base_url's when set, else the webhook listener's own (its first address, when that is
-- one Halo could be told: not '*').
CREATE OR REPLACE FUNCTION halo_itsm.webhook_settings(integration integer)
RETURNS TABLE (url text, secret text) LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    i halo_itsm.integrations;
    v_base text := coalesce(current_setting('halo_itsm.webhook_base_url', true), '');
    v_listen text := btrim(split_part(coalesce(current_setting('halo_itsm.listen_addresses', true), ''), ',', 1));
BEGIN
    -- (not _integration(): this runs with the caller's privileges, who needs SELECT on integrations)
    SELECT * INTO i FROM halo_itsm.integrations x WHERE x.id = integration;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'halo_itsm: there is no integration with id %', coalesce(integration::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, name FROM halo_itsm.integrations lists them; halo_itsm.connect() creates one.';
    END IF;
    IF v_base = '' AND v_listen NOT IN ('', '*', '0.0.0.0', '::') THEN
        v_base := CASE WHEN coalesce(current_setting('halo_itsm.listen_tls_cert_file', true), '') = ''
                       THEN 'http://' ELSE 'https://' END
                  || CASE WHEN strpos(v_listen, ':') > 0 THEN '[' || v_listen || ']' ELSE v_listen END
                  || ':' || coalesce(current_setting('halo_itsm.listen_port', true), '8443') || '/halo/';
    END IF;
    IF v_base = '' THEN
        RAISE NOTICE 'halo_itsm: halo_itsm.webhook_base_url is not set, so the webhook URL is unknown'
            USING HINT = 'Set halo_itsm.webhook_base_url to the public URL prefix under which Halo reaches the webhook listener (or your receiver), e.g. ALTER SYSTEM SET halo_itsm.webhook_base_url = ''https://soc.example.com/halo/''; SELECT pg_reload_conf();';
        url := NULL;
    ELSE
        url := v_base || CASE WHEN right(v_base, 1) = '/' THEN '' ELSE '/' END || i.webhook_key;
    END IF;
    secret := NULL;
    IF has_column_privilege('halo_itsm.integration_secrets', 'webhook_secret', 'SELECT') THEN
        SELECT s.webhook_secret INTO secret FROM halo_itsm.integration_secrets s WHERE s.integration_id = i.id;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION halo_itsm.webhook_settings(integer) IS
    'What to paste into Halo (Configuration > Integrations > Webhooks): the URL, and the secret (NULL for roles that may not read secrets).';

-- Replaces the webhook secret; the old one stays valid for the grace period. Returns the new secret.
CREATE OR REPLACE FUNCTION halo_itsm.rotate_webhook_secret(integration integer, grace interval DEFAULT '24 hours')
RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_new text := halo_itsm._random_secret(32);
BEGIN PERFORM halo_itsm._refuse_on_standby('rotate_webhook_secret()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    IF grace IS NULL OR grace < interval '0' THEN
        RAISE EXCEPTION 'halo_itsm: the grace period must be zero or positive'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass how long Halo may still sign with the old secret, e.g. ''24 hours'', or ''0'' to drop it at once.';
    END IF;
    UPDATE halo_itsm.integration_secrets s
       SET previous_webhook_secret = s.webhook_secret,
           previous_secret_valid_until = clock_timestamp() + grace,
           webhook_secret = v_new
     WHERE s.integration_id = integration;
    RETURN v_new;
END
$$;
COMMENT ON FUNCTION halo_itsm.rotate_webhook_secret(integer, interval) IS
    'Generates a new webhook secret and returns it; deliveries signed with the previous one are accepted for the grace period.';

-- ---------------------------------------------------------------------------
-- Catching up: reconcile() queues syncs of open cases' tickets.
-- ---------------------------------------------------------------------------

-- Queues syncs for open cases with tickets, least recently synced first, within the budget.
CREATE OR REPLACE PROCEDURE halo_itsm.reconcile(max_tickets integer DEFAULT NULL, INOUT queued integer DEFAULT NULL)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_budget integer := (halo_itsm._request_budget()).budget;  -- the C settings: one source
    v_window interval := (halo_itsm._request_budget()).budget_window;
    v_room integer;
    n integer;
    i record;
BEGIN PERFORM halo_itsm._refuse_on_standby('reconcile()');  -- 25006 on a hot standby
    IF max_tickets < 0 THEN
        RAISE EXCEPTION 'halo_itsm: max_tickets must be zero or positive, not %', max_tickets
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL to let the request budget decide.';
    END IF;
    queued := 0;
    FOR i IN SELECT x.id FROM halo_itsm.integrations x WHERE x.enabled AND x.configured_at IS NOT NULL ORDER BY x.id LOOP
        v_room := NULL;
        IF v_budget > 0 THEN
            -- a sync costs 2 requests; syncs use at most half the budget per window
            SELECT greatest(v_budget / 4 - count(*), 0) INTO v_room
              FROM halo_itsm.outbox o
             WHERE o.kind = 'sync' AND o.integration_id = i.id AND o.created_at > now() - v_window;
        END IF;
        IF max_tickets IS NOT NULL THEN
            v_room := least(coalesce(v_room, max_tickets), max_tickets);
        END IF;
        WITH due AS (
            SELECT t.halo_ticket_id
              FROM halo_itsm.tickets t
              JOIN halo_itsm.cases c ON c.id = t.case_id
             WHERE t.integration_id = i.id AND c.status = 'open'
               AND NOT EXISTS (SELECT 1 FROM halo_itsm.outbox o
                                WHERE o.kind = 'sync' AND o.integration_id = t.integration_id
                                  AND o.halo_ticket_id = t.halo_ticket_id AND o.state IN ('pending', 'in_flight'))
             ORDER BY t.last_synced_at NULLS FIRST, t.id
             LIMIT v_room
        ), ins AS (
            INSERT INTO halo_itsm.outbox (kind, integration_id, halo_ticket_id)
            SELECT 'sync', i.id, due.halo_ticket_id FROM due
            ON CONFLICT DO NOTHING     -- outbox_one_sync_pending, as in _queue_sync
            RETURNING 1
        )
        SELECT count(*) INTO n FROM ins;
        queued := queued + n;
    END LOOP;
    IF queued > 0 THEN
        PERFORM halo_itsm._wake_worker_at_commit();
    END IF;
END
$$;
COMMENT ON PROCEDURE halo_itsm.reconcile(integer, integer) IS
    'Queues a sync from Halo for open cases with tickets, least recently synced first, within the request budget (a quarter of halo_itsm.request_budget per window, or max_tickets); catches up on lost webhooks.';

-- ---------------------------------------------------------------------------
-- Timeline helpers.
-- ---------------------------------------------------------------------------

-- The timeline of a case (with its detections) or of a detection, by sid, oldest first.
CREATE OR REPLACE FUNCTION halo_itsm.timeline_of(sid text)
RETURNS TABLE (occurred_at timestamptz, subject text, source text, kind text, author text, body text,
               internal boolean, halo_ticket_id bigint, halo_action_id bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.occurred_at, coalesce(c.sid, d.sid), t.source, t.kind, t.author, t.body, t.internal,
           t.halo_ticket_id, t.halo_action_id
      FROM halo_itsm.timeline t
      LEFT JOIN halo_itsm.cases c ON c.id = t.case_id
      LEFT JOIN halo_itsm.detections d ON d.id = t.detection_id
     WHERE c.sid = timeline_of.sid OR d.sid = timeline_of.sid
        OR d.case_id = (SELECT x.id FROM halo_itsm.cases x WHERE x.sid = timeline_of.sid)
     ORDER BY t.occurred_at, t.id
$$;
COMMENT ON FUNCTION halo_itsm.timeline_of(text) IS
    'The timeline of the case (including its detections) or detection with this sid, oldest first; runs with the caller''s privileges on halo_itsm.timeline.';

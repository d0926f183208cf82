/*
 * 70_attach.sql: attaching tables as sources of case or detection tickets (attach, detach,
 * backfill), what their inserts and changes queue (the C trigger _enqueue calls
 * _attached_insert and _source_changed), the write-back of a close from Halo, and the
 * local changes sent to Halo: notes (add_note), closes and coalesced updates.
 * docs/attach.md explains the whole.
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- Mapping a row of an attached table.
-- ---------------------------------------------------------------------------

-- The severity for a value of the attached severity column: the map's entry (exact, else
-- ignoring case and surrounding blanks), else the value itself when it names a severity;
-- NULL when the value is unknown (the caller uses the default and says so).
CREATE OR REPLACE FUNCTION halo_itsm._map_severity(a halo_itsm.attachments, value text)
RETURNS halo_itsm.severity LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT s.e::halo_itsm.severity FROM jsonb_each_text(a.severity_map) m(k, v),
                LATERAL (SELECT lower(btrim(m.v)) AS e) s
          WHERE m.k OPERATOR(pg_catalog.=) value
             OR lower(btrim(m.k)) OPERATOR(pg_catalog.=) lower(btrim(value))
          ORDER BY m.k OPERATOR(pg_catalog.=) value DESC LIMIT 1),
        (SELECT e::halo_itsm.severity FROM unnest(enum_range(NULL::halo_itsm.severity)::text[]) e
          WHERE e OPERATOR(pg_catalog.=) lower(btrim(value))))
$$;

-- The integration named by an attached row's integration column: NULL (and why, in
-- warning) when it is not the id of an integration.
CREATE OR REPLACE FUNCTION halo_itsm._map_integration(value text, OUT integration integer, OUT warning text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value IS NULL THEN
        RETURN;
    END IF;
    IF value ~ '^\s*[0-9]{1,9}\s*$' THEN
        SELECT i.id INTO integration FROM halo_itsm.integrations i WHERE i.id = btrim(value)::integer;
    END IF;
    IF integration IS NULL THEN
        warning := format('halo_itsm: integration %s is not the id of an integration; the single enabled one is used',
                          quote_literal(left(value, 100)));
    END IF;
END
$$;

-- Notes why a row of an attached table got no ticket (last_error of the attachment).
-- (which names the row by what: 'sid' or its key column).
CREATE OR REPLACE FUNCTION halo_itsm._attachment_error(a halo_itsm.attachments, what text, value text, error text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_msg text := format('halo_itsm: the row of %s with %s %s: %s', a.source, what,
                         coalesce(quote_literal(left(value, 100)), 'NULL'),
                         left(regexp_replace(error, '^halo_itsm: ', ''), 1000));
BEGIN
    UPDATE halo_itsm.attachments x SET last_error = v_msg, last_error_at = now() WHERE x.id = a.id;
    RAISE WARNING '%', v_msg
        USING HINT = 'The row was written. SELECT * FROM halo_itsm.attachment_status shows the last such error.';
END
$$;

-- A row inserted into an attached table (called by the trigger _enqueue, as the extension
-- owner): rows already closed get nothing; others get a case (or detection) linked to
-- them, whose ticket is queued. Nothing here fails the platform's insert: an unknown
-- severity is sent as the default (the outbox item's warning says which value), an
-- unusable row (no sid, a sid in use, too long a title) gets no ticket and a warning.
CREATE OR REPLACE FUNCTION halo_itsm._attached_insert(attachment integer, key text, sid text, title text,
                                                      description text, severity text, status text,
                                                      integration text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a halo_itsm.attachments;
    v_sev halo_itsm.severity;
    v_warning text;
    v_int record;
    v_id bigint;
BEGIN
    SELECT * INTO a FROM halo_itsm.attachments x WHERE x.id = attachment;
    IF NOT FOUND OR (status IS NOT NULL AND status = ANY (a.closed_values)) THEN
        RETURN;
    END IF;
    v_sev := halo_itsm._map_severity(a, severity);
    IF v_sev IS NULL THEN
        v_sev := a.default_severity;
        v_warning := format('halo_itsm: severity %s is not in the severity map of %s; sent as %s',
                            coalesce(quote_literal(left(severity, 100)), 'NULL'), a.source, v_sev);
    END IF;
    v_int := halo_itsm._map_integration(integration);
    v_warning := concat_ws('; ', v_warning, v_int.warning);
    BEGIN
        IF a.kind = 'case' THEN
            INSERT INTO halo_itsm.cases (sid, title, description, severity, integration_id, attachment_id, source_key)
            VALUES (sid, title, description, v_sev, coalesce(a.integration_id, v_int.integration), a.id, key)
            RETURNING id INTO v_id;
            IF v_warning <> '' THEN
                UPDATE halo_itsm.outbox o SET warning = v_warning WHERE o.kind = 'case' AND o.case_id = v_id;
            END IF;
        ELSE
            INSERT INTO halo_itsm.detections (sid, title, description, severity, integration_id, attachment_id, source_key)
            VALUES (sid, title, description, v_sev, coalesce(a.integration_id, v_int.integration), a.id, key)
            RETURNING id INTO v_id;
            INSERT INTO halo_itsm.outbox (kind, detection_id, integration_id, warning)
            VALUES ('detection', v_id, coalesce(a.integration_id, v_int.integration), nullif(v_warning, ''))
            ON CONFLICT (detection_id) WHERE kind = 'detection' DO NOTHING;
            PERFORM halo_itsm._wake_worker_at_commit();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM halo_itsm._attachment_error(a, 'sid', sid, 'no ticket: ' || SQLERRM);
    END;
END
$$;

-- ---------------------------------------------------------------------------
-- Changes of attached rows: closes, reopenings, updates.
-- ---------------------------------------------------------------------------

-- Queues the update of a ticket's title and priority: one per case or detection while
-- one is pending (a burst is one request, built when claimed); one changed while in flight
-- is sent again after it (again).
CREATE OR REPLACE FUNCTION halo_itsm._queue_update(case_id bigint, detection_id bigint, integration integer,
                                                   halo_ticket_id bigint)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO halo_itsm.outbox AS o (kind, case_id, detection_id, integration_id, halo_ticket_id)
    VALUES ('update', _queue_update.case_id, _queue_update.detection_id, integration, _queue_update.halo_ticket_id)
    ON CONFLICT (case_id, detection_id) WHERE kind > 'sync' AND timeline_id IS NULL AND state <> 'done' AND state <> 'dead'
    DO UPDATE SET again = o.again OR o.state = 'in_flight';
    PERFORM halo_itsm._wake_worker_at_commit();
END
$$;

-- A case or detection changed (its own trigger, for every attached table): a local close
-- closes the Halo ticket (not when Halo closed it: halo_closed), a reopening is noted on
-- the timeline only, a new title or severity updates the ticket when the attachment says
-- so and the ticket exists or may be being created.
CREATE OR REPLACE FUNCTION halo_itsm._case_changed(kind text, id bigint, title_changed boolean,
                                                   severity_changed boolean, old_status text, new_status text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    t halo_itsm.tickets;
    a halo_itsm.attachments;
    v_case bigint := CASE WHEN kind = 'case' THEN id END;
    v_detection bigint := CASE WHEN kind = 'detection' THEN id END;
    cr record;
    v_creating boolean;
    v_sent boolean;
    v_timeline bigint;
BEGIN
    IF _case_changed.kind = 'case' THEN
        SELECT c.attachment_id, c.integration_id INTO r FROM halo_itsm.cases c WHERE c.id = v_case;
        SELECT * INTO t FROM halo_itsm.tickets x WHERE x.case_id = v_case;
        SELECT o.state, o.maybe_sent INTO cr FROM halo_itsm.outbox o WHERE o.kind = 'case' AND o.case_id = v_case;
    ELSE
        SELECT d.attachment_id, d.integration_id INTO r FROM halo_itsm.detections d WHERE d.id = v_detection;
        SELECT * INTO t FROM halo_itsm.tickets x WHERE x.detection_id = v_detection;
        SELECT o.state, o.maybe_sent INTO cr FROM halo_itsm.outbox o
         WHERE o.kind = 'detection' AND o.detection_id = v_detection;
    END IF;
    -- the create is queued (a close waits for it), or may have reached Halo (an update then
    -- follows it; one not sent yet is built from the row as it is when claimed)
    v_creating := cr.state IN ('pending', 'in_flight');
    v_sent := cr.state = 'in_flight' OR cr.maybe_sent;
    SELECT * INTO a FROM halo_itsm.attachments x
     WHERE x.id = coalesce(r.attachment_id, CASE WHEN _case_changed.kind = 'case' THEN 1 ELSE 2 END);

    -- a detection of halo_itsm.detections gets its ticket when closed: nothing to close then
    IF (t.id IS NULL AND NOT coalesce(v_creating, false)) OR (_case_changed.kind = 'detection' AND r.attachment_id IS NULL) THEN
        NULL;
    ELSIF new_status = 'closed' AND old_status IS DISTINCT FROM 'closed' AND NOT coalesce(t.halo_closed, false) THEN
        -- a local close (not the write-back of Halo's: halo_closed), of a ticket not known closed
        INSERT INTO halo_itsm.timeline (case_id, detection_id, occurred_at, source, kind, author, body,
                                        internal, integration_id, halo_ticket_id)
        VALUES (v_case, v_detection, now(), 'local', 'closed', session_user, 'Closed locally.', false,
                t.integration_id, t.halo_ticket_id)
        RETURNING halo_itsm.timeline.id INTO v_timeline;
        INSERT INTO halo_itsm.outbox (kind, case_id, detection_id, integration_id, halo_ticket_id, timeline_id)
        VALUES ('close', v_case, v_detection, coalesce(t.integration_id, r.integration_id), t.halo_ticket_id, v_timeline);
        PERFORM halo_itsm._wake_worker_at_commit();
    ELSIF old_status = 'closed' AND new_status IS DISTINCT FROM 'closed' THEN
        INSERT INTO halo_itsm.timeline (case_id, detection_id, occurred_at, source, kind, author, body,
                                        internal, integration_id, halo_ticket_id)
        VALUES (v_case, v_detection, now(), 'local', 'reopened', session_user,
                'Reopened locally; the Halo ticket is left as it is.', false, t.integration_id, t.halo_ticket_id);
    END IF;

    IF ((title_changed AND a.sync_title) OR (severity_changed AND a.sync_severity))
       AND (t.id IS NOT NULL OR coalesce(v_sent, false)) THEN
        PERFORM halo_itsm._queue_update(v_case, v_detection, coalesce(t.integration_id, r.integration_id),
                                        t.halo_ticket_id);
    END IF;
END
$$;

-- A row of an attached table changed (called by the trigger _enqueue, as the extension
-- owner; texts are the columns' values as text). For halo_itsm.cases and detections the
-- key is the id; for a table of the platform's, its case or detection follows the row
-- (title, mapped severity, status), and its own trigger then does the rest.
CREATE OR REPLACE FUNCTION halo_itsm._source_changed(attachment integer, key text, old_title text, new_title text,
                                                     old_severity text, new_severity text, old_status text,
                                                     new_status text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a halo_itsm.attachments;
    v_closed boolean;
    v_sev halo_itsm.severity;
BEGIN
    SELECT * INTO a FROM halo_itsm.attachments x WHERE x.id = attachment;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.builtin THEN
        PERFORM halo_itsm._case_changed(a.kind, key::bigint, old_title IS DISTINCT FROM new_title,
                                        old_severity IS DISTINCT FROM new_severity, old_status, new_status);
        RETURN;
    END IF;
    v_closed := new_status = ANY (a.closed_values);
    v_sev := coalesce(halo_itsm._map_severity(a, new_severity), a.default_severity);
    BEGIN
        IF a.kind = 'case' THEN
            UPDATE halo_itsm.cases c
               SET title = coalesce(new_title, c.title), severity = v_sev,
                   status = CASE WHEN a.status_column IS NULL OR old_status IS NOT DISTINCT FROM new_status THEN c.status
                                 WHEN v_closed THEN 'closed' ELSE 'open' END,
                   closed_at = CASE WHEN v_closed AND c.status = 'open' THEN now()
                                    WHEN v_closed THEN c.closed_at END
             WHERE c.attachment_id = a.id AND c.source_key = key;
        ELSE
            UPDATE halo_itsm.detections d
               SET title = coalesce(new_title, d.title), severity = v_sev,
                   status = CASE WHEN a.status_column IS NULL OR old_status IS NOT DISTINCT FROM new_status THEN d.status
                                 WHEN v_closed THEN 'closed' ELSE 'open' END,
                   closed_at = CASE WHEN v_closed AND d.status = 'open' THEN now()
                                    WHEN v_closed THEN d.closed_at END
             WHERE d.attachment_id = a.id AND d.source_key = key;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM halo_itsm._attachment_error(a, a.key_column, key, 'the change was not sent to Halo: ' || SQLERRM);
    END;
END
$$;

-- Writes a close from Halo into the attached row of a case or detection (called by
-- _apply_ticket, in the transaction of its timeline entry): the status column set to the
-- closed value and the closed-at column to when, or the close function called with the
-- table and the key. Nothing for halo_itsm.cases and detections themselves.
CREATE OR REPLACE FUNCTION halo_itsm._write_back(kind text, id bigint, closed_at timestamptz)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on AS $$
DECLARE
    a halo_itsm.attachments;
    v_key text;
    v_keytype text;
    v_set text;
BEGIN
    IF kind = 'case' THEN
        SELECT x.* INTO a FROM halo_itsm.cases c JOIN halo_itsm.attachments x ON x.id = c.attachment_id
         WHERE c.id = _write_back.id;
        SELECT c.source_key INTO v_key FROM halo_itsm.cases c WHERE c.id = _write_back.id;
    ELSE
        SELECT x.* INTO a FROM halo_itsm.detections d JOIN halo_itsm.attachments x ON x.id = d.attachment_id
         WHERE d.id = _write_back.id;
        SELECT d.source_key INTO v_key FROM halo_itsm.detections d WHERE d.id = _write_back.id;
    END IF;
    IF a.id IS NULL OR a.builtin THEN
        RETURN;
    END IF;
    IF a.close_function IS NOT NULL THEN
        EXECUTE format('SELECT %s($1, $2)', a.close_function) USING a.source, v_key;
        RETURN;
    END IF;
    IF a.status_column IS NULL OR a.closed_value IS NULL THEN
        RETURN;
    END IF;
    SELECT format_type(t.atttypid, t.atttypmod) INTO v_keytype FROM pg_attribute t
     WHERE t.attrelid = a.source AND t.attname = a.key_column;
    v_set := format('%I = $1::%s', a.status_column,
                    (SELECT format_type(t.atttypid, t.atttypmod) FROM pg_attribute t
                      WHERE t.attrelid = a.source AND t.attname = a.status_column));
    IF a.closed_at_column IS NOT NULL THEN
        v_set := v_set || format(', %I = $3', a.closed_at_column);
    END IF;
    EXECUTE format('UPDATE %s SET %s WHERE %I = $2::%s', a.source, v_set, a.key_column, v_keytype)
    USING a.closed_value, v_key, closed_at;
END
$$;

-- ---------------------------------------------------------------------------
-- Local notes and closes, as Halo actions; updates as ticket posts.
-- ---------------------------------------------------------------------------

-- What the worker sends for a note, close or update (claimed by _claim), or why it cannot:
-- an update is the ticket object with its id (POST /api/Tickets); a note or close is
-- {"action": the action object (POST /api/Actions), "known": the ids of the actions this
-- extension has sent on the ticket} (the lookup after an ambiguous failure takes a new
-- action with the same note, never a known one).
CREATE OR REPLACE FUNCTION halo_itsm._followup_payload(i halo_itsm.integrations, kind text, case_id bigint,
                                                       detection_id bigint, halo_ticket_id bigint,
                                                       timeline_id bigint, OUT payload text, OUT error text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    a halo_itsm.attachments;
    e halo_itsm.timeline;
    v_known jsonb;
BEGIN
    IF kind = 'update' THEN
        SELECT x.sid, x.title, x.severity, x.attachment_id INTO r FROM halo_itsm.cases x WHERE x.id = case_id
        UNION ALL
        SELECT x.sid, x.title, x.severity, x.attachment_id FROM halo_itsm.detections x WHERE x.id = detection_id;
        SELECT * INTO a FROM halo_itsm.attachments x
         WHERE x.id = coalesce(r.attachment_id, CASE WHEN case_id IS NOT NULL THEN 1 ELSE 2 END);
        payload := jsonb_strip_nulls(jsonb_build_object(
            'id', halo_ticket_id,
            'summary', CASE WHEN a.sync_title THEN halo_itsm.render_template(
                           CASE WHEN case_id IS NOT NULL THEN i.case_title_template ELSE i.detection_title_template END,
                           r.sid, r.title, r.severity::text) END,
            'priority_id', CASE WHEN a.sync_severity THEN halo_itsm.priority_id(i, r.severity) END))::text;
        RETURN;
    END IF;
    SELECT * INTO e FROM halo_itsm.timeline x WHERE x.id = timeline_id;
    IF NOT FOUND THEN
        error := format('halo_itsm: the timeline entry %s of this %s no longer exists; nothing was sent', timeline_id, kind);
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(x.halo_action_id ORDER BY x.halo_action_id), '[]') INTO v_known
      FROM halo_itsm.timeline x
     WHERE x.integration_id = i.id AND x.halo_ticket_id = _followup_payload.halo_ticket_id
       AND x.source = 'local' AND x.halo_action_id IS NOT NULL;
    payload := jsonb_build_object(
        'action', jsonb_strip_nulls(jsonb_build_object(
            'ticket_id', halo_ticket_id,
            'note', e.body,
            'outcome', CASE WHEN kind = 'close' THEN 'Closed' ELSE 'Note' END,
            'hiddenfromuser', e.internal,
            'new_status', CASE WHEN kind = 'close' THEN i.closed_status_ids[1] END)),
        'known', v_known)::text;
END
$$;

-- Puts a note on the timeline of a case or detection of an attached table (source =
-- 'local') and queues it for Halo (POST /api/Actions, internal or public): sent after the
-- ticket exists, once. Returns the timeline entry's id.
CREATE OR REPLACE FUNCTION halo_itsm.add_note(source regclass, sid text, body text, internal boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on AS $$
DECLARE
    a halo_itsm.attachments;
    r record;
    t halo_itsm.tickets;
    v_id bigint;
BEGIN
    PERFORM halo_itsm._refuse_on_standby('add_note');
    SELECT * INTO a FROM halo_itsm.attachments x WHERE x.source = add_note.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'halo_itsm: % is not attached', coalesce(source::text, 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'SELECT source FROM halo_itsm.attachments lists the attached tables.';
    END IF;
    IF body IS NULL OR btrim(body, E' \t\r\n') = '' OR octet_length(body) > 1048576 THEN
        RAISE EXCEPTION 'halo_itsm: a note needs a body of 1 to 1048576 bytes'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the note''s text as body.';
    END IF;
    IF a.kind = 'case' THEN
        SELECT c.id, c.integration_id INTO r FROM halo_itsm.cases c
         WHERE c.sid = add_note.sid AND c.attachment_id IS NOT DISTINCT FROM CASE WHEN a.builtin THEN NULL ELSE a.id END;
        SELECT * INTO t FROM halo_itsm.tickets x WHERE x.case_id = r.id;
    ELSE
        SELECT d.id, d.integration_id INTO r FROM halo_itsm.detections d
         WHERE d.sid = add_note.sid AND d.attachment_id IS NOT DISTINCT FROM CASE WHEN a.builtin THEN NULL ELSE a.id END;
        SELECT * INTO t FROM halo_itsm.tickets x WHERE x.detection_id = r.id;
    END IF;
    IF r.id IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: % has no % with sid %', source, a.kind, coalesce(quote_literal(left(sid, 300)), 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'Rows inserted closed, or before attach() without backfill(), have no ticket and take no notes.';
    END IF;
    INSERT INTO halo_itsm.timeline (case_id, detection_id, occurred_at, source, kind, author, body, internal,
                                    integration_id, halo_ticket_id)
    VALUES (CASE WHEN a.kind = 'case' THEN r.id END, CASE WHEN a.kind = 'detection' THEN r.id END, now(),
            'local', 'note', session_user, body, coalesce(internal, true), t.integration_id, t.halo_ticket_id)
    RETURNING id INTO v_id;
    INSERT INTO halo_itsm.outbox (kind, case_id, detection_id, integration_id, halo_ticket_id, timeline_id)
    VALUES ('note', CASE WHEN a.kind = 'case' THEN r.id END, CASE WHEN a.kind = 'detection' THEN r.id END,
            coalesce(t.integration_id, r.integration_id), t.halo_ticket_id, v_id);
    PERFORM halo_itsm._wake_worker_at_commit();
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION halo_itsm.add_note(regclass, text, text, boolean) IS
    'Puts a local note on the timeline of a case or detection of an attached table and sends it to its Halo ticket.';

-- ---------------------------------------------------------------------------
-- attach, detach, backfill.
-- ---------------------------------------------------------------------------

-- The type of a column of an attached table, or an error naming the parameter.
CREATE OR REPLACE FUNCTION halo_itsm._attach_column(source regclass, col name, param text, required boolean)
RETURNS regtype LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_type regtype;
BEGIN
    IF col IS NULL THEN
        IF required THEN
            RAISE EXCEPTION 'halo_itsm: % must name a column of %', param, source
                USING ERRCODE = 'null_value_not_allowed', HINT = format('Pass %s => ''column_name''.', param);
        END IF;
        RETURN NULL;
    END IF;
    SELECT t.atttypid INTO v_type FROM pg_attribute t
     WHERE t.attrelid = source AND t.attname = col AND t.attnum > 0 AND NOT t.attisdropped;
    IF v_type IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: % has no column % (%)', source, quote_ident(col), param
            USING ERRCODE = 'undefined_column', HINT = format('\d %s lists its columns.', source);
    END IF;
    RETURN v_type;
END
$$;

-- Checks the arguments of attach() (see there); raises what is wrong.
CREATE OR REPLACE FUNCTION halo_itsm._attach_check(source regclass, kind text, severity_map jsonb,
                                                   status_column name, closed_values text[], closed_value text,
                                                   closed_at_column name, integration integer)
RETURNS void LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bad text;
BEGIN
    IF kind IS NULL OR kind NOT IN ('case', 'detection') THEN
        RAISE EXCEPTION 'halo_itsm: kind must be ''case'' or ''detection'', not %', coalesce(quote_literal(left(kind, 100)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Attach a table of cases with kind => ''case''.';
    END IF;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'halo_itsm: % is not a table', source
            USING ERRCODE = 'wrong_object_type', HINT = 'Attach a table or a partitioned table.';
    END IF;
    IF (SELECT c.relnamespace FROM pg_class c WHERE c.oid = source) = 'halo_itsm'::regnamespace THEN
        RAISE EXCEPTION 'halo_itsm: % belongs to halo_itsm', source
            USING ERRCODE = 'invalid_parameter_value', HINT = 'halo_itsm.cases and halo_itsm.detections are attached already.';
    END IF;
    IF severity_map IS NOT NULL AND jsonb_typeof(severity_map) <> 'object' THEN
        RAISE EXCEPTION 'halo_itsm: severity_map must be a JSON object, not %', jsonb_typeof(severity_map)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"Sev1": "critical", "Sev2": "high"}''.';
    END IF;
    SELECT format('%s: %s', m.k, left(m.v::text, 100)) INTO v_bad FROM jsonb_each(coalesce(severity_map, '{}')) m(k, v)
     WHERE jsonb_typeof(m.v) <> 'string'
        OR lower(btrim(m.v #>> '{}')) <> ALL (enum_range(NULL::halo_itsm.severity)::text[])
     LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'halo_itsm: the severity map maps to something that is not a severity (%)', v_bad
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Map every value to one of critical, high, medium, low, info.';
    END IF;
    IF status_column IS NULL AND (closed_values IS NOT NULL OR closed_value IS NOT NULL OR closed_at_column IS NOT NULL) THEN
        RAISE EXCEPTION 'halo_itsm: closed_values, closed_value and closed_at_column need status_column'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Name the status column with status_column => ''...''.';
    END IF;
    IF status_column IS NOT NULL AND (closed_values IS NULL OR cardinality(closed_values) = 0 OR array_position(closed_values, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'halo_itsm: status_column needs closed_values, the status values that mean closed'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example closed_values => ''{resolved,closed}''.';
    END IF;
    IF closed_value IS NOT NULL AND closed_value <> ALL (closed_values) THEN
        RAISE EXCEPTION 'halo_itsm: closed_value % is not one of closed_values', quote_literal(left(closed_value, 100))
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A close from Halo writes closed_value; it must mean closed.';
    END IF;
    IF integration IS NOT NULL AND NOT EXISTS (SELECT 1 FROM halo_itsm.integrations i WHERE i.id = integration) THEN
        RAISE EXCEPTION 'halo_itsm: there is no integration %', integration
            USING ERRCODE = 'no_data_found', HINT = 'SELECT id, name FROM halo_itsm.integrations lists them.';
    END IF;
END
$$;

-- The single-column primary key of a table, or an error.
CREATE OR REPLACE FUNCTION halo_itsm._primary_key(source regclass)
RETURNS name LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cols name[];
BEGIN
    SELECT array_agg(a.attname) INTO v_cols FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = source AND i.indisprimary;
    IF cardinality(v_cols) IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'halo_itsm: % has no single-column primary key', source
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the column that identifies a row with key_column => ''...''.';
    END IF;
    RETURN v_cols[1];
END
$$;

-- Attaches a table of the platform's as a source of case (kind 'case') or detection tickets:
-- its rows get tickets as they are inserted, with the mapped columns (docs/attach.md).
-- Returns the attachment's id.
CREATE OR REPLACE FUNCTION halo_itsm.attach(source regclass, kind text, sid_column name, title_column name,
                                            severity_column name, description_column name DEFAULT NULL,
                                            severity_map jsonb DEFAULT NULL,
                                            default_severity halo_itsm.severity DEFAULT 'medium',
                                            status_column name DEFAULT NULL, closed_values text[] DEFAULT NULL,
                                            closed_value text DEFAULT NULL, closed_at_column name DEFAULT NULL,
                                            integration integer DEFAULT NULL, key_column name DEFAULT NULL,
                                            integration_column name DEFAULT NULL,
                                            close_function regproc DEFAULT NULL,
                                            sync_title boolean DEFAULT false, sync_severity boolean DEFAULT true)
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id integer;
    v_cols text;
BEGIN
    PERFORM halo_itsm._refuse_on_standby('attach');
    IF source IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: source must name a table'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass source => ''schema.table''.';
    END IF;
    PERFORM halo_itsm._attach_check(source, kind, severity_map, status_column, closed_values, closed_value,
                                    closed_at_column, integration);
    IF EXISTS (SELECT 1 FROM halo_itsm.attachments a WHERE a.source = attach.source) THEN
        RAISE EXCEPTION 'halo_itsm: % is attached already', source
            USING ERRCODE = 'duplicate_object', HINT = format('SELECT halo_itsm.detach(%L) first to change the mapping.', source);
    END IF;
    key_column := coalesce(key_column, halo_itsm._primary_key(source));
    PERFORM halo_itsm._attach_column(source, key_column, 'key_column', true),
            halo_itsm._attach_column(source, sid_column, 'sid_column', true),
            halo_itsm._attach_column(source, title_column, 'title_column', true),
            halo_itsm._attach_column(source, severity_column, 'severity_column', true),
            halo_itsm._attach_column(source, description_column, 'description_column', false),
            halo_itsm._attach_column(source, status_column, 'status_column', false),
            halo_itsm._attach_column(source, integration_column, 'integration_column', false);
    IF halo_itsm._attach_column(source, closed_at_column, 'closed_at_column', false)
       NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'halo_itsm: closed_at_column % is not a timestamp or date', quote_ident(closed_at_column)
            USING ERRCODE = 'datatype_mismatch', HINT = 'Name a column of type timestamptz, timestamp or date.';
    END IF;
    INSERT INTO halo_itsm.attachments (source, kind, key_column, sid_column, title_column, severity_column,
                                       description_column, severity_map, default_severity, status_column,
                                       closed_values, closed_value, closed_at_column, close_function,
                                       integration_id, integration_column, sync_title, sync_severity)
    VALUES (source, kind, key_column, sid_column, title_column, severity_column, description_column,
            coalesce(severity_map, '{}'), coalesce(default_severity, 'medium'), status_column, closed_values,
            closed_value, closed_at_column, close_function, integration, integration_column,
            coalesce(sync_title, false), coalesce(sync_severity, true))
    RETURNING id INTO v_id;
    SELECT string_agg(quote_ident(c), ', ') INTO v_cols
      FROM (SELECT DISTINCT c FROM unnest(ARRAY[title_column, severity_column, status_column]) c WHERE c IS NOT NULL) x;
    EXECUTE format('CREATE TRIGGER halo_itsm_enqueue AFTER INSERT OR UPDATE OF %s ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue(%L)', v_cols, source, v_id);
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION halo_itsm.attach(regclass, text, name, name, name, name, jsonb, halo_itsm.severity, name, text[],
                                     text, name, integer, name, name, regproc, boolean, boolean) IS
    'Attaches a table as a source of case or detection tickets, with its column mapping, severity map and write-back.';

-- Detaches a table: its trigger is dropped, its cases and detections stay (with their
-- tickets and timelines) but are no longer linked to its rows; what is queued for them is
-- still sent. Returns nothing; a notice says how many queued items remain.
CREATE OR REPLACE FUNCTION halo_itsm.detach(source regclass)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a halo_itsm.attachments;
    v_queued bigint;
BEGIN
    PERFORM halo_itsm._refuse_on_standby('detach');
    SELECT * INTO a FROM halo_itsm.attachments x WHERE x.source = detach.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'halo_itsm: % is not attached', coalesce(source::text, 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'SELECT source FROM halo_itsm.attachments lists the attached tables.';
    END IF;
    IF a.builtin THEN
        RAISE EXCEPTION 'halo_itsm: % is built in and stays attached', source
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Only tables attached with attach() can be detached.';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS halo_itsm_enqueue ON %s', source);
    SELECT count(*) INTO v_queued FROM halo_itsm.outbox o
     WHERE o.state IN ('pending', 'in_flight')
       AND (o.case_id IN (SELECT c.id FROM halo_itsm.cases c WHERE c.attachment_id = a.id)
            OR o.detection_id IN (SELECT d.id FROM halo_itsm.detections d WHERE d.attachment_id = a.id));
    UPDATE halo_itsm.cases c SET attachment_id = NULL WHERE c.attachment_id = a.id;
    UPDATE halo_itsm.detections d SET attachment_id = NULL WHERE d.attachment_id = a.id;
    DELETE FROM halo_itsm.attachments x WHERE x.id = a.id;
    RAISE NOTICE 'halo_itsm: % detached; % queued item(s) of its rows will still be sent', source, v_queued
        USING HINT = 'Its cases and detections stay in halo_itsm with their tickets; closes from Halo are no longer written back.';
END
$$;

-- Queues tickets for rows of an attached table that existed before attach(): up to
-- batch_size open rows without one, oldest key first. Returns how many were queued; call
-- it until it returns 0 (each call its own transaction, so that no lock is held long).
-- Once a call finds no more rows, the backfill is done and later calls return 0.
CREATE OR REPLACE FUNCTION halo_itsm.backfill(source regclass, batch_size integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a halo_itsm.attachments;
    r record;
    v_n integer := 0;
BEGIN
    PERFORM halo_itsm._refuse_on_standby('backfill');
    SELECT * INTO a FROM halo_itsm.attachments x WHERE x.source = backfill.source FOR UPDATE;
    IF NOT FOUND OR a.builtin THEN
        RAISE EXCEPTION 'halo_itsm: % is not attached with attach()', coalesce(source::text, 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'SELECT source FROM halo_itsm.attachments lists the attached tables.';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'halo_itsm: batch_size must be 1 to 100000'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 1000.';
    END IF;
    IF a.backfilled_at IS NOT NULL THEN
        RETURN 0;
    END IF;
    FOR r IN EXECUTE format(
        'SELECT s.%1$I::text AS k, s.%2$I::text AS sid, s.%3$I::text AS title, %4$s AS description, '
        's.%5$I::text AS severity, %6$s AS status, %7$s AS integration FROM %8$s s '
        'WHERE NOT EXISTS (SELECT 1 FROM halo_itsm.%9$I x WHERE x.attachment_id = $1 AND x.source_key = s.%1$I::text) '
        '%10$s ORDER BY s.%1$I LIMIT $2',
        a.key_column, a.sid_column, a.title_column,
        CASE WHEN a.description_column IS NULL THEN 'NULL::text' ELSE format('s.%I::text', a.description_column) END,
        a.severity_column,
        CASE WHEN a.status_column IS NULL THEN 'NULL::text' ELSE format('s.%I::text', a.status_column) END,
        CASE WHEN a.integration_column IS NULL THEN 'NULL::text' ELSE format('s.%I::text', a.integration_column) END,
        a.source, CASE WHEN a.kind = 'case' THEN 'cases' ELSE 'detections' END,
        CASE WHEN a.status_column IS NULL THEN ''
             ELSE format('AND (s.%I IS NULL OR s.%I::text <> ALL ($3))', a.status_column, a.status_column) END)
        USING a.id, batch_size, a.closed_values
    LOOP
        PERFORM halo_itsm._attached_insert(a.id, r.k, r.sid, r.title, r.description, r.severity, r.status, r.integration);
        v_n := v_n + 1;
    END LOOP;
    IF v_n < batch_size THEN
        UPDATE halo_itsm.attachments x SET backfilled_at = now() WHERE x.id = a.id;
    END IF;
    RETURN v_n;
END
$$;

-- The attached tables, with the health of what they queue.
CREATE OR REPLACE VIEW halo_itsm.attachment_status AS
SELECT a.id, a.source, a.kind, a.builtin,
       (SELECT count(*) FROM halo_itsm.outbox o
         WHERE o.warning IS NOT NULL AND o.state <> 'done'
           AND (o.case_id IN (SELECT c.id FROM halo_itsm.cases c WHERE c.attachment_id IS NOT DISTINCT FROM
                                  CASE WHEN a.builtin THEN NULL ELSE a.id END AND a.kind = 'case')
                OR o.detection_id IN (SELECT d.id FROM halo_itsm.detections d WHERE d.attachment_id IS NOT DISTINCT FROM
                                  CASE WHEN a.builtin THEN NULL ELSE a.id END AND a.kind = 'detection'))) AS open_warnings,
       (SELECT o.warning FROM halo_itsm.outbox o
         WHERE o.warning IS NOT NULL
           AND (o.case_id IN (SELECT c.id FROM halo_itsm.cases c WHERE c.attachment_id = a.id AND a.kind = 'case')
                OR o.detection_id IN (SELECT d.id FROM halo_itsm.detections d WHERE d.attachment_id = a.id AND a.kind = 'detection'))
         ORDER BY o.id DESC LIMIT 1) AS last_warning,
       a.last_error, a.last_error_at, a.backfilled_at, a.created_at
  FROM halo_itsm.attachments a;
COMMENT ON VIEW halo_itsm.attachment_status IS
    'The attached tables: unmapped values (warnings of queued items) and the last row that got no ticket.';

/*
 * 30_payload.sql: the ticket payload (ticket_payload and its parts, _resolve_integration),
 * the triggers that write the outbox in the inserting transaction, what deleting or
 * truncating cases, detections and integrations does to the outbox (_cascade_delete), and
 * the rule on changing a sid (_sid_change).
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- The ticket payload.
-- ---------------------------------------------------------------------------

-- The Halo priority id for a severity under an integration's mapping.
CREATE OR REPLACE FUNCTION halo_itsm.priority_id(i halo_itsm.integrations, severity halo_itsm.severity)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE severity
             WHEN 'critical' THEN i.priority_critical
             WHEN 'high' THEN i.priority_high
             WHEN 'medium' THEN i.priority_medium
             WHEN 'low' THEN i.priority_low
             ELSE i.priority_info
           END
$$;

-- The ticket object for a case or detection row under an integration: the integration's
-- extra fields, then the fields the extension owns (which win; configure_ticket_fields()
-- refuses them anyway).
CREATE OR REPLACE FUNCTION halo_itsm._build_payload(i halo_itsm.integrations, kind text, sid text, title text,
                                         description text, severity halo_itsm.severity)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(i.extra_ticket_fields, '{}') OPERATOR(pg_catalog.||) jsonb_strip_nulls(jsonb_build_object(
        'summary', halo_itsm.render_template(
                       CASE WHEN kind = 'case' THEN i.case_title_template ELSE i.detection_title_template END,
                       sid, title, severity::text),
        'details', concat_ws(E'\n',
                       nullif(description, ''),
                       CASE WHEN nullif(description, '') IS NOT NULL THEN '' END,
                       'Severity: ' || initcap(severity::text),
                       CASE WHEN kind = 'case' THEN 'Case: ' ELSE 'Detection: ' END || sid),
        'tickettype_id', i.tickettype_id,
        'priority_id', halo_itsm.priority_id(i, severity),
        'client_id', i.client,
        'team', i.team,
        'category_1', i.category,
        'third_party_id_string', sid))
$$;

-- The integration a case or detection goes to: its own, or the single enabled one.
CREATE OR REPLACE FUNCTION halo_itsm._resolve_integration(integration_id integer)
RETURNS halo_itsm.integrations LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_single integer;
BEGIN
    IF integration_id IS NOT NULL THEN
        RETURN halo_itsm._integration(integration_id);
    END IF;
    SELECT s.id INTO v_single FROM halo_itsm._single_enabled_integration s;
    IF v_single IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: the row names no integration and % enabled integrations exist',
                        (SELECT count(*) FROM halo_itsm.integrations i WHERE i.enabled)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Set integration_id on the row, or keep exactly one integration enabled.';
    END IF;
    RETURN halo_itsm._integration(v_single);
END
$$;

-- The exact ticket object that will be POSTed for a case or detection.
CREATE OR REPLACE FUNCTION halo_itsm.ticket_payload(kind text, sid text)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    i halo_itsm.integrations;
BEGIN
    IF kind = 'case' THEN
        SELECT x.sid, x.title, x.description, x.severity, x.integration_id INTO c
          FROM halo_itsm.cases x WHERE x.sid = ticket_payload.sid;
    ELSIF kind = 'detection' THEN
        SELECT x.sid, x.title, x.description, x.severity, x.integration_id INTO c
          FROM halo_itsm.detections x WHERE x.sid = ticket_payload.sid;
    ELSE
        RAISE EXCEPTION 'halo_itsm: unknown kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ''case'' or ''detection''.';
    END IF;
    IF c IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: there is no % with sid "%"', kind, sid
            USING ERRCODE = 'no_data_found', HINT = format('SELECT sid FROM halo_itsm.%ss lists them.', kind);
    END IF;
    i := halo_itsm._resolve_integration(c.integration_id);
    IF i.configured_at IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: integration % (%) is not configured', i.id, i.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Call halo_itsm.configure(%s, category => ''...'') first.', i.id);
    END IF;
    RETURN halo_itsm._build_payload(i, kind, c.sid, c.title, c.description, c.severity);
END
$$;
COMMENT ON FUNCTION halo_itsm.ticket_payload(text, text) IS
    'The exact ticket object POSTed to Halo for the case (kind = ''case'') or detection with this sid.';

-- ---------------------------------------------------------------------------
-- Triggers: the outbox row is written in the inserting transaction.
-- ---------------------------------------------------------------------------

-- True in a session that restores a dump: pg_dump writes "SET check_function_bodies = false"
-- and "SET row_security = off" at the top of every dump (and pg_restore sends both), and
-- ordinary sessions do not run with both. The dump carries the outbox rows of the cases and
-- detections it restores, so the triggers below must not queue those rows a second time.
CREATE OR REPLACE FUNCTION halo_itsm._restoring()
RETURNS boolean LANGUAGE C STABLE AS 'MODULE_PATHNAME', 'halo_itsm_restoring';

-- The one enqueue trigger of every attached table (src/outbound/enqueue.c), its argument
-- the attachment's id: halo_itsm.cases is attachment 1, halo_itsm.detections 2, tables of
-- the platform's get theirs from attach() (70_attach.sql, docs/attach.md). An insert into
-- cases queues its ticket; an insert or change of a detection queues its ticket once it
-- is closed and standalone; a changed title, severity or status goes to _source_changed.
-- In C, as it runs in every inserting transaction: it writes the outbox row as this
-- function's owner (the extension owner) with one kept plan whose names are all
-- qualified, and is therefore not SECURITY DEFINER (whose SET search_path would cost a GUC
-- save and restore per row).
CREATE OR REPLACE FUNCTION halo_itsm._enqueue()
RETURNS trigger LANGUAGE C AS 'MODULE_PATHNAME', 'halo_itsm_enqueue';

CREATE OR REPLACE TRIGGER enqueue_ticket AFTER INSERT OR UPDATE OF title, severity, status ON halo_itsm.cases
    FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue('1');
CREATE OR REPLACE TRIGGER enqueue_ticket AFTER INSERT OR UPDATE OF title, severity, status, case_id ON halo_itsm.detections
    FOR EACH ROW EXECUTE FUNCTION halo_itsm._enqueue('2');

-- What ON DELETE CASCADE would do for the outbox and webhook_deliveries, which have no
-- foreign keys: their checks would lock the new case row (one more WAL record) in every
-- inserting transaction, and the integration's row in every webhook delivery. The rows of
-- deleted (or truncated) cases, detections and integrations go with them, except the
-- unfinished items of a deleted integration whose case or detection named none
-- (bound_at_claim): those are unbound again and wait for the next single enabled
-- integration, as fresh items (one in flight may have reached Halo: maybe_sent, and waits
-- two request timeouts). TRUNCATE of integrations needs CASCADE (cases and detections refer
-- to it), which truncates cases and detections too: no item is left to unbind then.
CREATE OR REPLACE FUNCTION halo_itsm._cascade_delete()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM halo_itsm.outbox o
         WHERE CASE TG_TABLE_NAME WHEN 'cases' THEN o.kind = 'case'
                                  WHEN 'detections' THEN o.kind = 'detection'
                                  ELSE true END;
        IF TG_TABLE_NAME = 'integrations' THEN
            DELETE FROM halo_itsm.webhook_deliveries;
        END IF;
    ELSIF TG_TABLE_NAME = 'cases' THEN
        DELETE FROM halo_itsm.outbox o WHERE o.kind = 'case' AND o.case_id IN (SELECT g.id FROM gone g);
    ELSIF TG_TABLE_NAME = 'detections' THEN
        DELETE FROM halo_itsm.outbox o WHERE o.kind = 'detection' AND o.detection_id IN (SELECT g.id FROM gone g);
    ELSE
        UPDATE halo_itsm.outbox o
           SET integration_id = NULL, bound_at_claim = false,
               state = CASE WHEN o.state = 'dead' THEN 'dead' ELSE 'pending' END::halo_itsm.outbox_state,
               attempts = CASE WHEN o.state = 'dead' THEN o.attempts ELSE 0 END,
               -- one in flight may still be on the wire: a lookup by the next integration
               -- must not race the first create (2 request timeouts; 30 s each by default)
               next_attempt_at = CASE WHEN o.state = 'dead' THEN o.next_attempt_at
                                      WHEN o.state = 'in_flight' THEN
                                          now() + 2 * coalesce(nullif(current_setting('halo_itsm.request_timeout', true), '')::interval,
                                                               interval '30 s')
                                      ELSE now() END,
               maybe_sent = o.maybe_sent OR o.state = 'in_flight',
               claimed_by = NULL, claim_token = NULL,
               -- a dead item keeps the reason it died
               last_error = CASE WHEN o.state = 'dead' THEN o.last_error
                                 ELSE format('halo_itsm: integration %s was deleted; this item names no integration and waits for the next single enabled one',
                                             o.integration_id) END
         WHERE o.bound_at_claim AND o.state <> 'done' AND o.integration_id IN (SELECT g.id FROM gone g);
        DELETE FROM halo_itsm.outbox o WHERE o.integration_id IN (SELECT g.id FROM gone g);
        DELETE FROM halo_itsm.webhook_deliveries w WHERE w.integration_id IN (SELECT g.id FROM gone g);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER cascade_delete AFTER DELETE ON halo_itsm.cases
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();
CREATE OR REPLACE TRIGGER cascade_delete AFTER DELETE ON halo_itsm.detections
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();
CREATE OR REPLACE TRIGGER cascade_delete AFTER DELETE ON halo_itsm.integrations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();
CREATE OR REPLACE TRIGGER cascade_truncate AFTER TRUNCATE ON halo_itsm.cases
    FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();
CREATE OR REPLACE TRIGGER cascade_truncate AFTER TRUNCATE ON halo_itsm.detections
    FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();
CREATE OR REPLACE TRIGGER cascade_truncate AFTER TRUNCATE ON halo_itsm.integrations
    FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._cascade_delete();

-- Refuses to change the sid of a case or detection once its ticket may exist in Halo:
-- the ticket carries the sid (third_party_id_string), the lookup after a lost answer
-- searches by it, and a new sid would give a second ticket. Before anything can have
-- reached Halo (no ticket, nothing in flight, maybe_sent false) the change is allowed:
-- the payload is built when the item is claimed. The outbox row is locked first, so that
-- no claim takes it while the new sid is not committed.
CREATE OR REPLACE FUNCTION halo_itsm._sid_change()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on AS $$
DECLARE
    v_what text := CASE TG_TABLE_NAME WHEN 'cases' THEN 'case' ELSE 'detection' END;
    v_state halo_itsm.outbox_state;
    v_maybe_sent boolean;
    v_ticket bigint;
    v_why text;
BEGIN
    IF TG_TABLE_NAME = 'cases' THEN
        SELECT o.state, o.maybe_sent INTO v_state, v_maybe_sent FROM halo_itsm.outbox o
         WHERE o.kind = 'case' AND o.case_id = OLD.id FOR UPDATE;
        SELECT t.halo_ticket_id INTO v_ticket FROM halo_itsm.tickets t WHERE t.case_id = OLD.id;
    ELSE
        SELECT o.state, o.maybe_sent INTO v_state, v_maybe_sent FROM halo_itsm.outbox o
         WHERE o.kind = 'detection' AND o.detection_id = OLD.id FOR UPDATE;
        SELECT t.halo_ticket_id INTO v_ticket FROM halo_itsm.tickets t WHERE t.detection_id = OLD.id;
    END IF;
    v_why := CASE WHEN v_ticket IS NOT NULL THEN format('it is linked to Halo ticket %s', v_ticket)
                  WHEN v_state = 'in_flight' THEN 'its ticket is being created in Halo now'
                  WHEN v_state = 'done' THEN 'its ticket has been created in Halo'
                  WHEN v_maybe_sent THEN 'an earlier attempt may have created its ticket in Halo'
             END;
    IF v_why IS NOT NULL THEN
        RAISE EXCEPTION 'halo_itsm: the sid of % "%" cannot change: %', v_what, OLD.sid, v_why
            USING ERRCODE = 'object_in_use',
                  HINT = 'Halo knows the ticket by this sid (third_party_id_string); under a new sid it would get a second ticket. Keep the sid; change the title instead.';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER keep_sid BEFORE UPDATE OF sid ON halo_itsm.cases
    FOR EACH ROW WHEN (OLD.sid IS DISTINCT FROM NEW.sid) EXECUTE FUNCTION halo_itsm._sid_change();
CREATE OR REPLACE TRIGGER keep_sid BEFORE UPDATE OF sid ON halo_itsm.detections
    FOR EACH ROW WHEN (OLD.sid IS DISTINCT FROM NEW.sid) EXECUTE FUNCTION halo_itsm._sid_change();

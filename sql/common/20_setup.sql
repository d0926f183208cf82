/*
 * 20_setup.sql: C helpers and the functions that set up an integration (connect,
 * configure, configure_ids, configure_auth, set_credentials and secret_from_file,
 * set_enabled), _integration() and the one definition of "the single enabled
 * integration" (the view _single_enabled_integration).
 * Part of the install script sql/halo_itsm--<version>.sql (make concatenates sql/common/, outbound/ and inbound/ by number).
 */

-- ---------------------------------------------------------------------------
-- C helpers (src/common/sqlfuncs.c, src/common/shmem.c).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION halo_itsm._check_template(template text, field text)
RETURNS void LANGUAGE C STRICT IMMUTABLE AS 'MODULE_PATHNAME', 'halo_itsm_check_template';

CREATE OR REPLACE FUNCTION halo_itsm.render_template(template text, sid text, title text, severity text)
RETURNS text LANGUAGE C IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'halo_itsm_render_template';
COMMENT ON FUNCTION halo_itsm.render_template(text, text, text, text) IS
    'Renders a title template: {{sid}}, {{title}} and {{severity}} are replaced by the values.';

CREATE OR REPLACE FUNCTION halo_itsm._check_instance_url(url text)
RETURNS text LANGUAGE C STRICT STABLE AS 'MODULE_PATHNAME', 'halo_itsm_check_instance_url';

CREATE OR REPLACE FUNCTION halo_itsm._check_auth_url(url text)
RETURNS text LANGUAGE C STRICT STABLE AS 'MODULE_PATHNAME', 'halo_itsm_check_auth_url';

CREATE OR REPLACE FUNCTION halo_itsm._random_secret(nbytes integer)
RETURNS text LANGUAGE C STRICT VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_random_secret';

CREATE OR REPLACE FUNCTION halo_itsm._wake_worker_at_commit()
RETURNS void LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_wake_worker_at_commit';

CREATE OR REPLACE FUNCTION halo_itsm._worker_running()
RETURNS boolean LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_worker_running';

-- ---------------------------------------------------------------------------
-- Setting up an integration.
-- ---------------------------------------------------------------------------

-- Stores an integration and its secrets; returns its id.
CREATE OR REPLACE FUNCTION halo_itsm.connect(instance_url text, client_id text, client_secret text,
                                  tenant text DEFAULT NULL, name text DEFAULT 'default')
RETURNS integer LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a failing call must not write its statement, which holds the secret, to the server log
SET log_min_error_statement = 'panic' AS $$
DECLARE
    v_url text;
    v_id integer;
BEGIN PERFORM halo_itsm._refuse_on_standby('connect()');  -- 25006 on a hot standby
    IF instance_url IS NULL OR client_id IS NULL OR client_secret IS NULL
       OR btrim(instance_url) = '' OR btrim(client_id) = '' OR client_secret = '' THEN
        RAISE EXCEPTION 'halo_itsm: instance_url, client_id and client_secret are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Create an API application in Halo (Configuration > Integrations > Halo API) with "Client ID and Secret (Services)" authentication and pass its client ID and secret.';
    END IF;
    IF name IS NULL OR btrim(name) = '' THEN
        RAISE EXCEPTION 'halo_itsm: the integration name must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a short name such as ''default'' or the customer''s name.';
    END IF;
    v_url := halo_itsm._check_instance_url(instance_url);
    IF EXISTS (SELECT 1 FROM halo_itsm.integrations i WHERE i.name = connect.name) THEN
        RAISE EXCEPTION 'halo_itsm: an integration named "%" already exists', connect.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another name, or update the existing integration with halo_itsm.set_credentials().';
    END IF;
    INSERT INTO halo_itsm.integrations (name, instance_url, tenant, client_id, webhook_key)
    VALUES (connect.name, v_url, nullif(btrim(tenant), ''), btrim(client_id),
            replace(gen_random_uuid()::text, '-', ''))
    RETURNING id INTO v_id;
    INSERT INTO halo_itsm.integration_secrets (integration_id, client_secret, webhook_secret)
    VALUES (v_id, client_secret, halo_itsm._random_secret(32));
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION halo_itsm.connect(text, text, text, text, text) IS
    'Stores a Halo integration (instance URL, OAuth2 client credentials, tenant), generates its webhook key and secret, returns its id.';

-- Replaces the OAuth2 client credentials of an integration.
CREATE OR REPLACE FUNCTION halo_itsm.set_credentials(integration integer, client_id text, client_secret text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = 'panic' AS $$
BEGIN PERFORM halo_itsm._refuse_on_standby('set_credentials()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    IF client_id IS NULL OR btrim(client_id) = '' OR client_secret IS NULL OR client_secret = '' THEN
        RAISE EXCEPTION 'halo_itsm: client_id and client_secret are required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Copy both from the API application in Halo.';
    END IF;
    UPDATE halo_itsm.integrations SET client_id = btrim(set_credentials.client_id) WHERE id = integration;
    UPDATE halo_itsm.integration_secrets SET client_secret = set_credentials.client_secret
     WHERE integration_id = integration;
END
$$;

-- A client secret read from a file on the database server, so that the secret is never
-- in a statement's text (pg_stat_activity, psql's history): pass it to connect() or
-- set_credentials(). Needs the privileges of pg_read_server_files; the file must be a
-- regular file that no other user of the machine can read (checked in C).
CREATE OR REPLACE FUNCTION halo_itsm.secret_from_file(path text)
RETURNS text LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'halo_itsm_secret_from_file';
COMMENT ON FUNCTION halo_itsm.secret_from_file(text) IS
    'The client secret held in a file on the database server (trailing white space removed); for connect() and set_credentials(), so that no statement text holds the secret.';

-- set_credentials() with the client secret read from a file on the database server.
CREATE OR REPLACE FUNCTION halo_itsm.set_credentials_from_file(integration integer, client_id text, secret_file text)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN PERFORM halo_itsm._refuse_on_standby('set_credentials_from_file()');  -- 25006 on a hot standby
    PERFORM halo_itsm.set_credentials(integration, client_id, halo_itsm.secret_from_file(secret_file));
END
$$;

-- Returns an integration row, or raises a clear error when there is none.
CREATE OR REPLACE FUNCTION halo_itsm._integration(integration integer)
RETURNS halo_itsm.integrations LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r halo_itsm.integrations;
BEGIN
    SELECT * INTO r FROM halo_itsm.integrations WHERE id = integration;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'halo_itsm: there is no integration with id %', coalesce(integration::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, name FROM halo_itsm.integrations lists them; halo_itsm.connect() creates one.';
    END IF;
    RETURN r;
END
$$;

-- The one home of the rule for rows that name no integration: they go to the single
-- enabled integration. One row with its id, or no row when none or several are enabled
-- (such rows wait). Used by _resolve_integration (ticket_payload), _claim and the status
-- view. A view, not a function: the status view's readers may not execute functions or
-- read integrations, and a view inside a view is read with the outer view owner's rights.
CREATE OR REPLACE VIEW halo_itsm._single_enabled_integration AS
    SELECT min(i.id) AS id FROM halo_itsm.integrations i WHERE i.enabled HAVING count(*) = 1;

-- Saves the ticket behaviour form of an integration.
CREATE OR REPLACE FUNCTION halo_itsm.configure(integration integer, category text, team text DEFAULT NULL,
                                    client integer DEFAULT NULL,
                                    standalone_detection_tickets boolean DEFAULT false,
                                    case_title_template text DEFAULT '{{sid}}: {{title}}',
                                    detection_title_template text DEFAULT '{{sid}}: {{title}}')
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN PERFORM halo_itsm._refuse_on_standby('configure()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    IF category IS NULL OR btrim(category) = '' THEN
        RAISE EXCEPTION 'halo_itsm: a category is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the Halo category name or path that Incident tickets need, e.g. category => ''Security>Incident''.';
    END IF;
    IF team IS NOT NULL AND btrim(team) = '' THEN
        RAISE EXCEPTION 'halo_itsm: the team name must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the Halo team''s name, or NULL to leave the team to Halo''s defaults.';
    END IF;
    IF client IS NOT NULL AND client <= 0 THEN
        RAISE EXCEPTION 'halo_itsm: the client id must be a positive Halo client id, not %', client
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Find the id under Customers in Halo, or pass NULL.';
    END IF;
    IF standalone_detection_tickets IS NULL THEN
        RAISE EXCEPTION 'halo_itsm: standalone_detection_tickets must be true or false'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass false to create tickets for cases only.';
    END IF;
    PERFORM halo_itsm._check_template(coalesce(case_title_template, ''), 'case_title_template');
    PERFORM halo_itsm._check_template(coalesce(detection_title_template, ''), 'detection_title_template');
    UPDATE halo_itsm.integrations i
       SET category = btrim(configure.category),
           team = btrim(configure.team),
           client = configure.client,
           standalone_detection_tickets = configure.standalone_detection_tickets,
           case_title_template = configure.case_title_template,
           detection_title_template = configure.detection_title_template,
           configured_at = now()
     WHERE i.id = integration;
END
$$;
COMMENT ON FUNCTION halo_itsm.configure(integer, text, text, integer, boolean, text, text) IS
    'Saves how tickets look: category (required), team, client, standalone detection tickets, title templates.';

-- Sets the instance-specific ids of an integration; NULL keeps a value.
CREATE OR REPLACE FUNCTION halo_itsm.configure_ids(integration integer, tickettype_id integer DEFAULT NULL,
                                        priority_critical integer DEFAULT NULL,
                                        priority_high integer DEFAULT NULL,
                                        priority_medium integer DEFAULT NULL,
                                        priority_low integer DEFAULT NULL,
                                        priority_info integer DEFAULT NULL,
                                        closed_status_ids integer[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN PERFORM halo_itsm._refuse_on_standby('configure_ids()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    IF least(tickettype_id, priority_critical, priority_high, priority_medium, priority_low, priority_info) <= 0 THEN
        RAISE EXCEPTION 'halo_itsm: Halo ids are positive integers'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Look the ids up in Halo under Configuration > Tickets (Ticket Types, Priorities).';
    END IF;
    IF closed_status_ids IS NOT NULL
       AND (array_ndims(closed_status_ids) IS DISTINCT FROM 1
            OR EXISTS (SELECT 1 FROM unnest(closed_status_ids) s WHERE s IS NULL OR s <= 0)) THEN
        RAISE EXCEPTION 'halo_itsm: closed_status_ids must be a one-dimensional list of positive status ids, at least one and no NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Halo''s Closed status is 9 unless your instance renamed it: ''{9}''.';
    END IF;
    UPDATE halo_itsm.integrations i
       SET tickettype_id = coalesce(configure_ids.tickettype_id, i.tickettype_id),
           priority_critical = coalesce(configure_ids.priority_critical, i.priority_critical),
           priority_high = coalesce(configure_ids.priority_high, i.priority_high),
           priority_medium = coalesce(configure_ids.priority_medium, i.priority_medium),
           priority_low = coalesce(configure_ids.priority_low, i.priority_low),
           priority_info = coalesce(configure_ids.priority_info, i.priority_info),
           closed_status_ids = coalesce(configure_ids.closed_status_ids, i.closed_status_ids)
     WHERE i.id = integration;
END
$$;

-- Sets the authorisation server and the OAuth scope of an integration; NULL keeps a value,
-- '' goes back to the default (auth_url: discovery with GET {instance}/api/authinfo, else
-- {instance}/auth; scope: read:tickets edit:tickets read:customers). The token is fetched
-- from {auth_url}/token (?tenant= when the integration has a tenant). The scope is checked
-- as OAuth2 (RFC 6749) defines it: scope tokens of printable ASCII but space, " and \,
-- separated by spaces (runs of spaces become one), at most 1024 bytes.
CREATE OR REPLACE FUNCTION halo_itsm.configure_auth(integration integer, auth_url text DEFAULT NULL,
                                         scope text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_url text;
    v_scope text;
BEGIN
    PERFORM halo_itsm._integration(integration);
    IF auth_url IS NOT NULL AND auth_url <> '' THEN
        IF btrim(auth_url) = '' THEN
            RAISE EXCEPTION 'halo_itsm: the authorisation server URL must not be blank'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the Authorisation Server shown under the API application''s API Details in Halo, e.g. https://yourcompany.halopsa.com/auth, or '''' to discover it.';
        END IF;
        v_url := halo_itsm._check_auth_url(btrim(auth_url));
    END IF;
    IF scope IS NOT NULL AND scope <> '' THEN
        v_scope := regexp_replace(btrim(scope, ' '), ' +', ' ', 'g');
        IF v_scope = '' THEN
            RAISE EXCEPTION 'halo_itsm: the scope must not be blank'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the scopes of the API application separated by spaces (e.g. ''all''), or '''' for the default (read:tickets edit:tickets read:customers).';
        END IF;
        IF octet_length(v_scope) > 1024 THEN
            RAISE EXCEPTION 'halo_itsm: the scope is % bytes long, more than 1024', octet_length(v_scope)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the scopes the API application grants, e.g. ''all'' or ''read:tickets edit:tickets read:customers''.';
        END IF;
        IF v_scope !~ '^[]!#-[^-~]+( []!#-[^-~]+)*$' THEN
            RAISE EXCEPTION 'halo_itsm: the scope % holds a character OAuth does not allow in a scope', to_json(v_scope)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Scopes are words of printable ASCII (no ", no \, no control characters) separated by spaces, e.g. ''read:tickets edit:tickets read:customers''.';
        END IF;
    END IF;
    UPDATE halo_itsm.integrations i
       SET auth_url = CASE WHEN configure_auth.auth_url IS NULL THEN i.auth_url
                           WHEN configure_auth.auth_url = '' THEN NULL ELSE v_url END,
           scope = CASE WHEN configure_auth.scope IS NULL THEN i.scope
                        WHEN configure_auth.scope = '' THEN NULL ELSE v_scope END
     WHERE i.id = integration;
END
$$;
COMMENT ON FUNCTION halo_itsm.configure_auth(integer, text, text) IS
    'Sets the authorisation server (token from {auth_url}/token) and the OAuth scope; NULL keeps a value, '''' restores the default (discovery; read:tickets edit:tickets read:customers).';

-- Enables or disables an integration (a disabled one keeps its queue).
CREATE OR REPLACE FUNCTION halo_itsm.set_enabled(integration integer, enabled boolean)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN PERFORM halo_itsm._refuse_on_standby('set_enabled()');  -- 25006 on a hot standby
    PERFORM halo_itsm._integration(integration);
    UPDATE halo_itsm.integrations i SET enabled = coalesce(set_enabled.enabled, false) WHERE i.id = integration;
END
$$;

-- Enabling or configuring an integration wakes the worker at commit, even while it says every
-- other integration is busy (then commits do not wake it): this one may have room, and its
-- waiting items would otherwise wait for another integration's next answer or the poll timer.
-- Statement level, and not for the columns the worker itself writes (last_success_at, ...).
CREATE OR REPLACE FUNCTION halo_itsm._wake_worker_for_integrations()
RETURNS trigger LANGUAGE C AS 'MODULE_PATHNAME', 'halo_itsm_wake_worker_for_integrations';
CREATE OR REPLACE TRIGGER wake_worker AFTER INSERT OR UPDATE OF enabled, configured_at
    ON halo_itsm.integrations
    FOR EACH STATEMENT EXECUTE FUNCTION halo_itsm._wake_worker_for_integrations();

--
-- 02_configuration: connect(), configure() and configure_ids(): validation (SQLSTATE,
-- message and hint of every error), URL normalisation, defaults, generated webhook key
-- and secret.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- ---------------------------------------------------------------------------
-- connect(): required arguments.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.connect(NULL, 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('   ', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', NULL, 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', '', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', '  ', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', '')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret', name => NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret', name => ' ')$$);

-- ---------------------------------------------------------------------------
-- connect(): unusable URLs.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.connect('not a url', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('acme.halopsa.com', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('ftp://acme.halopsa.com', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://user:pass@acme.halopsa.com', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://user@acme.halopsa.com', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com/?tenant=x', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://acme.halopsa.com#top', 'cid', 'secret')$$);
SET halo_itsm.allow_http = off;
CALL pg_temp.try($$SELECT halo_itsm.connect('http://acme.halopsa.com', 'cid', 'secret')$$);
-- Nothing was stored by the failed calls.
SELECT count(*) FROM halo_itsm.integrations;

-- ---------------------------------------------------------------------------
-- connect(): stored values and URL normalisation (trailing slashes dropped,
-- scheme lower-cased, port and path kept); client_id and tenant trimmed.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.connect('https://acme.halopsa.com/', ' cid-1 ', 'secret-1') AS id;
SELECT halo_itsm.connect('HTTPS://acme.halopsa.com:8443/halo///', 'cid-2', 'secret-2',
                         tenant => ' acme ', name => 'second') AS id;
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid-3', 'secret-3', tenant => '  ', name => 'third') AS id;
SELECT id, name, instance_url, tenant, client_id, enabled, configured_at, category, team, client,
       standalone_detection_tickets, case_title_template, detection_title_template,
       tickettype_id, priority_critical, priority_high, priority_medium, priority_low,
       priority_info, closed_status_ids, last_success_at, last_error
  FROM halo_itsm.integrations ORDER BY id;

-- Duplicate name.
CALL pg_temp.try($$SELECT halo_itsm.connect('https://other.halopsa.com', 'cid', 'secret')$$);
CALL pg_temp.try($$SELECT halo_itsm.connect('https://other.halopsa.com', 'cid', 'secret', name => 'second')$$);
SELECT count(*) FROM halo_itsm.integrations;

-- http:// only with halo_itsm.allow_http (SUSET; this session is a superuser's).
SET halo_itsm.allow_http = off;
CALL pg_temp.try($$SELECT halo_itsm.connect('http://127.0.0.1:8080', 'cid', 'secret', name => 'plain')$$);
SET halo_itsm.allow_http = on;
SELECT halo_itsm.connect('http://127.0.0.1:8080/', 'cid', 'secret', name => 'plain') AS id;
SET halo_itsm.allow_http = off;
SELECT id, name, instance_url FROM halo_itsm.integrations ORDER BY id;

-- Webhook key: 32 hex digits, unique; webhook secret: 32 random bytes as 64 hex digits,
-- different for every integration; the client secret is stored as given.
SELECT i.id, i.webhook_key ~ '^[0-9a-f]{32}$' AS key_is_hex32,
       s.webhook_secret ~ '^[0-9a-f]{64}$' AS secret_is_hex64,
       length(s.webhook_secret) >= 64 AS secret_long_enough,
       s.webhook_secret <> i.webhook_key AS secret_not_key,
       s.client_secret, s.previous_webhook_secret, s.previous_secret_valid_until
  FROM halo_itsm.integrations i JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id
 ORDER BY i.id;
SELECT count(DISTINCT i.webhook_key) AS distinct_keys, count(DISTINCT s.webhook_secret) AS distinct_secrets
  FROM halo_itsm.integrations i JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id;
-- The secret generator: only 32 to 64 bytes.
SELECT length(halo_itsm._random_secret(32)) AS len32, length(halo_itsm._random_secret(64)) AS len64,
       halo_itsm._random_secret(32) <> halo_itsm._random_secret(32) AS differ;
CALL pg_temp.try($$SELECT halo_itsm._random_secret(31)$$);
CALL pg_temp.try($$SELECT halo_itsm._random_secret(65)$$);

-- ---------------------------------------------------------------------------
-- configure(): validation.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.configure(99, 'Security>Incident')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(NULL, 'Security>Incident')$$);
-- an unknown integration is reported before the other arguments are looked at
CALL pg_temp.try($$SELECT halo_itsm.configure(99, NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, '')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, '   ')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', team => '')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', team => '  ')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', client => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', client => -5)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', standalone_detection_tickets => NULL)$$);
-- Nothing was saved by the failed calls.
SELECT id, configured_at, category, team, client FROM halo_itsm.integrations WHERE id = 1;

-- configure(): defaults, then every field; category and team are trimmed.
SELECT halo_itsm.configure(1, 'Security>Incident');
SELECT id, configured_at IS NOT NULL AS configured, category, team, client, standalone_detection_tickets,
       case_title_template, detection_title_template
  FROM halo_itsm.integrations WHERE id = 1;
SELECT halo_itsm.configure(2, ' Security>Alert ', team => ' SOC ', client => 12,
                           standalone_detection_tickets => true,
                           case_title_template => '[{{severity}}] {{title}}',
                           detection_title_template => 'Detection {{sid}}');
SELECT id, configured_at IS NOT NULL AS configured, category, team, client, standalone_detection_tickets,
       case_title_template, detection_title_template
  FROM halo_itsm.integrations ORDER BY id;
-- Configuring again replaces every field (team and client back to NULL).
SELECT halo_itsm.configure(2, 'Security>Alert');
SELECT id, category, team, client, standalone_detection_tickets, case_title_template, detection_title_template
  FROM halo_itsm.integrations WHERE id = 2;

-- ---------------------------------------------------------------------------
-- configure_ids(): defaults, validation, NULL keeps a value.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(99)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, tickettype_id => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, priority_critical => -1)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, priority_high => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, priority_medium => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, priority_low => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, priority_info => 0)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, closed_status_ids => '{}')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, closed_status_ids => '{9,NULL}')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, closed_status_ids => '{9,0}')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure_ids(1, closed_status_ids => '{{9}}')$$);
SELECT id, tickettype_id, priority_critical, priority_high, priority_medium, priority_low, priority_info,
       closed_status_ids
  FROM halo_itsm.integrations WHERE id = 1;
-- all NULL: nothing changes
SELECT halo_itsm.configure_ids(1);
SELECT halo_itsm.configure_ids(1, tickettype_id => 25, priority_critical => 11, priority_high => 12,
                               priority_medium => 13, priority_low => 14, priority_info => 15,
                               closed_status_ids => '{9,20}');
-- NULL keeps what was set
SELECT halo_itsm.configure_ids(1, priority_info => 16);
SELECT id, tickettype_id, priority_critical, priority_high, priority_medium, priority_low, priority_info,
       closed_status_ids
  FROM halo_itsm.integrations ORDER BY id;

RESET halo_itsm.allow_http;

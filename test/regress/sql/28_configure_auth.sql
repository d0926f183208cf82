-- 28_configure_auth: configure_auth() sets the authorisation server (checked like an
-- instance URL, plus no trailing /token) and the OAuth scope (RFC 6749 scope tokens,
-- at most 1024 bytes); NULL keeps a value, '' restores the default (discovery; the
-- default scope). Bad values: SQLSTATE, halo_itsm: message, hint. What Halo receives
-- is test/integration/test_auth_server.py's.
\ir test/regress/common.sql
SET halo_itsm.allow_http = off;
SELECT halo_itsm.connect('https://acme.halopsa.com', 'client', 'client-secret') AS integration;

\ir test/regress/try_select.sql

-- Bad values: nothing is stored.
CREATE TEMP TABLE attempts (what text, auth_url text, scope text, integration integer DEFAULT 1);
INSERT INTO attempts (what, auth_url, scope, integration) VALUES
  ('no such integration', 'https://auth.example.com', NULL, 99),
  ('NULL integration', 'https://auth.example.com', NULL, NULL);
INSERT INTO attempts (what, auth_url, scope) VALUES
  ('url: not a URL', 'not a url', NULL),
  ('url: no scheme', 'auth.halopsa.com', NULL),
  ('url: ftp', 'ftp://auth.halopsa.com', NULL),
  ('url: javascript', 'javascript:alert(1)', NULL),
  ('url: http (allow_http off)', 'http://auth.halopsa.com', NULL),
  ('url: user and password', 'https://user:pass@auth.halopsa.com', NULL),
  ('url: user', 'https://user@auth.halopsa.com', NULL),
  ('url: query', 'https://auth.halopsa.com/auth?tenant=acme', NULL),
  ('url: fragment', 'https://auth.halopsa.com/auth#top', NULL),
  ('url: ends in /token', 'https://auth.halopsa.com/auth/token', NULL),
  ('url: ends in /TOKEN/', 'https://auth.halopsa.com/TOKEN/', NULL),
  ('url: blank', '   ', NULL),
  ('url: 2049 bytes', 'https://auth.halopsa.com/' || repeat('a', 2024), NULL),
  ('url: control character', E'https://auth.halopsa.com/a\nb', NULL),
  ('scope: blank', NULL, '   '),
  ('scope: tab', NULL, E'read:tickets\tedit:tickets'),
  ('scope: newline', NULL, E'all\n'),
  ('scope: double quote', NULL, 'read:"tickets"'),
  ('scope: backslash', NULL, 'read:tickets\x'),
  ('scope: not ASCII', NULL, 'lire:tickèts'),
  ('scope: 1025 bytes', NULL, repeat('a', 1025)),
  ('scope: NUL-like escape', NULL, E'all\x01');
SELECT what, pg_temp.try(format('halo_itsm.configure_auth(%s, auth_url => %s, scope => %s)',
                                coalesce(integration::text, 'NULL'), quote_nullable(auth_url),
                                quote_nullable(scope))) AS result
  FROM attempts ORDER BY what;
SELECT auth_url, scope FROM halo_itsm.integrations;

-- Good values: normalised (trailing slashes dropped; runs of spaces in a scope become one).
SELECT halo_itsm.configure_auth(1, auth_url => 'https://auth.halopsa.com/auth///', scope => '  all  ');
SELECT auth_url, scope FROM halo_itsm.integrations;
SELECT halo_itsm.configure_auth(1, scope => 'read:tickets   edit:tickets read:customers');
SELECT auth_url, scope FROM halo_itsm.integrations;
-- NULL keeps both.
SELECT halo_itsm.configure_auth(1);
SELECT auth_url, scope FROM halo_itsm.integrations;
-- a scope of exactly 1024 bytes, and every character OAuth allows
SELECT halo_itsm.configure_auth(1, scope => repeat('b', 1024));
SELECT octet_length(scope) FROM halo_itsm.integrations;
SELECT halo_itsm.configure_auth(1, scope => '!#$%&''()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~');
SELECT scope FROM halo_itsm.integrations;
-- '' goes back to discovery and to the default scope.
SELECT halo_itsm.configure_auth(1, auth_url => '', scope => '');
SELECT auth_url, scope FROM halo_itsm.integrations;
-- http on a loopback address only where instance URLs may use it (halo_itsm.allow_http).
SELECT pg_temp.try($$halo_itsm.configure_auth(1, auth_url => 'http://127.0.0.1:18090')$$);
SET halo_itsm.allow_http = on;
SELECT pg_temp.try($$halo_itsm.configure_auth(1, auth_url => 'http://127.0.0.1:18090')$$);
SELECT auth_url, scope FROM halo_itsm.integrations;
RESET halo_itsm.allow_http;

-- Only the owner (and superusers) may change it: PUBLIC may not execute it.
SELECT p.proname, EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                           WHERE a.grantee = 0) AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'halo_itsm'::regnamespace AND p.proname IN ('configure_auth', '_check_auth_url')
 ORDER BY 1;

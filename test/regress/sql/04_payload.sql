--
-- 04_payload: the severity-to-priority map (priority_id) and the exact ticket objects
-- of ticket_payload() for cases and detections: every severity, with and without team
-- and client, details text, third_party_id_string; and its errors (unknown kind or sid,
-- integration not configured, none or several enabled integrations).
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- ---------------------------------------------------------------------------
-- Errors before any integration exists.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('ticket', 'C-1')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload(NULL, 'C-1')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-404')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('detection', 'D-404')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', NULL)$$);
INSERT INTO halo_itsm.cases (sid, title, description, severity)
VALUES ('C-1', 'Ransomware on FILESRV01', 'Encrypted shares on FILESRV01.', 'critical');
-- no integration at all
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-1')$$);
-- one integration, not configured
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-1')$$);
SELECT halo_itsm.configure(1, 'Security>Incident');
-- the sid is exact (case-sensitive)
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'c-1')$$);
-- a case sid is not a detection sid, nor the other way round
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('detection', 'C-1')$$);

-- ---------------------------------------------------------------------------
-- priority_id(): the default map, then a configured one.
-- ---------------------------------------------------------------------------
SELECT s.severity, halo_itsm.priority_id(i, s.severity) AS priority_id
  FROM halo_itsm.integrations i, unnest(enum_range(NULL::halo_itsm.severity)) AS s(severity)
 WHERE i.id = 1 ORDER BY s.severity;

-- ---------------------------------------------------------------------------
-- Case payloads, every severity, default configuration (no team, no client).
-- ---------------------------------------------------------------------------
INSERT INTO halo_itsm.cases (sid, title, description, severity) VALUES
    ('C-2', 'Phishing wave', E'Line one.\nLine two.', 'high'),
    ('C-3', 'Suspicious login', NULL, 'medium'),
    ('C-4', 'Port scan', '', 'low'),
    ('C-5', 'Informational', 'FYI', 'info');
SELECT sid, halo_itsm.ticket_payload('case', sid) FROM halo_itsm.cases ORDER BY id;
-- details, readable
SELECT sid, halo_itsm.ticket_payload('case', sid)->>'details' AS details FROM halo_itsm.cases ORDER BY id;
-- no NULL members: client_id and team are left out, not null
SELECT sid, jsonb_object_keys(halo_itsm.ticket_payload('case', sid)) AS key
  FROM halo_itsm.cases WHERE sid = 'C-3' ORDER BY 2;

-- ---------------------------------------------------------------------------
-- Custom ids, team, client and title templates.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.configure_ids(1, tickettype_id => 25, priority_critical => 101, priority_high => 102,
                               priority_medium => 103, priority_low => 104, priority_info => 105);
SELECT s.severity, halo_itsm.priority_id(i, s.severity) AS priority_id
  FROM halo_itsm.integrations i, unnest(enum_range(NULL::halo_itsm.severity)) AS s(severity)
 WHERE i.id = 1 ORDER BY s.severity;
SELECT halo_itsm.configure(1, 'Security>Incident', team => 'SOC', client => 12,
                           case_title_template => '[{{severity}}] {{title}} ({{sid}})');
SELECT sid, halo_itsm.ticket_payload('case', sid) FROM halo_itsm.cases ORDER BY id;
-- team only, client only
SELECT halo_itsm.configure(1, 'Security>Incident', team => 'SOC');
SELECT halo_itsm.ticket_payload('case', 'C-5');
SELECT halo_itsm.configure(1, 'Security>Incident', client => 7);
SELECT halo_itsm.ticket_payload('case', 'C-5');

-- third_party_id_string is always the sid.
SELECT count(*) AS cases, count(*) FILTER (WHERE halo_itsm.ticket_payload('case', sid)->>'third_party_id_string' = sid) AS matching
  FROM halo_itsm.cases;

-- Titles with quotes, backslashes, control characters and non-ASCII text survive as JSON strings.
INSERT INTO halo_itsm.cases (sid, title, description, severity)
VALUES ('C-6', E'"Quoted" \\ path C:\\temp\ttab \u00e9\u4e2d {{sid}}', E'desc "q"\r\nend', 'medium');
SELECT halo_itsm.ticket_payload('case', 'C-6');
SELECT halo_itsm.ticket_payload('case', 'C-6')->>'summary'
       = 'C-6: ' || (SELECT title FROM halo_itsm.cases WHERE sid = 'C-6') AS summary_exact;

-- ---------------------------------------------------------------------------
-- Detection payloads use the detection template and say "Detection:".
-- ---------------------------------------------------------------------------
SELECT halo_itsm.configure(1, 'Security>Detection', detection_title_template => 'Detection {{sid}}: {{title}} [{{severity}}]');
INSERT INTO halo_itsm.detections (sid, title, description, severity) VALUES
    ('D-1', 'Mimikatz', 'lsass access', 'critical'),
    ('D-2', 'EICAR', NULL, 'high'),
    ('D-3', 'Beaconing', 'every 60 s', 'medium'),
    ('D-4', 'New admin', NULL, 'low'),
    ('D-5', 'DNS TXT', 'informational', 'info');
SELECT sid, halo_itsm.ticket_payload('detection', sid) FROM halo_itsm.detections ORDER BY id;
-- the case template is the default again (configure() saves the whole form)
SELECT halo_itsm.ticket_payload('case', 'C-1');

-- ---------------------------------------------------------------------------
-- Which integration: the row's own, or the single enabled one.
-- ---------------------------------------------------------------------------
-- no enabled integration
SELECT halo_itsm.set_enabled(1, false);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-1')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('detection', 'D-1')$$);
SELECT halo_itsm.set_enabled(1, true);
-- two enabled integrations and the row names none
SELECT halo_itsm.connect('https://other.halopsa.com', 'cid2', 'secret2', name => 'other') AS id;
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-1')$$);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('detection', 'D-1')$$);
-- the row names its integration: that one is used
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('C-7', 'Named', 'high', 1);
SELECT halo_itsm.ticket_payload('case', 'C-7');
-- ... and must be configured
INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES ('C-8', 'Other', 'high', 2);
CALL pg_temp.try($$SELECT halo_itsm.ticket_payload('case', 'C-8')$$);
SELECT halo_itsm.configure(2, 'Other>Category');
SELECT halo_itsm.ticket_payload('case', 'C-8');
-- with the first disabled, the second is the single enabled one
SELECT halo_itsm.set_enabled(1, false);
SELECT halo_itsm.ticket_payload('case', 'C-1');

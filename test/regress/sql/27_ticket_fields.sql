-- 27_ticket_fields: configure_ticket_fields() checks the extra ticket fields against
-- Halo's ticket schema (unknown field, wrong JSON type, a field halo_itsm sets, not an
-- object: SQLSTATE, halo_itsm: message, hint), stores a good object, and ticket_payload()
-- shows the fields merged into the ticket. What Halo receives is
-- test/integration/test_delivery.py's (test_extra_ticket_fields).
\ir test/regress/common.sql
\ir test/regress/integration.sql
SELECT halo_itsm.configure(1, category => 'Security>Incident', team => 'SOC');

\ir test/regress/try_select.sql

CREATE TEMP TABLE attempts (what text, call text);
INSERT INTO attempts VALUES
  ('no such integration', $$halo_itsm.configure_ticket_fields(99, '{}')$$),
  ('NULL', $$halo_itsm.configure_ticket_fields(1, NULL)$$),
  ('an array', $$halo_itsm.configure_ticket_fields(1, '[{"impact": 2}]')$$),
  ('a string', $$halo_itsm.configure_ticket_fields(1, '"impact"')$$),
  ('unknown field', $$halo_itsm.configure_ticket_fields(1, '{"impactt": 2}')$$),
  ('upper case', $$halo_itsm.configure_ticket_fields(1, '{"Impact": 2}')$$),
  ('prefix of fields', $$halo_itsm.configure_ticket_fields(1, '{"site": 3}')$$),
  ('integer as string', $$halo_itsm.configure_ticket_fields(1, '{"impact": "2"}')$$),
  ('integer with fraction', $$halo_itsm.configure_ticket_fields(1, '{"urgency": 2.5}')$$),
  ('integer as null', $$halo_itsm.configure_ticket_fields(1, '{"user_id": null}')$$),
  ('string as number', $$halo_itsm.configure_ticket_fields(1, '{"user_name": 7}')$$),
  ('boolean as string', $$halo_itsm.configure_ticket_fields(1, '{"dont_do_rules": "true"}')$$),
  ('array as object', $$halo_itsm.configure_ticket_fields(1, '{"customfields": {"id": 1}}')$$),
  ('owned: summary', $$halo_itsm.configure_ticket_fields(1, '{"impact": 2, "summary": "x"}')$$),
  ('owned: tickettype_id', $$halo_itsm.configure_ticket_fields(1, '{"tickettype_id": 3}')$$),
  ('owned: third_party_id_string', $$halo_itsm.configure_ticket_fields(1, '{"third_party_id_string": "C-9"}')$$),
  ('owned: id', $$halo_itsm.configure_ticket_fields(1, '{"id": 12}')$$),
  ('good', $$halo_itsm.configure_ticket_fields(1, '{"impact": 2, "urgency": 3, "site_id": 18, "user_id": 41, "customfields": [{"id": 7, "value": "SOC"}], "dont_do_rules": true}')$$);
SELECT what, pg_temp.try(call) AS result FROM attempts;
SELECT extra_ticket_fields FROM halo_itsm.integrations;

-- a refused call keeps the stored fields
SELECT pg_temp.try($$halo_itsm.configure_ticket_fields(1, '{"impact": "high"}')$$);
SELECT extra_ticket_fields FROM halo_itsm.integrations;

-- ticket_payload: the extra fields merged with the owned ones
INSERT INTO halo_itsm.cases (sid, title, description, severity)
VALUES ('C-1', 'Ransomware on FILESRV01', 'Encrypted shares.', 'critical');
SELECT jsonb_pretty(halo_itsm.ticket_payload('case', 'C-1'));

-- '{}' removes them
SELECT halo_itsm.configure_ticket_fields(1, '{}');
SELECT halo_itsm.ticket_payload('case', 'C-1');

--
-- 03_templates: title templates: render_template() with each variable, NULL values,
-- values that look like variables (never expanded again), quotes, backslashes, control
-- characters and non-ASCII text copied byte for byte; invalid templates rejected by
-- render_template() and configure() with the allowed variables in the hint.
--
\ir test/regress/common.sql
\ir test/regress/try.sql

-- ---------------------------------------------------------------------------
-- Each variable, several times, in any order, next to literal text.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.render_template('{{sid}}', 'C-1', 'Title', 'high') AS sid,
       halo_itsm.render_template('{{title}}', 'C-1', 'Title', 'high') AS title,
       halo_itsm.render_template('{{severity}}', 'C-1', 'Title', 'high') AS severity;
SELECT halo_itsm.render_template('{{sid}}: {{title}}', 'C-1', 'Title', 'high') AS default_template;
SELECT halo_itsm.render_template('[{{severity}}] {{title}} ({{sid}}, again {{sid}})', 'C-1', 'Title', 'high');
SELECT halo_itsm.render_template('{{title}}{{sid}}{{severity}}', 'a', 'b', 'c') AS adjacent;
SELECT halo_itsm.render_template('no variables at all', 'a', 'b', 'c') AS literal;
-- Single braces and a "}}" that closes nothing are literal text.
SELECT halo_itsm.render_template('{ {sid} }} {{sid}} {', 'C-1', 'T', 'low') AS braces;

-- NULL values render as empty text; a NULL template gives NULL.
SELECT halo_itsm.render_template('<{{sid}}|{{title}}|{{severity}}>', NULL, NULL, NULL) AS all_null;
SELECT halo_itsm.render_template('<{{sid}}|{{title}}|{{severity}}>', 'C-1', NULL, 'low') AS title_null;
SELECT halo_itsm.render_template(NULL, 'C-1', 'T', 'low') IS NULL AS null_template;

-- A value containing a variable is copied as it is, never expanded again.
SELECT halo_itsm.render_template('{{sid}}: {{title}}', '{{title}}', '{{sid}} {{severity}}', 'high') AS no_reexpansion;
SELECT halo_itsm.render_template('{{title}}', 'x', '{{', 'y') AS open_braces_in_value,
       halo_itsm.render_template('{{title}}', 'x', '{{unknown}}', 'y') AS unknown_in_value;

-- Quotes, backslashes, control characters and non-ASCII text, byte for byte.
SELECT halo_itsm.render_template('[{{title}}]', 's', E'it''s "quoted" \\ back\\slash', 'low') AS quotes;
WITH v(title) AS (VALUES (E'tab\there\nnewline\rcr' || chr(1) || chr(31) || chr(127) || E' \u00e9\u00df\u4e2d\U0001F512'))
SELECT r = '>' || v.title || '<' AS identical,
       octet_length(r) = octet_length(v.title) + 2 AS same_length,
       encode(convert_to(r, 'UTF8'), 'hex') AS bytes
  FROM v, LATERAL halo_itsm.render_template('>{{title}}<', 'C-1', v.title, 'low') AS r;
-- Non-ASCII text around the variables, too.
SELECT halo_itsm.render_template(E'Fall \u00bb{{sid}}\u00ab \u2014 {{title}}', E'C-\u00e9', E'Stra\u00dfe', 'info') AS non_ascii;

-- ---------------------------------------------------------------------------
-- Invalid templates: render_template() says what is wrong, and where.
-- ---------------------------------------------------------------------------
CALL pg_temp.try($$SELECT halo_itsm.render_template('', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{sid}', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('ab {{title', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{sid}} and {{', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{foo}}', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{ sid }}', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('x {{SID}}', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{{sid}}}', 's', 't', 'v')$$);
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{}}', 's', 't', 'v')$$);
-- positions count characters, not bytes
CALL pg_temp.try($$SELECT halo_itsm.render_template(E'\u00e9\u00e9 {{nope}}', 's', 't', 'v')$$);
-- over-long names are shortened in the message
CALL pg_temp.try($$SELECT halo_itsm.render_template('{{' || repeat('x', 100) || '}}', 's', 't', 'v')$$);

-- ---------------------------------------------------------------------------
-- configure() checks both templates before saving anything.
-- ---------------------------------------------------------------------------
SELECT halo_itsm.connect('https://acme.halopsa.com', 'cid', 'secret') AS id;
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', case_title_template => '{{sid}} {{name}}')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', detection_title_template => 'Detection {{sid')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', case_title_template => '')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', detection_title_template => '')$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', case_title_template => NULL)$$);
CALL pg_temp.try($$SELECT halo_itsm.configure(1, 'Security', detection_title_template => NULL)$$);
SELECT configured_at IS NULL AS still_unconfigured, case_title_template, detection_title_template
  FROM halo_itsm.integrations WHERE id = 1;
-- Valid templates are stored as given.
SELECT halo_itsm.configure(1, 'Security', case_title_template => '{ {{severity}} } {{title}}',
                           detection_title_template => E'\u00bb{{sid}}\u00ab');
SELECT configured_at IS NULL AS still_unconfigured, case_title_template, detection_title_template
  FROM halo_itsm.integrations WHERE id = 1;

-- 24_html_to_text: _html_to_text(), the plain text of Halo's note_html, in one linear
-- pass (src/core/hi_html.c). It gives what the former PL/pgSQL function (kept below as
-- pg_temp.old_html_to_text, verbatim) gave on every input of the table, except the
-- documented changes: a reference is decoded once (&#38;#65; is "&#65;", not "A"),
-- "&#1a;" (hex digits without the x) stays as text instead of vanishing, and there is
-- no limit of 1,000 distinct numeric references.
\ir test/regress/common.sql

-- a C function, immutable, parallel safe and strict
SELECT p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') AS is_c,
       p.provolatile, p.proparallel, p.proisstrict, pg_get_function_identity_arguments(p.oid) AS args,
       p.prorettype::regtype
  FROM pg_proc p WHERE p.oid = 'halo_itsm._html_to_text(text)'::regprocedure;

-- the former function, as it was
CREATE FUNCTION pg_temp.old_html_to_text(html text)
RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    t text;
    m text[];
    cp bigint;
BEGIN
    IF html IS NULL THEN
        RETURN NULL;
    END IF;
    t := regexp_replace(html, '\r\n?', E'\n', 'g');
    t := regexp_replace(t, '<\s*br\s*/?\s*>|<\s*/\s*(p|div|li|tr|h[1-6])\s*>', E'\n', 'gi');
    t := regexp_replace(t, '<[^>]*>', '', 'g');
    t := replace(replace(replace(replace(replace(t, '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&#39;', ''''), '&apos;', '''');
    t := replace(t, '&nbsp;', ' ');
    -- numeric character references, one distinct reference at a time (bounded)
    FOR k IN 1 .. 1000 LOOP
        m := regexp_match(t, '&#([xX]?)([0-9A-Fa-f]{1,8});');
        EXIT WHEN m IS NULL;
        cp := CASE WHEN m[1] = '' AND m[2] ~ '^[0-9]+$' THEN m[2]::bigint
                   WHEN m[1] <> '' THEN ('x' || lpad(m[2], 16, '0'))::bit(64)::bigint END;
        t := replace(t, '&#' || m[1] || m[2] || ';',
                     CASE WHEN cp BETWEEN 1 AND 1114111 AND cp NOT BETWEEN 55296 AND 57343
                          THEN chr(cp::integer) ELSE '' END);
    END LOOP;
    t := replace(t, '&amp;', '&');
    RETURN nullif(btrim(t, E' \t\n'), '');
END
$$;

CREATE TEMP TABLE inputs (n integer PRIMARY KEY, html text, change text);
INSERT INTO inputs VALUES
  (1, 'plain text', NULL),
  (2, '', NULL),
  (3, E' \t\r\n ', NULL),
  (4, E'a\r\nb\rc\n', NULL),
  (5, 'a<br>b<BR/>c< br / >d<Br	>e', NULL),
  (6, 'a</p>b</DIV>c</li>d</tr>e</h1>f</H6>g< / p >h', NULL),
  (7, 'a</h7>b</pre>c</br>d<p>e<brx>f</ul>g', NULL),
  (8, 'a<br class="x">b', NULL),
  (9, '<p>Mail <b>quarantined</b> &amp; blocked:<br>sender &lt;x@evil.test&gt;&#33;</p><div>&#x2714; done</div>', NULL),
  (10, 'a < b', NULL),
  (11, 'a < b <i>c', NULL),
  (12, 'x<b>y<z and <w', NULL),
  (13, '<a title="<br>">x</a>', NULL),
  (14, 'a <b<br>c', NULL),
  (15, '<a <b> c>d', NULL),
  (16, '&l<b>t;', NULL),
  (17, '&l<br>t;', NULL),
  (18, '&lt;&gt;&quot;&#39;&apos;&nbsp;&amp;', NULL),
  (19, '&LT;&Amp;&copy;', NULL),
  (20, '&amp;lt; &amp;amp; &amp;#65;', NULL),
  (21, '&#65;&#0066;&#x43;&#X44;&#x00000045;', NULL),
  (22, '&#233;&#x20AC;&#128512;&#x10FFFF;', NULL),
  (23, 'a&#0;b&#xD800;c&#57343;d&#x110000;e&#99999999;f&#xFFFFFFFF;g', NULL),
  (24, '&#000000065; &#65 &#; &#x; &#xg;', NULL),
  (25, '&&lt;', NULL),
  (26, '&nbsp;a&nbsp;', NULL),
  (27, '&#13;a&#10;', NULL),
  (28, '<div><br/></div>', NULL),
  (29, '&lt;b&gt;x&lt;/b&gt;', NULL),
  (30, E'<p\r\nclass=x>t</p\n>', NULL),
  (31, '<ul><li>one</li><li>two</li></ul><table><tr><td>a</td></tr></table>', NULL),
  (32, '&#38;#65; &#38;amp; &#x26;lt;', 'decoded once'),
  (33, '&#38;amp;', 'decoded once'),
  (34, '&#1a; and &#38<b>b;', 'hex digits without x stay');

SELECT n, html, halo_itsm._html_to_text(html) AS text,
       halo_itsm._html_to_text(html) IS NOT DISTINCT FROM pg_temp.old_html_to_text(html) AS same_as_before,
       change
  FROM inputs ORDER BY n;

-- what the former function gave where the result changed
SELECT n, pg_temp.old_html_to_text(html) AS before FROM inputs WHERE change IS NOT NULL ORDER BY n;

-- 900 kB with 1,500 distinct numeric references (the former loop took seconds and left
-- every reference after the 1,000th undecoded): all decoded.
CREATE TEMP TABLE big AS
SELECT string_agg(repeat('lorem ipsum ', 50) || '&#' || (19968 + i) || ';', '' ORDER BY i) AS html,
       string_agg(repeat('lorem ipsum ', 50) || chr(19968 + i), '' ORDER BY i) AS want
  FROM generate_series(1, 1500) i;
SELECT octet_length(html) AS html_bytes, length(halo_itsm._html_to_text(html)) AS text_chars,
       halo_itsm._html_to_text(html) = rtrim(want) AS all_decoded,
       strpos(halo_itsm._html_to_text(html), '&#') AS refs_left
  FROM big;

-- NULL in, NULL out; nothing but tags and white space: NULL
SELECT halo_itsm._html_to_text(NULL) IS NULL AS null_in, halo_itsm._html_to_text('<p> </p>') IS NULL AS blank;

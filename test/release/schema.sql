-- test/release/schema.sql: every object of the halo_itsm extension, one sorted line each
-- with its full definition, so that two databases can be compared with diff (the
-- upgrade check: an updated database against a fresh install). psql -At -f schema.sql.
-- Run by the test harness as a superuser in a throwaway database: search_path pinned.
SET search_path = pg_catalog;
-- an ACL as text with its items sorted: the order of the items means nothing (a grant
-- re-applied by an upgrade script may land before or after the owner's item)
CREATE FUNCTION pg_temp.acl_text(acl aclitem[]) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(acl) AS a), '-') $$;
WITH members AS (
    SELECT d.classid, d.objid
    FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
      AND d.deptype = 'e' AND e.extname = 'halo_itsm'
),
rels AS (
    SELECT c.oid, c.relname, c.relkind FROM pg_class c
    JOIN members m ON m.classid = 'pg_class'::regclass
                  AND m.objid = c.oid
)
SELECT line FROM (
    -- every member, by its description (functions with their arguments)
    SELECT 'member ' || pg_describe_object(classid, objid, 0) AS line
    FROM members
    UNION ALL
    -- function definitions, owners' rights, settings and privileges
    SELECT 'function ' || p.oid::regprocedure::text || E'\n'
           || pg_get_functiondef(p.oid)
           || ' acl=' || pg_temp.acl_text(p.proacl)
    FROM pg_proc p
    JOIN members m ON m.classid = 'pg_proc'::regclass
                  AND m.objid = p.oid
    WHERE p.prokind <> 'a'
    UNION ALL
    -- columns in their order (dropped columns skipped), types, defaults, nullability
    SELECT 'column ' || r.relname || ' #'
           || (row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum))::text
           || ' ' || a.attname
           || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
           || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
    FROM rels r
    JOIN pg_attribute a ON a.attrelid = r.oid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid
                                      AND ad.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'v', 'c')
    UNION ALL
    SELECT 'constraint ' || r.relname || ' '
           || co.conname || ' '
           || pg_get_constraintdef(co.oid)
    FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
           || ' enabled=' || t.tgenabled::text
    FROM pg_trigger t
    WHERE NOT t.tgisinternal
      AND t.tgfoid IN (SELECT objid FROM members
                       WHERE classid = 'pg_proc'::regclass)
    UNION ALL
    SELECT 'view ' || r.relname || E'\n'
           || pg_get_viewdef(r.oid)
    FROM rels r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'relation ' || r.relname || ' kind='
           || r.relkind::text || ' acl='
           || pg_temp.acl_text(c.relacl)
           || ' rls=' || c.relrowsecurity::text
           || ' options=' || coalesce(c.reloptions::text, '-')
    FROM rels r JOIN pg_class c ON c.oid = r.oid
    UNION ALL
    SELECT 'type ' || t.typname || ' '
           || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                             FROM pg_enum e WHERE e.enumtypid = t.oid), '')
    FROM pg_type t
    JOIN members m ON m.classid = 'pg_type'::regclass
                  AND m.objid = t.oid
    UNION ALL
    SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid)
           || ': ' || d.description
    FROM pg_description d
    WHERE (d.classoid, d.objoid) IN (SELECT classid, objid FROM members)
    UNION ALL
    SELECT 'config_dump ' || c::text || ' '
           || coalesce(e.extcondition[array_position(e.extconfig, c)], '')
    FROM pg_extension e, unnest(e.extconfig::regclass[]) c
    WHERE e.extname = 'halo_itsm'
    UNION ALL
    SELECT 'schema acl ' || pg_temp.acl_text(n.nspacl)
    FROM pg_namespace n WHERE n.nspname = 'halo_itsm'
) s
ORDER BY line COLLATE "C";

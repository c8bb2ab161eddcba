-- Before a revision that changes the type of columns of pgjobs.jobs: Postgres
-- changes the type of no column that a view or a trigger's WHEN reads, so
-- pgjobs' views and the jobs' triggers are kept here and dropped, and
-- readers_restored.sql makes them again as they were, the views with their
-- comments and grants (pgjobs.migrations.retype_sql() runs the three in turn).
CREATE TEMPORARY TABLE pgjobs_saved AS
SELECT c.oid, 'DROP VIEW ' || c.oid::regclass::text AS drop_it,
       'CREATE VIEW ' || c.oid::regclass::text || ' AS ' || pg_get_viewdef(c.oid) AS make_it
FROM pg_class c
WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT t.oid, 'DROP TRIGGER ' || quote_ident(t.tgname) || ' ON pgjobs.jobs', pg_get_triggerdef(t.oid)
FROM pg_trigger t
WHERE t.tgrelid = 'pgjobs.jobs'::regclass AND NOT t.tgisinternal;

CREATE TEMPORARY TABLE pgjobs_saved_notes AS
SELECT 'COMMENT ON ' || CASE WHEN d.objsubid = 0 THEN 'VIEW ' || c.oid::regclass::text
                             ELSE 'COLUMN ' || c.oid::regclass::text || '.' || quote_ident(a.attname)
                        END
       || ' IS ' || quote_literal(d.description) AS stmt
FROM pg_class c
JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'GRANT ' || g.privilege_type || ' ON ' || c.oid::regclass::text || ' TO '
       || CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END
       || CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) g
WHERE c.relnamespace = 'pgjobs'::regnamespace AND c.relkind = 'v' AND g.grantee <> c.relowner;

DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT drop_it FROM pgjobs_saved ORDER BY oid DESC LOOP
        EXECUTE s.drop_it;
    END LOOP;
END;
$$;

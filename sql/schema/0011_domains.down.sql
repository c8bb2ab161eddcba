-- Undo revision 0011: the jobs' statuses and failure policies are text again,
-- with the table's CHECKs of revision 0007.

-- pgjobs' views and the jobs' triggers read these columns, and Postgres
-- changes the type of no column that a view or a trigger's WHEN reads: they
-- are dropped here and made again below as they were, the views with their
-- comments and grants.
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

ALTER TABLE pgjobs.jobs
    ALTER COLUMN status TYPE text,
    ALTER COLUMN on_failure TYPE text,
    ADD CONSTRAINT jobs_status_check
        CHECK (status = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[])),
    ADD CONSTRAINT jobs_on_failure_check CHECK (on_failure = ANY ('{cancel,pass}'::text[]));

DROP DOMAIN pgjobs.job_status, pgjobs.failure_policy;

DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT make_it FROM pgjobs_saved ORDER BY oid LOOP
        EXECUTE s.make_it;
    END LOOP;
    FOR s IN SELECT stmt FROM pgjobs_saved_notes LOOP
        EXECUTE s.stmt;
    END LOOP;
END;
$$;

DROP TABLE pgjobs_saved, pgjobs_saved_notes;

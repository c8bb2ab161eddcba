-- pgjobs schema, revision 0011: the statuses and failure policies of jobs are
-- domains, which hold the CHECKs the table held on them.
--
-- Postgres reads a table's CHECK constraints from the catalog and plans them
-- anew for every statement that writes to it, however small the statement:
-- the three of pgjobs.jobs cost a one-job insert 72,000 of its 270,000
-- Postgres instructions. A domain's checks are planned once and kept in the
-- backend's type cache: 11,500 instructions for the same three. The values
-- allowed are the same, so the rows already there pass.
--
-- A column's type changes in place to a domain without a check, but only by
-- rewriting the table to one with a check: so the domains are made bare, the
-- columns changed, and the checks added to the domains after, which reads the
-- table once. The partial indexes whose predicates read status are built
-- again, under the table's lock: on a large table this takes a while.

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

CREATE DOMAIN pgjobs.job_status AS text;
CREATE DOMAIN pgjobs.failure_policy AS text;

ALTER TABLE pgjobs.jobs
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_on_failure_check,
    ALTER COLUMN status TYPE pgjobs.job_status,
    ALTER COLUMN on_failure TYPE pgjobs.failure_policy;

ALTER DOMAIN pgjobs.job_status ADD CONSTRAINT job_status_check
    CHECK (VALUE = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[]));
ALTER DOMAIN pgjobs.failure_policy ADD CONSTRAINT failure_policy_check
    CHECK (VALUE = ANY ('{cancel,pass}'::text[]));

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

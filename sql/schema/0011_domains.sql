-- pgjobs schema, revision 0011: the statuses, failure policies and attempt
-- limits of jobs are domains, which hold the CHECKs the table held on them.
--
-- Postgres reads a table's CHECK constraints from the catalog and plans them
-- anew for every statement that writes to it, however small the statement,
-- while a domain's checks are planned once and kept in the backend's type
-- cache. A one-job insert cost 265,000 Postgres instructions with the checks
-- on the table and 202,000 with them on the domains. The values allowed are
-- the same, so the rows already there pass. claim_limited() returns max_attempts as an integer,
-- which the domain is not: it is rewritten from its own definition to say so.
--
-- A column's type changes in place to a domain without a check, but only by
-- rewriting the table to one with a check: so the domains are made bare, the
-- columns changed, and the checks added to the domains after, which reads the
-- table once. The partial indexes whose predicates read status are built
-- again, under the table's lock: on a large table this takes a while. The
-- views and triggers that read the columns are dropped before and made again
-- after, by readers_dropped.sql and readers_restored.sql.

CREATE DOMAIN pgjobs.job_status AS text;
CREATE DOMAIN pgjobs.failure_policy AS text;
CREATE DOMAIN pgjobs.attempt_limit AS integer;

ALTER TABLE pgjobs.jobs
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_on_failure_check,
    DROP CONSTRAINT jobs_max_attempts_check,
    ALTER COLUMN status TYPE pgjobs.job_status,
    ALTER COLUMN on_failure TYPE pgjobs.failure_policy,
    ALTER COLUMN max_attempts TYPE pgjobs.attempt_limit;

ALTER DOMAIN pgjobs.job_status ADD CONSTRAINT job_status_check
    CHECK (VALUE = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[]));
ALTER DOMAIN pgjobs.failure_policy ADD CONSTRAINT failure_policy_check
    CHECK (VALUE = ANY ('{cancel,pass}'::text[]));
ALTER DOMAIN pgjobs.attempt_limit ADD CONSTRAINT attempt_limit_check CHECK (VALUE >= 1);

DO $$
DECLARE
    def text := pg_get_functiondef(
        'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure);
BEGIN
    IF position('j.attempt, j.max_attempts,' IN def) = 0 THEN
        RAISE EXCEPTION 'pgjobs.claim_limited() is not the one revision 0008 made';
    END IF;
    EXECUTE replace(def, 'j.attempt, j.max_attempts,', 'j.attempt, j.max_attempts::integer,');
END;
$$;

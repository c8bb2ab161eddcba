-- Undo revision 0011: the jobs' statuses, failure policies and attempt limits
-- are text and integer again, with the table's CHECKs of revisions 0001 and
-- 0007, and claim_limited() as revision 0008 left it. Run, as the revision
-- is, between readers_dropped.sql and readers_restored.sql.

ALTER TABLE pgjobs.jobs
    ALTER COLUMN status TYPE text,
    ALTER COLUMN on_failure TYPE text,
    ALTER COLUMN max_attempts TYPE integer,
    ADD CONSTRAINT jobs_status_check
        CHECK (status = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[])),
    ADD CONSTRAINT jobs_on_failure_check CHECK (on_failure = ANY ('{cancel,pass}'::text[])),
    ADD CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1);

DROP DOMAIN pgjobs.job_status, pgjobs.failure_policy, pgjobs.attempt_limit;

DO $$
DECLARE
    def text := pg_get_functiondef(
        'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure);
BEGIN
    EXECUTE replace(def, 'j.attempt, j.max_attempts::integer,', 'j.attempt, j.max_attempts,');
END;
$$;

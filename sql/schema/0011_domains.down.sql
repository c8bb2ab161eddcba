-- Undo revision 0011: the jobs' statuses and failure policies are text again,
-- with the table's CHECKs of revision 0007. Run, as the revision is, between
-- readers_dropped.sql and readers_restored.sql.

ALTER TABLE pgjobs.jobs
    ALTER COLUMN status TYPE text,
    ALTER COLUMN on_failure TYPE text,
    ADD CONSTRAINT jobs_status_check
        CHECK (status = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[])),
    ADD CONSTRAINT jobs_on_failure_check CHECK (on_failure = ANY ('{cancel,pass}'::text[]));

DROP DOMAIN pgjobs.job_status, pgjobs.failure_policy;

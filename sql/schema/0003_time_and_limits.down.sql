-- Revert revision 0003.
DROP INDEX IF EXISTS pgjobs.jobs_finished_idx;
DROP TABLE IF EXISTS pgjobs.periodic;
DROP FUNCTION IF EXISTS pgjobs.claim_limited(text[], text[], text, integer);
DROP TABLE IF EXISTS pgjobs.task_limits;
DROP INDEX IF EXISTS pgjobs.jobs_limited_running_idx;
DROP INDEX IF EXISTS pgjobs.jobs_limited_claim_idx;
DROP INDEX IF EXISTS pgjobs.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON pgjobs.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';
ALTER TABLE pgjobs.jobs DROP COLUMN IF EXISTS limited;
DROP TRIGGER IF EXISTS jobs_dedup_key ON pgjobs.jobs;
DROP FUNCTION IF EXISTS pgjobs.dedup_key_follows_job();
DROP INDEX IF EXISTS pgjobs.dedup_keys_job_idx;
DROP INDEX IF EXISTS pgjobs.dedup_keys_expires_idx;
ALTER TABLE pgjobs.dedup_keys DROP COLUMN IF EXISTS window_seconds;

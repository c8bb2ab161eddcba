-- Throughput and failure rate per queue over the last minute, 5 minutes and hour.
--
-- Answers: how many jobs does each queue get through, and how many of them
-- fail? failure_rate is failed / (succeeded + failed) of the jobs that ended
-- in the window: a job that failed for good counts once however many
-- attempts it took (retries show in slowest_tasks.sql and job_history.sql);
-- cancelled jobs are counted but left out of the rate.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/throughput.sql
--
-- Reads pgjobs.throughput: one index range scan of the last hour's ended
-- jobs (jobs_finished_idx). Only queues with a job ended in the last hour
-- have rows.

SELECT queue,
       period,
       finished,
       succeeded,
       failed,
       cancelled,
       round(jobs_per_second::numeric, 2) AS jobs_per_s,
       round(100 * failure_rate::numeric, 1) AS failure_pct
FROM pgjobs.throughput
ORDER BY queue, period_seconds;

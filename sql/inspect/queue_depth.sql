-- Queue depth: how many jobs each queue holds, by status.
--
-- Answers: is work piling up, and in which queue? "waiting" is pending +
-- scheduled + retrying (what `pgjobs check --max-depth` compares); ended jobs
-- (succeeded, failed, cancelled) stay in the table until the pruner removes
-- them, so their counts grow with the retention, not with the backlog.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/queue_depth.sql
--
-- Reads the view pgjobs.queue_depth, which counts the whole pgjobs.jobs table
-- (one sequential scan). For something that runs every few seconds, read
-- oldest_pending.sql or run `pgjobs check` instead: they read waiting jobs only.

SELECT queue,
       sum(jobs) FILTER (WHERE status IN ('pending', 'scheduled', 'retrying')) AS waiting,
       sum(jobs) FILTER (WHERE status = 'pending')   AS pending,
       sum(jobs) FILTER (WHERE status = 'scheduled') AS scheduled,
       sum(jobs) FILTER (WHERE status = 'retrying')  AS retrying,
       sum(jobs) FILTER (WHERE status = 'running')   AS running,
       sum(jobs) FILTER (WHERE status = 'succeeded') AS succeeded,
       sum(jobs) FILTER (WHERE status = 'failed')    AS failed,
       sum(jobs) FILTER (WHERE status = 'cancelled') AS cancelled,
       sum(jobs) AS total
FROM pgjobs.queue_depth
GROUP BY ROLLUP (queue)
ORDER BY queue NULLS LAST;

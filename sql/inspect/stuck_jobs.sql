-- Stuck jobs: work that should be moving and is not.
--
-- Answers, in three result sets:
--   1. Running jobs whose worker lost its lease (heartbeat older than the
--      worker's lease_seconds, or the worker row is gone), that run longer
--      than :max_running, or whose cancellation was asked for more than
--      :cancel_grace ago and which still run. The maintenance leader's
--      rescuer looks for lapsed leases every quarter lease (7.5 s with the
--      default 30 s); jobs that stay here longer mean no worker leads.
--   2. Queues with ready jobs that no live worker listens to.
--   3. Scheduled and retrying jobs whose run_at passed more than
--      :release_grace ago and that were not released to 'pending': the
--      maintenance leader releases them, so there is none, or it is behind.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/stuck_jobs.sql
--   psql "$PGJOBS_URL" -v max_running='15 minutes' -f sql/inspect/stuck_jobs.sql
--
-- Variables:
--   max_running     a run longer than this is listed (default '1 hour')
--   cancel_grace    how long a cancellation may take (default '1 minute')
--   release_grace   how late a due job may be released (default '1 minute')

\if :{?max_running}
\else
    \set max_running '1 hour'
\endif
\if :{?cancel_grace}
\else
    \set cancel_grace '1 minute'
\endif
\if :{?release_grace}
\else
    \set release_grace '1 minute'
\endif

SELECT job_id,
       task,
       queue,
       attempt,
       worker_id,
       hostname,
       pid,
       date_trunc('second', running_for) AS running_for,
       CASE
           WHEN hostname IS NULL THEN 'worker gone'
           WHEN heartbeat_stale THEN
               'no heartbeat since ' || date_trunc('second', heartbeat_at)
               || ', lease ran out at ' || date_trunc('second', lease_expires_at)
           WHEN cancel_requested_at < now() - :'cancel_grace'::interval THEN
               'cancel asked ' || date_trunc('second', now() - cancel_requested_at)
               || ' ago, still running'
           ELSE 'running longer than ' || :'max_running'
       END AS why
FROM pgjobs.running_jobs
WHERE heartbeat_stale
   OR running_for > :'max_running'::interval
   OR cancel_requested_at < now() - :'cancel_grace'::interval
ORDER BY started_at, job_id;

-- Ready jobs in queues that no live worker takes.
SELECT o.queue, o.pending, round(o.oldest_pending_age::numeric, 1) AS oldest_wait_s
FROM pgjobs.queue_oldest o
WHERE o.pending > 0
  AND NOT EXISTS (SELECT 1 FROM pgjobs.workers_alive w WHERE o.queue = ANY (w.queues))
ORDER BY o.oldest_pending_age DESC;

-- Due jobs still waiting to be released (reads jobs_due_idx).
SELECT queue,
       status,
       count(*) AS overdue,
       date_trunc('second', now() - min(run_at)) AS most_overdue_by
FROM pgjobs.jobs
WHERE status IN ('scheduled', 'retrying')
  AND run_at < now() - :'release_grace'::interval
GROUP BY queue, status
ORDER BY most_overdue_by DESC;

-- Running jobs and the workers that run them, longest-running first.
--
-- Answers: what is running right now, where (host and pid), for how long,
-- and is its worker still alive? A worker holds the lease on all its jobs
-- through its heartbeat (pgjobs.workers.heartbeat_at); heartbeat_stale means
-- the heartbeat is older than the worker's lease_seconds (or the worker row
-- is gone), and the maintenance leader will hand the job to another worker.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/running_jobs.sql
--   psql "$PGJOBS_URL" -v limit=500 -f sql/inspect/running_jobs.sql
--
-- Variables:
--   limit   rows to show (default 100)

\if :{?limit}
\else
    \set limit 100
\endif

SELECT job_id,
       task,
       queue,
       attempt || '/' || max_attempts AS attempt,
       date_trunc('second', running_for) AS running_for,
       worker_id,
       hostname,
       pid,
       round(EXTRACT(EPOCH FROM now() - heartbeat_at)::numeric, 1) AS heartbeat_age_s,
       heartbeat_stale,
       cancel_requested_at IS NOT NULL AS cancel_requested
FROM pgjobs.running_jobs
ORDER BY started_at, job_id
LIMIT :limit;

-- Per worker: what it runs against what it may run.
SELECT coalesce(r.worker_id, '(none)') AS worker_id,
       r.hostname,
       r.pid,
       count(*) AS running,
       w.concurrency,
       bool_or(r.heartbeat_stale) AS heartbeat_stale
FROM pgjobs.running_jobs r
LEFT JOIN pgjobs.workers w ON w.id = r.worker_id
GROUP BY r.worker_id, r.hostname, r.pid, w.concurrency
ORDER BY running DESC, worker_id;

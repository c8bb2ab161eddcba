-- One job's full history: its row, a timeline of every attempt, and what is
-- left of it elsewhere (dead letter, dedup key).
--
-- Answers: what happened to this job? When it was enqueued and became
-- ready, each attempt with its worker, outcome and error, how it ended, and
-- whether it sits in the dead letters. The last error's traceback comes last.
--
-- Run:
--   psql "$PGJOBS_URL" -v job_id=01a20c20-868c-7000-866a-d80bc838d789 -f sql/inspect/job_history.sql
--
-- Variables:
--   job_id   the job's id (required)

\if :{?job_id}
\else
    \echo 'usage: psql "$PGJOBS_URL" -v job_id=<uuid> -f sql/inspect/job_history.sql'
    \quit
\endif

\x on
SELECT id, task, queue, status, priority,
       attempt, max_attempts, attempt_base,
       created_at, run_at, started_at, finished_at,
       worker_id, cancel_requested_at, dedup_key,
       args, kwargs, result, progress, meta,
       error ->> 'type' AS error_type,
       error ->> 'message' AS error_message
FROM pgjobs.jobs
WHERE id = :'job_id'::uuid;
\x off

-- The timeline. Attempt rows are written when an attempt ends, so a running
-- attempt shows from the job row.
WITH j AS (SELECT * FROM pgjobs.jobs WHERE id = :'job_id'::uuid)
SELECT at, event, detail
FROM (
    SELECT created_at AS at, 1 AS ord, 'enqueued' AS event,
           format('queue %s, priority %s, %s attempts allowed', queue, priority, max_attempts)
               AS detail
    FROM j
    UNION ALL
    SELECT a.started_at, 2, format('attempt %s started', a.attempt), 'worker ' || a.worker_id
    FROM pgjobs.attempts a WHERE a.job_id = :'job_id'::uuid
    UNION ALL
    SELECT a.finished_at, 3, format('attempt %s %s', a.attempt, a.outcome),
           concat_ws(' ', round(EXTRACT(EPOCH FROM a.finished_at - a.started_at)::numeric, 3)
                          || ' s',
                     (a.error ->> 'type') || ': ' || left(a.error ->> 'message', 200))
    FROM pgjobs.attempts a WHERE a.job_id = :'job_id'::uuid
    UNION ALL
    SELECT started_at, 2, format('attempt %s started (running now)', attempt),
           'worker ' || worker_id
    FROM j WHERE status = 'running'
    UNION ALL
    SELECT finished_at, 4, 'ended ' || status, NULL
    FROM j WHERE finished_at IS NOT NULL AND status IN ('succeeded', 'failed', 'cancelled')
    UNION ALL
    SELECT run_at, 5, 'next attempt due (' || status || ')', NULL
    FROM j WHERE status IN ('scheduled', 'retrying', 'pending')
    UNION ALL
    SELECT d.failed_at, 6, 'dead-lettered', format('after %s attempts', d.attempts)
    FROM pgjobs.dead_letters d WHERE d.job_id = :'job_id'::uuid
) AS events
ORDER BY at, ord;

-- The dedup key that points at this job, if any.
SELECT key, created_at, window_seconds, expires_at
FROM pgjobs.dedup_keys
WHERE job_id = :'job_id'::uuid;

-- The last error's traceback.
SELECT error ->> 'traceback' AS traceback
FROM pgjobs.jobs
WHERE id = :'job_id'::uuid AND error ->> 'traceback' IS NOT NULL;

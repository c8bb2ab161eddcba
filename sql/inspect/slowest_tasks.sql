-- Slowest tasks: run-time percentiles per task, from the attempts history.
--
-- Answers: which tasks take long, and is it every run or a slow tail? Each
-- attempt that ran to an outcome (succeeded, failed or cancelled) counts with
-- its run time, finished_at - started_at. Attempts lost with their worker are
-- left out: they end when the rescuer notices, so their length says nothing
-- about the task. Compare p99 with the task's timeout.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/slowest_tasks.sql
--   psql "$PGJOBS_URL" -v since='7 days' -v limit=50 -f sql/inspect/slowest_tasks.sql
--
-- Variables:
--   since   how far back to look (default '24 hours')
--   limit   rows to show (default 20)
--
-- Reads every attempts row (attempts has no index on finished_at; the pruner
-- keeps the table to the jobs' retention).

\if :{?since}
\else
    \set since '24 hours'
\endif
\if :{?limit}
\else
    \set limit 20
\endif

WITH runs AS (
    SELECT j.task, a.outcome, EXTRACT(EPOCH FROM a.finished_at - a.started_at)::float8 AS s
    FROM pgjobs.attempts a
    JOIN pgjobs.jobs j ON j.id = a.job_id
    WHERE a.finished_at >= now() - :'since'::interval
      AND a.outcome NOT IN ('lost', 'handed_back')
)
SELECT task,
       count(*) AS attempts,
       count(*) FILTER (WHERE outcome <> 'succeeded') AS not_succeeded,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY s)::numeric, 3) AS p50_s,
       round(percentile_cont(0.90) WITHIN GROUP (ORDER BY s)::numeric, 3) AS p90_s,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 3) AS p99_s,
       round(max(s)::numeric, 3) AS max_s,
       round(sum(s)::numeric, 1) AS total_s
FROM runs
GROUP BY task
ORDER BY p90_s DESC, task
LIMIT :limit;

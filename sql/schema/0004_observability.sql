-- pgjobs schema, revision 0004: views for inspection and alerting.
--
-- Plain views over the tables, so they are always current and cost nothing
-- until they are read. The ones an alert or a probe reads often
-- (queue_oldest, throughput, running_jobs, workers_alive) read only through
-- the partial indexes of the rows they are about: waiting, recently finished
-- or running jobs, never the finished history around them. queue_depth and
-- dead_letters_by_task count everything in their table, which the pruner
-- keeps to its retention.
--
-- A worker's lease is its heartbeat: it is alive while its heartbeat is no
-- older than its own lease_seconds, the same rule the rescuer uses
-- (rescue_jobs in sql/queries.sql).

CREATE VIEW pgjobs.queue_depth AS
SELECT queue, status, count(*) AS jobs
FROM pgjobs.jobs
GROUP BY queue, status;

COMMENT ON VIEW pgjobs.queue_depth IS
    'Jobs per queue and status, finished ones included (they stay until pruned). '
    'Counts the whole jobs table: for a frequent check read pgjobs.queue_oldest.';

-- Each branch matches the predicate of one partial index (jobs_claim_idx,
-- jobs_limited_claim_idx, jobs_due_idx), so the view reads waiting jobs only:
-- a single `status IN (...)` matches none of them and scans the whole table.
-- The pending flag is a constant per branch so that the first branch can be
-- an index-only scan.
--
-- The oldest job's id comes from min() over a key that sorts like
-- (run_at, id): run_at in UTC as fixed-width digits down to the microsecond,
-- then the id, compared byte by byte (COLLATE "C", which is also how uuids
-- compare). An ordered array_agg() would sort every waiting job, and under a
-- large backlog spill the sort to disk on each read; a lookup per queue
-- afterwards makes the planner's estimate so high that the JIT compiler
-- starts, and compiling costs more than the query.
CREATE VIEW pgjobs.queue_oldest AS
WITH waiting AS (
    SELECT queue, true AS pending, run_at, id
    FROM pgjobs.jobs WHERE status = 'pending' AND NOT limited
    UNION ALL
    SELECT queue, true, run_at, id
    FROM pgjobs.jobs WHERE status = 'pending' AND limited
    UNION ALL
    SELECT queue, false, run_at, id
    FROM pgjobs.jobs WHERE status IN ('scheduled', 'retrying')
),
levels AS (
    SELECT queue,
           count(*) AS depth,
           count(*) FILTER (WHERE pending) AS pending,
           min(run_at) FILTER (WHERE pending) AS oldest_pending_at,
           min((to_char(run_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || id::text)
               COLLATE "C") FILTER (WHERE pending) AS oldest_key
    FROM waiting
    GROUP BY queue
)
SELECT queue, depth, pending,
       EXTRACT(EPOCH FROM now() - oldest_pending_at)::float8 AS oldest_pending_age,
       oldest_pending_at,
       right(oldest_key, 36)::uuid AS oldest_pending_id
FROM levels;

COMMENT ON VIEW pgjobs.queue_oldest IS
    'Per queue with waiting jobs: depth (pending + scheduled + retrying), pending jobs, and '
    'the oldest pending job: its wait in seconds since its run_at, its run_at and its id. '
    'A queue without waiting jobs has no row: its depth is 0.';
COMMENT ON COLUMN pgjobs.queue_oldest.depth IS
    'Jobs waiting to run: pending, scheduled and retrying.';
COMMENT ON COLUMN pgjobs.queue_oldest.oldest_pending_age IS
    'Seconds the oldest ready job has waited since it became ready (its run_at); '
    'NULL when none is pending.';

-- One pass over the last hour of finished jobs through jobs_finished_idx
-- (its predicate is repeated here so that the planner can use it), counted
-- for the three windows at once and then turned into a row per window.
CREATE VIEW pgjobs.throughput AS
WITH per_queue AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'succeeded'
                            AND finished_at >= now() - interval '1 minute') AS succeeded_1m,
           count(*) FILTER (WHERE status = 'failed'
                            AND finished_at >= now() - interval '1 minute') AS failed_1m,
           count(*) FILTER (WHERE status = 'cancelled'
                            AND finished_at >= now() - interval '1 minute') AS cancelled_1m,
           count(*) FILTER (WHERE status = 'succeeded'
                            AND finished_at >= now() - interval '5 minutes') AS succeeded_5m,
           count(*) FILTER (WHERE status = 'failed'
                            AND finished_at >= now() - interval '5 minutes') AS failed_5m,
           count(*) FILTER (WHERE status = 'cancelled'
                            AND finished_at >= now() - interval '5 minutes') AS cancelled_5m,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded_1h,
           count(*) FILTER (WHERE status = 'failed') AS failed_1h,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled_1h
    FROM pgjobs.jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - interval '1 hour'
    GROUP BY queue
)
SELECT p.queue, w.period, w.period_seconds, w.succeeded, w.failed, w.cancelled,
       w.succeeded + w.failed + w.cancelled AS finished,
       (w.succeeded + w.failed + w.cancelled) / w.period_seconds::float8 AS jobs_per_second,
       w.failed::float8 / NULLIF(w.succeeded + w.failed, 0) AS failure_rate
FROM per_queue p
CROSS JOIN LATERAL (
    VALUES ('1 minute', 60, p.succeeded_1m, p.failed_1m, p.cancelled_1m),
           ('5 minutes', 300, p.succeeded_5m, p.failed_5m, p.cancelled_5m),
           ('1 hour', 3600, p.succeeded_1h, p.failed_1h, p.cancelled_1h)
) AS w(period, period_seconds, succeeded, failed, cancelled);

COMMENT ON VIEW pgjobs.throughput IS
    'Per queue and window (1 minute, 5 minutes, 1 hour): jobs that ended in the window by '
    'outcome, ended jobs per second, and failure rate = failed / (succeeded + failed), NULL '
    'when neither. Jobs that failed for good count once, not per attempt. Only queues with a '
    'job ended in the last hour have rows; a retention (--keep-succeeded, --keep-failed) '
    'under an hour makes the longer windows undercount.';

CREATE VIEW pgjobs.running_jobs AS
SELECT j.id AS job_id, j.task, j.queue, j.attempt, j.max_attempts, j.started_at,
       now() - j.started_at AS running_for,
       EXTRACT(EPOCH FROM now() - j.started_at)::float8 AS running_seconds,
       j.worker_id, w.hostname, w.pid, w.heartbeat_at,
       w.heartbeat_at + make_interval(secs => w.lease_seconds) AS lease_expires_at,
       -- A job whose worker row is gone is as lost as one whose worker is silent.
       (w.id IS NULL OR w.heartbeat_at < now() - make_interval(secs => w.lease_seconds))
           AS heartbeat_stale,
       j.cancel_requested_at
FROM pgjobs.jobs j
LEFT JOIN pgjobs.workers w ON w.id = j.worker_id
WHERE j.status = 'running';

COMMENT ON VIEW pgjobs.running_jobs IS
    'Running jobs with the worker that holds their lease. heartbeat_stale: the worker is '
    'gone or its heartbeat is older than its lease_seconds; the leader''s rescuer will put '
    'the job back (or fail it) on its next round.';

-- The most common error type, with ties going to the first type by name, so
-- the answer is stable from one read to the next.
CREATE VIEW pgjobs.dead_letters_by_task AS
WITH by_type AS (
    SELECT task, queue, error ->> 'type' AS error_type, count(*) AS n,
           min(failed_at) AS first_failed_at, max(failed_at) AS last_failed_at
    FROM pgjobs.dead_letters
    GROUP BY task, queue, error ->> 'type'
)
SELECT task, queue,
       sum(n)::bigint AS dead_letters,
       min(first_failed_at) AS first_failed_at,
       max(last_failed_at) AS last_failed_at,
       (array_agg(error_type ORDER BY n DESC, error_type)
           FILTER (WHERE error_type IS NOT NULL))[1] AS top_error_type,
       (array_agg(n ORDER BY n DESC, error_type)
           FILTER (WHERE error_type IS NOT NULL))[1] AS top_error_count
FROM by_type
GROUP BY task, queue;

COMMENT ON VIEW pgjobs.dead_letters_by_task IS
    'Dead letters per task and queue: how many, the first and last failed_at, and the most '
    'common error type (error ->> ''type'') with how many dead letters have it.';

CREATE VIEW pgjobs.workers_alive AS
SELECT w.id AS worker_id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at,
       w.heartbeat_at,
       EXTRACT(EPOCH FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       w.lease_seconds,
       w.leader_pid IS NOT NULL AS is_leader,
       r.running_jobs
FROM pgjobs.workers w
CROSS JOIN LATERAL (
    SELECT count(*) AS running_jobs FROM pgjobs.jobs j
    WHERE j.status = 'running' AND j.worker_id = w.id
) AS r
WHERE w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds);

COMMENT ON VIEW pgjobs.workers_alive IS
    'Workers whose heartbeat is within their lease, with how many jobs each runs now and '
    'whether it leads maintenance. A worker past its lease is left out; its row stays in '
    'pgjobs.workers until the rescuer removes it.';

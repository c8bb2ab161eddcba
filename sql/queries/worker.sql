-- pgjobs: the worker's statements, by name (loaded with sql/queries.sql; see
-- pgjobs/db/queries.py). Its claims, the outcomes it records, its row in
-- pgjobs.workers (register, heartbeat, unregister) and the jobs it gives back.
-- A claim takes jobs only for a worker whose row is there (one the rescuer took
-- for dead claims nothing until it registers again), and a statement that ends
-- or gives back a job applies only while the job still runs under this worker
-- in the attempt the statement names.

-- name: claim_jobs
-- Claim up to %(limit)s ready jobs for one worker. SKIP LOCKED lets many
-- workers claim at once without waiting on each other. Each queue is scanned
-- on its own, in index order, through the partial index of pending jobs: a
-- plain `queue = ANY(...)` would make a prepared (generic) plan read and sort
-- every pending job of those queues on each claim. With several queues a
-- claim may lock up to %(limit)s rows per queue for the length of this one
-- statement and take the best %(limit)s of them, by the worker's order:
--   'priority': priority, then age, across all its queues (the default);
--   'strict':   the first queue's jobs before any of the second's, and so on;
--   'weighted': shares by weight: the n-th job of a queue of weight w ranks
--               at (claimed + n) / w, where `claimed` is what the worker
--               already took from that queue lately (%(offsets)s), so queues
--               3 and 1 get about 3 jobs to 1 while both have work, even one
--               job at a time, and either gets all of it when the other is empty.
-- Jobs of limited tasks are claimed by claim_limited(), not here. The lease
-- is the worker's: it holds while the worker's heartbeat stays fresh. A
-- worker whose row is gone (the rescuer took it for dead) claims nothing
-- until it has registered again: the test is evaluated once, before any
-- job is read.
-- Where each queue's scan starts (%(from_queues)s, %(from_priorities)s,
-- %(from_times)s): a queue with no entry there is read from the front of its
-- jobs, a sweep; a queue with entries is read only at those priorities, each
-- from the jobs due at %(from_times)s (epoch seconds) on, its frontier. A job
-- claimed leaves a dead entry in the claim index that every later scan from
-- the front walks, with a heap visit each, until VACUUM removes it; while an
-- old snapshot holds the xmin horizon nothing can, and a claim from the front
-- reads every job claimed since. A frontier seeks past them. pgjobs/worker/
-- frontier.py decides which claims sweep: the jobs a frontier cannot see (a
-- new priority, a job handed back, a workflow step released, an enqueue whose
-- transaction outlasted the frontier's slack) wait for the next sweep.
-- started_at is the clock when the row is taken, not now(): the transaction's
-- start comes before its snapshot, and a job committed in between (a retry
-- just released, a job just enqueued) would seem to start before it existed.
WITH candidates AS (
    SELECT c.id, c.priority, c.run_at, q.ord,
           (q.claimed + row_number() OVER (PARTITION BY q.ord
                                           ORDER BY c.priority DESC, c.run_at, c.id))
               / q.weight AS share
    FROM unnest(%(queues)s::text[], %(weights)s::float8[], %(offsets)s::float8[])
         WITH ORDINALITY AS q(name, weight, claimed, ord)
    CROSS JOIN LATERAL (
        SELECT f.priority, f.since
        FROM unnest(%(from_queues)s::text[], %(from_priorities)s::int2[],
                    %(from_times)s::float8[]) AS f(queue, priority, since)
        WHERE f.queue = q.name
        UNION ALL
        SELECT NULL, NULL WHERE q.name <> ALL(%(from_queues)s::text[])
    ) AS f
    -- Two scans, of which the one-time filters on f run one: a generic plan
    -- keeps both index ranges, where one scan with an OR would read the
    -- queue's whole range to filter it.
    CROSS JOIN LATERAL (
        SELECT * FROM (
            SELECT id, priority, run_at FROM pgjobs.jobs
            WHERE f.priority IS NULL
              AND status = 'pending' AND NOT limited AND queue = q.name
              AND EXISTS (SELECT FROM pgjobs.workers w WHERE w.id = %(worker_id)s)
            ORDER BY priority DESC, run_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS sweep
        UNION ALL
        SELECT * FROM (
            SELECT id, priority, run_at FROM pgjobs.jobs
            WHERE f.priority IS NOT NULL
              AND status = 'pending' AND NOT limited AND queue = q.name
              AND priority = f.priority AND run_at >= to_timestamp(f.since)
              AND EXISTS (SELECT FROM pgjobs.workers w WHERE w.id = %(worker_id)s)
            ORDER BY run_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS frontier
    ) AS c
),
picked AS (
    SELECT id FROM candidates
    ORDER BY CASE WHEN %(order)s::text = 'strict' THEN ord ELSE 0 END,
             CASE WHEN %(order)s::text = 'weighted' THEN share ELSE 0 END,
             priority DESC, run_at, id
    LIMIT %(limit)s
)
-- By id, through the primary key, however many rows the plan expects: a
-- generic plan (see generic_plan) cannot know the LIMIT, and a join with
-- `picked` would hash the whole table.
UPDATE pgjobs.jobs j
SET status = 'running', attempt = j.attempt + 1, started_at = clock_timestamp(),
    worker_id = %(worker_id)s
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
-- Empty kwargs come back as NULL: one JSON document less to parse per job.
-- `waited`: seconds since the job was due, for the transition log (a float
-- costs the worker less to read than the timestamp it would be made from).
-- `priority` and `due` (run_at, epoch seconds): where the queue's frontier moves.
RETURNING j.id, j.task, j.queue, j.args, NULLIF(j.kwargs, '{}') AS kwargs, j.attempt,
          j.max_attempts, date_part('epoch', j.started_at - j.run_at) AS waited, j.dedup_key,
          j.priority, date_part('epoch', j.run_at) AS due;

-- name: claim_limited
-- Claim jobs of the tasks that have a concurrency or rate limit, within
-- them (see pgjobs.claim_limited in sql/schema/0003_time_and_limits.sql).
-- `waited` as in claim_jobs, read from the row as this statement's snapshot
-- has it (the claim does not change run_at); NULL for a job that arrived
-- after that snapshot, which the function's own statements can still claim.
SELECT c.*,
       (SELECT date_part('epoch', c.started_at - j.run_at) FROM pgjobs.jobs j
        WHERE j.id = c.id) AS waited
FROM pgjobs.claim_limited(%(tasks)s::text[], %(queues)s::text[], %(worker_id)s,
                          %(limit)s) AS c
-- As in claim_jobs: a worker the rescuer took for dead claims nothing.
WHERE EXISTS (SELECT FROM pgjobs.workers w WHERE w.id = %(worker_id)s);

-- name: set_task_limit
-- A worker says what limits its code gives a task; the latest word wins, so
-- deploying a new limit changes it for every worker at once.
INSERT INTO pgjobs.task_limits AS l (task, max_running, rate_count, rate_period)
VALUES (%(task)s, %(max_running)s, %(rate_count)s, %(rate_period)s)
ON CONFLICT (task) DO UPDATE
    SET max_running = EXCLUDED.max_running, rate_count = EXCLUDED.rate_count,
        rate_period = EXCLUDED.rate_period
    WHERE (l.max_running, l.rate_count, l.rate_period)
          IS DISTINCT FROM (EXCLUDED.max_running, EXCLUDED.rate_count, EXCLUDED.rate_period);

-- name: finish_jobs
-- Record the outcomes of a batch of attempts in one statement: the job rows,
-- one attempts row each, and a dead letter for each job that failed for good.
-- Fenced: an outcome applies only while the job is still running this very
-- attempt under this worker, so an attempt that lost its lease (the job was
-- rescued and runs elsewhere) changes nothing. The ids that applied come back.
-- An outcome 'pending' is an attempt the worker stopped because it lost its
-- lease (see pgjobs/worker): the job goes back to the queue, and the run does
-- not spend the task's retries, so max_attempts moves on by one.
-- The arrays travel in binary (%(name)b): psycopg's text form quotes and
-- escapes each element in Python, which cost a worker more per job than
-- running a no-op job does. An array may be shorter than `ids` (empty when
-- all of its values would be NULL): unnest() pads it with NULLs.
WITH outcome AS (
    SELECT * FROM unnest(%(ids)b::uuid[], %(attempts)b::int[], %(statuses)b::text[],
                         %(outcomes)b::text[], %(results)b::text[], %(errors)b::text[],
                         %(progress)b::text[], %(retry_in)b::float8[])
        AS o(id, attempt, status, outcome, result, error, progress, retry_in)
),
done AS (
    UPDATE pgjobs.jobs j
    -- A job whose cancellation was asked for while its attempt ran (and whose
    -- worker did not hear of it in time) does not go on to another attempt.
    SET status = CASE WHEN o.status IN ('retrying', 'pending')
                           AND j.cancel_requested_at IS NOT NULL
                      THEN 'cancelled' ELSE o.status END,
        max_attempts = j.max_attempts + (o.status = 'pending')::int,
        result = o.result::jsonb,
        error = o.error::jsonb,
        progress = COALESCE(o.progress::jsonb, j.progress),
        finished_at = CASE WHEN o.status IN ('succeeded', 'failed', 'cancelled')
                             OR j.cancel_requested_at IS NOT NULL
                           THEN now() END,
        -- The next attempt's time comes from the database clock, like every
        -- other timestamp, so workers with skewed clocks agree.
        run_at = COALESCE(now() + make_interval(secs => o.retry_in), j.run_at),
        cancel_requested_at = NULL,
        worker_id = NULL
    FROM outcome o
    -- Each outcome finds its job by primary key. The fence is one opaque
    -- test (IS TRUE) so that no plan can walk the index of this worker's
    -- running jobs instead and compare every outcome with every one of them:
    -- a generic plan would, from statistics that see few running jobs.
    WHERE j.id = o.id
      AND (j.status = 'running' AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt) IS TRUE
    RETURNING j.id, j.task, j.queue, j.args, j.kwargs, j.attempt, j.started_at,
              j.status, j.error, j.limited, o.outcome
),
attempt_rows AS (
    INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at,
                                 outcome, error)
    SELECT id, attempt, %(worker_id)s, started_at, now(), outcome, error FROM done
),
dead AS (
    INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error, attempts)
    SELECT id, task, queue, args, kwargs, error, attempt FROM done WHERE status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
        SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()
)
-- A limited job that ends frees a slot of its task: wake the queue's workers
-- (identical notifications in one transaction are delivered once). The
-- status is the one each job got, for the transition log.
SELECT id, status,
       CASE WHEN limited OR status = 'pending' THEN pg_notify('pgjobs', queue) IS NULL END
           AS notified
FROM done;

-- name: generic_plan
-- Run once on each connection a worker keeps for finish_and_claim and nothing
-- else: that statement is then planned once and the plan reused. Left to
-- choose, Postgres plans it anew for every batch, since the one plan's
-- estimates (no LIMIT, no array lengths) look dearer than a plan made for the
-- values. Measured with a busy worker: Postgres CPU per job about 50 µs with
-- a plan per batch, 34 µs with the one plan. A setting of the connection, not
-- of the statement's transaction: setting it in the same round trip took a
-- pipeline, whose sends wait for the event loop, and the statement reached
-- the server only after the other batch's jobs had run.
-- jit is off too, for the reason given at session_settings.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('jit', 'off', false);

-- name: session_settings
-- Run once on each connection of a worker's pool. No JIT: a worker's
-- statements touch a few rows each through indexes, but a generic plan's
-- estimate over a large table (a backlog of a million jobs) passes
-- jit_above_cost, and compiling then takes tens of milliseconds for a
-- statement of one, on every execution: throughput fell twentyfold with jit
-- on (the server's default) against off.
SELECT set_config('jit', 'off', false);

-- name: finish_and_claim
-- finish_jobs and claim_jobs as ONE statement, for a busy worker: the
-- outcomes of a batch and the claim of the next jobs in one round trip, one
-- plan and one commit. pgjobs/db/queries.py fills in the two placeholders from
-- those two statements (their CTEs and their text), so each stays written
-- once. Measured against the two statements pipelined: a third less
-- Postgres CPU per job. The claim sees the statement's snapshot: the jobs it
-- takes are 'pending' ones, never the 'running' ones finished beside it.
-- The claim comes first in the output, so it runs first, right after the
-- snapshot is taken. Run last, it met jobs that the worker's other writer had
-- claimed and committed since this snapshot: it locked their new version on
-- the way to rejecting it, and kept that lock to the end of the statement, so
-- the other writer, finishing those jobs, waited for this one to commit
-- (a tenth of the sampled time of a busy worker's backends went to such waits).
-- Of the outcomes, only those that did not apply as sent come back: fenced
-- off (status NULL), or given another status than the one sent (a retry of a
-- job whose cancellation was asked for). The rest got just what the worker
-- sent, and reading a row for each of them was a tenth of a busy worker's
-- instructions per no-op job. Limited jobs and jobs handed back come back too:
-- the select list is where their NOTIFY is sure to be evaluated.
WITH {finish_jobs.ctes},
claimed AS (
{claim_jobs}
)
SELECT 'claimed' AS kind, id, task, queue, args, kwargs, attempt, max_attempts, dedup_key,
       NULL::bool AS notified, NULL::text AS status, waited, priority, due
FROM claimed
UNION ALL
SELECT 'finished', o.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN d.limited OR d.status = 'pending' THEN pg_notify('pgjobs', d.queue) IS NULL END,
       d.status, NULL, NULL, NULL
FROM outcome o LEFT JOIN done d ON d.id = o.id
WHERE d.id IS NULL OR d.status <> o.status OR d.limited OR d.status = 'pending';

-- name: hand_back_jobs
-- Give running jobs back to the queue without spending the task's retries (a
-- graceful shutdown whose grace period ran out, or jobs claimed by a
-- statement whose reply never arrived). The attempt keeps its number, which
-- is never used again, and gets its attempts row (%(outcome)s: 'handed_back'
-- for a run that was stopped, 'unstarted' for one that never began);
-- max_attempts moves on by one, so the run costs no retry. Fenced like
-- finish_jobs: only the attempt this worker still runs. A job whose
-- cancellation was asked for ends 'cancelled' instead.
WITH given AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS g(id, attempt)
),
back AS (
    UPDATE pgjobs.jobs j
    SET status = CASE WHEN cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
        max_attempts = j.max_attempts + (cancel_requested_at IS NULL)::int,
        finished_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE now() END,
        worker_id = NULL
    FROM given g
    WHERE j.id = g.id AND j.attempt = g.attempt
      AND j.status = 'running' AND j.worker_id = %(worker_id)s
    RETURNING j.id, j.task, j.queue, j.status, j.attempt, j.started_at,
              date_part('epoch', now() - j.started_at) AS duration
),
attempt_rows AS (
    INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
    SELECT id, attempt, %(worker_id)s, COALESCE(started_at, now()), now(), %(outcome)s::text
    FROM back
)
SELECT b.id, b.task, b.queue, b.status, b.attempt, b.duration,
       CASE WHEN b.status = 'pending' THEN pg_notify('pgjobs', b.queue) IS NULL END AS notified
FROM back b;

-- name: set_progress
UPDATE pgjobs.jobs j SET progress = p.progress::jsonb
FROM unnest(%(ids)s::uuid[], %(progress)s::text[]) AS p(id, progress)
WHERE j.id = p.id AND j.status = 'running' AND j.worker_id = %(worker_id)s;

-- name: register_worker
INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, lease_seconds)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(lease_seconds)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: heartbeat
-- Keeps the worker's lease (on every job it runs), says whether it leads and
-- how many of its threads are stuck past a hard time limit. No row back: the
-- rescuer took the worker for dead.
UPDATE pgjobs.workers
SET heartbeat_at = now(), leader_pid = %(leader_pid)s, stuck_threads = %(stuck_threads)s
WHERE id = %(worker_id)s RETURNING id;

-- name: unregister_worker
DELETE FROM pgjobs.workers WHERE id = %(worker_id)s;

-- name: defer_jobs
-- Jobs of a task this worker does not know (new code enqueued them, old code
-- claimed them: a rolling deploy). Each goes back to wait for a worker that
-- knows it, after a back-off, without spending a retry; the attempt keeps its
-- number and gets an attempts row ('unknown_task'). Only when no worker has
-- known the task for %(give_up_after)s seconds since the first such attempt
-- in a row does the job fail for good (UnknownTask) and reach the dead
-- letters. Fenced like finish_jobs.
WITH given AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS g(id, attempt)
),
seen AS (
    SELECT j.id, COALESCE(min(a.started_at), j.started_at) AS since,
           count(a.attempt) AS times
    FROM given g
    JOIN pgjobs.jobs j ON j.id = g.id AND j.attempt = g.attempt
         AND j.status = 'running' AND j.worker_id = %(worker_id)s
    LEFT JOIN pgjobs.attempts a ON a.job_id = j.id AND a.outcome = 'unknown_task'
         AND a.attempt > COALESCE((SELECT max(b.attempt) FROM pgjobs.attempts b
                                   WHERE b.job_id = j.id AND b.outcome <> 'unknown_task'), 0)
    GROUP BY j.id, j.started_at
),
deferred AS (
    UPDATE pgjobs.jobs j
    SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN seen.since < now() - make_interval(secs => %(give_up_after)s)
                      THEN 'failed' ELSE 'retrying' END,
        max_attempts = j.max_attempts + 1,
        run_at = now() + make_interval(secs => least(300, 5 * 2 ^ least(seen.times, 10))),
        error = jsonb_build_object('type', 'UnknownTask',
                                   'message', %(message)s::text, 'traceback', NULL),
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                             OR seen.since < now() - make_interval(secs => %(give_up_after)s)
                           THEN now() END,
        cancel_requested_at = NULL,
        worker_id = NULL
    FROM seen WHERE j.id = seen.id
    RETURNING j.id, j.task, j.queue, j.args, j.kwargs, j.attempt, j.started_at, j.status,
              j.error, date_part('epoch', now() - j.started_at) AS duration
),
attempt_rows AS (
    INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at,
                                 outcome, error)
    SELECT id, attempt, %(worker_id)s, COALESCE(started_at, now()), now(), 'unknown_task', error
    FROM deferred
),
dead AS (
    INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error, attempts)
    SELECT id, task, queue, args, kwargs, error, attempt FROM deferred WHERE status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
        SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()
)
SELECT id, task, queue, attempt, status, duration FROM deferred;

-- name: running_jobs_of_worker
-- What the database says a worker is running: the worker compares it with
-- what it really runs, to hand back claims whose reply it never received.
SELECT id, attempt, cancel_requested_at IS NOT NULL AS cancel_requested
FROM pgjobs.jobs WHERE status = 'running' AND worker_id = %(worker_id)s;

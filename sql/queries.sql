-- pgjobs: every statement the library runs, by name.
--
-- pgjobs/db/queries.py loads this file; a block starts with "-- name: NAME" and
-- runs to the next one. Parameters use psycopg's %(name)s style. Batch forms
-- take arrays and unnest them, so a batch of a thousand jobs is one statement
-- and one round trip.

-- name: enqueue_jobs
-- Insert a batch of jobs. Ids are UUIDv7 made by the client, so the caller
-- knows them before the statement runs. The NOTIFY of each new pending job's
-- queue wakes workers (one per queue reaches listeners: Postgres folds equal
-- ones in a transaction, and delivers them at commit). Arrays travel in
-- binary, as in finish_jobs.
INSERT INTO pgjobs.jobs (id, task, queue, status, priority, args, kwargs,
                         max_attempts, run_at, dedup_key, meta, limited)
SELECT j.id, j.task, j.queue, j.status, j.priority, j.args::jsonb, j.kwargs::jsonb,
       j.max_attempts, COALESCE(j.run_at, now()), j.dedup_key, j.meta::jsonb, j.limited
FROM unnest(%(ids)b::uuid[], %(tasks)b::text[], %(queues)b::text[], %(statuses)b::text[],
            %(priorities)b::smallint[], %(args)b::text[], %(kwargs)b::text[],
            %(max_attempts)b::int[], %(run_ats)b::timestamptz[], %(dedup_keys)b::text[],
            %(metas)b::text[], %(limited)b::boolean[])
     AS j(id, task, queue, status, priority, args, kwargs, max_attempts, run_at, dedup_key, meta,
          limited)
RETURNING created_at,
          CASE WHEN status = 'pending' THEN pg_notify('pgjobs', queue) IS NULL END AS notified;

-- name: copy_jobs_begin
-- Before copy_jobs, in its transaction: the transaction's start time, which
-- is the created_at of the rows it inserts; and the batch's NOTIFY, as in
-- enqueue_jobs (a COPY cannot send one, and it is delivered only at commit).
SELECT now() AS now,
       CASE WHEN %(status)s = 'pending' THEN pg_notify('pgjobs', %(queue)s) IS NULL END AS notified;

-- name: copy_jobs
-- A large batch without dedup keys goes in by COPY, the fastest way into
-- Postgres (a few times faster than INSERT ... unnest for a thousand rows).
-- It runs in a transaction that first reads now(), which is what the
-- created_at default gives every row, and sends the NOTIFY. {columns} is
-- filled with the columns the call sets apart from the table's defaults
-- (pgjobs.app._copy_shared()), from queue, status, priority, max_attempts,
-- run_at, meta and limited. The rows come in COPY's binary format, which
-- the server reads with less work than text.
-- The WHERE is always true, and there for its volatility: with it, Postgres
-- inserts each row as it arrives, while we are still making the next ones.
-- Without it, COPY buffers rows (up to 1,000 or 64 kB, about 500 of ours)
-- and inserts the last buffer only after the end of the data, when the
-- client can only wait: a third of a 1,000-job call's time went there.
COPY pgjobs.jobs (id, args, kwargs, task{columns})
FROM STDIN (FORMAT binary)
WHERE random() >= 0;

-- name: enqueue_job
-- Insert one job: the single-job path, one row with no unnest. Workers are
-- woken as in enqueue_jobs. Its parameters are positional: id, task, args,
-- kwargs, then those of {columns}, which is filled with the columns whose
-- value for this job is not the table's default, from queue, status, priority,
-- max_attempts, run_at, dedup_key, meta and limited; {values} with their
-- parameters (pgjobs.app._one_job_params(), pgjobs._db.statement()). Each
-- column left out is one value less to send, read and convert: for a job with
-- every default, 11,000 of the statement's 274,000 Postgres instructions and a
-- tenth of psycopg's work for it.
INSERT INTO pgjobs.jobs (id, task, args, kwargs{columns})
SELECT %s::uuid, %s::text, %s::jsonb, %s::jsonb{values}
RETURNING created_at,
          CASE WHEN status = 'pending' THEN pg_notify('pgjobs', queue) IS NULL END AS notified;

-- name: claim_dedup_key
-- Take a dedup key for a new job. The primary key decides a race between two
-- enqueues of the same key: the loser waits for the winner's transaction and
-- then gets no row back. A key whose job ended longer than its window ago
-- has expired (the jobs_dedup_key trigger set expires_at) and is taken over.
-- The test reads only the key's own row, which the loser sees as the winner
-- committed it: never a stale view of the job.
INSERT INTO pgjobs.dedup_keys AS d (key, job_id, window_seconds)
VALUES (%(key)s, %(job_id)s, %(window_seconds)s)
ON CONFLICT (key) DO UPDATE
    SET job_id = EXCLUDED.job_id, created_at = now(), expires_at = NULL,
        window_seconds = EXCLUDED.window_seconds
    WHERE d.expires_at IS NOT NULL AND d.expires_at <= now()
RETURNING job_id;

-- name: job_for_dedup_key
SELECT j.* FROM pgjobs.dedup_keys d JOIN pgjobs.jobs j ON j.id = d.job_id
WHERE d.key = %(key)s;

-- name: release_due_jobs
-- Move scheduled and retrying jobs whose time has come to 'pending', and wake
-- the workers of their queues. SKIP LOCKED lets several workers run it at once.
-- Each released job comes back for the transition log, with how long it
-- waited: a scheduled job since it was created, a retrying one since its
-- failed attempt ended.
WITH due AS (
    SELECT id, status FROM pgjobs.jobs
    WHERE status IN ('scheduled', 'retrying') AND run_at <= now()
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
released AS (
    UPDATE pgjobs.jobs j SET status = 'pending'
    FROM due WHERE j.id = due.id
    RETURNING j.id, j.task, j.queue, j.attempt, due.status AS from_status, j.status,
              date_part('epoch', now() - CASE
                  WHEN due.status = 'scheduled' THEN j.created_at
                  ELSE COALESCE((SELECT a.finished_at FROM pgjobs.attempts a
                                 WHERE a.job_id = j.id ORDER BY a.attempt DESC LIMIT 1),
                                j.run_at) END) AS duration
),
woken AS (
    SELECT queue, pg_notify('pgjobs', queue) IS NULL AS notified FROM released GROUP BY queue
)
SELECT r.*, w.notified FROM released r JOIN woken w USING (queue);

-- name: get_job
SELECT * FROM pgjobs.jobs WHERE id = %(id)s;

-- name: get_job_status
-- The cheap read behind Job.wait(): status and outcome only.
SELECT status, result, error FROM pgjobs.jobs WHERE id = %(id)s;

-- name: list_jobs
-- Newest first; the cursor is the id of the last job of the previous page
-- (UUIDv7 ids sort by creation time).
SELECT * FROM pgjobs.jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(cursor)s::uuid IS NULL OR id < %(cursor)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s + 1;  -- one more than the page: whether another page follows

-- name: queue_stats
-- Depth by queue and status, and the age of the oldest ready job per queue.
SELECT queue, status, count(*) AS jobs,
       EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE status = 'pending')) AS oldest_age
FROM pgjobs.jobs
GROUP BY queue, status
ORDER BY queue, status;

-- name: cancel_job
-- Cancel a job that has not started; a running job is left to its worker.
-- The status it left and how long it had been in it come back too, for the
-- transition log: the row lock taken here holds until the update, and a job
-- a worker claimed meanwhile no longer matches (it is 'running').
WITH old AS (
    SELECT id, status FROM pgjobs.jobs
    WHERE id = %(id)s AND status = ANY(%(from_statuses)s::text[])
    FOR UPDATE
)
UPDATE pgjobs.jobs j SET status = 'cancelled', finished_at = now()
FROM old
WHERE j.id = old.id
RETURNING j.*, old.status AS from_status,
          date_part('epoch', now() - CASE old.status
              WHEN 'scheduled' THEN j.created_at
              WHEN 'pending' THEN j.run_at
              ELSE COALESCE((SELECT a.finished_at FROM pgjobs.attempts a
                             WHERE a.job_id = j.id ORDER BY a.attempt DESC LIMIT 1),
                            j.run_at) END) AS duration;

-- name: task_summary
-- Per task, for a set of jobs: how many ended how, attempts spent, and the
-- average time from creation to first start and from start to finish.
SELECT task,
       count(*) AS jobs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed', 'cancelled')) AS unfinished,
       sum(attempt) AS attempts,
       avg(EXTRACT(EPOCH FROM finished_at - started_at)) AS avg_run_seconds
FROM pgjobs.jobs
WHERE id = ANY(%(ids)s::uuid[])
GROUP BY task
ORDER BY task;

-- name: schema_version
SELECT to_regclass('pgjobs.alembic_version') IS NOT NULL AS migrated;

-- name: rescue_jobs
-- The rescuer (run by the leader only). Workers whose heartbeat is older
-- than their own lease are dead: their rows go, and each job they were
-- running gets its attempt recorded as 'lost' and goes back to 'pending'.
-- A lost attempt does not spend the task's retries (max_attempts moves on by
-- one): one crash of one machine must not fail the work it had in flight.
-- It spends the crash budget instead: a job lost %(max_lost)s times in a row
-- (a poison job that kills its worker) fails for good with WorkerLost, so it
-- cannot loop forever. The leader never takes itself for dead: it is running
-- this. A running job whose worker row is gone (claimed in the instant the
-- rescuer removed that row) is left a full lease from its start: its worker,
-- if alive, finds its row gone at its next heartbeat and gives the job back
-- itself, so the job never runs twice at once.
WITH dead_workers AS (
    DELETE FROM pgjobs.workers
    WHERE heartbeat_at < now() - make_interval(secs => lease_seconds)
      AND id <> %(worker_id)s
    RETURNING id
),
lost AS (
    SELECT j.id, j.worker_id,
           -- Attempts lost in a row before this one.
           (SELECT count(*) FROM pgjobs.attempts a
            WHERE a.job_id = j.id AND a.outcome = 'lost'
              AND a.attempt > COALESCE((SELECT max(b.attempt) FROM pgjobs.attempts b
                                        WHERE b.job_id = j.id AND b.outcome <> 'lost'), 0))
               AS lost_before
    FROM pgjobs.jobs j
    WHERE j.status = 'running'
      AND (j.worker_id IN (SELECT id FROM dead_workers)
           OR (NOT EXISTS (SELECT 1 FROM pgjobs.workers w WHERE w.id = j.worker_id)
               AND j.started_at < now() - make_interval(secs => %(lease_seconds)s)))
    FOR UPDATE OF j SKIP LOCKED
),
rescued AS (
    UPDATE pgjobs.jobs j
    SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                      WHEN lost.lost_before + 1 >= %(max_lost)s THEN 'failed'
                      ELSE 'pending' END,
        max_attempts = j.max_attempts
            + (j.cancel_requested_at IS NULL AND lost.lost_before + 1 < %(max_lost)s)::int,
        worker_id = NULL,
        cancel_requested_at = NULL,
        error = jsonb_build_object(
            'type', 'WorkerLost',
            'message', 'the worker running attempt ' || j.attempt || ' (' || lost.worker_id
                       || ') stopped sending heartbeats'
                       || CASE WHEN lost.lost_before + 1 >= %(max_lost)s
                               THEN '; ' || (lost.lost_before + 1)
                                    || ' attempts in a row were lost with their worker'
                               ELSE '' END,
            'traceback', NULL),
        finished_at = CASE WHEN j.cancel_requested_at IS NULL
                                AND lost.lost_before + 1 < %(max_lost)s
                           THEN NULL ELSE now() END
    FROM lost
    WHERE j.id = lost.id
    RETURNING j.id, j.task, j.queue, j.args, j.kwargs, j.attempt, j.started_at, j.status,
              j.error, lost.worker_id
),
attempt_rows AS (
    INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at,
                                 outcome, error)
    SELECT id, attempt, worker_id, COALESCE(started_at, now()), now(), 'lost', error
    FROM rescued
    ON CONFLICT (job_id, attempt) DO NOTHING
),
dead AS (
    INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error, attempts)
    SELECT id, task, queue, args, kwargs, error, attempt FROM rescued WHERE status = 'failed'
    ON CONFLICT (job_id) DO UPDATE
        SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()
)
SELECT r.id, r.task, r.queue, r.attempt, r.status, r.worker_id, r.error,
       date_part('epoch', now() - r.started_at) AS duration,
       CASE WHEN r.status = 'pending' THEN pg_notify('pgjobs', r.queue) IS NULL END AS notified
FROM rescued r;

-- name: request_cancel
-- Ask the worker running a job to cancel it; it learns through NOTIFY at once
-- and through its heartbeat's poll if the notification is lost. The job comes
-- back as the request left it: read afterwards, it could already be cancelled,
-- as the worker may stop it before a second statement gets there.
WITH asked AS (
    UPDATE pgjobs.jobs SET cancel_requested_at = now()
    WHERE id = %(id)s AND status = 'running'
    RETURNING *
)
SELECT *, pg_notify('pgjobs_cancel', id::text) IS NULL AS notified FROM asked;

-- name: list_dead_letters
SELECT * FROM pgjobs.dead_letters
WHERE (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(since)s::timestamptz IS NULL OR failed_at >= %(since)s::timestamptz)
  AND (%(before)s::timestamptz IS NULL OR failed_at < %(before)s::timestamptz)
  AND (%(cursor)s::uuid IS NULL OR job_id < %(cursor)s::uuid)
ORDER BY job_id DESC
LIMIT %(limit)s + 1;  -- one more than the page: whether another page follows

-- name: get_dead_letter
SELECT * FROM pgjobs.dead_letters WHERE job_id = %(id)s;

-- name: replay_jobs
-- Run failed or cancelled jobs again: they leave the dead letters, go back to
-- 'pending' with a fresh allowance of attempts (as many as they had), and keep
-- their attempts history: attempt numbers continue where they stopped.
WITH chosen AS (
    SELECT j.id, j.status, j.finished_at FROM pgjobs.jobs j
    LEFT JOIN pgjobs.dead_letters d ON d.job_id = j.id
    WHERE j.status = ANY(%(from_statuses)s::text[])
      AND (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s::uuid[]))
      AND (%(ids)s::uuid[] IS NOT NULL OR d.job_id IS NOT NULL)
      AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
      AND (%(since)s::timestamptz IS NULL OR d.failed_at >= %(since)s::timestamptz)
      AND (%(before)s::timestamptz IS NULL OR d.failed_at < %(before)s::timestamptz)
    FOR UPDATE OF j SKIP LOCKED
),
gone AS (
    DELETE FROM pgjobs.dead_letters d USING chosen WHERE d.job_id = chosen.id
),
replayed AS (
    UPDATE pgjobs.jobs j
    SET status = 'pending',
        max_attempts = j.attempt + (j.max_attempts - j.attempt_base),
        attempt_base = j.attempt,
        run_at = now(),
        finished_at = NULL,
        cancel_requested_at = NULL
    FROM chosen WHERE j.id = chosen.id
    RETURNING j.id, j.task, j.queue, j.attempt, chosen.status AS from_status, j.status,
              date_part('epoch', now() - chosen.finished_at) AS duration
)
-- Each replayed job comes back, with the status it left, for the transition log.
SELECT r.*, pg_notify('pgjobs', r.queue) IS NULL AS notified FROM replayed r;

-- name: purge_dead_letters
-- Forget dead letters for good. The jobs keep their 'failed' rows and history.
DELETE FROM pgjobs.dead_letters
WHERE (%(ids)s::uuid[] IS NULL OR job_id = ANY(%(ids)s::uuid[]))
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(since)s::timestamptz IS NULL OR failed_at >= %(since)s::timestamptz)
  AND (%(before)s::timestamptz IS NULL OR failed_at < %(before)s::timestamptz)
RETURNING job_id;

-- name: set_leader
-- Said at once when a worker takes or loses the lead, not at its next heartbeat.
UPDATE pgjobs.workers SET leader_pid = %(leader_pid)s WHERE id = %(worker_id)s;

-- name: depose_stale_leader
-- A leader whose heartbeat lapsed while its lock session lives on (a paused
-- process, a frozen VM whose TCP session stays open) would keep the lock,
-- and with it maintenance, forever. End that session: Postgres releases the
-- lock and a live worker takes over. The join on pg_locks makes sure the pid
-- still holds our lock, and is not a new session that happens to reuse it.
SELECT w.id, pg_terminate_backend(w.leader_pid) AS deposed
FROM pgjobs.workers w
JOIN pg_locks l ON l.pid = w.leader_pid
WHERE w.leader_pid IS NOT NULL
  AND w.heartbeat_at < now() - make_interval(secs => w.lease_seconds)
  AND l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(key_high)s::oid AND l.objid = %(key_low)s::oid AND l.objsubid = 1;

-- name: ensure_periodic
-- First sight of a periodic task: its slots start after `since`. Later
-- deployments that change the schedule keep the slots already run.
INSERT INTO pgjobs.periodic AS p (name, schedule, timezone, last_slot)
VALUES (%(name)s, %(schedule)s, %(timezone)s, %(since)s)
ON CONFLICT (name) DO UPDATE
    SET schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone
    WHERE (p.schedule, p.timezone) IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.timezone)
RETURNING last_slot;

-- name: get_periodic
SELECT name, last_slot FROM pgjobs.periodic WHERE name = ANY(%(names)s::text[]);

-- name: advance_periodic
-- Compare-and-set: the slot moves on only from the value this worker read,
-- so of two workers that saw the same due slot exactly one gets a row back,
-- and only that one enqueues the slot's job (in the same transaction).
UPDATE pgjobs.periodic
SET last_slot = %(slot)s, last_job = %(job_id)s, updated_at = now()
WHERE name = %(name)s AND last_slot = %(expected)s
RETURNING name;

-- name: prune_jobs
-- Delete ended jobs past their retention (NULL: kept forever), a batch at a
-- time, with what
-- belongs to them. Ended jobs are not in the claim index, and SKIP LOCKED
-- keeps the pruner out of any transaction that holds one of them.
-- A workflow's steps go only once none of its jobs can run any more: a
-- callback released later reads the results of the steps it waited for.
WITH old AS (
    SELECT id FROM pgjobs.jobs j
    WHERE ((status = 'succeeded' AND %(keep_succeeded)s::float8 IS NOT NULL
            AND finished_at < now() - make_interval(secs => %(keep_succeeded)s::float8))
        OR (status IN ('failed', 'cancelled') AND %(keep_failed)s::float8 IS NOT NULL
            AND finished_at < now() - make_interval(secs => %(keep_failed)s::float8)))
      AND (j.workflow_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM pgjobs.jobs o
            WHERE o.workflow_id = j.workflow_id
              AND o.status NOT IN ('succeeded', 'failed', 'cancelled')))
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM pgjobs.jobs j USING old WHERE j.id = old.id RETURNING j.id, j.workflow_id
),
edges_in AS (
    DELETE FROM pgjobs.job_deps d USING gone WHERE d.job_id = gone.id
),
edges_out AS (
    DELETE FROM pgjobs.job_deps d USING gone WHERE d.depends_on = gone.id
),
workflows AS (
    -- the statement's snapshot still shows the jobs deleted above: leave those out
    DELETE FROM pgjobs.workflows w
    WHERE w.id IN (SELECT workflow_id FROM gone)
      AND NOT EXISTS (SELECT 1 FROM pgjobs.jobs j
                      WHERE j.workflow_id = w.id AND j.id NOT IN (SELECT id FROM gone))
),
attempt_rows AS (
    DELETE FROM pgjobs.attempts a USING gone WHERE a.job_id = gone.id
),
keys AS (
    DELETE FROM pgjobs.dedup_keys d USING gone WHERE d.job_id = gone.id
),
letters AS (
    DELETE FROM pgjobs.dead_letters d USING gone WHERE d.job_id = gone.id
)
SELECT count(*) AS pruned FROM gone;

-- name: prune_dedup_keys
-- Expired keys whose job is still kept: nobody can be deduplicated against
-- them any more.
WITH old AS (
    SELECT key FROM pgjobs.dedup_keys
    WHERE expires_at < now()
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM pgjobs.dedup_keys d USING old WHERE d.key = old.key;

-- name: upkeep_due
-- The pgjobs tables that autovacuum leaves alone (it is off for the server or
-- for the table) and that it would have vacuumed or analyzed by now, by its
-- own rule: dead rows past autovacuum_vacuum_threshold plus
-- autovacuum_vacuum_scale_factor times the table's rows, rows changed since
-- the last analyze past the analyze threshold and scale likewise, each the
-- table's own setting where it has one. `allowed`: whether this role may
-- vacuum the table, as VACUUM decides it (else it skips the table with a
-- warning): from PostgreSQL 17, the MAINTAIN privilege, which owners,
-- superusers and pg_maintain's members have and which can be granted; before
-- it, the table's owner's privileges or the database's owner's; and USAGE on
-- the schema, without which VACUUM cannot find the table.
SELECT schemaname, relname, n_dead_tup, n_mod_since_analyze, allowed,
       n_dead_tup > vacuum_threshold + vacuum_scale * rows AS vacuum,
       n_mod_since_analyze > analyze_threshold + analyze_scale * rows AS analyze
FROM (
    SELECT s.schemaname, s.relname, s.n_dead_tup, s.n_mod_since_analyze,
           CASE WHEN current_setting('server_version_num')::int >= 170000
                THEN has_table_privilege(c.oid, 'MAINTAIN')
                ELSE pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE')
           END AND has_schema_privilege(c.relnamespace, 'USAGE') AS allowed,
           greatest(c.reltuples, 0) AS rows,  -- -1: never counted
           current_setting('autovacuum')::bool
               AND coalesce(r.enabled::bool, true) AS autovacuum,
           coalesce(r.vacuum_threshold,
                    current_setting('autovacuum_vacuum_threshold'))::float8 AS vacuum_threshold,
           coalesce(r.vacuum_scale,
                    current_setting('autovacuum_vacuum_scale_factor'))::float8 AS vacuum_scale,
           coalesce(r.analyze_threshold,
                    current_setting('autovacuum_analyze_threshold'))::float8 AS analyze_threshold,
           coalesce(r.analyze_scale,
                    current_setting('autovacuum_analyze_scale_factor'))::float8 AS analyze_scale
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    JOIN pg_database d ON d.datname = current_database()
    CROSS JOIN LATERAL (
        SELECT max(o.option_value) FILTER (WHERE o.option_name = 'autovacuum_enabled') AS enabled,
               max(o.option_value) FILTER (WHERE o.option_name = 'autovacuum_vacuum_threshold')
                   AS vacuum_threshold,
               max(o.option_value) FILTER (WHERE o.option_name = 'autovacuum_vacuum_scale_factor')
                   AS vacuum_scale,
               max(o.option_value) FILTER (WHERE o.option_name = 'autovacuum_analyze_threshold')
                   AS analyze_threshold,
               max(o.option_value) FILTER (WHERE o.option_name = 'autovacuum_analyze_scale_factor')
                   AS analyze_scale
        FROM pg_options_to_table(c.reloptions) o
    ) r
    WHERE s.schemaname = 'pgjobs'
) t
WHERE NOT autovacuum
  AND (n_dead_tup > vacuum_threshold + vacuum_scale * rows
       OR n_mod_since_analyze > analyze_threshold + analyze_scale * rows)
ORDER BY relname;

-- name: db_now
-- The database's clock: workers on several machines agree on it.
SELECT now() AS now;

-- name: job_attempts
-- A job's attempts in order: the timeline on its page.
SELECT attempt, worker_id, started_at, finished_at, outcome, error
FROM pgjobs.attempts
WHERE job_id = %(id)s
ORDER BY attempt;

-- name: list_workers
-- Workers that said hello and have not said goodbye, with what they run now.
-- A thread stuck past its hard time limit holds a slot though its job has
-- ended: `stuck` counts them, and `busy` is every slot taken.
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at,
       EXTRACT(EPOCH FROM now() - w.heartbeat_at) AS heartbeat_age,
       r.running, w.stuck_threads AS stuck, r.running + w.stuck_threads AS busy
FROM pgjobs.workers w
CROSS JOIN LATERAL (
    SELECT count(*) AS running FROM pgjobs.jobs j
    WHERE j.status = 'running' AND j.worker_id = w.id
) AS r
ORDER BY w.started_at, w.id;

-- name: finished_series
-- Jobs that ended per queue and time bucket (step seconds) over the last
-- window seconds: the dashboard's throughput charts. Reads jobs_finished_idx.
SELECT queue,
       to_timestamp(floor(EXTRACT(EPOCH FROM finished_at) / %(step)s) * %(step)s) AS bucket,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM pgjobs.jobs
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at >= now() - make_interval(secs => %(window)s)
GROUP BY 1, 2
ORDER BY 2, 1;

-- name: metrics_finished
-- Jobs that ended in (since, until], for the Prometheus counters and
-- histograms: run time of the attempt that ended the job, and its wait from
-- ready (run_at) to start. Reads jobs_finished_idx.
SELECT queue, task, status, finished_at,
       EXTRACT(EPOCH FROM finished_at - started_at) AS run_s,
       EXTRACT(EPOCH FROM started_at - run_at) AS wait_s
FROM pgjobs.jobs
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at > %(since)s AND finished_at <= %(until)s;

-- name: depth_by_status
-- The pgjobs.queue_depth view: jobs per queue and status.
SELECT queue, status, jobs FROM pgjobs.queue_depth ORDER BY queue, status;

-- name: queue_levels
-- The pgjobs.queue_oldest view: what health checks compare with thresholds;
-- and how many live workers serve each queue, by the rule of the
-- pgjobs.workers_alive view (a heartbeat within the worker's own lease). A
-- queue with pending jobs and none is flagged: nothing will run them.
SELECT q.queue, q.depth, q.pending, q.oldest_pending_age, q.oldest_pending_id,
       (SELECT count(*) FROM pgjobs.workers w
        WHERE q.queue = ANY (w.queues)
          AND w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds)) AS workers
FROM pgjobs.queue_oldest q;

-- name: workers_alive
-- The pgjobs.workers_alive view: workers within their lease, and their load.
SELECT concurrency, running_jobs FROM pgjobs.workers_alive;

-- name: insert_workflow
INSERT INTO pgjobs.workflows (id, kind, name, canvas)
VALUES (%(id)s, %(kind)s, %(name)s, %(canvas)s::jsonb)
RETURNING created_at;

-- name: enqueue_workflow_jobs
-- A workflow's jobs, in one statement: the first steps ready (or scheduled),
-- the others 'blocked' with how many jobs each waits for and how its input is made.
-- Workers are woken as in enqueue_jobs.
INSERT INTO pgjobs.jobs (id, task, queue, status, priority, args, kwargs, max_attempts, run_at,
                         meta, limited, workflow_id, waiting_for, input, on_failure)
SELECT j.id, j.task, j.queue, j.status, j.priority, j.args::jsonb, j.kwargs::jsonb,
       j.max_attempts, COALESCE(j.run_at, now()), '{}', j.limited, %(workflow_id)s,
       j.waiting_for, j.input::jsonb, j.on_failure
FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(statuses)s::text[],
            %(priorities)s::smallint[], %(args)s::text[], %(kwargs)s::text[],
            %(max_attempts)s::int[], %(run_ats)s::timestamptz[], %(limited)s::boolean[],
            %(waiting_for)s::int[], %(inputs)s::text[], %(on_failure)s::text[])
     AS j(id, task, queue, status, priority, args, kwargs, max_attempts, run_at, limited,
          waiting_for, input, on_failure)
RETURNING CASE WHEN status = 'pending' THEN pg_notify('pgjobs', queue) IS NULL END AS notified;

-- name: insert_job_deps
INSERT INTO pgjobs.job_deps (depends_on, job_id)
SELECT * FROM unnest(%(depends_on)s::uuid[], %(job_ids)s::uuid[]);

-- name: get_workflow
SELECT * FROM pgjobs.workflows WHERE id = %(id)s;

-- name: workflow_jobs
-- A workflow's jobs, in the order they were made (UUIDv7 ids), whole: each
-- step is read as a Job, as get_job reads one.
SELECT * FROM pgjobs.jobs WHERE workflow_id = %(id)s
ORDER BY id;

-- name: cancel_workflow
-- Cancel every job of a workflow that has not started (as cancel_job does for
-- one job); each comes back with the status it left, for the transition
-- pipeline. The blocked steps the cancelled ones would stop are in the same
-- set: the workflow trigger that runs at the end of the statement finds none
-- left to cancel, so these rows are every step the call ends.
WITH old AS (
    SELECT id, status FROM pgjobs.jobs
    WHERE workflow_id = %(id)s AND status = ANY(%(from_statuses)s::text[])
    FOR UPDATE
)
UPDATE pgjobs.jobs j
SET status = 'cancelled', finished_at = now(),
    error = '{"type": "WorkflowCancelled", "message": "its workflow was cancelled"}'
FROM old
WHERE j.id = old.id
RETURNING j.id, j.task, j.queue, j.attempt, j.status, j.error, old.status AS from_status,
          date_part('epoch', now() - CASE old.status
              WHEN 'blocked' THEN j.created_at
              WHEN 'scheduled' THEN j.created_at
              WHEN 'pending' THEN j.run_at
              ELSE COALESCE((SELECT a.finished_at FROM pgjobs.attempts a
                             WHERE a.job_id = j.id ORDER BY a.attempt DESC LIMIT 1),
                            j.run_at) END) AS duration;

-- name: request_cancel_workflow
-- Ask a workflow's running jobs to stop (as request_cancel does for one job);
-- run after cancel_workflow, so a step claimed in between is asked too.
WITH running AS (
    UPDATE pgjobs.jobs SET cancel_requested_at = now()
    WHERE workflow_id = %(id)s AND status = 'running' AND cancel_requested_at IS NULL
    RETURNING id
)
SELECT count(*) AS asked FROM (SELECT pg_notify('pgjobs_cancel', id::text) FROM running) AS n;

-- name: list_workflows
-- Workflows, newest first (UUIDv7 ids), each with its steps' statuses; one
-- row more than the page says whether another follows.
SELECT w.id, w.kind, w.name, w.created_at, w.canvas, s.statuses, s.finished_at
FROM pgjobs.workflows w
CROSS JOIN LATERAL (
    SELECT jsonb_object_agg(j.id, j.status) AS statuses, max(j.finished_at) AS finished_at
    FROM pgjobs.jobs j WHERE j.workflow_id = w.id
) AS s
WHERE (%(cursor)s::uuid IS NULL OR w.id < %(cursor)s::uuid)
ORDER BY w.id DESC
LIMIT %(limit)s + 1;

-- ---------------------------------------------------------------------------
-- The xmin horizon, and what the leader's upkeep does once it is released
-- (pgjobs/maintenance/horizon.py and upkeep.py).

-- name: xmin_horizon
-- What holds back the xmin horizon of this database's tables: VACUUM may not
-- remove a dead row that one of these may still see. One row per holder:
-- sessions of this database with a snapshot or a transaction id (from
-- PostgreSQL 14 on, sessions of other databases hold back only the shared
-- catalogs, and are left out), WAL senders holding an xmin for a standby's
-- hot_standby_feedback, replication slots with an xmin (a slot's xmin holds
-- back every database; a catalog_xmin only the catalogs, so it is left out),
-- and prepared transactions. Left out as well: this session, VACUUM (whose
-- snapshot Postgres ignores) and parallel workers (their leader is listed).
-- `since`: when the hold started as far as Postgres records it (the
-- transaction's start, the PREPARE, from PostgreSQL 17 the moment a slot went
-- inactive), NULL where it does not (a slot in use, a WAL sender, a session of
-- another role, whose details need pg_read_all_stats to be seen). `xmin_age`:
-- how many transactions ago the held snapshot starts. Oldest first.
WITH sessions AS (
    SELECT a.pid, a.application_name, a.usename, a.datname, a.backend_type, a.state,
           a.xact_start, a.state_change, a.query,
           CASE WHEN a.backend_xmin IS NULL OR age(a.backend_xid) > age(a.backend_xmin)
                THEN a.backend_xid ELSE a.backend_xmin END AS held
    FROM pg_stat_activity a
    WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
      AND a.pid <> pg_backend_pid()
      AND a.backend_type <> 'parallel worker'
      AND (a.datname = current_database() OR a.backend_type = 'walsender'
           OR current_setting('server_version_num')::int < 140000)
      AND NOT EXISTS (SELECT FROM pg_stat_progress_vacuum v WHERE v.pid = a.pid)
), holders AS (
    SELECT 'session' AS kind, pid, coalesce(application_name, '') AS name,
           usename::text AS username, datname::text AS database, state,
           CASE WHEN backend_type <> 'walsender' THEN xact_start END AS since,
           state_change, held, left(regexp_replace(query, '\s+', ' ', 'g'), 200) AS query
    FROM sessions
    UNION ALL
    SELECT 'replication slot', active_pid, slot_name::text, NULL, database::text,
           CASE WHEN active THEN 'active' ELSE 'inactive' END,
           CASE WHEN NOT active THEN (to_jsonb(s) ->> 'inactive_since')::timestamptz END,
           NULL, xmin, NULL
    FROM pg_replication_slots s
    WHERE xmin IS NOT NULL
    UNION ALL
    SELECT 'prepared transaction', NULL, gid, owner::text, database::text, 'prepared',
           prepared, prepared, transaction, NULL
    FROM pg_prepared_xacts
    WHERE database = current_database()
       OR current_setting('server_version_num')::int < 140000
)
SELECT kind, pid, name, username, database, state, since,
       EXTRACT(EPOCH FROM now() - since)::float8 AS seconds,
       EXTRACT(EPOCH FROM now() - state_change)::float8 AS state_seconds,
       held::text AS xmin, age(held) AS xmin_age, query
FROM holders
ORDER BY age(held) DESC, since;

-- name: bloated_indexes
-- The B-tree indexes of the pgjobs tables named in `tables` that are far
-- larger than their entries need: more than `ratio` times the size that
-- `entries` (reltuples, as the last VACUUM or ANALYZE counted them) would
-- fill, and larger than that by more than `min_bytes`. A dead entry's page is
-- reused once VACUUM frees it, but the index never shrinks: after a held
-- horizon, or a backlog that drained, the claim index keeps its largest size
-- until it is built again. The size an entry needs: its 8-byte header and key
-- columns (each at its average width, 16 bytes where never analyzed) padded
-- to 8 bytes, and a 4-byte line pointer; leaf pages 70 % full (as random
-- insertion leaves them), and the meta page and root. Only indexes whose
-- count is fresh, taken when the index had about its present size (relpages):
-- an index counted when it was small (built on an empty table, never vacuumed
-- since) would look bloated. Never counted (reltuples -1), or being built (not
-- yet valid): left alone. `allowed`: whether this role may rebuild it (as for
-- upkeep_due: MAINTAIN from PostgreSQL 17, ownership before).
SELECT n.nspname AS schemaname, c.relname AS indexname, t.relname AS tablename,
       pg_relation_size(c.oid) AS bytes, e.expected AS expected_bytes,
       c.reltuples::bigint AS entries,
       CASE WHEN current_setting('server_version_num')::int >= 170000
            THEN has_table_privilege(t.oid, 'MAINTAIN')
            ELSE pg_has_role(t.relowner, 'USAGE')
       END AS allowed
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
CROSS JOIN LATERAL (
    SELECT (8 + sum(coalesce(s.avg_width, 16)) + 7) / 8 * 8 + 4 AS entry
    FROM unnest(i.indkey::int2[]) AS k(attnum)
    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    LEFT JOIN pg_stats s
        ON s.schemaname = n.nspname AND s.tablename = t.relname AND s.attname = a.attname
) w
CROSS JOIN LATERAL (
    SELECT ((ceil(c.reltuples * w.entry / (8152 * 0.7)) + 2)
            * current_setting('block_size')::int)::bigint AS expected
) e
WHERE n.nspname = 'pgjobs' AND t.relname = ANY(%(tables)s) AND am.amname = 'btree'
  AND c.relkind = 'i' AND i.indisvalid AND i.indisready AND c.reltuples >= 0
  AND pg_relation_size(c.oid)
      <= (c.relpages * 1.25 + 8) * current_setting('block_size')::int
  AND pg_relation_size(c.oid) > %(ratio)s * e.expected
  AND pg_relation_size(c.oid) - e.expected > %(min_bytes)s
ORDER BY pg_relation_size(c.oid) - e.expected DESC;

-- name: reindex_leftovers
-- Invalid indexes that an interrupted REINDEX INDEX CONCURRENTLY left in the
-- pgjobs schema (named after the index, _ccnew or _ccold and a number): they
-- take space and slow every write, and serve no read. Those this role may
-- drop (it owns them), and not while an index of their table is being built,
-- which would be such an index in the making.
SELECT n.nspname AS schemaname, c.relname AS indexname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'pgjobs' AND NOT i.indisvalid
  AND c.relname ~ '_cc(new|old)[0-9]*$'
  AND pg_has_role(c.relowner, 'USAGE')
  AND NOT EXISTS (SELECT FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid)
ORDER BY c.relname;

-- name: index_size
-- An index's size on disk, in bytes: what a rebuild left.
SELECT pg_relation_size(to_regclass(%(index)s)) AS bytes;

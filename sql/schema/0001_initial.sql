-- pgjobs schema, revision 0001: jobs, attempts, dedup keys, dead letters, workers.
--
-- Every job is one row in pgjobs.jobs. Workers claim rows with
-- SELECT ... FOR UPDATE SKIP LOCKED through the partial index jobs_claim_idx,
-- which only holds jobs that are ready to run: the claim's scan never walks
-- finished history. The statuses and their legal transitions are owned by
-- pgjobs/jobs.py; the CHECK below lists the same statuses and a test keeps
-- the two in step.

CREATE SCHEMA IF NOT EXISTS pgjobs;

CREATE TABLE pgjobs.jobs (
    id               uuid        PRIMARY KEY,           -- UUIDv7, made by the client
    task             text        NOT NULL,
    queue            text        NOT NULL DEFAULT 'default',
    status           text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('scheduled', 'pending', 'running', 'retrying',
                          'succeeded', 'failed', 'cancelled')),
    priority         smallint    NOT NULL DEFAULT 0,    -- higher runs first
    args             jsonb       NOT NULL DEFAULT '[]',
    kwargs           jsonb       NOT NULL DEFAULT '{}',
    attempt          integer     NOT NULL DEFAULT 0,    -- attempts started so far
    max_attempts     integer     NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,                       -- start of the latest attempt
    finished_at      timestamptz,
    result           jsonb,
    error            jsonb,                             -- {type, message, traceback}
    progress         jsonb,
    worker_id        text,                              -- lease owner while running
    dedup_key        text,
    meta             jsonb       NOT NULL DEFAULT '{}'
) WITH (fillfactor = 80);  -- room on each page so status updates can stay HOT

-- The claim index: only ready jobs, in the order they must run.
CREATE INDEX jobs_claim_idx ON pgjobs.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';

-- Due scheduled and retrying jobs are released to 'pending' by run_at.
CREATE INDEX jobs_due_idx ON pgjobs.jobs (run_at)
    WHERE status IN ('scheduled', 'retrying');

-- Running jobs by lease owner. A lease is held by the worker as a whole: the
-- worker's heartbeat in pgjobs.workers keeps every job it runs, so a heartbeat
-- is one row written, not one per running job; the rescuer finds the running
-- jobs of workers whose heartbeat has lapsed.
CREATE INDEX jobs_running_idx ON pgjobs.jobs (worker_id) WHERE status = 'running';

-- One row per attempt. Written when the attempt ends (with the outcome that
-- ended it), in the same statement that records the job's outcome.
CREATE TABLE pgjobs.attempts (
    job_id      uuid        NOT NULL,
    attempt     integer     NOT NULL,
    worker_id   text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome     text        NOT NULL,   -- succeeded, failed, retrying, lost, cancelled, handed_back
    error       jsonb,
    PRIMARY KEY (job_id, attempt)
);

-- A dedup key belongs to one job; the unique primary key decides races.
CREATE TABLE pgjobs.dedup_keys (
    key        text        PRIMARY KEY,
    job_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);

-- Jobs that failed for good, with everything needed to understand and replay them.
CREATE TABLE pgjobs.dead_letters (
    job_id      uuid        PRIMARY KEY,
    task        text        NOT NULL,
    queue       text        NOT NULL,
    args        jsonb       NOT NULL,
    kwargs      jsonb       NOT NULL,
    error       jsonb,
    attempts    integer     NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_task_idx ON pgjobs.dead_letters (task, failed_at);

-- Live workers, kept fresh by heartbeats.
CREATE TABLE pgjobs.workers (
    id           text        PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[]      NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Wake workers when jobs become ready. A statement-level trigger sends one
-- notification per queue per statement, whatever the number of rows, and
-- Postgres delivers NOTIFY only when the transaction commits: a rolled-back
-- enqueue wakes nobody. Statements that move existing jobs back to 'pending'
-- (release of due jobs, hand-back, replay) call pg_notify themselves, so the
-- hot UPDATE paths (claim, finish, heartbeat) pay for no trigger.
CREATE FUNCTION pgjobs.notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgjobs', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE status = 'pending') AS q;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON pgjobs.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs.notify_ready();

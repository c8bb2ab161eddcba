-- pgjobs schema, revision 0003: dedup windows, per-task limits, cron slots,
-- retention.

-- Dedup windows. A key holds while its job is not terminal; when the job
-- ends, the key expires `window_seconds` later (NULL: the key holds as long
-- as the job exists). A trigger keeps expires_at in step with the job's
-- status on every path that ends a job (finish, rescue, cancel, hand-back)
-- and clears it again when a job is replayed, so no statement has to
-- remember to. Its WHEN clause keeps it free for jobs without a key.
ALTER TABLE pgjobs.dedup_keys ADD COLUMN window_seconds double precision
    CHECK (window_seconds >= 0);
CREATE INDEX dedup_keys_expires_idx ON pgjobs.dedup_keys (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX dedup_keys_job_idx ON pgjobs.dedup_keys (job_id);

CREATE FUNCTION pgjobs.dedup_key_follows_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('succeeded', 'failed', 'cancelled') THEN
        UPDATE pgjobs.dedup_keys
        SET expires_at = now() + make_interval(secs => window_seconds)
        WHERE key = NEW.dedup_key AND job_id = NEW.id AND window_seconds IS NOT NULL;
    ELSIF OLD.status IN ('succeeded', 'failed', 'cancelled') THEN
        UPDATE pgjobs.dedup_keys SET expires_at = NULL
        WHERE key = NEW.dedup_key AND job_id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_dedup_key
    AFTER UPDATE OF status ON pgjobs.jobs
    FOR EACH ROW
    WHEN (NEW.dedup_key IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION pgjobs.dedup_key_follows_job();

-- Per-task limits. Jobs of a task with a concurrency or rate limit are
-- 'limited' (decided at enqueue). They are left out of the main claim index,
-- so a backlog of jobs waiting for their limit never slows the claim of
-- everything else, and are claimed through claim_limited() below.
ALTER TABLE pgjobs.jobs ADD COLUMN limited boolean NOT NULL DEFAULT false;

DROP INDEX pgjobs.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON pgjobs.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending' AND NOT limited;
CREATE INDEX jobs_limited_claim_idx ON pgjobs.jobs (task, priority DESC, run_at, id)
    WHERE status = 'pending' AND limited;
CREATE INDEX jobs_limited_running_idx ON pgjobs.jobs (task)
    WHERE status = 'running' AND limited;

-- One row per limited task, written by the workers that know the task.
-- Fixed-window rate counter: window_used jobs started since window_start.
CREATE TABLE pgjobs.task_limits (
    task          text        PRIMARY KEY,
    max_running   integer     CHECK (max_running >= 1),
    rate_count    integer     CHECK (rate_count >= 1),
    rate_period   double precision CHECK (rate_period > 0),   -- seconds
    window_start  timestamptz NOT NULL DEFAULT now(),
    window_used   integer     NOT NULL DEFAULT 0
);

-- Claim up to p_want ready jobs of limited tasks for a worker, each task
-- within its limits, in the order the tasks are given. The row lock on a
-- task's limits serialises every claimer of that task across all workers,
-- and each statement of a plpgsql function takes a fresh snapshot: so the
-- count of running jobs sees what the previous claimer committed, and two
-- workers can never both take the last slot.
CREATE FUNCTION pgjobs.claim_limited(p_tasks text[], p_queues text[], p_worker text,
                                     p_want integer)
RETURNS TABLE (id uuid, task text, queue text, args jsonb, kwargs jsonb, attempt integer,
               max_attempts integer, started_at timestamptz, dedup_key text, meta jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    lim pgjobs.task_limits;
    allowed integer;
    running integer;
    taken integer;
BEGIN
    FOREACH t IN ARRAY p_tasks LOOP
        EXIT WHEN p_want <= 0;
        SELECT * INTO lim FROM pgjobs.task_limits l WHERE l.task = t FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        allowed := p_want;
        IF lim.max_running IS NOT NULL THEN
            SELECT count(*) INTO running FROM pgjobs.jobs j
            WHERE j.task = t AND j.status = 'running' AND j.limited;
            allowed := least(allowed, lim.max_running - running);
        END IF;
        IF lim.rate_count IS NOT NULL THEN
            IF lim.window_start + make_interval(secs => lim.rate_period) <= clock_timestamp() THEN
                lim.window_start := clock_timestamp();
                lim.window_used := 0;
            END IF;
            allowed := least(allowed, lim.rate_count - lim.window_used);
        END IF;
        CONTINUE WHEN allowed <= 0;
        RETURN QUERY
        WITH picked AS (
            SELECT j.id FROM pgjobs.jobs j
            WHERE j.status = 'pending' AND j.limited AND j.task = t
              AND j.queue = ANY(p_queues)
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT allowed
            FOR UPDATE SKIP LOCKED
        )
        UPDATE pgjobs.jobs j
        SET status = 'running', attempt = j.attempt + 1, started_at = now(),
            worker_id = p_worker
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.id, j.task, j.queue, j.args, j.kwargs, j.attempt, j.max_attempts,
                  j.started_at, j.dedup_key, j.meta;
        GET DIAGNOSTICS taken = ROW_COUNT;
        p_want := p_want - taken;
        IF lim.rate_count IS NOT NULL THEN
            UPDATE pgjobs.task_limits l
            SET window_start = lim.window_start, window_used = lim.window_used + taken
            WHERE l.task = t;
        END IF;
    END LOOP;
END;
$$;

-- Cron: the latest slot of each periodic task that has its job. Moving
-- last_slot forward is a compare-and-set, so one slot gets one job however
-- many workers try at once.
CREATE TABLE pgjobs.periodic (
    name       text        PRIMARY KEY,
    schedule   text        NOT NULL,
    timezone   text        NOT NULL,
    last_slot  timestamptz NOT NULL,
    last_job   uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Retention: the pruner finds ended jobs by when they ended.
CREATE INDEX jobs_finished_idx ON pgjobs.jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

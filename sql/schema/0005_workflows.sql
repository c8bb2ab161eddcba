-- pgjobs schema, revision 0005: workflows (chain, group, chord) as rows.
--
-- A workflow is its jobs plus the edges between them. A job that waits for
-- others is 'blocked' with a count of the jobs it still waits for; when one
-- of them ends, a trigger on that job's own status change counts down, and the
-- job that reaches zero becomes 'pending' with its input (the results it
-- waited for) put in front of its arguments. It all happens in the
-- transaction that finishes the job it waited for, so a step can never be
-- released twice or lost: when two members of a chord finish at the same
-- moment on two workers, the second waits for the first's row lock on the
-- callback, then sees the count the first left.

ALTER TABLE pgjobs.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE pgjobs.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('blocked', 'scheduled', 'pending', 'running', 'retrying',
                      'succeeded', 'failed', 'cancelled'));

ALTER TABLE pgjobs.jobs
    ADD COLUMN workflow_id uuid,          -- the workflow it belongs to, if any
    ADD COLUMN waiting_for integer,       -- jobs it still waits for, while blocked
    ADD COLUMN input jsonb,               -- how its first argument is made: {"job": id} or {"list": [...]}
    ADD COLUMN on_failure text CHECK (on_failure IN ('cancel', 'pass'));
    -- what a failure of a job it waits for does: 'cancel' it (the default), or
    -- 'pass' the failure on as its input (a chord with allow_failures)

CREATE INDEX jobs_workflow_idx ON pgjobs.jobs (workflow_id) WHERE workflow_id IS NOT NULL;

CREATE TABLE pgjobs.workflows (
    id          uuid        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('chain', 'group', 'chord')),
    name        text,
    canvas      jsonb       NOT NULL,   -- its shape, with each step's job id
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which job waits for which: one row per edge.
CREATE TABLE pgjobs.job_deps (
    depends_on  uuid NOT NULL,   -- the job waited for
    job_id      uuid NOT NULL,   -- the job that waits
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX job_deps_job_idx ON pgjobs.job_deps (job_id);

-- The value a waiting job gets from the jobs it waited for: a job's result,
-- or a list of such values in order (groups nest). A job that did not
-- succeed (only seen by an 'pass' waiter) gives {"failed": {job_id, status,
-- type, message}}. VOLATILE, so that each query takes a fresh snapshot: when
-- the releasing UPDATE re-checks a row another transaction just changed, it
-- reads the results that transaction committed.
CREATE FUNCTION pgjobs.workflow_input(spec jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF spec ? 'job' THEN
        RETURN (
            SELECT CASE WHEN j.status = 'succeeded' THEN COALESCE(j.result, 'null'::jsonb)
                        ELSE jsonb_build_object('failed', jsonb_build_object(
                                 'job_id', j.id, 'status', j.status,
                                 'type', j.error ->> 'type', 'message', j.error ->> 'message'))
                   END
            FROM pgjobs.jobs j WHERE j.id = (spec ->> 'job')::uuid);
    END IF;
    RETURN COALESCE(
        (SELECT jsonb_agg(pgjobs.workflow_input(e.value) ORDER BY e.n)
         FROM jsonb_array_elements(spec -> 'list') WITH ORDINALITY AS e(value, n)),
        '[]'::jsonb);
END
$$;

-- A workflow job ended: count down the jobs that wait for it, release those
-- that reach zero, and cancel those its failure stops. The cancellation is an
-- UPDATE of status too, so it runs down the workflow step by step.
CREATE FUNCTION pgjobs.workflow_step() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    queues text[];
BEGIN
    WITH released AS (
        UPDATE pgjobs.jobs j
        SET waiting_for = j.waiting_for - 1,
            status = CASE WHEN j.waiting_for = 1 THEN 'pending' ELSE 'blocked' END,
            run_at = CASE WHEN j.waiting_for = 1 THEN now() ELSE j.run_at END,
            args = CASE WHEN j.waiting_for = 1 AND j.input IS NOT NULL
                        THEN jsonb_build_array(pgjobs.workflow_input(j.input)) || j.args
                        ELSE j.args END
        WHERE j.id IN (SELECT d.job_id FROM pgjobs.job_deps d WHERE d.depends_on = NEW.id)
          AND j.status = 'blocked'
          AND (NEW.status = 'succeeded' OR j.on_failure = 'pass')
        RETURNING j.queue, j.status
    )
    SELECT array_agg(DISTINCT queue) INTO queues FROM released WHERE status = 'pending';
    IF NEW.status <> 'succeeded' THEN
        UPDATE pgjobs.jobs j
        SET status = 'cancelled', finished_at = now(),
            error = jsonb_build_object(
                'type', 'UpstreamFailed',
                'message', 'step ' || NEW.id || ' (' || NEW.task || ') ended ' || NEW.status,
                'upstream', NEW.id)
        WHERE j.id IN (SELECT d.job_id FROM pgjobs.job_deps d WHERE d.depends_on = NEW.id)
          AND j.status = 'blocked'
          AND j.on_failure = 'cancel';
    END IF;
    IF queues IS NOT NULL THEN
        PERFORM pg_notify('pgjobs', q) FROM unnest(queues) AS q;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_workflow_step
AFTER UPDATE OF status ON pgjobs.jobs
FOR EACH ROW
WHEN (NEW.workflow_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
      AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
EXECUTE FUNCTION pgjobs.workflow_step();

-- A workflow job that failed or was cancelled runs again (replay): the steps
-- its end cancelled wait again, each for the jobs it waits for that have not
-- succeeded, so the workflow resumes where it stopped.
CREATE FUNCTION pgjobs.workflow_resume() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgjobs.jobs j
    SET status = 'blocked', finished_at = NULL, error = NULL,
        -- every job it waits for that has not succeeded: this one, and any
        -- other that failed too and waits for its own replay
        waiting_for = (SELECT count(*) FROM pgjobs.job_deps d JOIN pgjobs.jobs u ON u.id = d.depends_on
                       WHERE d.job_id = j.id AND u.status <> 'succeeded')
    WHERE j.id IN (SELECT d.job_id FROM pgjobs.job_deps d WHERE d.depends_on = NEW.id)
      AND j.status = 'cancelled'
      AND j.error ->> 'type' = 'UpstreamFailed'
      AND j.error ->> 'upstream' = NEW.id::text;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_workflow_resume
AFTER UPDATE OF status ON pgjobs.jobs
FOR EACH ROW
WHEN (NEW.workflow_id IS NOT NULL AND OLD.status IN ('failed', 'cancelled')
      AND NEW.status IN ('pending', 'blocked'))
EXECUTE FUNCTION pgjobs.workflow_resume();

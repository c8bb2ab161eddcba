-- pgjobs schema, revision 0013: enqueue from SQL.
--
-- pgjobs.enqueue() and pgjobs.enqueue_many() make jobs as Python's enqueue
-- does, for triggers, psql and programs in any language: the same columns
-- (status 'pending' or 'scheduled' by run_at, limited for tasks with limits),
-- UUIDv7 ids, dedup keys through the same key row, and the NOTIFY that wakes
-- workers (no trigger sends it: revision 0010). Their signatures are a stable
-- interface; pgjobs.new_job_id(), new_job_ids() and enqueue_error() are the
-- helpers they use.
--
-- They run with the caller's rights (SECURITY INVOKER), so they do nothing
-- the caller could not do with a plain INSERT: the caller needs USAGE on the
-- schema, INSERT on pgjobs.jobs, SELECT on pgjobs.task_limits when it leaves
-- `limited` to be looked up, and SELECT, INSERT and UPDATE on
-- pgjobs.dedup_keys for dedup keys. EXECUTE is left as Postgres gives it to
-- every function, as for pgjobs' other functions. Every name they use is
-- qualified, and their search_path is pg_catalog then pg_temp, so a caller's
-- objects of the same names are never used in their place.

-- A new UUIDv7 id (RFC 9562): 48 bits of Unix milliseconds from the clock,
-- 12 bits of the fraction of the millisecond (microseconds scaled to
-- 0..4095), then the version, the variant and 62 random bits. Ids made one
-- after another on a server sort by the time they were made, to the
-- microsecond. Python's ids have the same layout, made on the client's
-- clock with a counter in those 12 bits: ids of the two sort together by
-- time across milliseconds.
-- gen_random_uuid() (a UUIDv4) gives the last 16 hex digits: they begin with
-- the variant bits already. plpgsql, not sql: Postgres plans the body of a
-- sql function that it cannot inline anew on every call, which cost ten
-- times as much.
CREATE FUNCTION pgjobs.new_job_id() RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
BEGIN
    RETURN (lpad(to_hex(us / 1000), 12, '0')
            || to_hex(28672 + mod(us, 1000) * 4096 / 1000)  -- 0x7000: version 7
            || right(replace(gen_random_uuid()::text, '-', ''), 16))::uuid;
END;
$$;

-- `n` new ids in increasing order, made as new_job_id() makes one, the
-- 12-bit fraction counting up by one from one id to the next as a sequence
-- (past 4,096 ids it runs into the next milliseconds, as Python's do).
CREATE FUNCTION pgjobs.new_job_ids(n integer) RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    ms bigint := us / 1000;
    frac bigint := mod(us, 1000) * 4096 / 1000;
BEGIN
    RETURN ARRAY(
        SELECT (lpad(to_hex(ms + (frac + i) / 4096), 12, '0')
                || to_hex(28672 + mod(frac + i, 4096))
                || right(replace(gen_random_uuid()::text, '-', ''), 16))::uuid
        FROM generate_series(0, n - 1) AS i
        ORDER BY i);
END;
$$;

-- What is wrong with a job's values, as one line, or NULL when nothing is:
-- the checks Python's enqueue makes that do not need the task's code. A
-- task name is not checked against any registry (only workers have one): a
-- job of a task no worker knows is handled as README.md's "Unknown tasks"
-- says. Nesting is held to Python's limit, 200 levels for one argument
-- (pgjobs.tasks.MAX_DEPTH) and so 201 for args or kwargs as a whole: a
-- worker's JSON reader recurses, and the jsonpath below finds any list or
-- object at level 201 or deeper (the outer array or object is level 0).
CREATE FUNCTION pgjobs.enqueue_error(
    task text, args jsonb, kwargs jsonb, queue text, priority integer,
    run_at timestamptz, max_attempts integer, dedup_key text, dedup_window interval
) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    too_deep constant jsonpath :=
        'strict $.**{201 to last} ? (@.type() == "array" || @.type() == "object")';
BEGIN
    RETURN CASE
        WHEN task IS NULL OR task !~ '[^[:space:]]' THEN
            'task must be a non-empty name, got ' || coalesce(quote_literal(task), 'NULL')
        WHEN queue IS NULL OR queue !~ '[^[:space:]]' THEN
            'queue must be a non-empty name, got ' || coalesce(quote_literal(queue), 'NULL')
        WHEN args IS NULL OR jsonb_typeof(args) <> 'array' THEN
            'args must be a JSON array, got ' || coalesce(jsonb_typeof(args), 'NULL')
        WHEN kwargs IS NULL OR jsonb_typeof(kwargs) <> 'object' THEN
            'kwargs must be a JSON object, got ' || coalesce(jsonb_typeof(kwargs), 'NULL')
        WHEN priority IS NULL OR priority NOT BETWEEN -32768 AND 32767 THEN
            'priority must be an integer from -32768 to 32767, got '
                || coalesce(priority::text, 'NULL')
        WHEN max_attempts IS NULL OR max_attempts < 1 THEN
            'max_attempts must be at least 1, got ' || coalesce(max_attempts::text, 'NULL')
        WHEN NOT isfinite(run_at) THEN
            'run_at must be a finite time, got ' || run_at
        WHEN dedup_key = '' THEN
            'dedup_key must be a non-empty string'
        WHEN dedup_window IS NOT NULL AND dedup_key IS NULL THEN
            'dedup_window needs a dedup_key'
        -- 0 to ten years, as Python's MAX_DELAY.
        WHEN extract(epoch FROM dedup_window) NOT BETWEEN 0 AND 315576000 THEN
            'dedup_window must be between 0 and 10 years, got ' || dedup_window
        WHEN jsonb_path_exists(args, too_deep) THEN
            'args nest lists and objects deeper than 200 levels'
        WHEN jsonb_path_exists(kwargs, too_deep) THEN
            'kwargs nest lists and objects deeper than 200 levels'
    END;
END;
$$;

-- Enqueue one job; its id. With a dedup key held by a job that has not
-- ended (or ended within its window), that job's id instead, and nothing is
-- inserted: the key row's primary key decides a race, the loser waiting for
-- the winner's transaction (claim_dedup_key in sql/queries.sql).
--
-- The table's columns, set as Python sets them: status 'pending' when run_at
-- is NULL or not after now() (run_at is then now() if NULL), else
-- 'scheduled' until the leader releases it; `limited` is whether the task
-- has a concurrency or rate limit, which workers that know the task write to
-- pgjobs.task_limits when they start, unless the caller says. A wrong
-- `limited` would have the job claimed past its task's limit, or never.
-- The NOTIFY of a pending job's queue reaches workers when the transaction
-- commits, and never if it rolls back.
CREATE FUNCTION pgjobs.enqueue(
    task text,
    args jsonb DEFAULT '[]',
    kwargs jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT 1,
    dedup_key text DEFAULT NULL,
    dedup_window interval DEFAULT NULL,
    limited boolean DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := pgjobs.enqueue_error(task, args, kwargs, queue, priority, run_at,
                                         max_attempts, dedup_key, dedup_window);
    new_id uuid;
    found uuid;
    pending boolean := run_at IS NULL OR run_at <= now();
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pgjobs.enqueue: ' || problem;
    END IF;
    new_id := pgjobs.new_job_id();
    IF dedup_key IS NOT NULL THEN
        INSERT INTO pgjobs.dedup_keys AS d (key, job_id, window_seconds)
        VALUES (enqueue.dedup_key, new_id, extract(epoch FROM enqueue.dedup_window))
        ON CONFLICT (key) DO UPDATE
            SET job_id = EXCLUDED.job_id, created_at = now(), expires_at = NULL,
                window_seconds = EXCLUDED.window_seconds
            WHERE d.expires_at IS NOT NULL AND d.expires_at <= now()
        RETURNING d.job_id INTO found;
        IF found IS NULL THEN
            SELECT j.id INTO found
            FROM pgjobs.dedup_keys d JOIN pgjobs.jobs j ON j.id = d.job_id
            WHERE d.key = enqueue.dedup_key;
            IF found IS NULL THEN  -- cannot happen while the key row holds its job
                RAISE EXCEPTION USING MESSAGE = 'pgjobs.enqueue: dedup key '
                    || quote_literal(dedup_key) || ' points at no job';
            END IF;
            RETURN found;
        END IF;
    END IF;
    IF limited IS NULL THEN
        limited := EXISTS (SELECT FROM pgjobs.task_limits l WHERE l.task = enqueue.task);
    END IF;
    INSERT INTO pgjobs.jobs (id, task, queue, status, priority, args, kwargs, max_attempts,
                             run_at, dedup_key, limited)
    VALUES (new_id, enqueue.task, enqueue.queue,
            CASE WHEN pending THEN 'pending' ELSE 'scheduled' END,
            enqueue.priority, enqueue.args, enqueue.kwargs, enqueue.max_attempts,
            coalesce(enqueue.run_at, now()), enqueue.dedup_key, enqueue.limited);
    IF pending THEN
        PERFORM pg_notify('pgjobs', queue);
    END IF;
    RETURN new_id;
END;
$$;

-- Enqueue many jobs in one call: `jobs` is a JSON array of objects whose
-- keys are pgjobs.enqueue()'s parameters ("task" required; a key left out
-- takes the parameter's default, and JSON null is SQL NULL); NULL, which is
-- what jsonb_agg() gives for no rows, is no jobs. run_at is a
-- timestamp in text; dedup_window a number of seconds or an interval in
-- text. Every item is checked before anything is inserted: one bad item
-- and the call fails naming it (items count from 0, as in Python's
-- enqueue_many). The ids come back in the order of the items, a
-- deduplicated item's being the existing job's (or that of an earlier item
-- with the same key). Keys are taken in item order, as Python takes them;
-- the jobs then go in by one INSERT, and the workers of each queue that got
-- a pending job get one NOTIFY.
CREATE FUNCTION pgjobs.enqueue_many(jobs jsonb) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    known constant text[] := '{task,args,kwargs,queue,priority,run_at,max_attempts,'
                             'dedup_key,dedup_window,limited}';
    item jsonb;
    n integer := 0;  -- items read so far
    problem text;
    k text;
    v jsonb;
    -- The item in hand.
    a_task text; a_args jsonb; a_kwargs jsonb; a_queue text; a_priority integer;
    a_run_at timestamptz; a_max_attempts integer; a_key text; a_window interval;
    a_limited boolean;
    -- The items' values, one array per column.
    c_task text[] := '{}'; c_args jsonb[] := '{}'; c_kwargs jsonb[] := '{}';
    c_queue text[] := '{}'; c_priority integer[] := '{}'; c_run_at timestamptz[] := '{}';
    c_max_attempts integer[] := '{}'; c_key text[] := '{}'; c_window interval[] := '{}';
    c_limited boolean[] := '{}';
    ids uuid[];
    fresh boolean[];  -- false for an item that got an existing job
    found uuid;
    woken integer;
BEGIN
    IF jsonb_typeof(jobs) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pgjobs.enqueue_many: jobs must be a JSON array of objects, got '
                      || jsonb_typeof(jobs);
    END IF;
    FOR item IN SELECT e.value FROM jsonb_array_elements(jobs) AS e LOOP
        problem := NULL;
        a_task := NULL; a_args := '[]'; a_kwargs := '{}'; a_queue := 'default';
        a_priority := 0; a_run_at := NULL; a_max_attempts := 1; a_key := NULL;
        a_window := NULL; a_limited := NULL;
        IF jsonb_typeof(item) <> 'object' THEN
            problem := 'must be a JSON object, got ' || jsonb_typeof(item);
        ELSIF (item - known) <> '{}' THEN
            problem := (SELECT CASE WHEN count(*) = 1 THEN 'unknown key ' ELSE 'unknown keys ' END
                               || string_agg(quote_literal(x), ', ' ORDER BY x)
                        FROM jsonb_object_keys(item - known) AS x)
                       || ' (the keys are ' || array_to_string(known, ', ') || ')';
        END IF;
        -- Each value given must be of its JSON type; the values are then
        -- checked as pgjobs.enqueue() checks its parameters. (jsonb_each()
        -- of NULL is no rows: an item already found wrong is not read.)
        FOR k, v IN SELECT e.key, e.value
                    FROM jsonb_each(CASE WHEN problem IS NULL THEN item END) AS e LOOP
            EXIT WHEN problem IS NOT NULL;
            IF jsonb_typeof(v) = 'null' THEN
                v := NULL;
            ELSIF k IN ('task', 'queue', 'dedup_key') AND jsonb_typeof(v) <> 'string' THEN
                problem := k || ' must be a string, got ' || v::text;
            ELSIF k = 'limited' AND jsonb_typeof(v) <> 'boolean' THEN
                problem := 'limited must be true, false or null, got ' || v::text;
            ELSIF k IN ('priority', 'max_attempts')
                  AND (jsonb_typeof(v) <> 'number' OR mod((v #>> '{}')::numeric, 1) <> 0
                       OR abs((v #>> '{}')::numeric) > 2147483647) THEN
                problem := k || ' must be an integer'
                           || CASE k WHEN 'priority' THEN ' from -32768 to 32767'
                                     ELSE ' of at least 1' END
                           || ', got ' || v::text;
            ELSIF k = 'run_at' AND jsonb_typeof(v) <> 'string' THEN
                problem := 'run_at must be a timestamp in a string, got ' || v::text;
            ELSIF k = 'dedup_window' AND jsonb_typeof(v) NOT IN ('number', 'string') THEN
                problem := 'dedup_window must be seconds or an interval in a string, got '
                           || v::text;
            ELSIF k = 'dedup_window' AND jsonb_typeof(v) = 'number'
                  AND (v #>> '{}')::numeric NOT BETWEEN 0 AND 315576000 THEN
                problem := 'dedup_window must be between 0 and 315576000 seconds (10 years), got '
                           || v::text;
            END IF;
            CONTINUE WHEN problem IS NOT NULL;
            CASE k
                WHEN 'task' THEN a_task := v #>> '{}';
                WHEN 'args' THEN a_args := v;
                WHEN 'kwargs' THEN a_kwargs := v;
                WHEN 'queue' THEN a_queue := v #>> '{}';
                WHEN 'priority' THEN a_priority := (v #>> '{}')::integer;
                WHEN 'max_attempts' THEN a_max_attempts := (v #>> '{}')::integer;
                WHEN 'dedup_key' THEN a_key := v #>> '{}';
                WHEN 'limited' THEN a_limited := (v #>> '{}')::boolean;
                WHEN 'run_at' THEN
                    -- Read as Postgres reads a timestamp; one it cannot read
                    -- is this item's error, not the cast's.
                    BEGIN
                        a_run_at := (v #>> '{}')::timestamptz;
                    EXCEPTION WHEN others THEN
                        problem := 'run_at must be a timestamp, got ' || v::text;
                    END;
                WHEN 'dedup_window' THEN
                    IF jsonb_typeof(v) = 'number' THEN
                        a_window := make_interval(secs => (v #>> '{}')::float8);
                    ELSE
                        BEGIN
                            a_window := (v #>> '{}')::interval;
                        EXCEPTION WHEN others THEN
                            problem := 'dedup_window must be an interval, got ' || v::text;
                        END;
                    END IF;
            END CASE;
        END LOOP;
        problem := coalesce(problem, pgjobs.enqueue_error(
            a_task, a_args, a_kwargs, a_queue, a_priority, a_run_at, a_max_attempts, a_key,
            a_window));
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'pgjobs.enqueue_many: item ' || n || ': ' || problem;
        END IF;
        c_task := c_task || a_task;
        c_args := c_args || a_args;
        c_kwargs := c_kwargs || a_kwargs;
        c_queue := c_queue || a_queue;
        c_priority := c_priority || a_priority;
        c_run_at := c_run_at || a_run_at;
        c_max_attempts := c_max_attempts || a_max_attempts;
        c_key := c_key || a_key;
        c_window := c_window || a_window;
        c_limited := c_limited || a_limited;
        n := n + 1;
    END LOOP;
    IF n = 0 THEN
        RETURN;
    END IF;

    ids := pgjobs.new_job_ids(n);
    fresh := array_fill(true, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN c_key[i] IS NULL;
        found := NULL;
        INSERT INTO pgjobs.dedup_keys AS d (key, job_id, window_seconds)
        VALUES (c_key[i], ids[i], extract(epoch FROM c_window[i]))
        ON CONFLICT (key) DO UPDATE
            SET job_id = EXCLUDED.job_id, created_at = now(), expires_at = NULL,
                window_seconds = EXCLUDED.window_seconds
            WHERE d.expires_at IS NOT NULL AND d.expires_at <= now()
        RETURNING d.job_id INTO found;
        CONTINUE WHEN found IS NOT NULL;
        -- Held: by an earlier item of this call (whose job is not inserted
        -- yet), or by a job of its own.
        SELECT d.job_id INTO found FROM pgjobs.dedup_keys d
        WHERE d.key = c_key[i]
          AND (d.job_id = ANY (ids[1:i - 1])
               OR EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = d.job_id));
        IF found IS NULL THEN  -- cannot happen while the key row holds its job
            RAISE EXCEPTION USING MESSAGE = 'pgjobs.enqueue_many: item ' || (i - 1)
                || ': dedup key ' || quote_literal(c_key[i]) || ' points at no job';
        END IF;
        ids[i] := found;
        fresh[i] := false;
    END LOOP;
    -- Looked up only when some item leaves it to be: a caller that says
    -- needs no right to read pgjobs.task_limits.
    IF array_position(c_limited, NULL) IS NOT NULL THEN
        c_limited := ARRAY(
            SELECT coalesce(u.limited,
                            EXISTS (SELECT FROM pgjobs.task_limits l WHERE l.task = u.task))
            FROM unnest(c_task, c_limited) WITH ORDINALITY AS u(task, limited, ord)
            ORDER BY u.ord);
    END IF;

    WITH inserted AS (
        INSERT INTO pgjobs.jobs (id, task, queue, status, priority, args, kwargs, max_attempts,
                                 run_at, dedup_key, limited)
        SELECT u.id, u.task, u.queue,
               CASE WHEN u.run_at IS NULL OR u.run_at <= now() THEN 'pending'
                    ELSE 'scheduled' END,
               u.priority, u.args, u.kwargs, u.max_attempts, coalesce(u.run_at, now()),
               u.dedup_key, u.limited
        FROM unnest(ids, c_task, c_queue, c_priority, c_args, c_kwargs, c_max_attempts,
                    c_run_at, c_key, c_limited, fresh)
             AS u(id, task, queue, priority, args, kwargs, max_attempts, run_at, dedup_key,
                  limited, fresh)
        WHERE u.fresh
        RETURNING pgjobs.jobs.queue, pgjobs.jobs.status
    )
    SELECT count(pg_notify('pgjobs', w.queue) IS NULL) INTO woken
    FROM (SELECT DISTINCT r.queue FROM inserted r WHERE r.status = 'pending') AS w;
    RETURN QUERY SELECT u.id FROM unnest(ids) WITH ORDINALITY AS u(id, ord) ORDER BY u.ord;
END;
$$;

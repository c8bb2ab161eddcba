-- pgjobs schema, revision 0012: a worker reports the threads stuck past a
-- hard time limit. A thread cannot be stopped from outside; it runs on and
-- holds its slot, though its job has already failed. Capacity shown anywhere
-- (pgjobs.workers_alive, the workers API, the dashboard) counts such a slot
-- as busy: busy_slots = running_jobs + stuck_threads.

ALTER TABLE pgjobs.workers ADD COLUMN stuck_threads integer NOT NULL DEFAULT 0;

CREATE OR REPLACE VIEW pgjobs.workers_alive AS
SELECT w.id AS worker_id, w.hostname, w.pid, w.queues, w.concurrency, w.started_at,
       w.heartbeat_at,
       EXTRACT(EPOCH FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       w.lease_seconds,
       w.leader_pid IS NOT NULL AS is_leader,
       r.running_jobs,
       w.stuck_threads,
       r.running_jobs + w.stuck_threads AS busy_slots
FROM pgjobs.workers w
CROSS JOIN LATERAL (
    SELECT count(*) AS running_jobs FROM pgjobs.jobs j
    WHERE j.status = 'running' AND j.worker_id = w.id
) AS r
WHERE w.heartbeat_at >= now() - make_interval(secs => w.lease_seconds);

COMMENT ON VIEW pgjobs.workers_alive IS
    'Workers whose heartbeat is within their lease, with how many jobs each runs now, how '
    'many threads are stuck past a hard time limit, the slots both hold (busy_slots), and '
    'whether it leads maintenance. A worker past its lease is left out; its row stays in '
    'pgjobs.workers until the rescuer removes it.';

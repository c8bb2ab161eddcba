-- Undo revision 0012: workers_alive as revision 0004 made it, and no stuck_threads.

DROP VIEW pgjobs.workers_alive;

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

ALTER TABLE pgjobs.workers DROP COLUMN stuck_threads;

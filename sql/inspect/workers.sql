-- Workers: who is alive, what each one runs, and who leads maintenance.
--
-- Answers: are there workers for every queue, is one of them leading (the
-- leader releases due jobs, rescues lost ones and prunes), and which ones
-- stopped sending heartbeats? A worker is alive while its heartbeat is no
-- older than its own lease_seconds; a dead one's row stays until the leader
-- rescues its jobs and removes it, so rows that stay "dead" mean no leader.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/workers.sql

SELECT w.id AS worker_id,
       w.hostname,
       w.pid,
       array_to_string(w.queues, ',') AS queues,
       w.concurrency,
       coalesce(a.running_jobs, r.running) AS running,
       a.worker_id IS NOT NULL AS alive,
       w.leader_pid IS NOT NULL AS leader,
       round(EXTRACT(EPOCH FROM now() - w.heartbeat_at)::numeric, 1) AS heartbeat_age_s,
       w.lease_seconds,
       date_trunc('second', now() - w.started_at) AS up_for
FROM pgjobs.workers w
LEFT JOIN pgjobs.workers_alive a ON a.worker_id = w.id
LEFT JOIN LATERAL (
    SELECT count(*) AS running FROM pgjobs.jobs j
    WHERE j.status = 'running' AND j.worker_id = w.id
) AS r ON a.worker_id IS NULL
ORDER BY alive, w.hostname, w.pid;

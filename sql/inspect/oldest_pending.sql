-- Oldest pending job per queue: how long has the next job in line waited?
--
-- Answers: are the workers keeping up? A queue whose oldest ready job has
-- waited minutes has too few workers for it, no worker listening to it (see
-- stuck_jobs.sql), or workers busy with something else. The wait counts from
-- the job's run_at, the moment it became ready (for a delayed or retried job,
-- not its creation), and is what `pgjobs check --max-age` compares.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/oldest_pending.sql
--
-- Reads pgjobs.queue_oldest, which reads only waiting jobs through the partial
-- indexes: cheap enough to run as often as you like. Queues with nothing
-- waiting have no row.

SELECT queue,
       depth AS waiting,
       pending,
       depth - pending AS scheduled_or_retrying,
       round(oldest_pending_age::numeric, 1) AS oldest_wait_s,
       date_trunc('second', make_interval(secs => oldest_pending_age)) AS oldest_wait,
       oldest_pending_at AS ready_since,
       oldest_pending_id
FROM pgjobs.queue_oldest
ORDER BY oldest_pending_age DESC NULLS LAST, queue;

-- Dead letters by task: which tasks fail for good, since when, and why.
--
-- Answers: what is broken? For each task and queue: how many jobs ended in
-- the dead letters, the first and last failure, the most common error type
-- with its count, and the message of the latest failure. Replay them with
-- `pgjobs dead-letters replay --task TASK` once the cause is fixed.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/dead_letters.sql
--
-- Reads pgjobs.dead_letters_by_task (the whole dead_letters table, which the
-- pruner keeps to --keep-failed) and the latest dead letter per task through
-- dead_letters_task_idx.

SELECT d.task,
       d.queue,
       d.dead_letters,
       d.first_failed_at,
       d.last_failed_at,
       d.top_error_type,
       d.top_error_count,
       left(regexp_replace(l.error ->> 'message', '\s+', ' ', 'g'), 100) AS latest_message
FROM pgjobs.dead_letters_by_task d
LEFT JOIN LATERAL (
    SELECT x.error FROM pgjobs.dead_letters x
    WHERE x.task = d.task AND x.queue = d.queue
    ORDER BY x.failed_at DESC
    LIMIT 1
) AS l ON true
ORDER BY d.last_failed_at DESC;

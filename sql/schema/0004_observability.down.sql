-- Revert revision 0004: the views go; no data lived in them.
DROP VIEW IF EXISTS pgjobs.workers_alive, pgjobs.dead_letters_by_task, pgjobs.running_jobs,
    pgjobs.throughput, pgjobs.queue_oldest, pgjobs.queue_depth;

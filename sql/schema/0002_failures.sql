-- pgjobs schema, revision 0002: what failure handling needs.
--
-- cancel_requested_at: app.cancel() of a running job sets it; the worker
--   running the job learns of it by NOTIFY pgjobs_cancel, or by its next look
--   at what it runs if the notification is lost.
-- attempt_base: attempts spent before the job was last replayed, so a replay
--   gives the job a fresh allowance while its attempt numbers keep counting up
--   and its attempts history stays whole.
-- leader_pid: set on the worker that holds the maintenance lock, to the
--   backend pid of the session that holds it. The advisory lock decides who
--   leads; this column tells operators which worker it is, and lets the
--   others end the session of a leader whose heartbeat lapsed while its
--   connection lives on (a paused process), which would hold the lock forever.
-- lease_seconds: how long this worker may go without a heartbeat before it
--   is taken for dead. Each worker says its own, so workers with different
--   settings can share a database.

ALTER TABLE pgjobs.jobs
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;

ALTER TABLE pgjobs.workers
    ADD COLUMN leader_pid integer,
    ADD COLUMN lease_seconds double precision NOT NULL DEFAULT 30 CHECK (lease_seconds > 0);

-- Dead letters are listed newest first and filtered by queue.
CREATE INDEX dead_letters_failed_at_idx ON pgjobs.dead_letters (failed_at);

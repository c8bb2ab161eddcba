-- pgjobs schema, revision 0002: what failure handling needs.
--
-- cancel_requested_at: app.cancel() of a running job sets it; the worker
--   running the job learns of it by NOTIFY pgjobs_cancel, or by its next look
--   at what it runs if the notification is lost.
-- attempt_base: attempts spent before the job was last replayed, so a replay
--   gives the job a fresh allowance while its attempt numbers keep counting up
--   and its attempts history stays whole.
-- leader: the worker that holds the maintenance lock says so here, for
--   operators; the advisory lock, not this column, decides who leads.

ALTER TABLE pgjobs.jobs
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;

ALTER TABLE pgjobs.workers
    ADD COLUMN leader boolean NOT NULL DEFAULT false;

-- Dead letters are listed newest first and filtered by queue.
CREATE INDEX dead_letters_failed_at_idx ON pgjobs.dead_letters (failed_at);

-- Statements of the leader's maintenance services (pgjobs/maintenance/) that
-- sql/queries.sql does not hold.

-- name: upkeep_session
-- The upkeep's own connection: no statement timeout. A vacuum of a large
-- table, or a rebuild of a large index, may rightly outlast a timeout the role
-- sets for its statements; it would fail at every look. Straight to Postgres
-- the session starts with statement_timeout=0 among its startup options; this
-- statement is for a connection through a pooler, which may refuse them. For
-- the session: the connection is the upkeep's alone. A SET, not a SELECT of
-- set_config(): it must itself finish within the shortest timeout a role may
-- set (1 ms), which a statement that is parsed, planned and run may not.
SET statement_timeout = 0;

-- name: leader_try_lock
-- The leader's election on its own connection (pgjobs/maintenance/leader.py):
-- the session lock on the key, held while the connection lives, and the
-- backend that holds it (named in pgjobs.workers.leader_pid).
SELECT pg_try_advisory_lock(%(key)s::bigint) AS locked, pg_backend_pid() AS backend_pid;

-- name: leader_try_round
-- The election per round, behind a transaction pooler with no direct URL: the
-- lock on the same key until the round's transaction ends.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint) AS locked;

-- name: leader_check
-- The leader's cheap round trip: if its connection died, so did its lock.
SELECT 1 AS alive;

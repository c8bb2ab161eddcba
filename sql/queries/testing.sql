-- Statements of pgjobs.testing (the helpers for testing users' tasks) and of the
-- web API's availability probe.

-- name: testing_ran_by
-- The jobs a worker ran an attempt of (every attempt a worker ends leaves a row
-- in pgjobs.attempts under its id), in the order it first started them.
SELECT j.* FROM pgjobs.jobs j
JOIN (SELECT job_id, min(started_at) AS first_started FROM pgjobs.attempts
      WHERE worker_id = %(worker_id)s GROUP BY job_id) a ON a.job_id = j.id
ORDER BY a.first_started, j.id;

-- name: testing_enqueued
-- The jobs in the database, optionally of one task, one queue and some statuses.
SELECT * FROM pgjobs.jobs
WHERE (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
ORDER BY id;

-- name: testing_database
-- The database's name: reset() empties tables only where it contains "test".
SELECT current_database() AS name;

-- name: testing_tables
-- Every table of pgjobs' schema but the migrations' own, so that tables a later
-- revision adds are emptied too.
SELECT tablename FROM pg_tables
WHERE schemaname = 'pgjobs' AND tablename <> 'alembic_version'
ORDER BY tablename;

-- name: testing_end_sessions
-- Before Postgres 13 a database with sessions on it cannot be dropped (a worker a
-- test left running, say): end them first.
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = %(name)s AND pid <> pg_backend_pid();

-- name: database_answers
-- The web API's probe while the database was away: it answers again.
SELECT 1 AS answers;

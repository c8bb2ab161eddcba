-- Statements of the probes: `pgjobs check`, the health reads (pgjobs/health.py)
-- and the schema's revision (pgjobs/migrations.py).

-- name: probe_timeout
-- Bound a probe's statements (milliseconds, as text): a probe must not hang on
-- a lock (a migration, a TRUNCATE). Local to the transaction (true): behind a
-- transaction-pooling PgBouncer a session setting would stay on a connection
-- others get.
SELECT set_config('statement_timeout', %(milliseconds)s, true);

-- name: schema_revision
-- The revision pgjobs' schema is at, as Alembic records it (no row before the
-- first migration). Read after schema_version says the table exists.
SELECT version_num FROM pgjobs.alembic_version;

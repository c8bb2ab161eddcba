-- pgjobs schema, revision 0010: no trigger on inserts of jobs.
--
-- pgjobs' own inserts send their NOTIFY themselves (revision 0006). The
-- statement-level insert trigger stayed for jobs that other programs insert
-- with plain SQL, and pgjobs' statements turned it off with a transaction-local
-- setting, made by a CTE in each of them. Turned off, it still cost every
-- insert: Postgres reads and prepares a trigger's WHEN for each statement and
-- sets up its transition table, and the setting is made and undone at commit.
-- Measured on one-job inserts, in a loop on a held connection: 321,000 ->
-- 270,000 Postgres instructions a statement, and 28 of its 300 us (paired
-- rounds, median).
-- A job inserted with plain SQL starts at the workers' next poll, or at once
-- when its transaction also runs NOTIFY pgjobs, '<queue>'.

DROP TRIGGER jobs_notify_insert ON pgjobs.jobs;
DROP FUNCTION pgjobs.notify_ready();

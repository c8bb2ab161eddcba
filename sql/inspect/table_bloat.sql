-- Dead tuples and vacuum of the pgjobs tables: is the hot table bloating?
--
-- Answers: does vacuum keep up with the queue? Every claim and every
-- outcome updates a jobs row and every prune deletes some, leaving dead
-- tuples that only vacuum reclaims. When n_dead_tup keeps growing although
-- autovacuum runs, something holds back the xmin horizon and vacuum may not
-- remove them: run xmin_horizon.sql. Claims then wade through dead index
-- entries and slow down; that is the usual way a SKIP LOCKED queue dies.
-- hot_pct is the share of updates that were HOT (no index touched); the
-- jobs table leaves room on each page (fillfactor 80) to keep it high.
-- Where autovacuum is off (SHOW autovacuum, or autovacuum_enabled=false in
-- the table's reloptions), pgjobs' leader vacuums and analyzes the table by
-- autovacuum's rule (vacuum_count, last_analyze), unless its workers run
-- with --no-vacuum; with neither, nothing ever analyzes it, and plans made
-- while it was small stay on the workers' connections.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/table_bloat.sql

SELECT s.relname AS table_name,
       c.reloptions,
       n_live_tup,
       n_dead_tup,
       round(100.0 * n_dead_tup / nullif(n_live_tup + n_dead_tup, 0), 1) AS dead_pct,
       round(100.0 * n_tup_hot_upd / nullif(n_tup_upd, 0), 1) AS hot_pct,
       pg_size_pretty(pg_table_size(s.relid)) AS table_size,
       pg_size_pretty(pg_indexes_size(s.relid)) AS indexes_size,
       last_autovacuum,
       last_vacuum,
       autovacuum_count,
       vacuum_count,
       last_autoanalyze,
       last_analyze,
       n_mod_since_analyze
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = 'pgjobs'
ORDER BY n_dead_tup DESC, s.relname;

-- The indexes of the jobs table. Vacuum frees the pages of dead entries for
-- reuse but never shrinks an index: after a large backlog has drained, the
-- claim index stays as large as the backlog was, and the planner then costs
-- a scan of it like a scan of the whole table. A claim index far larger than
-- the jobs waiting warrant gets its space back with
--   REINDEX INDEX CONCURRENTLY pgjobs.jobs_claim_idx;
SELECT s.indexrelname AS index_name,
       pg_size_pretty(pg_relation_size(s.indexrelid)) AS size,
       s.idx_scan,
       s.idx_tup_read,
       s.idx_tup_fetch
FROM pg_stat_user_indexes s
WHERE s.schemaname = 'pgjobs' AND s.relname = 'jobs'
ORDER BY pg_relation_size(s.indexrelid) DESC;

-- Who holds back the xmin horizon: what keeps vacuum from removing dead rows.
--
-- Answers: why does n_dead_tup (table_bloat.sql) grow although autovacuum
-- runs? Vacuum may only remove a dead row once no one can still see it: the
-- oldest snapshot anywhere (the xmin horizon) decides. A transaction left
-- open in a session ("idle in transaction"), a long report or pg_dump, a
-- replication slot, a standby with hot_standby_feedback, or a forgotten
-- prepared transaction holds it back, and then every row that a claim, an
-- outcome or the pruner leaves behind stays in the jobs table and its
-- indexes until that holder lets go.
--
-- Rows come worst first: xmin_age is how many transactions ago the holder's
-- snapshot starts (or its own transaction id, for a session that wrote: it
-- holds from its first write to its end, even idle between statements).
-- Sessions in other databases do not hold back this database's tables
-- (PostgreSQL 14 and later; this_database tells), and neither does a slot's
-- catalog_xmin (only the catalogs); replication slots' xmin, standbys and
-- prepared transactions do. VACUUM's own snapshot holds nothing back and is
-- left out. End a session with pg_terminate_backend(pid), a prepared
-- transaction with ROLLBACK PREPARED 'gid', and drop a slot that is no
-- longer used with pg_drop_replication_slot('name').
--
-- pgjobs' leader reads the same holders (xmin_horizon in sql/queries.sql) and
-- logs a WARNING naming each one that holds longer than
-- $PGJOBS_HORIZON_MAX_AGE (5 minutes by default); /metrics shows
-- pgjobs_xmin_horizon_age_seconds, and `pgjobs check` exits 1 naming it.
--
-- Run:
--   psql "$PGJOBS_URL" -f sql/inspect/xmin_horizon.sql
--
-- Seeing other users' sessions needs the pg_read_all_stats role (or superuser).

WITH holders AS (
    SELECT 'session' AS kind,
           format('pid %s, %s@%s, %s', pid, usename, datname,
                  coalesce(nullif(application_name, ''), client_addr::text, 'local'))
               AS holder,
           datname IS NOT DISTINCT FROM current_database() AS this_database,
           CASE WHEN backend_xmin IS NULL OR age(backend_xid) > age(backend_xmin)
                THEN backend_xid ELSE backend_xmin END AS held_xmin,
           coalesce(xact_start, query_start) AS since,
           coalesce(state, 'state not visible') || ': '
               || left(regexp_replace(query, '\s+', ' ', 'g'), 80) AS detail
    FROM pg_stat_activity
    WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
      AND pid <> pg_backend_pid()
      AND backend_type <> 'parallel worker'  -- its leader is listed
      AND pid NOT IN (SELECT pid FROM pg_stat_progress_vacuum)
    UNION ALL
    SELECT 'replication slot',
           format('%s (%s, %s)', slot_name, slot_type, CASE WHEN active THEN 'active'
                                                            ELSE 'inactive' END),
           database IS NULL OR database = current_database(),
           xmin,
           NULL,
           'catalog_xmin age ' || age(catalog_xmin)
    FROM pg_replication_slots
    WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL
    UNION ALL
    SELECT 'standby feedback',
           format('%s from %s', coalesce(nullif(application_name, ''), 'standby'),
                  coalesce(client_addr::text, 'local')),
           true,
           backend_xmin,
           backend_start,
           state
    FROM pg_stat_replication
    WHERE backend_xmin IS NOT NULL
    UNION ALL
    SELECT 'prepared transaction', gid, database = current_database(), transaction, prepared,
           'owner ' || owner
    FROM pg_prepared_xacts
)
SELECT kind,
       holder,
       this_database,
       age(held_xmin) AS xmin_age,
       date_trunc('second', now() - since) AS held_for,
       detail
FROM holders
ORDER BY age(held_xmin) DESC NULLS LAST, since;

-- Settings that bound how long a holder can last.
SELECT name, setting, unit
FROM pg_settings
WHERE name IN ('idle_in_transaction_session_timeout', 'statement_timeout',
               'old_snapshot_threshold', 'hot_standby_feedback', 'max_slot_wal_keep_size')
ORDER BY name;

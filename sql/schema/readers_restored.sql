-- After a revision that changes the type of columns of pgjobs.jobs: the views
-- and triggers that readers_dropped.sql kept and dropped are made again.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT make_it FROM pgjobs_saved ORDER BY oid LOOP
        EXECUTE s.make_it;
    END LOOP;
    FOR s IN SELECT stmt FROM pgjobs_saved_notes LOOP
        EXECUTE s.stmt;
    END LOOP;
END;
$$;

DROP TABLE pgjobs_saved, pgjobs_saved_notes;

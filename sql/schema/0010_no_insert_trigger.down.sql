-- Undo revision 0010: the insert trigger of revision 0006, which wakes workers
-- for inserts made without the transaction-local pgjobs.self_notify setting.
CREATE FUNCTION pgjobs.notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgjobs', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE status = 'pending') AS q;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON pgjobs.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (current_setting('pgjobs.self_notify', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgjobs.notify_ready();

-- Undo revision 0006: the insert trigger notifies for every insert again.
DROP TRIGGER jobs_notify_insert ON pgjobs.jobs;
CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON pgjobs.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pgjobs.notify_ready();

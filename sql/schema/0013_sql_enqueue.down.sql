-- Undo revision 0013: no enqueue from SQL.
DROP FUNCTION pgjobs.enqueue_many(jsonb);
DROP FUNCTION pgjobs.enqueue(text, jsonb, jsonb, text, integer, timestamptz, integer, text,
                             interval, boolean);
DROP FUNCTION pgjobs.enqueue_error(text, jsonb, jsonb, text, integer, timestamptz, integer, text,
                                   interval);
DROP FUNCTION pgjobs.new_job_id();
DROP FUNCTION pgjobs.new_job_ids(integer);

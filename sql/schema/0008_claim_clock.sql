-- pgjobs schema, revision 0008: claim_limited() stamps started_at with the
-- clock when it takes a job, as claim_jobs does.
--
-- now() is fixed when the claim's transaction starts. The function waits on
-- its task's lock and then takes a fresh snapshot, so it can claim a job
-- committed while it waited: with now(), that job started before it was
-- created, or its attempt before the previous attempt ended. Only that one
-- assignment changes, so the function is rewritten from its own definition.
DO $$
DECLARE
    def text := pg_get_functiondef(
        'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure);
BEGIN
    IF position('started_at = now()' IN def) = 0 THEN
        RAISE EXCEPTION 'pgjobs.claim_limited() is not the one revision 0003 made';
    END IF;
    EXECUTE replace(def, 'started_at = now()', 'started_at = clock_timestamp()');
END;
$$;

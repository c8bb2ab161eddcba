-- Undo revision 0008: claim_limited() stamps started_at with now() again.
DO $$
DECLARE
    def text := pg_get_functiondef(
        'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure);
BEGIN
    EXECUTE replace(def, 'started_at = clock_timestamp()', 'started_at = now()');
END;
$$;

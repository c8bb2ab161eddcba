-- Undo revision 0009: the claim indexes deduplicate as b-tree indexes do by default.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 130000 THEN
        ALTER INDEX pgjobs.jobs_claim_idx RESET (deduplicate_items);
        ALTER INDEX pgjobs.jobs_limited_claim_idx RESET (deduplicate_items);
    END IF;
END;
$$;

-- Undo revision 0007: the CHECKs on job statuses as IN lists again.
ALTER TABLE pgjobs.jobs
    DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check
        CHECK (status IN ('blocked', 'scheduled', 'pending', 'running', 'retrying',
                          'succeeded', 'failed', 'cancelled')),
    DROP CONSTRAINT jobs_on_failure_check,
    ADD CONSTRAINT jobs_on_failure_check CHECK (on_failure IN ('cancel', 'pass'));

ALTER TABLE pgjobs.workflows
    DROP CONSTRAINT workflows_kind_check,
    ADD CONSTRAINT workflows_kind_check CHECK (kind IN ('chain', 'group', 'chord'));

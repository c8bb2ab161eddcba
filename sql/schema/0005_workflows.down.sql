-- Undo revision 0005: workflows.
DROP TRIGGER jobs_workflow_resume ON pgjobs.jobs;
DROP TRIGGER jobs_workflow_step ON pgjobs.jobs;
DROP FUNCTION pgjobs.workflow_resume();
DROP FUNCTION pgjobs.workflow_step();
DROP FUNCTION pgjobs.workflow_input(jsonb);
DROP TABLE pgjobs.job_deps;
DROP TABLE pgjobs.workflows;
DROP INDEX pgjobs.jobs_workflow_idx;
-- Jobs still waiting for others cannot be expressed without the workflow columns.
UPDATE pgjobs.jobs SET status = 'cancelled', finished_at = now() WHERE status = 'blocked';
ALTER TABLE pgjobs.jobs DROP COLUMN on_failure, DROP COLUMN input, DROP COLUMN waiting_for,
    DROP COLUMN workflow_id;
ALTER TABLE pgjobs.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE pgjobs.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('scheduled', 'pending', 'running', 'retrying', 'succeeded', 'failed',
                      'cancelled'));

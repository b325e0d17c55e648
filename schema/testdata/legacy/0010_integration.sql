-- 0010_integration.sql: policies joining the janitor's retention with
-- row-level security.

CREATE POLICY job_delete_old ON kiln.job FOR DELETE TO kiln_janitor
    USING (finished_at IS NOT NULL);
COMMENT ON POLICY job_delete_old ON kiln.job IS 'The janitor deletes finished jobs past retention when configured to (--delete-jobs-after); their packages, tasks, attempts, artifacts and logs go with them by cascade.';

-- 0042_statement_triggers.sql: the change triggers of tasks and jobs
-- (kiln.task_changed, kiln.job_changed) and the attempts' insert trigger
-- (kiln.attempt_inserted) are statement-level, with transition tables,
-- and the job status recompute is set-based (kiln.job_statuses_from_tasks,
-- kiln.refresh_job_statuses; the functions of one job call them): a
-- statement that takes or finishes many tasks records their events and
-- recomputes their jobs once, not once per row (schema/current/
-- 10_functions.sql, 30_triggers.sql). No table changes.
SELECT 1;

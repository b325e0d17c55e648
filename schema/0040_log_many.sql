-- 0040_log_many.sql: a builder stores the log batches of its slots that are
-- due at the same moment in one statement, kiln.task_log_many
-- (schema/current/10_functions.sql; docs/scaling.md, "Log batches of many
-- slots"); kiln.task_log is task_log_many of one, and kiln.cancel_job_for
-- locks the open attempts in task order, as task_log_many does. No table
-- changes.
SELECT 1;

-- 0036_lean_triggers.sql: the lean data path's triggers (docs/scaling.md,
-- "The data path"). No table changes: the change triggers of tasks, jobs
-- and attempts fire only for the changes they record (WHEN clauses in
-- schema/current/30_triggers.sql; an insert has a trigger of its own), the
-- report and publication triggers only for a job's final status, and
-- kiln.job_status_from_tasks is PL/pgSQL, planned once per session.
SELECT 1;

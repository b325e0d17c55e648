-- 0048_event_kind_partial.sql: event_kind_idx (kind, id) leaves out the
-- three kinds that a farm writes most, task.status, attempt.status and
-- job.status (about eight events per task, which event_task_idx and
-- event_job_idx already find by task and job). What reads events by kind
-- reads the other kinds: kiln check's janitor round (janitor.round), the
-- janitor's repairs, reports and builder states. Every event skips one
-- index entry. A query must name its kind as a constant for PostgreSQL to
-- use a partial index (with a parameter, a generic plan cannot).
-- Rebuilding the index holds a SHARE lock on kiln.event for as long as the
-- build reads the table, so writes wait: a farm with years of events runs
-- this migration in a quiet moment.
DROP INDEX IF EXISTS kiln.event_kind_idx;
CREATE INDEX event_kind_idx ON kiln.event (kind, id)
    WHERE kind NOT IN ('task.status', 'attempt.status', 'job.status');
COMMENT ON INDEX kiln.event_kind_idx IS 'Events by kind, newest last, for every kind but the three written per task and job (task.status, attempt.status, job.status: event_task_idx and event_job_idx find those).';

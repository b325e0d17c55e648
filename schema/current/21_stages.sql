-- Reporting views of failure stages (schema/0024_failure_stage.sql,
-- docs/reporting.md). Current state, re-applied on every migrate.

CREATE OR REPLACE VIEW kiln.failure_by_stage WITH (security_invoker = true) AS
SELECT t.platform,
       a.failure_stage AS stage,
       s.infrastructure,
       count(*) AS attempts,
       count(*) FILTER (WHERE a.retried) AS retried,
       count(DISTINCT a.task_id) AS tasks,
       count(*) FILTER (WHERE a.finished_at > now() - interval '7 days') AS last_7_days,
       max(a.finished_at) AS last_failed_at
FROM kiln.attempt a
JOIN kiln.task t ON t.id = a.task_id
JOIN kiln.failure_stage s ON s.name = a.failure_stage
WHERE a.status = 'failed'
GROUP BY t.platform, a.failure_stage, s.infrastructure;
COMMENT ON VIEW kiln.failure_by_stage IS 'Per platform and failure stage: how many attempts failed there, how many of them were retried (the farm''s faults), in how many tasks, in the last seven days, and when last. Row-level security applies (private buckets count only for those who may read them).';
COMMENT ON COLUMN kiln.failure_by_stage.platform IS 'The platform.';
COMMENT ON COLUMN kiln.failure_by_stage.stage IS 'The failure stage (kiln.failure_stage).';
COMMENT ON COLUMN kiln.failure_by_stage.infrastructure IS 'True when failures at this stage are the farm''s fault (retried).';
COMMENT ON COLUMN kiln.failure_by_stage.attempts IS 'Failed attempts at this stage.';
COMMENT ON COLUMN kiln.failure_by_stage.retried IS 'Of those, attempts after which the task was retried.';
COMMENT ON COLUMN kiln.failure_by_stage.tasks IS 'Distinct tasks with such a failed attempt.';
COMMENT ON COLUMN kiln.failure_by_stage.last_7_days IS 'Failed attempts at this stage that ended in the last seven days.';
COMMENT ON COLUMN kiln.failure_by_stage.last_failed_at IS 'When the last of them ended.';

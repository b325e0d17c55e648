-- 0049_refresh_returns_nothing.sql: kiln.refresh_job_statuses returns
-- nothing (schema/current/10_functions.sql). The task triggers call it at
-- every statement that changes tasks and discarded its answer, a second
-- read of the jobs that cost a fifth of the recompute; kiln.refresh_job_status
-- reads its one job's status itself. A function's result type cannot be
-- replaced, so it is dropped here and made again by the current-state
-- files. No table changes.
DROP FUNCTION IF EXISTS kiln.refresh_job_statuses(bigint[]);

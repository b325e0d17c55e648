-- 0047_redundant_task_indexes.sql: two indexes of kiln.task repeated a
-- third. task_unfinished_platform_idx (platform, status, created_at) WHERE
-- status IN ('pending', 'building'), from 0008, serves everything that
-- task_active_platform_idx (platform, status) over the same rows, from
-- 0006, and task_status_platform_idx (platform, created_at) WHERE status =
-- 'pending', from 0001, served: the queue depth per platform, a platform's
-- oldest pending task (status = 'pending' is an equality on its second
-- column, so created_at is in order after it) and the farm's pending tasks
-- (kiln check reads them all through either). Every task enters and leaves
-- these indexes at each change of status, so the two go: three index
-- entries fewer for each task that is queued, taken and finished.
DROP INDEX IF EXISTS kiln.task_active_platform_idx;
DROP INDEX IF EXISTS kiln.task_status_platform_idx;

-- 0006_reporting.sql: indexes for the CLI's and the web's listings.

-- kiln jobs --platform P: the jobs with a task on P, newest first, without
-- reading the tasks of other platforms.
CREATE INDEX task_platform_job_idx ON kiln.task (platform, job_id DESC);
COMMENT ON INDEX kiln.task_platform_job_idx IS 'Jobs with a task on a platform, newest first (kiln jobs --platform).';

-- kiln.queue_depth (kiln queue, kiln platforms, the web's queue page) counts
-- each platform's waiting and building tasks: only those rows, however long
-- the history.
CREATE INDEX task_active_platform_idx ON kiln.task (platform, status) WHERE status IN ('pending', 'building');
COMMENT ON INDEX kiln.task_active_platform_idx IS 'Waiting and building tasks per platform (view kiln.queue_depth).';

-- 0030_eta.sql: where a task stands and when it will build (docs/queueing.md,
-- "Estimates"). kiln.task_eta (schema/current/16_eta.sql) estimates a task's
-- build time from the last builds of the same source package on the
-- platform; this index finds a package's earlier jobs by name.

CREATE INDEX package_name_idx ON kiln.package (name, job_id DESC) WHERE name IS NOT NULL;
COMMENT ON INDEX kiln.package_name_idx IS 'Packages by source package name, newest job first: the earlier builds of a package that kiln.task_eta_rows takes its duration estimate from.';

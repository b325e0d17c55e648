-- 0046_river_build_policy.sql: the builders' River job policies
-- (river_job_build_work, river_job_build_delete) compare the queue with an
-- array of their build queues made once per statement, not with a hashed
-- subquery, so that River's completion of a batch of River jobs probes the
-- primary key instead of reading every River job (schema/current/
-- 40_policies.sql says why). Same rows allowed. No table changes.
SELECT 1;

-- 0046_river_build_policy.sql: the builders' River job policies
-- (river_job_build_work, river_job_build_delete) compare the queue with an
-- array of their build queues made once per statement, not with a hashed
-- subquery, so that River's completion of a batch of River jobs probes the
-- primary key instead of reading every River job (schema/current/
-- 40_policies.sql says why). Same rows allowed. No table changes.

-- What 0046 changed in schema/current, as it was when 0046 landed (the
-- legacy layout kept every function, trigger and policy in a numbered
-- migration).

DROP POLICY IF EXISTS river_job_build_work ON river.river_job;
CREATE POLICY river_job_build_work ON river.river_job FOR UPDATE TO kiln_builder
    USING (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))))
    WITH CHECK (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))));
COMMENT ON POLICY river_job_build_work ON river.river_job IS 'A builder fetches, completes, retries and snoozes only River jobs of the build queues (build-PLATFORM, riverjob.BuildQueue) of its own builders'' platforms, and cannot move one elsewhere: not another platform''s builds, not validate, report or janitor River jobs.';

DROP POLICY IF EXISTS river_job_build_delete ON river.river_job;
CREATE POLICY river_job_build_delete ON river.river_job FOR DELETE TO kiln_builder
    USING (queue = ANY (ARRAY(SELECT 'build-' || bp.platform FROM kiln.builder_platform bp WHERE bp.builder IN (SELECT kiln.own_builders()))));
COMMENT ON POLICY river_job_build_delete ON river.river_job IS 'A builder deletes only River jobs of its own builders'' platforms'' build queues.';

-- 0039_river_build_fetch.sql: an index through which a builder's River
-- fetch reads only the head of its queue.
--
-- River's fetch (JobGetAvailable: state = 'available' AND queue = $1 ...
-- ORDER BY priority, scheduled_at, id LIMIT n FOR UPDATE SKIP LOCKED)
-- uses River's river_job_prioritized_fetching_index, which leads with
-- state. A builder runs it under row security (river_job_build_work in
-- schema/current/40_policies.sql), and PostgreSQL evaluates the policy's
-- qualification before any of the query's own conditions that are not
-- leakproof: the enum comparison on state is not, so it cannot be an index
-- condition, and every fetch read the whole table and sorted the
-- available rows of its queue (8 ms at 16,000 River jobs, 22 ms at
-- 100,000; docs/scaling.md). The comparisons on queue and scheduled_at are
-- leakproof, and the partial index's predicate needs no evaluation, so
-- this index serves the fetch in order and stops at its LIMIT.
CREATE INDEX river_job_kiln_build_fetch_idx ON river.river_job (queue, priority, scheduled_at, id)
    WHERE state = 'available';
COMMENT ON INDEX river.river_job_kiln_build_fetch_idx IS 'kiln''s (migration 0039): the available River jobs of a queue in River''s fetch order, usable by a fetch under row security, whose non-leakproof state comparison cannot use River''s own fetch index.';

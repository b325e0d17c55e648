-- 0041_builder_heartbeat_trigger.sql: a builder's heartbeat no longer calls
-- kiln.builder_changed (schema/current/30_triggers.sql): the trigger on
-- updates of kiln.builder fires only when state, enabled or draining
-- change (a WHEN clause, as the change triggers of tasks, jobs and
-- attempts have since 0036), inserts have a trigger of their own, and
-- the function no longer checks what the WHEN clause does. No table
-- changes.
SELECT 1;

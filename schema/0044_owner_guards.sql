-- 0044_owner_guards.sql: the guards of kiln.task and kiln.event are not
-- called for the owner's own writes (a WHEN clause on current_user):
-- kiln.task_transition_guard let the owner make any move anyway, and the
-- owner's events leave actor and time to the columns' defaults, which
-- stamp what kiln.event_guard would, and name their task's job
-- (kiln.attempt_inserted and kiln.attempt_changed now give it). Everyone
-- else's writes pass the guards as before (schema/current/30_triggers.sql).
-- No table changes.
SELECT 1;

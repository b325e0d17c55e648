-- 0041_builder_heartbeat_trigger.sql: a builder's heartbeat no longer calls
-- kiln.builder_changed (schema/current/30_triggers.sql): the trigger on
-- updates of kiln.builder fires only when state, enabled or draining
-- change (a WHEN clause, as the change triggers of tasks, jobs and
-- attempts have since 0036), and inserts have a trigger of their own. No
-- table changes.

-- What 0041 changed in schema/current, as it was when 0041 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE TRIGGER builder_inserted AFTER INSERT ON kiln.builder
    FOR EACH ROW EXECUTE FUNCTION kiln.builder_changed();

CREATE OR REPLACE TRIGGER builder_changed AFTER UPDATE ON kiln.builder
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.enabled IS DISTINCT FROM NEW.enabled
                       OR OLD.draining IS DISTINCT FROM NEW.draining)
    EXECUTE FUNCTION kiln.builder_changed();

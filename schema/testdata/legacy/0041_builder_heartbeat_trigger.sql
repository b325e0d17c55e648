-- 0041_builder_heartbeat_trigger.sql: a builder's heartbeat no longer calls
-- kiln.builder_changed (schema/current/30_triggers.sql): the trigger on
-- updates of kiln.builder fires only when state, enabled or draining
-- change (a WHEN clause, as the change triggers of tasks, jobs and
-- attempts have since 0036), inserts have a trigger of their own, and
-- the function no longer checks what the WHEN clause does. No table
-- changes.

-- What 0041 changed in schema/current, as it was when 0041 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.builder_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    -- Called only for an insert or a change of state, enabled or
    -- draining (the triggers' WHEN clause, schema/current/30_triggers.sql).
    INSERT INTO kiln.event (kind, builder, old_status, new_status, detail)
    VALUES ('builder.state', NEW.name, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
            jsonb_build_object('enabled', NEW.enabled, 'draining', NEW.draining, 'host', NEW.host));
    PERFORM pg_notify('kiln_builder', json_build_object('builder', NEW.name, 'state', NEW.state)::text);
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.builder_changed() IS 'After a builder registers or changes state, enabled or draining: records an event and sends NOTIFY kiln_builder.';

CREATE OR REPLACE TRIGGER builder_inserted AFTER INSERT ON kiln.builder
    FOR EACH ROW EXECUTE FUNCTION kiln.builder_changed();

CREATE OR REPLACE TRIGGER builder_changed AFTER UPDATE ON kiln.builder
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.enabled IS DISTINCT FROM NEW.enabled
                       OR OLD.draining IS DISTINCT FROM NEW.draining)
    EXECUTE FUNCTION kiln.builder_changed();

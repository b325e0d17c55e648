-- 0044_owner_guards.sql: the guards of kiln.task and kiln.event are not
-- called for the owner's own writes (a WHEN clause on current_user):
-- kiln.task_transition_guard let the owner make any move anyway, and the
-- owner's events leave actor and time to the columns' defaults, which
-- stamp what kiln.event_guard would, and name their task's job
-- (kiln.attempt_inserted and kiln.attempt_changed now give it). Everyone
-- else's writes pass the guards as before (schema/current/30_triggers.sql).
-- No table changes.

-- What 0044 changed in schema/current, as it was when 0044 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.event_guard()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    task_job bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.actor := session_user;
        NEW.at := pg_catalog.clock_timestamp();
        -- An event about a task is an event about its job, whatever the
        -- writer sent: row-level security shows it only with the job.
        IF NEW.task_id IS NOT NULL THEN
            SELECT t.job_id INTO task_job FROM kiln.task t WHERE t.id = NEW.task_id;
            IF FOUND THEN
                NEW.job_id := task_job;
            END IF;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kiln.event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $function$;
COMMENT ON FUNCTION kiln.event_guard() IS 'Keeps kiln.event append-only, stamps the real actor (session_user) and time on every insert it is called for (all but the owner''s own, which leave both to the columns'' defaults, the same values), and sets job_id from task_id when the event names a task (so that row-level security shows it only with its job).';

CREATE OR REPLACE FUNCTION kiln.attempt_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, new_status, detail)
    SELECT 'attempt.status', t.job_id, n.task_id, n.attempt, n.builder, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
      FROM new_attempts n JOIN kiln.task t ON t.id = n.task_id ORDER BY n.task_id;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.attempt_inserted() IS 'After a statement inserts attempts (transition table new_attempts): records an attempt.status event for each, which names the job (so it is readable only with the job).';

CREATE OR REPLACE FUNCTION kiln.attempt_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    -- Called only for a change of status (the trigger's WHEN clause).
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('attempt.status', (SELECT t.job_id FROM kiln.task t WHERE t.id = NEW.task_id), NEW.task_id, NEW.attempt, NEW.builder, OLD.status, NEW.status,
            coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.attempt_changed() IS 'After an attempt changes status: records an attempt.status event, which names the job (so it is readable only with the job).';

CREATE OR REPLACE TRIGGER event_guard_insert BEFORE INSERT ON kiln.event
    FOR EACH ROW WHEN (CURRENT_USER <> 'kiln_owner' OR NEW.task_id IS NOT NULL AND NEW.job_id IS NULL)
    EXECUTE FUNCTION kiln.event_guard();

CREATE OR REPLACE TRIGGER task_transition_guard BEFORE INSERT OR UPDATE ON kiln.task
    FOR EACH ROW WHEN (CURRENT_USER <> 'kiln_owner') EXECUTE FUNCTION kiln.task_transition_guard();


-- 0013_guards.sql: narrower rights where the grants alone were too broad.
--
--   * River jobs: people insert only the validate River job of their own
--     submitted job and change no River job at all; the daemons keep what
--     River needs (row-level security on river.river_job).
--   * Tasks move only along the task protocol (docs/protocol.md); a trigger
--     refuses any other change of status or attempt by the farm's roles.
--   * The splitter records validation only on jobs still waiting for it; the
--     janitor may give up on a job whose validation never completes.
--   * Events are written by the triggers (as the owner) and by the janitor,
--     whose own events are janitor.* only.

------------------------------------------------------------------------------
-- River jobs
------------------------------------------------------------------------------

-- Whether a River job is the validate River job of one of the session's
-- own jobs (the job's row-level security applies: it runs with the
-- caller's rights).
CREATE FUNCTION kiln.own_validate_river_job(p_kind text, p_queue text, p_args jsonb, p_submitted_only boolean) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_kind = 'validate' AND p_queue = 'incoming' AND jsonb_typeof(p_args -> 'job_id') = 'number'
   AND EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = (p_args ->> 'job_id')::bigint AND j.submitter = session_user
               AND (j.status = 'submitted' OR NOT p_submitted_only));
COMMENT ON FUNCTION kiln.own_validate_river_job(text, text, jsonb, boolean) IS 'True for a River job of kind validate in queue incoming whose job_id is a job of session_user (still submitted, when asked). Used by row-level security on river.river_job.';

ALTER TABLE river.river_job ENABLE ROW LEVEL SECURITY;
CREATE POLICY river_job_work ON river.river_job FOR ALL TO kiln_splitter, kiln_builder, kiln_janitor
    USING (true) WITH CHECK (true);
CREATE POLICY river_job_read_admin ON river.river_job FOR SELECT TO kiln_admin
    USING (true);
CREATE POLICY river_job_submit ON river.river_job FOR INSERT TO kiln_submitter
    WITH CHECK (state IN ('available', 'scheduled') AND kiln.own_validate_river_job(kind, queue, args, true));
CREATE POLICY river_job_submit_read ON river.river_job FOR SELECT TO kiln_submitter
    USING (kiln.own_validate_river_job(kind, queue, args, false));
COMMENT ON POLICY river_job_work ON river.river_job IS 'The daemons work, insert, retry, cancel and clean River jobs as River needs (their grants still decide which commands).';
COMMENT ON POLICY river_job_read_admin ON river.river_job IS 'Admins read every River job.';
COMMENT ON POLICY river_job_submit ON river.river_job IS 'A person enqueues only the validate River job of their own submitted job (kiln submit, kiln resubmit). No policy lets a person update or delete a River job.';
COMMENT ON POLICY river_job_submit_read ON river.river_job IS 'A person reads the validate River jobs of their own jobs (River''s insert returns the row).';

------------------------------------------------------------------------------
-- Task transitions
------------------------------------------------------------------------------

-- Legal moves for the farm's roles (the owner, in kiln.cancel_job and
-- kiln.cancel_task, and superusers repairing by hand are not checked):
--   insert                  pending, or skipped            splitter
--   pending  -> pending     attempt unchanged              anyone who may (River job link)
--   pending  -> building    attempt + 1                    builder (take)
--   building -> building    same attempt and builder       builder (heartbeat)
--   building -> pending     same attempt                   builder (give back), janitor (lost, requeued)
--   building -> succeeded, failed                          builder (finish)
--   building -> timed_out                                  builder, janitor (runaway)
--   building -> lost                                       janitor (lost too often)
-- Nothing leaves a final state, and a pending task ends only by cancelling.
CREATE FUNCTION kiln.task_transition_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    IF current_user = 'kiln_owner' OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        ok := NEW.status IN ('pending', 'skipped') AND NEW.attempt = 0 AND NEW.lost_count = 0;
    ELSE
        ok := CASE
            WHEN OLD.status = 'pending' AND NEW.status = 'pending' THEN
                NEW.attempt = OLD.attempt
            WHEN OLD.status = 'pending' AND NEW.status = 'building' THEN
                NEW.attempt = OLD.attempt + 1 AND pg_has_role(session_user, 'kiln_builder', 'MEMBER')
            WHEN OLD.status = 'building' AND NEW.status = 'building' THEN
                NEW.attempt = OLD.attempt AND NEW.builder = OLD.builder
            WHEN OLD.status = 'building' AND NEW.status = 'pending' THEN
                NEW.attempt = OLD.attempt
            WHEN OLD.status = 'building' AND NEW.status IN ('succeeded', 'failed') THEN
                NEW.attempt = OLD.attempt AND pg_has_role(session_user, 'kiln_builder', 'MEMBER')
            WHEN OLD.status = 'building' AND NEW.status = 'timed_out' THEN
                NEW.attempt = OLD.attempt
            WHEN OLD.status = 'building' AND NEW.status = 'lost' THEN
                NEW.attempt = OLD.attempt AND pg_has_role(session_user, 'kiln_janitor', 'MEMBER')
            ELSE false
        END;
    END IF;
    IF NOT ok THEN
        RAISE EXCEPTION 'task %: % is not a move % may make (docs/protocol.md)', NEW.id,
            CASE WHEN TG_OP = 'INSERT' THEN 'inserting it as ' || NEW.status
                 ELSE format('%s (attempt %s) -> %s (attempt %s)', OLD.status, OLD.attempt, NEW.status, NEW.attempt) END,
            session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
COMMENT ON FUNCTION kiln.task_transition_guard() IS 'Refuses task inserts and status or attempt changes that the task protocol (docs/protocol.md) does not allow the session''s role; the owner (cancel functions) and superusers are not checked.';
CREATE TRIGGER task_transition_guard BEFORE INSERT OR UPDATE ON kiln.task
    FOR EACH ROW EXECUTE FUNCTION kiln.task_transition_guard();

------------------------------------------------------------------------------
-- Validation
------------------------------------------------------------------------------

ALTER POLICY job_validate ON kiln.job
    USING (status = 'submitted') WITH CHECK (status IN ('submitted', 'invalid'));
COMMENT ON POLICY job_validate ON kiln.job IS 'The splitter records the validation outcome of a job still waiting for it (its tasks then decide its status).';
ALTER POLICY package_validate ON kiln.package
    USING (EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id AND j.status = 'submitted'));
COMMENT ON POLICY package_validate ON kiln.package IS 'The splitter records what it parsed from the packages of a job still waiting for validation.';

CREATE POLICY job_give_up ON kiln.job FOR UPDATE TO kiln_janitor
    USING (status = 'submitted') WITH CHECK (status = 'invalid');
COMMENT ON POLICY job_give_up ON kiln.job IS 'The janitor marks invalid a job whose validation failed to complete too often (docs/janitor.md).';

------------------------------------------------------------------------------
-- Events
------------------------------------------------------------------------------

DROP POLICY event_record ON kiln.event;
CREATE POLICY event_record ON kiln.event FOR INSERT TO kiln_janitor
    WITH CHECK (kind LIKE 'janitor.%');
COMMENT ON POLICY event_record ON kiln.event IS 'The janitor records its rounds and repairs (janitor.* events); every other event is written by the triggers, as the owner.';

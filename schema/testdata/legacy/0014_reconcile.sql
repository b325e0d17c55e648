-- 0014_reconcile.sql: joins the guards of 0013 with work that landed beside
-- them: a restarted builder gives back what its crashed run left (it may end
-- a task as lost past the limit, and records builder.* events), and kiln-web
-- enqueues the validate River job of a job a person resubmits in the browser.

-- building -> lost is also a builder's move: a restarted builder whose crashed
-- run left a task that was already lost too often (docs/builder.md).
CREATE OR REPLACE FUNCTION kiln.task_transition_guard() RETURNS trigger
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
                NEW.attempt = OLD.attempt AND (pg_has_role(session_user, 'kiln_janitor', 'MEMBER')
                                               OR pg_has_role(session_user, 'kiln_builder', 'MEMBER'))
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

CREATE POLICY event_builder ON kiln.event FOR INSERT TO kiln_builder
    WITH CHECK (kind LIKE 'builder.%');
COMMENT ON POLICY event_builder ON kiln.event IS 'Builders record their own builder.* events (builder.recover); every other event is written by the triggers or the janitor.';

CREATE POLICY river_job_web_resubmit ON river.river_job FOR INSERT TO kiln_web
    WITH CHECK (state IN ('available', 'scheduled') AND kind = 'validate' AND queue = 'incoming'
                AND jsonb_typeof(args -> 'job_id') = 'number'
                AND EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = (args ->> 'job_id')::bigint
                            AND j.status = 'submitted' AND j.resubmit_of IS NOT NULL));
CREATE POLICY river_job_web_read ON river.river_job FOR SELECT TO kiln_web
    USING (kind = 'validate' AND queue = 'incoming');
COMMENT ON POLICY river_job_web_resubmit ON river.river_job IS 'kiln-web enqueues only the validate River job of a job just resubmitted through kiln.web_resubmit.';
COMMENT ON POLICY river_job_web_read ON river.river_job IS 'kiln-web reads validate River jobs (River''s insert returns the row).';

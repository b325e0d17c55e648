-- 0036_lean_triggers.sql: the lean data path's triggers (docs/scaling.md,
-- "The data path"). No table changes: the change triggers of tasks, jobs
-- and attempts fire only for the changes they record (WHEN clauses in
-- schema/current/30_triggers.sql; an insert has a trigger of its own), the
-- report and publication triggers only for a job's final status, and
-- kiln.job_status_from_tasks is PL/pgSQL, planned once per session.
SELECT 1;

-- What 0036 changed in schema/current, as it was when 0036 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.job_status_from_tasks(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN (SELECT CASE
        WHEN count(*) = 0 THEN NULL
        WHEN count(*) FILTER (WHERE status = 'building') > 0 THEN 'building'
        WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN
            CASE WHEN count(*) FILTER (WHERE status NOT IN ('pending', 'skipped')) > 0
                 THEN 'building' ELSE 'queued' END
        WHEN count(*) FILTER (WHERE status NOT IN ('succeeded', 'skipped')) = 0 THEN 'succeeded'
        WHEN count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'lost')) = 0
             AND count(*) FILTER (WHERE status = 'succeeded') = 0 THEN 'cancelled'
        WHEN count(*) FILTER (WHERE status = 'succeeded') = 0 THEN 'failed'
        ELSE 'partially_failed'
    END
    FROM kiln.task WHERE job_id = p_job_id);
END $function$;
COMMENT ON FUNCTION kiln.job_status_from_tasks(bigint) IS 'The job status its tasks imply: building while any builds (or some finished and some wait), queued while all wait, succeeded when all succeeded or were skipped, cancelled when all that did not succeed or skip were cancelled and none succeeded, failed when none succeeded, else partially_failed. NULL without tasks.';

CREATE OR REPLACE TRIGGER task_inserted AFTER INSERT ON kiln.task
    FOR EACH ROW EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER task_changed AFTER UPDATE ON kiln.task
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attempt IS DISTINCT FROM NEW.attempt)
    EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER job_inserted AFTER INSERT ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER job_changed AFTER UPDATE ON kiln.job
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER attempt_inserted AFTER INSERT ON kiln.attempt
    FOR EACH ROW EXECUTE FUNCTION kiln.attempt_changed();

CREATE OR REPLACE TRIGGER attempt_changed AFTER UPDATE ON kiln.attempt
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION kiln.attempt_changed();

CREATE OR REPLACE TRIGGER job_request_publication AFTER UPDATE OF status ON kiln.job
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln.job_request_publication();

CREATE OR REPLACE TRIGGER job_request_report AFTER UPDATE OF status ON kiln.job
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln.job_request_report();

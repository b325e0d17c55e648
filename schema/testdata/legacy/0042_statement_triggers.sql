-- 0042_statement_triggers.sql: the change triggers of tasks and jobs
-- (kiln.task_changed, kiln.job_changed) and the attempts' insert trigger
-- (kiln.attempt_inserted) are statement-level, with transition tables,
-- and the job status recompute is set-based (kiln.job_statuses_from_tasks,
-- kiln.refresh_job_statuses; the functions of one job call them): a
-- statement that takes or finishes many tasks records their events and
-- recomputes their jobs once, not once per row (schema/current/
-- 10_functions.sql, 30_triggers.sql). No table changes.

-- What 0042 changed in schema/current, as it was when 0042 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.job_statuses_from_tasks(p_job_ids bigint[])
 RETURNS TABLE(job_id bigint, status text)
 LANGUAGE plpgsql
 STABLE ROWS 10
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY
    SELECT t.job_id, CASE
        WHEN count(*) FILTER (WHERE t.status = 'building') > 0 THEN 'building'
        WHEN count(*) FILTER (WHERE t.status = 'pending') > 0 THEN
            CASE WHEN count(*) FILTER (WHERE t.status NOT IN ('pending', 'skipped')) > 0
                 THEN 'building' ELSE 'queued' END
        WHEN count(*) FILTER (WHERE t.status NOT IN ('succeeded', 'skipped')) = 0 THEN 'succeeded'
        WHEN count(*) FILTER (WHERE t.status IN ('failed', 'timed_out', 'lost')) = 0
             AND count(*) FILTER (WHERE t.status = 'succeeded') = 0 THEN 'cancelled'
        WHEN count(*) FILTER (WHERE t.status = 'succeeded') = 0 THEN 'failed'
        ELSE 'partially_failed'
    END
    FROM kiln.task t WHERE t.job_id = ANY (p_job_ids)
    GROUP BY t.job_id;
END $function$;
COMMENT ON FUNCTION kiln.job_statuses_from_tasks(bigint[]) IS 'The status each job its tasks imply, for the jobs that have tasks: building while any builds (or some finished and some wait), queued while all wait, succeeded when all succeeded or were skipped, cancelled when all that did not succeed or skip were cancelled and none succeeded, failed when none succeeded, else partially_failed.';

CREATE OR REPLACE FUNCTION kiln.job_status_from_tasks(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN (SELECT s.status FROM kiln.job_statuses_from_tasks(ARRAY[p_job_id]) s);
END $function$;
COMMENT ON FUNCTION kiln.job_status_from_tasks(bigint) IS 'The job status its tasks imply (kiln.job_statuses_from_tasks of one job); NULL without tasks.';

CREATE OR REPLACE FUNCTION kiln.refresh_job_statuses(p_job_ids bigint[])
 RETURNS TABLE(job_id bigint, status text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM 1 FROM kiln.job j WHERE j.id = ANY (p_job_ids) ORDER BY j.id FOR UPDATE OF j;
    RETURN QUERY
    WITH computed AS (
        SELECT c.job_id, c.status FROM kiln.job_statuses_from_tasks(p_job_ids) c
    ), changed AS (
        UPDATE kiln.job j SET
            status = c.status,
            started_at = CASE WHEN c.status IN ('building', 'succeeded', 'failed', 'partially_failed')
                              THEN coalesce(j.started_at, pg_catalog.now()) ELSE j.started_at END,
            finished_at = CASE WHEN c.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
                               THEN coalesce(j.finished_at, pg_catalog.now()) ELSE NULL END
          FROM computed c
         WHERE j.id = ANY (p_job_ids) AND j.id = c.job_id AND j.status <> c.status
        RETURNING j.id, j.status
    )
    SELECT j.id, coalesce(ch.status, j.status)
      FROM kiln.job j LEFT JOIN changed ch ON ch.id = j.id
     WHERE j.id = ANY (p_job_ids);
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_statuses(bigint[]) IS 'Sets jobs'' statuses (and started/finished times) from their tasks, in one statement; returns each existing job''s status. Locks the jobs in id order. Called by the task triggers once per statement.';

CREATE OR REPLACE FUNCTION kiln.refresh_job_status(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN (SELECT r.status FROM kiln.refresh_job_statuses(ARRAY[p_job_id]) r);
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_status(bigint) IS 'Sets a job''s status (and started/finished times) from its tasks (kiln.refresh_job_statuses of one job); returns the status, NULL when there is no such job. Called by the janitor''s consistency check.';

CREATE OR REPLACE FUNCTION kiln.task_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_tasks bigint[];
    v_jobs bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, task_id, new_status, detail)
        SELECT 'task.status', n.job_id, n.id, n.status,
               pg_catalog.jsonb_build_object('platform', n.platform) || coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
          FROM new_tasks n ORDER BY n.id;
        SELECT pg_catalog.array_agg(n.id ORDER BY n.id), pg_catalog.array_agg(DISTINCT n.job_id)
          INTO v_tasks, v_jobs FROM new_tasks n;
    ELSE
        SELECT pg_catalog.array_agg(n.id ORDER BY n.id), pg_catalog.array_agg(DISTINCT n.job_id)
          INTO v_tasks, v_jobs
          FROM new_tasks n JOIN old_tasks o ON o.id = n.id
         WHERE n.status IS DISTINCT FROM o.status OR n.attempt IS DISTINCT FROM o.attempt;
        IF v_tasks IS NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
        SELECT 'task.status', n.job_id, n.id, n.attempt, coalesce(n.builder, o.builder), o.status, n.status,
               pg_catalog.jsonb_build_object('platform', n.platform) || coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
          FROM new_tasks n JOIN old_tasks o ON o.id = n.id
         WHERE n.id = ANY (v_tasks) ORDER BY n.id;
    END IF;
    IF v_tasks IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM kiln.refresh_job_statuses(v_jobs);
    PERFORM pg_catalog.pg_notify('kiln_task', pg_catalog.json_build_object('job', n.job_id, 'task', n.id)::text)
       FROM new_tasks n WHERE n.id = ANY (v_tasks) ORDER BY n.id;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.task_changed() IS 'After a statement inserts tasks or changes tasks'' status or attempt (transition tables new_tasks and old_tasks): records an event per task, recomputes their jobs'' statuses (kiln.refresh_job_statuses) and sends NOTIFY kiln_task with each job and task id (no status: listeners read the task with their own rights).';

CREATE OR REPLACE FUNCTION kiln.job_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_jobs bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, new_status, detail)
        SELECT 'job.status', n.id, n.status, pg_catalog.jsonb_build_object('bucket', n.bucket, 'submitter', n.submitter)
          FROM new_jobs n ORDER BY n.id;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', n.id)::text) FROM new_jobs n ORDER BY n.id;
    ELSE
        WITH ev AS (
            INSERT INTO kiln.event (kind, job_id, old_status, new_status, detail)
            SELECT 'job.status', n.id, o.status, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
              FROM new_jobs n JOIN old_jobs o ON o.id = n.id
             WHERE n.status IS DISTINCT FROM o.status
             ORDER BY n.id
            RETURNING job_id
        )
        SELECT pg_catalog.array_agg(e.job_id ORDER BY e.job_id) INTO v_jobs FROM ev e;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', j)::text) FROM unnest(v_jobs) AS j;
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.job_changed() IS 'After a statement inserts jobs or changes jobs'' status (transition tables new_jobs and old_jobs): records an event per job and sends NOTIFY kiln_job with each job id (no status: listeners read the job with their own rights).';

CREATE OR REPLACE FUNCTION kiln.attempt_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    INSERT INTO kiln.event (kind, task_id, attempt, builder, new_status, detail)
    SELECT 'attempt.status', n.task_id, n.attempt, n.builder, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
      FROM new_attempts n ORDER BY n.task_id;
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
    -- Called only for a change of status (the trigger's WHEN clause);
    -- kiln.event_guard sets the job id from the task.
    INSERT INTO kiln.event (kind, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('attempt.status', NEW.task_id, NEW.attempt, NEW.builder, OLD.status, NEW.status,
            coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.attempt_changed() IS 'After an attempt changes status: records an attempt.status event, which names the job (so it is readable only with the job).';

REVOKE EXECUTE ON FUNCTION kiln.refresh_job_statuses(bigint[]) FROM PUBLIC;

CREATE OR REPLACE TRIGGER task_inserted AFTER INSERT ON kiln.task
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER task_changed AFTER UPDATE ON kiln.task
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER job_inserted AFTER INSERT ON kiln.job
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER job_changed AFTER UPDATE ON kiln.job
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER attempt_inserted AFTER INSERT ON kiln.attempt
    REFERENCING NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.attempt_inserted();


-- 0049_refresh_returns_nothing.sql: kiln.refresh_job_statuses returns
-- nothing (schema/current/10_functions.sql). The task triggers call it at
-- every statement that changes tasks and discarded its answer, a second
-- read of the jobs that cost a fifth of the recompute; kiln.refresh_job_status
-- reads its one job's status itself. A function's result type cannot be
-- replaced, so it is dropped here and made again by the current-state
-- files. No table changes.
DROP FUNCTION IF EXISTS kiln.refresh_job_statuses(bigint[]);

-- What 0049 changed in schema/current, as it was when 0049 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

-- Recompute jobs' statuses, in one statement for all of them. Locks the
-- job rows first, in id order (the protocol's order), so two statements
-- changing tasks of the same job are serialised and the second sees the
-- first. Returns nothing: the task triggers, which call it at every
-- statement that changes tasks, need no answer, and reading the jobs again
-- for one cost a fifth of the recompute (kiln.refresh_job_status reads its
-- one job's status after).
CREATE OR REPLACE FUNCTION kiln.refresh_job_statuses(p_job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM 1 FROM kiln.job j WHERE j.id = ANY (p_job_ids) ORDER BY j.id FOR UPDATE OF j;
    UPDATE kiln.job j SET
        status = c.status,
        started_at = CASE WHEN c.status IN ('building', 'succeeded', 'failed', 'partially_failed')
                          THEN coalesce(j.started_at, pg_catalog.now()) ELSE j.started_at END,
        finished_at = CASE WHEN c.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
                           THEN coalesce(j.finished_at, pg_catalog.now()) ELSE NULL END
      FROM kiln.job_statuses_from_tasks(p_job_ids) c
     WHERE j.id = ANY (p_job_ids) AND j.id = c.job_id AND j.status <> c.status;
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_statuses(bigint[]) IS 'Sets jobs'' statuses (and started/finished times) from their tasks, in one statement. Locks the jobs in id order. Called by the task triggers once per statement.';

CREATE OR REPLACE FUNCTION kiln.refresh_job_status(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.refresh_job_statuses(ARRAY[p_job_id]);
    RETURN (SELECT j.status FROM kiln.job j WHERE j.id = p_job_id);
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_status(bigint) IS 'Sets a job''s status (and started/finished times) from its tasks (kiln.refresh_job_statuses of one job); returns the status, NULL when there is no such job. Called by the janitor''s consistency check.';

REVOKE EXECUTE ON FUNCTION kiln.refresh_job_statuses(bigint[]) FROM PUBLIC;
